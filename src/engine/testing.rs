//! Test support (used by unit tests, `tests/` and benches; public on purpose, like candle's `test_utils`):
//! tolerance presets, [`assert_close`] with a readable failure message, the f64 central-difference
//! [`gradcheck`], [`gpu_or_skip`], which makes GPU tests skip loudly without an adapter (or fail when
//! `SITSGPU_REQUIRE_GPU=1`), and [`assert_limits_in_force`], which proves a test binary runs under the limits
//! `SITSGPU_LIMITS` asks for.

use crate::engine::gpu::{Gpu, LimitsMode};
use crate::engine::rng::Rng;

/// A tolerance: `|a - e| <= abs + rel * |e|` for every element.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

impl Tol {
    /// CPU vs CPU, same code path: bit-identical.
    pub const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };
    /// One GPU elementwise op vs the f32 CPU reference: both round once per operation, but GPU `exp`, `log`,
    /// `tanh` are only required to be accurate to a few ulp by WGSL, hence 1e-5 and not 1e-7.
    pub const KERNEL: Tol = Tol {
        abs: 1e-5,
        rel: 1e-5,
    };
    /// One GPU reduction (sum, matmul, softmax, norm) vs the CPU: the GPU sums in another order (tree or
    /// tiles), so rounding differs by about sqrt(n) ulp of the partial sums.
    pub const REDUCE: Tol = Tol {
        abs: 1e-4,
        rel: 1e-4,
    };
    /// A whole model on the GPU vs the CPU reference or PyTorch: thousands of ops, errors compound
    /// (llm.c accepts 1e-2 over GPT-2; our models are smaller).
    pub const MODEL: Tol = Tol {
        abs: 1e-3,
        rel: 1e-3,
    };
    /// f64 analytic gradient vs f64 central differences (eps 1e-6): truncation ~1e-12, rounding ~1e-10.
    pub const GRADCHECK: Tol = Tol {
        abs: 1e-7,
        rel: 1e-6,
    };
}

/// Compares `actual` with `expected`; panics naming `what`, the worst index, both values, the max abs and rel
/// differences and the first five failing pairs.
pub fn assert_close(actual: &[f32], expected: &[f32], tol: Tol, what: &str) {
    let a: Vec<f64> = actual.iter().map(|&v| v as f64).collect();
    let e: Vec<f64> = expected.iter().map(|&v| v as f64).collect();
    assert_close_f64(&a, &e, tol, what)
}

/// [`assert_close`] for f64 data.
pub fn assert_close_f64(actual: &[f64], expected: &[f64], tol: Tol, what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length {} vs expected {}",
        actual.len(),
        expected.len()
    );
    let mut worst = (0usize, 0.0f64);
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    let mut fails = Vec::new();
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let d = (a - e).abs();
        let bad = if a.is_nan() || e.is_nan() {
            a.is_nan() != e.is_nan()
        } else {
            d > tol.abs + tol.rel * e.abs() || (a.is_infinite() && a != e)
        };
        if d.is_finite() {
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(d / e.abs().max(1e-30));
        }
        let excess = if d.is_finite() {
            d - tol.rel * e.abs()
        } else {
            f64::INFINITY
        };
        if bad {
            if fails.len() < 5 {
                fails.push(format!("[{i}] {a} vs {e}"));
            }
            if excess > worst.1 || fails.len() == 1 {
                worst = (i, excess);
            }
        }
    }
    if !fails.is_empty() {
        let i = worst.0;
        panic!(
            "{what}: not close (tol abs {} rel {}): worst index {i}: got {} expected {}; max abs diff {max_abs:e}, \
             max rel diff {max_rel:e}; first failures: {}",
            tol.abs,
            tol.rel,
            actual[i],
            expected[i],
            fails.join(", ")
        );
    }
}

/// Max |a - e| (reported in test lines).
pub fn max_abs_diff(a: &[f32], e: &[f32]) -> f64 {
    a.iter()
        .zip(e)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max)
}

/// Random values in `[lo, hi)`, seeded.
pub fn random_vec(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.next_f64()).collect()
}

/// f64 central-difference gradient check of an op's CPU reference.
///
/// `forward(inputs) -> output`; `backward(inputs, grad_output) -> grad of each input`. With a random upstream
/// gradient `g`, the scalar `L = <g, forward(x)>` is differentiated numerically for every input element
/// (`(L(x + eps) - L(x - eps)) / 2 eps`, eps = 1e-6) and compared with `backward`. Inputs listed in
/// `skip` (e.g. integer targets) are not perturbed.
pub fn gradcheck(
    what: &str,
    inputs: &[Vec<f64>],
    skip: &[usize],
    forward: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    backward: impl Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>>,
) {
    let eps = 1e-6;
    let y = forward(inputs);
    let g = random_vec(y.len(), -1.0, 1.0, 0xC0FFEE);
    let analytic = backward(inputs, &g);
    let loss = |x: &[Vec<f64>]| -> f64 { forward(x).iter().zip(&g).map(|(a, b)| a * b).sum() };
    for (k, input) in inputs.iter().enumerate() {
        if skip.contains(&k) {
            continue;
        }
        assert_eq!(
            analytic[k].len(),
            input.len(),
            "{what}: gradient of input {k} has the wrong length"
        );
        let mut numeric = vec![0.0; input.len()];
        let mut x = inputs.to_vec();
        for i in 0..input.len() {
            let orig = x[k][i];
            x[k][i] = orig + eps;
            let lp = loss(&x);
            x[k][i] = orig - eps;
            let lm = loss(&x);
            x[k][i] = orig;
            numeric[i] = (lp - lm) / (2.0 * eps);
        }
        assert_close_f64(
            &analytic[k],
            &numeric,
            Tol::GRADCHECK,
            &format!("{what}: d/d input {k}"),
        );
    }
}

/// The GPU, or `None` after printing one loud skip line. With `SITSGPU_REQUIRE_GPU=1` a missing adapter
/// fails the test instead (CI sets it, so GPU tests cannot skip silently there).
pub fn gpu_or_skip(test: &str) -> Option<&'static Gpu> {
    match Gpu::get() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("SITSGPU_REQUIRE_GPU")
                .map(|v| v == "1")
                .unwrap_or(false)
            {
                panic!("{test}: SITSGPU_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("!!!!! SKIPPED {test}: no GPU adapter ({e}); see README § GPU !!!!!");
            None
        }
    }
}

/// Panics unless `gpu` runs with the limits `SITSGPU_LIMITS` asks for: with `webgpu`, exactly WebGPU's
/// defaults ([`wgpu::Limits::defaults`]); else the adapter's own. Each GPU test binary that `.ci/run` repeats
/// under `SITSGPU_LIMITS=webgpu` calls it in one test, so that pass cannot run on generous limits unnoticed.
/// Returns the mode in force.
pub fn assert_limits_in_force(gpu: &Gpu) -> LimitsMode {
    let asked = LimitsMode::from_env().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gpu.limits_mode, asked, "limits mode of the device");
    if asked == LimitsMode::WebGpuDefaults {
        assert_eq!(
            gpu.limits,
            wgpu::Limits::defaults(),
            "SITSGPU_LIMITS=webgpu: the device's limits"
        );
    }
    asked
}
