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

mod common;
use common::steps::{step, within_bounds, Mode};

use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::Precision;
use sitsgpu::train::profile::Workload;
use sitsgpu::Device;

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
        let fp32 = step(&w, Device::Cpu, Mode::of(Precision::Fp32));
        let nudged = step(&w, Device::Cpu, Mode::of(Precision::Fp32).nudged());
        let mixed = step(&w, Device::Cpu, Mode::of(Precision::Mixed));
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
        let fp32 = step(&w, Device::Gpu, Mode::of(Precision::Fp32));
        let nudged = step(&w, Device::Gpu, Mode::of(Precision::Fp32).nudged());
        let mixed = step(&w, Device::Gpu, Mode::of(Precision::Mixed));
        let again = step(&w, Device::Gpu, Mode::of(Precision::Mixed));
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
        let cpu = step(&w, Device::Cpu, Mode::of(Precision::Mixed));
        let cpu_nudged = step(&w, Device::Cpu, Mode::of(Precision::Mixed).nudged());
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
