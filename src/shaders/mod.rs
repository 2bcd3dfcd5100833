//! The WGSL kernels: one `pub const` per `.wgsl` file of this folder (the registry), and the naga tests that
//! check every one of them without a GPU.
//!
//! Conventions (every file follows them; the tests below enforce the checkable ones):
//! - Plain, valid WGSL: no templating, no preprocessor. The file parses and validates on its own.
//! - A header comment: the math, the thread mapping and dispatch, the bindings with shapes, the CPU reference
//!   and the backward file.
//! - The entry point has the file's name (family files — unary, binary — have one entry point per op).
//!   Pipelines and bind groups are labelled with the entry point, so wgpu errors name the op.
//! - `const WG: u32` is the workgroup size (1-D), equal to [`Shader::wg`].
//! - Storage buffers at bindings 0..n in header order, then `var<uniform> params: Params` at binding n, whose
//!   size equals the Rust `Params` ([`Shader::params_bytes`]). Every entry point uses every binding (the
//!   pipeline layout is derived from the shader).
//! - The linear workgroup index is `wid.x + wid.y * nwg.x` (the 2-D fold of `engine::kernel`).
//! - Backward kernels are gathers: each invocation owns its outputs (WGSL has no f32 atomics).

use std::mem::size_of;

use crate::engine::ops;

/// A registered shader file.
#[derive(Debug, Clone, Copy)]
pub struct Shader {
    /// File stem (also the shader module label).
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
    /// Workgroup size (`const WG` in the file).
    pub wg: u32,
    /// Size of the `Params` uniform in bytes (the Rust struct the wrapper uploads).
    pub params_bytes: usize,
    /// Number of bindings, the `Params` uniform included (it is the last one).
    pub bindings: u32,
}

macro_rules! shader {
    ($konst:ident, $name:literal, $params:ty, $bindings:literal) => {
        #[doc = concat!("`", $name, ".wgsl`")]
        pub const $konst: Shader = Shader {
            name: $name,
            source: include_str!(concat!($name, ".wgsl")),
            wg: 256,
            params_bytes: size_of::<$params>(),
            bindings: $bindings,
        };
    };
}

shader!(RELU, "relu", ops::ParamsN, 3);
shader!(RELU_BACKWARD, "relu_backward", ops::ParamsN, 4);
shader!(UNARY, "unary", ops::unary::Params, 3);
shader!(UNARY_BACKWARD, "unary_backward", ops::unary::Params, 4);
shader!(BINARY, "binary", ops::binary::Params, 4);
shader!(COPY_STRIDED, "copy_strided", ops::movement::Params, 3);
shader!(REDUCE_SUM, "reduce_sum", ops::reduce::SumParams, 3);
shader!(REDUCE_MAX, "reduce_max", ops::reduce::MaxParams, 4);
shader!(
    REDUCE_MAX_BACKWARD,
    "reduce_max_backward",
    ops::reduce::MaxParams,
    4
);
shader!(SOFTMAX, "softmax", ops::softmax::Params, 3);
shader!(
    SOFTMAX_BACKWARD,
    "softmax_backward",
    ops::softmax::Params,
    4
);
shader!(MATMUL, "matmul", ops::matmul::Params, 4);
shader!(INDEX_SELECT, "index_select", ops::index_select::Params, 4);
shader!(
    INDEX_SELECT_BACKWARD,
    "index_select_backward",
    ops::index_select::Params,
    4
);
shader!(MASKED_FILL, "masked_fill", ops::masked_fill::Params, 4);
shader!(DROPOUT, "dropout", ops::dropout::Params, 3);
shader!(
    CROSS_ENTROPY,
    "cross_entropy",
    ops::cross_entropy::Params,
    6
);
shader!(
    CROSS_ENTROPY_BACKWARD,
    "cross_entropy_backward",
    ops::cross_entropy::Params,
    6
);
shader!(CONV2D, "conv2d", ops::conv2d::Params, 5);
shader!(
    CONV2D_BACKWARD_INPUT,
    "conv2d_backward_input",
    ops::conv2d::Params,
    4
);
shader!(
    CONV2D_BACKWARD_WEIGHT,
    "conv2d_backward_weight",
    ops::conv2d::Params,
    4
);
shader!(ADAM, "adam", crate::train::adam::Params, 5);
shader!(ATTENTION, "attention", ops::attention::Params, 5);
shader!(
    ATTENTION_BACKWARD,
    "attention_backward",
    ops::attention::Params,
    7
);
shader!(
    ATTENTION_APPLY,
    "attention_apply",
    ops::attention::ApplyParams,
    4
);
shader!(
    ATTENTION_APPLY_BACKWARD_VALUE,
    "attention_apply_backward_value",
    ops::attention::ApplyParams,
    4
);
shader!(
    ATTENTION_APPLY_BACKWARD_ATTN,
    "attention_apply_backward_attn",
    ops::attention::ApplyParams,
    4
);
shader!(TEMPORAL_AGG, "temporal_agg", ops::temporal_agg::Params, 4);
shader!(
    TEMPORAL_AGG_BACKWARD_X,
    "temporal_agg_backward_x",
    ops::temporal_agg::Params,
    4
);
shader!(
    TEMPORAL_AGG_BACKWARD_ATTN,
    "temporal_agg_backward_attn",
    ops::temporal_agg::Params,
    4
);
shader!(MASKED_POOL, "masked_pool", ops::masked_pool::Params, 4);
shader!(
    MASKED_POOL_BACKWARD,
    "masked_pool_backward",
    ops::masked_pool::Params,
    5
);
shader!(GROUP_NORM, "group_norm", ops::group_norm::Params, 6);
shader!(
    GROUP_NORM_BACKWARD_INPUT,
    "group_norm_backward_input",
    ops::group_norm::Params,
    6
);
shader!(
    GROUP_NORM_BACKWARD_WEIGHT,
    "group_norm_backward_weight",
    ops::group_norm::Params,
    6
);
shader!(BATCH_NORM, "batch_norm", ops::batch_norm::Params, 8);
shader!(
    BATCH_NORM_BACKWARD,
    "batch_norm_backward",
    ops::batch_norm::Params,
    8
);
shader!(
    UPSAMPLE_BILINEAR,
    "upsample_bilinear",
    ops::upsample::Params,
    3
);
shader!(
    UPSAMPLE_BILINEAR_BACKWARD,
    "upsample_bilinear_backward",
    ops::upsample::Params,
    3
);
shader!(AVG_POOL2D, "avg_pool2d", ops::pool::Params, 3);
shader!(
    AVG_POOL2D_BACKWARD,
    "avg_pool2d_backward",
    ops::pool::Params,
    3
);

