//! `--precision fp32|mixed`: how matrix products compute and what a training step keeps for its backward pass.
//!
//! - **fp32** (the default): everything in float32, the numbers of the original PyTorch code.
//! - **mixed**: as PyTorch's autocast, matrix products and convolutions (2-D, transposed, and the 3-D ones,
//!   which are made of those) run on operands rounded to half precision with float32 sums
//!   (`ops::linalg::half_matmul`: cooperative matrices — tensor cores — where the adapter has them, f16
//!   tiles with `SHADER_F16`, else rounded float32; `ops::conv::conv2d::mixed`: the convolution unfolded onto
//!   the tensor-core product, else rounded float32), and their backward passes read the same rounded
//!   operands and, as autocast's backward, the incoming gradient rounded to half precision too
//!   (`Tensor::into_gradient_operand`: overflowing to infinity, as float16 arithmetic does). The large
//!   activations an op saves for its backward pass (a convolution's or a matmul's input,
//!   the input of a recomputed norm + ReLU, pooled features, the recurrent ops' traces) are kept in half
//!   precision (`ops::elementwise::half`: two bytes a value instead of four) and made float32 again when the
//!   backward pass reads them. Everything else computes and accumulates in float32 — the recurrent ops'
//!   fused gate convolutions, norms' statistics, softmax, losses, the gradients the products produce and
//!   every other op's — and so do the weights and Adam's moments. Products move by at most 2^-11 of their
//!   operands' magnitude (each rounding), and the memory of a step's saved activations halves. Every other op
//!   computes exactly as in fp32 on the values it receives.
//!
//! Because the backward products read half-precision gradients, a gradient below 2^-24 would vanish and one
//! beyond 65,504 overflows: training scales the loss as PyTorch's GradScaler does (`train::adam`,
//! `ops::optim::loss_scale`: 2^16 at first, halved and the step skipped on an overflow, doubled after 2,000
//! clean steps), on the device. Mixed needs no optional adapter feature (the rounding is integer arithmetic on the bits; f16 and cooperative matrices only
//! make the products faster), so it runs on every adapter and on the CPU path, with the same halves everywhere
//! and products that differ only in the order of their float32 sums.
//!
//! What a device offers for the products ([`HalfFeatures`], found when the device is created) and the path
//! it takes ([`HalfPath`], decided by `ops::linalg::half_matmul::path`) are described here too.
//!
//! The mode is per thread and scoped ([`with_precision`]); the training loop sets it around each step's
//! forward passes (`train::fold_loop`), and the backward walk suspends it (what a backward pass computes is
//! used at once, never saved).

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// How a training step stores what it saves for its backward pass (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything float32.
    #[default]
    Fp32,
    /// Products on half-precision operands with float32 sums; large saved activations kept in half
    /// precision; everything else float32.
    Mixed,
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "mixed" => Ok(Precision::Mixed),
            _ => Err(format!("unknown precision {s:?}: use fp32 or mixed")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Mixed => "mixed",
        })
    }
}

impl Precision {
    /// The precision named by the environment variable `var` (the benches' `SITSGPU_BENCH_PRECISION`), fp32
    /// when it is unset or empty; an unknown name is an error that names the variable.
    pub fn from_env(var: &str) -> Result<Precision, String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => v.parse().map_err(|e| format!("{var}: {e}")),
            _ => Ok(Precision::Fp32),
        }
    }
}

// ---- What a device has for the products (`engine::gpu::Gpu::half`) ----

/// How a device computes the half-precision products of `--precision mixed`
/// (`engine::ops::linalg::half_matmul`, whose `path` decides it once per device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfPath {
    /// `half_matmul_coop.wgsl` (16 × 16 tiles, 64 × 64 blocks) or `half_matmul_coop8.wgsl` (8 × 8 tiles,
    /// 32 × 32 blocks), `per_wg` blocks a workgroup (64 / the largest subgroup size).
    Cooperative {
        /// Blocks per workgroup of 64 invocations.
        per_wg: u32,
        /// The cooperative tile's edge: 16 or 8.
        tile: u32,
    },
    /// `half_matmul.wgsl`.
    F16Tiles,
    /// Operands rounded, then `matmul.wgsl`.
    RoundedF32,
}

