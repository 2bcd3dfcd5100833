//! Every kernel of the crate in one list, and the naga tests that check each of them without a GPU.
//!
//! Each op declares its kernels beside its `Params` (`engine/ops/<family>/<op>.rs`: `pub const KERNELS`); [`all`]
//! collects them. The tests below (naga's `example_wgsl.rs` pattern, made stricter) check, for every file of
//! `src/shaders/` and every kernel:
//! - the file parses and validates with **no optional capability** but those its [`Needs`] declares (a shader
//!   that silently needs f64, f16 or subgroups fails here rather than on a user's machine), and translates
//!   to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) — cooperative-matrix kernels to SPIR-V and MSL only,
//!   naga 30 has no HLSL for them (DX12 adapters take the path without them);
//! - every `.wgsl` file is registered in `shaders::ALL` and used by some kernel, and every entry point of a
//!   file is some kernel's;
//! - each kernel's workgroup size equals the entry point's `@workgroup_size`, its `Params` size equals the
//!   WGSL `struct Params` span (padded to 16 bytes), its binding count equals the file's bindings (storage
//!   buffers 0..n-1, the uniform `params` last, all in group 0), and every entry point uses every binding;
//! - every kernel fits **WebGPU's default limits** ([`crate::engine::limits`]): at most 8 storage buffers and
//!   12 uniform buffers, 16 KiB of workgroup memory and 256 invocations per workgroup (x, y ≤ 256, z ≤ 64).
//!   wgpu checks the buffer counts and the workgroup size when it creates a pipeline, but not the workgroup
//!   memory, so this test is what keeps a tile from outgrowing the weakest adapter. A faster variant that
//!   needs more than the defaults must be chosen from the device's limits (`Gpu::limits`) beside a variant
//!   that fits, and be listed in that test.

use crate::engine::kernel::Kernel;
use crate::engine::ops;
#[cfg(doc)]
use crate::shaders::Needs;