/// Every registered shader.
pub const ALL: &[Shader] = &[
    RELU,
    RELU_BACKWARD,
    UNARY,
    UNARY_BACKWARD,
    BINARY,
    COPY_STRIDED,
    REDUCE_SUM,
    REDUCE_MAX,
    REDUCE_MAX_BACKWARD,
    SOFTMAX,
    SOFTMAX_BACKWARD,
    MATMUL,
    INDEX_SELECT,
    INDEX_SELECT_BACKWARD,
    MASKED_FILL,
    DROPOUT,
    CROSS_ENTROPY,
    CROSS_ENTROPY_BACKWARD,
    CONV2D,
    CONV2D_BACKWARD_INPUT,
    CONV2D_BACKWARD_WEIGHT,
    ADAM,
    ATTENTION,
    ATTENTION_BACKWARD,
    ATTENTION_APPLY,
    ATTENTION_APPLY_BACKWARD_VALUE,
    ATTENTION_APPLY_BACKWARD_ATTN,
    TEMPORAL_AGG,
    TEMPORAL_AGG_BACKWARD_X,
    TEMPORAL_AGG_BACKWARD_ATTN,
    MASKED_POOL,
    MASKED_POOL_BACKWARD,
    GROUP_NORM,
    GROUP_NORM_BACKWARD_INPUT,
    GROUP_NORM_BACKWARD_WEIGHT,
    BATCH_NORM,
    BATCH_NORM_BACKWARD,
    UPSAMPLE_BILINEAR,
    UPSAMPLE_BILINEAR_BACKWARD,
    AVG_POOL2D,
    AVG_POOL2D_BACKWARD,
];

#[cfg(test)]
mod tests {
    use super::*;
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn parse(s: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
        let module = naga::front::wgsl::parse_str(s.source).unwrap_or_else(|e| {
            panic!(
                "{}.wgsl does not parse:\n{}",
                s.name,
                e.emit_to_string(s.source)
            )
        });
        // Minimal capabilities: plain f32 compute needs none, so a shader that silently needs f64, f16 or
        // subgroups fails here rather than on a user's machine.
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
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
        for s in ALL {
            let (module, info) = parse(s);
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{}.wgsl → SPIR-V (Vulkan): {e}", s.name));
            naga::back::msl::write_string(
                &module,
                &info,
                &naga::back::msl::Options::default(),
                &naga::back::msl::PipelineOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{}.wgsl → MSL (Metal): {e}", s.name));
            let mut hlsl = String::new();
            let opts = naga::back::hlsl::Options::default();
            let popts = naga::back::hlsl::PipelineOptions::default();
            naga::back::hlsl::Writer::new(&mut hlsl, &opts, &popts)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{}.wgsl → HLSL (DX12): {e}", s.name));
        }
    }

    #[test]
    fn every_wgsl_file_is_registered_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/shaders");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "wgsl")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
        files.sort();
        let mut registered: Vec<String> = ALL.iter().map(|s| s.name.to_string()).collect();
        registered.sort();
        assert_eq!(
            files, registered,
            "src/shaders/*.wgsl and shaders::ALL differ"
        );
    }

    #[test]
    fn workgroup_size_params_and_bindings_match_the_rust_side() {
        for s in ALL {
            let (module, info) = parse(s);
            // Workgroup size of every entry point = Shader::wg.
            for ep in &module.entry_points {
                assert_eq!(
                    ep.workgroup_size,
                    [s.wg, 1, 1],
                    "{}::{}: workgroup size",
                    s.name,
                    ep.name
                );
            }
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
                span, s.params_bytes,
                "{}: WGSL Params is {span} bytes, Rust Params {}",
                s.name, s.params_bytes
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
                n, s.bindings,
                "{}: {n} bindings in WGSL, {} registered",
                s.name, s.bindings
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
            // Every entry point uses every binding (the derived pipeline layout then has all of them).
            for (i, ep) in module.entry_points.iter().enumerate() {
                let ep_info = info.get_entry_point(i);
                for (h, g) in module.global_variables.iter() {
                    if g.binding.is_some() {
                        assert!(
                            !ep_info[h].is_empty(),
                            "{}::{} does not use binding {:?}: every entry point must use every binding",
                            s.name,
                            ep.name,
                            g.name
                        );
                    }
                }
            }
        }
    }
}