impl fmt::Display for HalfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HalfPath::Cooperative { tile: 8, .. } => {
                f.write_str("cooperative matrices (8×8×8 f16 × f16 → f32, half_matmul_coop8.wgsl)")
            }
            HalfPath::Cooperative { .. } => f.write_str(
                "cooperative matrices (16×16×16 f16 × f16 → f32, half_matmul_coop.wgsl)",
            ),
            HalfPath::F16Tiles => f.write_str("f16 tiles (SHADER_F16, half_matmul.wgsl)"),
            HalfPath::RoundedF32 => {
                f.write_str("float32 tiles on rounded operands (no optional feature)")
            }
        }
    }
}

/// What a device has for the half-precision products of `--precision mixed`
/// (`engine::ops::linalg::half_matmul`).
#[derive(Debug, Clone, Default)]
pub struct HalfFeatures {
    /// `SHADER_F16` was requested: WGSL `enable f16;` (f16 storage and arithmetic).
    pub f16: bool,
    /// The adapter offers `EXPERIMENTAL_COOPERATIVE_MATRIX`, `SUBGROUP` and `SHADER_F16`, and lists a
    /// 16 × 16 × 16 or an 8 × 8 × 8 f16 × f16 → f32 configuration.
    pub coop_offered: bool,
    /// The edge of the cooperative tile the products use: 16 where the adapter lists it (NVIDIA, AMD), else
    /// 8 (Apple's simdgroup matrices, lavapipe); 0 when none is offered.
    pub coop_tile: u32,
    /// ... and the user turned it on (`SITSGPU_COOPERATIVE_MATRIX=1`), so the device was created with them.
    pub coop_enabled: bool,
    /// The adapter's largest subgroup size (how many blocks a workgroup of 64 takes: one a subgroup).
    pub subgroup_max: u32,
    /// The adapter's smallest subgroup size (how many subgroups a workgroup of 64 may have:
    /// `half_conv_coop.wgsl` gives each a slot of workgroup memory).
    pub subgroup_min: u32,
    /// Every cooperative-matrix configuration the adapter lists, as `MxNxK AB→CR` (for `info`).
    pub coop_configs: Vec<String>,
}

