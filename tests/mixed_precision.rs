//! `--precision mixed` (`engine::precision`): matrix products on operands rounded to half precision with
//! float32 sums; the large activations a training step saves for its backward pass kept in half precision (a
//! recomputed norm's input rounded in both passes); everything else float32. One training step of each model
//! below, fp32 and mixed, on the CPU reference path and on the GPU (whose products take the adapter's path:
//! f16 tiles on lavapipe, `ops::linalg::half_matmul`):
//!
//! - class scores, loss and every parameter gradient within the bounds below of fp32's;
//! - on the GPU, two mixed steps give the same bits (deterministic), and the patch models' peak of live
//!   tensors is lower (the recurrent ops keep their per-date traces as halves too; not the pixel-set
//!   models', whose peak is a transient of the forward pass that mixed raises by
//!   the rounded copy of the largest layer's input; README § Mixed precision);
//! - the GPU's mixed step agrees with the CPU's mixed step within the same bounds (the conversion is integer
//!   arithmetic on the bits: the same words everywhere, `ops::elementwise::half`; the products differ only in
//!   the order of their float32 sums).
//!
//! **The bounds** come from half precision and from the situation's own conditioning, not from this test's
//! numbers. A rounded value is off by at most `u = 2^-11` of itself, and the step rounds `L` tensors (saved
//! activations and products' operands, counted by the engine; not every one lies on every path, so `L` is
//! generous):
//! - well-conditioned layers: each rounding moves what follows by at most `u` of its scale (norms
//!   renormalise), first order, so scores and loss move by at most `L · u` of their scale. A gradient read
//!   from a rounded operand is off by `u` of its terms, `L · u` again; but a rounding can also move a value
//!   across a ReLU's kink, which changes that element's gradient by its own size. After a norm the values
//!   near the kink have density below 1 per unit of the layer's scale, so a layer flips at most a fraction
//!   `u` of its decisions, whose errors, independent, add in quadrature: `‖Δg‖₂ ≤ sqrt(L · u) · ‖g‖₂`.
//! - ill-conditioned layers (a train-mode norm over values of small spread, as at initialisation: see
//!   `tests/whole_model.rs`) amplify any relative perturbation of size `u`. The test measures this
//!   situation's amplification: the fp32 step again with every weight moved by a random `±u` of itself
//!   (a perturbation of the size of the rounding, at every layer), and allows mixed 16 times that
//!   (`whole_model`'s factor between two perturbations of one size that land in different places).
//!
//! Each quantity must be within the larger of the two, plus a floor for gradients that are rounding noise in
//! fp32 already (a bias before a train-mode norm, whose gradient cancels exactly in exact arithmetic):
//! `1e-6 · max ‖g‖₂`, and `u · max ‖g‖₂` under mixed, whose backward products read their incoming
//! gradients rounded to halves (the cancellation then leaves `u` of its terms). A bug — a half read as a float, the wrong
//! tensor saved, a recomputation that sees other numbers than the forward pass (tested exactly in
//! `engine::recompute`) — moves results by their own size whatever the conditioning.

use sitsgpu::engine::precision::halves_saved;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::{with_precision, Gpu, Precision};
use sitsgpu::layers::Ctx;
use sitsgpu::train::profile::Workload;
use sitsgpu::Device;

const U: f64 = 1.0 / 2048.0;

struct Step {
    out: Vec<f32>,
    loss: f32,
    grads: Vec<(String, Vec<f32>)>,
    halves: usize,
    peak_live: u64,
}