/// Every kernel of every op (and of the optimizer's update), in catalogue order.
pub fn all() -> Vec<Kernel> {
    [
        ops::elementwise::relu::KERNELS,
        ops::elementwise::half::KERNELS,
        ops::elementwise::unary::KERNELS,
        ops::elementwise::binary::KERNELS,
        ops::movement::copy_strided::KERNELS,
        ops::reduce::reduce_sum::KERNELS,
        ops::reduce::reduce_max::KERNELS,
        ops::reduce::softmax::KERNELS,
        ops::linalg::matmul::KERNELS,
        ops::linalg::half_matmul::KERNELS,
        ops::movement::index_select::KERNELS,
        ops::elementwise::masked_fill::KERNELS,
        ops::elementwise::dropout::KERNELS,
        ops::reduce::cross_entropy::KERNELS,
        ops::conv::conv2d::KERNELS,
        ops::conv::conv2d::mixed::KERNELS,
        ops::recurrent::conv_lstm::KERNELS,
        ops::recurrent::conv_gru::KERNELS,
        ops::recurrent::gru_cell::KERNELS,
        ops::attention::attention_weights::KERNELS,
        ops::attention::attention_apply::KERNELS,
        ops::attention::temporal_agg::KERNELS,
        ops::reduce::masked_pool::KERNELS,
        ops::norm::group_norm::KERNELS,
        ops::norm::batch_norm::KERNELS,
        ops::pool::upsample_bilinear::KERNELS,
        ops::pool::avg_pool2d::KERNELS,
        ops::pool::max_pool2d::KERNELS,
        ops::paps::segment_argmax::KERNELS,
        ops::paps::gather_pixels::KERNELS,
        ops::paps::crop::KERNELS,
        ops::paps::paps_loss::KERNELS,
        ops::pool::max_pool3d::KERNELS,
        ops::movement::time_unfold::KERNELS,
        ops::optim::adam::KERNELS,
        ops::optim::loss_scale::KERNELS,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use naga::valid::{Capabilities, ValidationFlags, Validator};

    use super::*;
    use crate::shaders::{self, Needs, Wgsl};

    /// The naga capabilities a file's [`Needs`] allow (and nothing else).
    fn capabilities(needs: Needs) -> Capabilities {
        match needs {
            Needs::Nothing => Capabilities::empty(),
            Needs::F16 => Capabilities::SHADER_FLOAT16,
            Needs::CooperativeMatrix => {
                Capabilities::SHADER_FLOAT16
                    | Capabilities::SUBGROUP
                    | Capabilities::COOPERATIVE_MATRIX
            }
        }
    }

    fn parse(s: &Wgsl) -> (naga::Module, naga::valid::ModuleInfo) {
        let module = naga::front::wgsl::parse_str(s.source).unwrap_or_else(|e| {
            panic!(
                "{}.wgsl does not parse:\n{}",
                s.name,
                e.emit_to_string(s.source)
            )
        });
        // Minimal capabilities: plain f32 compute needs none.
        let info = Validator::new(ValidationFlags::all(), capabilities(s.needs))
            .validate(&module)
            .unwrap_or_else(|e| {
                panic!(
                    "{}.wgsl does not validate:\n{}",
                    s.name,
                    e.emit_to_string(s.source)
                )
            });
        (module, info)
    }

    #[test]
    fn every_shader_validates_and_translates_to_spirv_msl_hlsl() {
        for s in shaders::ALL {
            let (module, info) = parse(s);
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{}.wgsl → SPIR-V (Vulkan): {e}", s.name));
            // Cooperative matrices are Metal's simdgroup matrices, MSL 2.3 and later (what wgpu asks for them).
            let msl = naga::back::msl::Options {
                lang_version: if s.needs == Needs::CooperativeMatrix {
                    (2, 3)
                } else {
                    naga::back::msl::Options::default().lang_version
                },
                ..Default::default()
            };
            naga::back::msl::write_string(
                &module,
                &info,
                &msl,
                &naga::back::msl::PipelineOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{}.wgsl → MSL (Metal): {e}", s.name));
            if s.needs == Needs::CooperativeMatrix {
                continue;
            }
            let mut hlsl = String::new();
            let opts = naga::back::hlsl::Options::default();
            let popts = naga::back::hlsl::PipelineOptions::default();
            naga::back::hlsl::Writer::new(&mut hlsl, &opts, &popts)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{}.wgsl → HLSL (DX12): {e}", s.name));
        }
    }

    /// The engine compiles each file with its read-only storage bindings made read-write (tensors share
    /// the pool's buffers, `engine::pool`): that text validates and translates too, and it leaves no
    /// read-only storage binding behind.
    #[test]
    fn the_compiled_form_binds_every_storage_buffer_read_write() {
        for s in shaders::ALL {
            let text = crate::engine::gpu::bind_read_write(s.source);
            let compiled = Wgsl {
                family: s.family,
                name: s.name,
                source: Box::leak(text.into_boxed_str()),
                needs: s.needs,
            };
            let (module, info) = parse(&compiled);
            for (_, var) in module.global_variables.iter() {
                if let naga::AddressSpace::Storage { access } = var.space {
                    assert!(
                        access.contains(naga::StorageAccess::STORE),
                        "{}.wgsl: {:?} stays read-only once compiled",
                        s.name,
                        var.name
                    );
                }
            }
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{}.wgsl (compiled form) → SPIR-V: {e}", s.name));
        }
    }

    #[test]
    fn every_wgsl_file_is_registered_once_and_used_by_a_kernel() {
        // Every file lives in a family folder, `src/shaders/<family>/<name>.wgsl`, and no .wgsl elsewhere.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/shaders");
        let mut files: BTreeSet<String> = BTreeSet::new();
        let mut stems: BTreeSet<String> = BTreeSet::new();
        for family in std::fs::read_dir(&dir).unwrap() {
            let family = family.unwrap().path();
            if family.extension().is_some_and(|e| e == "wgsl") {
                panic!("{}: outside a family folder", family.display());
            }
            if !family.is_dir() {
                continue;
            }
            let fam = family.file_name().unwrap().to_string_lossy().into_owned();
            let ops = dir.parent().unwrap().join("engine/ops").join(&fam);
            assert!(
                ops.is_dir(),
                "shaders/{fam}/ has no engine/ops/{fam}/ family"
            );
            for e in std::fs::read_dir(&family).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|e| e == "wgsl") {
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    files.insert(format!("{fam}/{stem}"));
                    stems.insert(stem);
                }
            }
        }
        let registered: Vec<String> = shaders::ALL
            .iter()
            .map(|s| format!("{}/{}", s.family, s.name))
            .collect();
        let unique: BTreeSet<String> = registered.iter().cloned().collect();
        assert_eq!(unique.len(), registered.len(), "a file is registered twice");
        assert_eq!(
            files, unique,
            "src/shaders/*/*.wgsl and shaders::ALL differ"
        );
        let files = stems;
        let used: BTreeSet<String> = all().iter().map(|k| k.shader.name.to_string()).collect();
        assert_eq!(
            files, used,
            "files without a kernel (or kernels of unknown files)"
        );
    }

    #[test]
    fn every_entry_point_is_a_kernel_and_every_kernel_an_entry_point() {
        let mut by_file: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for k in all() {
            assert!(
                by_file.entry(k.shader.name).or_default().insert(k.entry),
                "{}::{} declared twice",
                k.shader.name,
                k.entry
            );
        }
        for s in shaders::ALL {
            let (module, _) = parse(s);
            let eps: BTreeSet<&str> = module
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            let declared = by_file.get(s.name).cloned().unwrap_or_default();
            assert_eq!(
                eps, declared,
                "{}.wgsl: entry points vs declared kernels",
                s.name
            );
        }
    }

    /// The text of `fn name(...) { ... }` in `source` (up to the closing brace at column 0).
    fn function_text<'a>(source: &'a str, name: &str) -> Option<&'a str> {
        let start = source.find(&format!("fn {name}("))?;
        let end = start + source[start..].find("\n}")? + 2;
        Some(&source[start..end])
    }

    /// The text of `struct Params { ... }` in `source`.
    fn params_text(source: &str) -> Option<&str> {
        let start = source.find("struct Params {")?;
        let end = start + source[start..].find("\n}")? + 2;
        Some(&source[start..end])
    }

    /// Every shader whose stem starts with `family`, holding `text` (a function or the Params struct).
    fn copies<'a>(
        family: &str,
        text: impl Fn(&'a str) -> Option<&'a str>,
    ) -> Vec<(&'a str, &'a str)> {
        shaders::ALL
            .iter()
            .filter(|s| s.name.starts_with(family))
            .filter_map(|s| Some((s.name, text(s.source)?)))
            .collect()
    }

    #[test]
    fn every_copy_of_a_shared_helper_is_the_same() {
        // WGSL has no includes: helpers and the Params struct of a family of kernels are copied into each file
        // that needs them. The copies must be byte-identical so they cannot drift apart: the dropout hash
        // (dropout, attention, attention_backward; its CPU twin is engine::rng::hash_u32, checked by the GPU
        // parity tests), the convolution family's Params, padding and weight-reading helpers, the matmul
        // family's Params (and the three half-precision products'), the GRU cell's gates (its backward
        // recomputes the forward's) and Params, the binary16 rounding of half_pack, half_pack_operand,
        // half_im2col (which also copies the convolutions' padding) and half_round (and half_unpack's
        // conversion back), the implicit convolutions' Params, row walk and staging (half_conv,
        // half_conv_coop(8), half_conv_dw, half_conv_dw_coop(8); the cooperative ones also copy half_im2col's
        // element reader), matmul's bounded row store (half_matmul.wgsl's too), Adam's table search (the loss
        // scaler's check too), the lane sum of batch_norm_stats and channel_sum.
        let checks: [(&str, &str, usize); 20] = [
            ("", "pcg_hash", 3),
            ("", "src_index", 7),
            ("conv2d", "weight_at", 3),
            ("conv2d", "store", 3),
            ("conv2d", "pad_y", 3),
            ("conv2d", "Params", 8),
            ("matmul", "Params", 2),
            ("half_matmul", "Params", 3),
            ("half_conv", "Params", 6),
            ("half_conv", "row_at", 6),
            ("half_conv", "staged", 2),
            ("half_conv", "advance", 2),
            ("half_", "unfolded_bits", 2),
            ("half_", "half_bits", 4),
            ("half_", "round_up", 4),
            ("half_", "half_value", 2),
            ("", "store_row", 2),
            ("gru_cell", "gates", 2),
            ("gru_cell", "Params", 2),
            ("adam", "table_entry", 2),
        ];
        for (family, name, at_least) in checks {
            let found = if name == "Params" {
                copies(family, params_text)
            } else {
                copies(family, |src| function_text(src, name))
            };
            assert!(
                found.len() >= at_least,
                "{name} copies in {family}*: {found:?}"
            );
            for (file, text) in &found {
                assert_eq!(
                    text, &found[0].1,
                    "{file}.wgsl's {name} differs from {}.wgsl's",
                    found[0].0
                );
            }
        }
        // The sliced per-channel reductions' float lane sum (group norm's weight gradient has a vec2 twin),
        // named file by file: their names share no prefix.
        let lane_sums: Vec<(&str, &str)> = shaders::ALL
            .iter()
            .filter(|s| ["batch_norm_stats", "channel_sum"].contains(&s.name))
            .filter_map(|s| Some((s.name, function_text(s.source, "lane_sum")?)))
            .collect();
        assert_eq!(lane_sums.len(), 2, "lane_sum copies: {lane_sums:?}");
        assert_eq!(
            lane_sums[0].1, lane_sums[1].1,
            "{}.wgsl's lane_sum differs from {}.wgsl's",
            lane_sums[0].0, lane_sums[1].0
        );
    }

    /// The kernel's entry point in its parsed file, and its index.
    fn entry_point<'m>(module: &'m naga::Module, k: &Kernel) -> (usize, &'m naga::EntryPoint) {
        module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == k.entry)
            .unwrap_or_else(|| panic!("{}.wgsl has no entry point {}", k.shader.name, k.entry))
    }

    #[test]
    fn workgroup_size_params_and_bindings_match_the_rust_side() {
        for k in all() {
            let s = k.shader;
            let (module, info) = parse(s);
            let (ep_index, ep) = entry_point(&module, &k);
            assert_eq!(
                ep.workgroup_size,
                [k.wg, 1, 1],
                "{}::{}: workgroup size",
                s.name,
                k.entry
            );
            // Params span = size_of Rust Params.
            let params = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some("Params"))
                .unwrap_or_else(|| panic!("{}.wgsl has no struct Params", s.name));
            let span = match params.1.inner {
                naga::TypeInner::Struct { span, .. } => span as usize,
                _ => panic!("{}: Params is not a struct", s.name),
            };
            assert_eq!(
                span, k.params_bytes,
                "{}::{}: WGSL Params is {span} bytes, Rust Params {}",
                s.name, k.entry, k.params_bytes
            );
            assert_eq!(
                span % 16,
                0,
                "{}: Params must be padded to 16 bytes",
                s.name
            );
            // Bindings 0..n-1 storage, n-1 the uniform `params`; all in group 0.
            let mut globals: Vec<(u32, naga::AddressSpace, String)> = module
                .global_variables
                .iter()
                .filter_map(|(_, g)| {
                    let b = g.binding.as_ref()?;
                    assert_eq!(b.group, 0, "{}: {:?} not in group 0", s.name, g.name);
                    Some((b.binding, g.space, g.name.clone().unwrap_or_default()))
                })
                .collect();
            globals.sort_by_key(|g| g.0);
            let n = globals.len() as u32;
            assert_eq!(
                n, k.bindings,
                "{}::{}: {n} bindings in WGSL, {} declared",
                s.name, k.entry, k.bindings
            );
            for (i, g) in globals.iter().enumerate() {
                assert_eq!(
                    g.0, i as u32,
                    "{}: binding numbers must be 0..n without gaps",
                    s.name
                );
                let last = i as u32 == n - 1;
                assert_eq!(
                    matches!(g.1, naga::AddressSpace::Uniform),
                    last,
                    "{}: only the last binding is the uniform",
                    s.name
                );
                if last {
                    assert_eq!(
                        g.2, "params",
                        "{}: the uniform must be named params",
                        s.name
                    );
                }
            }
            // The entry point uses every binding (the derived pipeline layout then has all of them).
            let ep_info = info.get_entry_point(ep_index);
            for (h, g) in module.global_variables.iter() {
                if g.binding.is_some() {
                    assert!(
                        !ep_info[h].is_empty(),
                        "{}::{} does not use binding {:?}: every entry point must use every binding",
                        s.name,
                        k.entry,
                        g.name
                    );
                }
            }
        }
    }

    /// The bytes of workgroup memory entry point `ep_index` of `module` uses: WebGPU's count, the sum over its
    /// `var<workgroup>` of each size rounded up to 16 bytes.
    fn workgroup_bytes(
        module: &naga::Module,
        info: &naga::valid::ModuleInfo,
        ep_index: usize,
    ) -> u32 {
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("type layouts");
        let ep_info = info.get_entry_point(ep_index);
        module
            .global_variables
            .iter()
            .filter(|(h, g)| g.space == naga::AddressSpace::WorkGroup && !ep_info[*h].is_empty())
            .map(|(_, g)| layouter[g.ty].size.next_multiple_of(16))
            .sum()
    }

    #[test]
    fn every_kernel_fits_webgpu_default_limits() {
        let limits = wgpu::Limits::defaults();
        let mut largest = (0, "");
        for k in all() {
            let s = k.shader;
            let (module, info) = parse(s);
            let (ep_index, ep) = entry_point(&module, &k);
            let name = format!("{}::{}", s.name, k.entry);
            let [x, y, z] = ep.workgroup_size;
            assert!(
                x * y * z <= limits.max_compute_invocations_per_workgroup
                    && x <= limits.max_compute_workgroup_size_x
                    && y <= limits.max_compute_workgroup_size_y
                    && z <= limits.max_compute_workgroup_size_z,
                "{name}: workgroup ({x}, {y}, {z}) exceeds WebGPU's default {} invocations",
                limits.max_compute_invocations_per_workgroup
            );
            let ep_info = info.get_entry_point(ep_index);
            let used = |space: fn(naga::AddressSpace) -> bool| {
                module
                    .global_variables
                    .iter()
                    .filter(|(h, g)| space(g.space) && !ep_info[*h].is_empty())
                    .count() as u32
            };
            let storage = used(|sp| matches!(sp, naga::AddressSpace::Storage { .. }));
            let uniform = used(|sp| matches!(sp, naga::AddressSpace::Uniform));
            assert!(
                storage <= limits.max_storage_buffers_per_shader_stage,
                "{name}: {storage} storage buffers, WebGPU's default is {}: pack buffers or split the \
                 kernel",
                limits.max_storage_buffers_per_shader_stage
            );
            assert!(
                uniform <= limits.max_uniform_buffers_per_shader_stage,
                "{name}: {uniform} uniform buffers"
            );
            let bytes = workgroup_bytes(&module, &info, ep_index);
            assert!(
                bytes <= limits.max_compute_workgroup_storage_size,
                "{name}: {bytes} bytes of workgroup memory, WebGPU's default is {}: use a smaller tile \
                 (or choose this one from Gpu::limits beside one that fits, and list it here)",
                limits.max_compute_workgroup_storage_size
            );
            largest = largest.max((bytes, k.entry));
        }
        // The test measures: the largest today are the implicit cooperative convolutions' (8 slots of a
        // 16 × 64 slab of halves: WebGPU's default exactly; the tie goes to the later name), then
        // conv2d.wgsl's tile (4 KiB of weights + 8 KiB of input).
        assert_eq!(
            largest,
            (16 << 10, "half_conv_dw_coop"),
            "largest workgroup memory"
        );
    }
}