impl HalfFeatures {
    pub(crate) fn of(adapter: &wgpu::Adapter) -> HalfFeatures {
        use wgpu::{CooperativeScalarType as S, Features as F};
        let features = adapter.features();
        let configs = if features.contains(F::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        let listed: Vec<u32> = configs
            .iter()
            .filter(|c| {
                c.m_size == c.n_size
                    && c.n_size == c.k_size
                    && c.ab_type == S::F16
                    && c.cr_type == S::F32
            })
            .map(|c| c.m_size)
            .collect();
        let software = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        let tile = choose_tile(&listed, software, tile_override());
        let coop_offered = tile != 0
            && features.contains(F::SUBGROUP | F::SHADER_F16 | F::EXPERIMENTAL_COOPERATIVE_MATRIX);
        HalfFeatures {
            f16: features.contains(F::SHADER_F16),
            coop_offered,
            coop_tile: if coop_offered { tile } else { 0 },
            coop_enabled: coop_offered
                && std::env::var("SITSGPU_COOPERATIVE_MATRIX").is_ok_and(|v| v == "1"),
            subgroup_max: adapter.get_info().subgroup_max_size,
            subgroup_min: adapter.get_info().subgroup_min_size,
            coop_configs: configs
                .iter()
                .map(|c| {
                    format!(
                        "{}x{}x{} {:?}→{:?}",
                        c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type
                    )
                })
                .collect(),
        }
    }

    /// The optional features to request for these.
    pub(crate) fn required(&self) -> wgpu::Features {
        use wgpu::Features as F;
        let mut f = F::empty();
        if self.f16 {
            f |= F::SHADER_F16;
        }
        if self.coop_enabled {
            f |= F::SUBGROUP | F::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        f
    }
}

/// The cooperative tile's edge from the square f16 × f16 → f32 sizes an adapter lists: 16 when listed, else
/// 8, else 0 (none); `forced` ([`tile_override`]) replaces a listed size on a software adapter only.
fn choose_tile(listed: &[u32], software: bool, forced: Option<u32>) -> u32 {
    let tile = [16, 8]
        .into_iter()
        .find(|e| listed.contains(e))
        .unwrap_or(0);
    match forced {
        Some(t) if tile != 0 && software => t,
        Some(_) if tile != 0 => {
            eprintln!(
                "sitsgpu: SITSGPU_COOPERATIVE_TILE is for software adapters (tests); ignored on this GPU"
            );
            tile
        }
        _ => tile,
    }
}

/// `SITSGPU_COOPERATIVE_TILE=16` or `8`: the cooperative kernel to use whatever the adapter lists, for
/// testing a kernel on an adapter that does not list its size (lavapipe lists 8 × 8 × 8 and runs the
/// 16 × 16 kernel too, which the Vulkan specification does not promise: `.ci/coop-lavapipe`). Honoured on
/// software adapters only (a GPU's driver may reject a size it does not list); another value is ignored,
/// with a warning.
fn tile_override() -> Option<u32> {
    let v = std::env::var("SITSGPU_COOPERATIVE_TILE").ok()?;
    match v.trim() {
        "16" => Some(16),
        "8" => Some(8),
        other => {
            eprintln!("sitsgpu: SITSGPU_COOPERATIVE_TILE={other:?} is not 16 or 8; ignored");
            None
        }
    }
}

/// Saved tensors smaller than this stay float32 (a launch each way is not worth 8 KiB).
pub const HALF_MIN_NUMEL: usize = 4096;

thread_local! {
    static MODE: Cell<Precision> = const { Cell::new(Precision::Fp32) };
    static HALVES: Cell<usize> = const { Cell::new(0) };
}

/// How many tensors this thread has rounded to half precision so far: saved tensors kept as halves, and the
/// two operands of every matrix product (tests, diagnostics).
pub fn halves_saved() -> usize {
    HALVES.with(|h| h.get())
}

/// Counts one more tensor rounded to halves (`engine::recompute::Saved::value`, `Tensor::matmul`).
pub(crate) fn count_half() {
    HALVES.with(|h| h.set(h.get() + 1));
}

/// The mode in force on this thread.
pub fn precision() -> Precision {
    MODE.with(|m| m.get())
}

/// Runs `f` with `p` in force on this thread; restores the previous mode afterwards, also on panic.
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    crate::engine::scoped::with_set(&MODE, p, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cooperative_tile_is_the_largest_listed_and_forced_only_on_software() {
        // NVIDIA and AMD list 16 (NVIDIA more besides), Apple and lavapipe 8; Intel's 8 × 8 × 16 is not square.
        assert_eq!(choose_tile(&[16, 32], false, None), 16);
        assert_eq!(choose_tile(&[8, 16], false, None), 16);
        assert_eq!(choose_tile(&[8], false, None), 8);
        assert_eq!(choose_tile(&[], false, None), 0);
        // SITSGPU_COOPERATIVE_TILE: on a software adapter that has cooperative matrices, whatever it lists.
        assert_eq!(choose_tile(&[8], true, Some(16)), 16);
        assert_eq!(choose_tile(&[8], false, Some(16)), 8);
        assert_eq!(choose_tile(&[], true, Some(16)), 0);
    }

    #[test]
    fn parses_names_and_restores_the_mode() {
        assert_eq!("mixed".parse(), Ok(Precision::Mixed));
        assert_eq!("FP32".parse(), Ok(Precision::Fp32));
        assert!("bf16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("fp32 or mixed"));
        assert_eq!(precision(), Precision::Fp32);
        assert_eq!(
            Precision::from_env("SITSGPU_TEST_UNSET_PRECISION"),
            Ok(Precision::Fp32)
        );
        let inner = with_precision(Precision::Mixed, || {
            with_precision(Precision::Fp32, precision)
        });
        assert_eq!(inner, Precision::Fp32);
        let r = std::panic::catch_unwind(|| with_precision(Precision::Mixed, || panic!("x")));
        assert!(r.is_err());
        assert_eq!(precision(), Precision::Fp32);
    }
}