/// One forward + backward of `w` (no Adam step: the gradients are compared), weights moved by `±u` when
/// `nudge`.
fn step(w: &Workload, device: Device, precision: Precision, nudge: bool) -> Step {
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
            let (out, loss) = p.forward_loss(&Ctx::train(w.seed));
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
fn within_bounds(what: &str, got: &Step, want: &Step, nudged: &Step, depth: usize) -> f64 {
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

/// Every model: U-TAE, the U-TAE paper's baselines, both panoptic models, the pixel-set classifiers (small
/// shapes; the tensors past `HALF_MIN_NUMEL` are the ones rounded).
fn workloads() -> Vec<(String, Workload)> {
    let mut v = vec![
        (
            "utae".to_string(),
            Workload::utae("small", 2, 4, 32).unwrap(),
        ),
        (
            "utae_paps".into(),
            Workload::paps("utae", "small", 2, 3, 32).unwrap(),
        ),
        (
            "uconvlstm_paps".into(),
            Workload::paps("uconvlstm", "small", 1, 3, 32).unwrap(),
        ),
    ];
    for m in [
        "unet3d",
        "uconvlstm",
        "buconvlstm",
        "fpn",
        "convlstm",
        "convgru",
    ] {
        v.push((m.into(), Workload::semantic(m, "small", 1, 4, 16).unwrap()));
    }
    for m in ["pse_ltae", "pse_tae", "pse_gru", "pse_tempcnn"] {
        v.push((m.into(), Workload::pixel_set(m, 8, 6, 32).unwrap()));
    }
    v
}

/// CPU: scores, loss and gradients within the bounds of fp32's.
#[test]
fn mixed_stays_within_half_precision_of_fp32_on_the_cpu() {
    for (name, w) in workloads() {
        let fp32 = step(&w, Device::Cpu, Precision::Fp32, false);
        let nudged = step(&w, Device::Cpu, Precision::Fp32, true);
        let mixed = step(&w, Device::Cpu, Precision::Mixed, false);
        assert_eq!(fp32.halves, 0, "{name}: fp32 saved halves");
        assert!(mixed.halves > 0, "{name}: mixed saved no half");
        let worst = within_bounds(&name, &mixed, &fp32, &nudged, mixed.halves);
        println!(
            "{name} (CPU): {} saved halves, gradients within {worst:.2e} of fp32 (relative L2)",
            mixed.halves
        );
    }
}

/// GPU: the same, a lower peak, deterministic, and the GPU's mixed step against the CPU's.
#[test]
fn mixed_on_the_gpu_saves_memory_and_agrees_with_the_cpu() {
    if gpu_or_skip("mixed_on_the_gpu_saves_memory_and_agrees_with_the_cpu").is_none() {
        return;
    }
    for (name, w) in workloads() {
        let fp32 = step(&w, Device::Gpu, Precision::Fp32, false);
        let nudged = step(&w, Device::Gpu, Precision::Fp32, true);
        let mixed = step(&w, Device::Gpu, Precision::Mixed, false);
        let again = step(&w, Device::Gpu, Precision::Mixed, false);
        assert!(
            mixed.grads == again.grads && mixed.out == again.out,
            "{name}: two mixed GPU steps differ"
        );
        let worst = within_bounds(&format!("{name} GPU"), &mixed, &fp32, &nudged, mixed.halves);
        // The pixel-set models' peak is a forward transient (module doc): the patch models' peak is lower.
        let lower = w.pixels == 0;
        assert!(
            !lower || mixed.peak_live < fp32.peak_live,
            "{name}: mixed peak {} ≥ fp32 peak {}",
            mixed.peak_live,
            fp32.peak_live
        );
        let cpu = step(&w, Device::Cpu, Precision::Mixed, false);
        let cpu_nudged = step(&w, Device::Cpu, Precision::Mixed, true);
        let vs_cpu = within_bounds(
            &format!("{name} GPU vs CPU"),
            &mixed,
            &cpu,
            &cpu_nudged,
            mixed.halves,
        );
        println!(
            "{name} (GPU): peak live {:.2} → {:.2} MiB ({:.2}×), gradients within {worst:.2e} of fp32, \
             {vs_cpu:.2e} of the CPU's mixed step",
            fp32.peak_live as f64 / 1048576.0,
            mixed.peak_live as f64 / 1048576.0,
            mixed.peak_live as f64 / fp32.peak_live as f64
        );
    }
}
