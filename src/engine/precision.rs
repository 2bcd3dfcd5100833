//! `--precision fp32|mixed`: how matrix products compute and what a training step keeps for its backward pass.
//!
//! - **fp32** (the default): everything in float32, the numbers of the original PyTorch code.
//! - **mixed**: as PyTorch's autocast, matrix products run on operands rounded to half precision with
//!   float32 sums (`ops::linalg::half_matmul`: cooperative matrices — tensor cores — where the adapter has
//!   them, f16 tiles with `SHADER_F16`, else rounded float32), and the large activations an op saves for its
//!   backward pass (a convolution's or a matmul's input, the input of a recomputed norm + ReLU, pooled
//!   features) are kept in half precision (`ops::elementwise::half`: two bytes a value instead of four) and
//!   made float32 again when the backward pass reads them. Everything else computes and accumulates in
//!   float32 — convolutions, norms' statistics, softmax, losses, every gradient — and so do the weights and
//!   Adam's moments. Products move by at most 2^-11 of their operands' magnitude (each rounding), the
//!   gradients are those of inputs rounded to 11 significant bits, and the memory of a step's saved
//!   activations halves. Every other op computes exactly as in fp32 on the values it receives.
//!
//! Unlike autocast, no gradient is ever half precision, so nothing underflows: there is no loss scaling
//! (PyTorch's GradScaler exists because autocast's backward pass produces float16 gradients). Mixed needs no
//! optional adapter feature (the rounding is integer arithmetic on the bits; f16 and cooperative matrices only
//! make the products faster), so it runs on every adapter and on the CPU path, with the same halves everywhere
//! and products that differ only in the order of their float32 sums.
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
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE.with(|m| m.replace(p)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

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
