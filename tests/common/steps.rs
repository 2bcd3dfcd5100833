//! One training step of a workload (forward, loss, backward; no optimizer step) in a chosen mode, and the
//! bounds within which a step that rounds to half precision must stay of float32's (their derivation:
//! tests/mixed_precision.rs's module doc). Shared by tests/mixed_precision.rs and
//! tests/gradient_checkpointing.rs.

use sitsgpu::engine::precision::halves_saved;
use sitsgpu::engine::recompute::with_gradient_checkpointing;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::{with_precision, Gpu, Precision};
use sitsgpu::layers::Ctx;
use sitsgpu::train::profile::Workload;
use sitsgpu::Device;

/// How a step runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// `--precision`.
    pub precision: Precision,
    /// The weights moved by a random `±u` of themselves first.
    pub nudge: bool,
    /// `--gradient_checkpointing`.
    pub checkpointing: bool,
}

impl Mode {
    /// `precision`, nothing else.
    pub fn of(precision: Precision) -> Mode {
        Mode {
            precision,
            ..Mode::default()
        }
    }

    /// The same with the weights nudged.
    pub fn nudged(self) -> Mode {
        Mode {
            nudge: true,
            ..self
        }
    }

    /// The same with gradient checkpointing.
    pub fn checkpointed(self) -> Mode {
        Mode {
            checkpointing: true,
            ..self
        }
    }
}

pub const U: f64 = 1.0 / 2048.0;

/// What a step gave.
pub struct Step {
    pub out: Vec<f32>,
    pub loss: f32,
    pub grads: Vec<(String, Vec<f32>)>,
    pub halves: usize,
    pub peak_live: u64,
}

/// One forward + backward of `w` (no Adam step: the gradients are compared), weights moved by `±u` when
/// `nudge`.
pub fn step(w: &Workload, device: Device, mode: Mode) -> Step {
    let Mode {
        precision,
        nudge,
        checkpointing,
    } = mode;
    let p = w.prepare(device);
    let named = p.module().named_parameters("");
    if nudge {
        let mut rng = Rng::new(w.seed ^ 0x5eed);
        for (_, t) in &named {
            let v: Vec<f32> = t
                .to_vec()
                .into_iter()
                .map(|x| {
                    let s = if rng.below(2) == 1 { 1.0 } else { -1.0 };
                    (x as f64 * (1.0 + s * U)) as f32
                })
                .collect();
            t.storage().write(&v);
        }
    }
    // Under mixed the loss is scaled as training scales it (`train::adam`, GradScaler): by 2^16, or — when a
    // gradient overflowed half precision — by a smaller power of two, the step taken again (GradScaler's
    // back-off, 8 halvings at a time here); the gradients are then unscaled.
    let mut exponent = if precision == Precision::Mixed { 16 } else { 0 };
    let (out, loss, halves) = loop {
        for (_, t) in &named {
            t.zero_grad();
        }
        if device == Device::Gpu {
            let gpu = Gpu::get().unwrap();
            gpu.synchronize();
            gpu.pool.reset_peak();
        }
        let before = halves_saved();
        let (out, loss) = with_precision(precision, || {
            let (out, loss) =
                with_gradient_checkpointing(checkpointing, || p.forward_loss(&Ctx::train(w.seed)));
            (&loss * 2f32.powi(exponent)).backward();
            (out.to_vec(), loss.item())
        });
        let finite = named.iter().all(|(_, t)| {
            t.grad()
                .is_none_or(|g| g.to_vec().iter().all(|v| v.is_finite()))
        });
        if finite || precision == Precision::Fp32 {
            break (out, loss, halves_saved() - before);
        }
        exponent -= 8;
    };
    let peak_live = if device == Device::Gpu {
        let gpu = Gpu::get().unwrap();
        gpu.synchronize();
        gpu.pool.stats().peak_live_bytes
    } else {
        0
    };
    let grads = named
        .iter()
        .map(|(n, t)| {
            let g = t.grad().map_or_else(
                || vec![0.0; t.numel()],
                |g| {
                    g.to_vec()
                        .iter()
                        .map(|v| v * 2f32.powi(-exponent))
                        .collect()
                },
            );
            (n.clone(), g)
        })
        .collect();
    Step {
        out,
        loss,
        grads,
        halves,
        peak_live,
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64))
}

fn diff_norm(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Checks `got` against `want` with the bounds of the module doc: `depth` roundings, `nudged` = `want`'s
/// step with the weights moved by `±u`. Returns the largest relative gradient error (for the log).
pub fn within_bounds(what: &str, got: &Step, want: &Step, nudged: &Step, depth: usize) -> f64 {
    let lu = depth as f64 * U;
    let scale = want.out.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let drift = max_diff(&got.out, &want.out);
    let allowed = (lu * scale).max(16.0 * max_diff(&nudged.out, &want.out));
    assert!(
        drift <= allowed,
        "{what}: scores moved {drift:.3e} > {allowed:.3e}"
    );
    let dl = (got.loss - want.loss).abs() as f64;
    let allowed = (lu * want.loss.abs() as f64).max(16.0 * (nudged.loss - want.loss).abs() as f64);
    assert!(
        dl <= allowed,
        "{what}: loss {} vs {} (allowed {allowed:.3e})",
        got.loss,
        want.loss
    );
    let largest = want.grads.iter().map(|(_, g)| norm(g)).fold(0.0, f64::max);
    // Rounding noise: float32's, or a half's where the backward products read rounded gradients.
    let floor = if depth > 0 { U } else { 1e-6 };
    let mut worst = 0.0f64;
    for (((name, g), (_, r)), (_, q)) in got.grads.iter().zip(&want.grads).zip(&nudged.grads) {
        let (d, n) = (diff_norm(g, r), norm(r));
        let allowed = (lu.sqrt() * n).max(16.0 * diff_norm(q, r)) + floor * largest;
        assert!(
            d <= allowed,
            "{what}: gradient of {name}: |Δ| {d:.3e} > {allowed:.3e} (|g| {n:.3e}, sqrt(L u) |g| {:.3e}, \
             weights nudged by u: {:.3e})",
            lu.sqrt() * n,
            diff_norm(q, r)
        );
        if n > 1e-3 * largest {
            worst = worst.max(d / n);
        }
    }
    worst
}
