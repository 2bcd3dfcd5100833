//! `--gradient_checkpointing` (`engine::recompute`): the recurrent ops (ConvLSTM, ConvGRU) keep only each
//! date's convolution input (and ConvLSTM its cell state) and run their gate convolutions again in the
//! backward pass. One training step (forward, loss, backward) of every model that has such an op, on the CPU
//! reference path and on the GPU:
//!
//! - in float32, the loss, the class scores and every parameter gradient are the same bits with and without
//!   it (the recomputation runs the same kernels on the same values; `cargo test` compares every bit);
//! - on the GPU the step's peak of live tensors is lower with it for the models whose recurrence runs at the
//!   input's resolution (ConvLSTM, ConvGRU, FPN-ConvLSTM; U-ConvLSTM and BU-ConvLSTM run theirs at the
//!   bottleneck, a sixty-fourth of the pixels, where it weighs little);
//! - under `--precision mixed` the recomputation reads the kept, rounded input (the forward pass read it
//!   in float32), so the step stays within the half-precision bounds of float32's step that
//!   tests/mixed_precision.rs derives, on both devices.

mod common;
use common::steps::{step, within_bounds, Mode};

use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::Precision;
use sitsgpu::train::profile::Workload;
use sitsgpu::Device;

/// The models with a recurrent convolution, and whether it runs at the input's resolution.
const RECURRENT: [(&str, bool); 5] = [
    ("convlstm", true),
    ("convgru", true),
    ("fpn", true),
    ("uconvlstm", false),
    ("buconvlstm", false),
];

fn workload(model: &str) -> Workload {
    Workload::semantic(model, "small", 1, 4, 16).unwrap()
}

/// Every output and gradient bit of `a` and `b`.
fn assert_same_bits(what: &str, a: &common::steps::Step, b: &common::steps::Step) {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{what}: loss");
    assert_eq!(bits(&a.out), bits(&b.out), "{what}: scores");
    for ((name, g), (_, h)) in a.grads.iter().zip(&b.grads) {
        assert_eq!(bits(g), bits(h), "{what}: gradient of {name}");
    }
}

#[test]
fn the_same_bits_on_the_cpu_and_within_half_precision_under_mixed() {
    let fp32 = Mode::of(Precision::Fp32);
    let mixed = Mode::of(Precision::Mixed);
    for (m, _) in RECURRENT {
        let w = workload(m);
        let plain = step(&w, Device::Cpu, fp32);
        assert_same_bits(
            &format!("{m} (CPU)"),
            &plain,
            &step(&w, Device::Cpu, fp32.checkpointed()),
        );
        let nudged = step(&w, Device::Cpu, fp32.nudged());
        let lean = step(&w, Device::Cpu, mixed.checkpointed());
        let worst = within_bounds(
            &format!("{m} mixed (CPU)"),
            &lean,
            &plain,
            &nudged,
            lean.halves,
        );
        println!(
            "{m} (CPU): the same bits in fp32; mixed with checkpointing within {worst:.2e} of fp32"
        );
    }
}

#[test]
fn the_same_bits_and_a_lower_peak_on_the_gpu() {
    if gpu_or_skip("gradient checkpointing").is_none() {
        return;
    }
    let fp32 = Mode::of(Precision::Fp32);
    let mixed = Mode::of(Precision::Mixed);
    for (m, full_resolution) in RECURRENT {
        let w = workload(m);
        let plain = step(&w, Device::Gpu, fp32);
        let lean = step(&w, Device::Gpu, fp32.checkpointed());
        assert_same_bits(&format!("{m} (GPU)"), &plain, &lean);
        assert!(
            !full_resolution || lean.peak_live < plain.peak_live,
            "{m}: peak {} with checkpointing ≥ {} without",
            lean.peak_live,
            plain.peak_live
        );
        let nudged = step(&w, Device::Gpu, fp32.nudged());
        let lean_mixed = step(&w, Device::Gpu, mixed.checkpointed());
        let worst = within_bounds(
            &format!("{m} mixed (GPU)"),
            &lean_mixed,
            &plain,
            &nudged,
            lean_mixed.halves,
        );
        println!(
            "{m} (GPU): the same bits in fp32, peak live {:.2} → {:.2} MiB ({:.2}×); mixed with \
             checkpointing within {worst:.2e} of fp32",
            plain.peak_live as f64 / 1048576.0,
            lean.peak_live as f64 / 1048576.0,
            lean.peak_live as f64 / plain.peak_live as f64
        );
    }
}
