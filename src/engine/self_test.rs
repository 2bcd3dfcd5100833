//! `sitsgpu info`: every adapter wgpu finds, the one chosen and why, the limits in force (the adapter's own or
//! WebGPU's defaults, `SITSGPU_LIMITS`) and the features, the precision paths, and a tiny self-test (relu, a
//! small matmul and the half-precision storage of `--precision mixed` on the GPU against the CPU reference).
//! The first thing to run on a new machine.

use std::io::Write;

use crate::engine::gpu::{enumerate_adapters, Gpu};
use crate::engine::ops::linalg::half_matmul;
use crate::engine::{Device, Error, Result, Tensor};

/// Writes the adapter report to `out` line by line (so a driver that hangs shows where), then runs the
/// self-test; an error when no adapter can be used or the GPU disagrees with the CPU reference.
pub fn adapter_report(out: &mut dyn Write) -> Result<()> {
    let mut line = |s: String| writeln!(out, "{s}").map_err(|e| Error::io("stdout", e));
    let adapters = enumerate_adapters();
    line(format!("adapters found: {}", adapters.len()))?;
    for (i, a) in adapters.iter().enumerate() {
        line(format!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        ))?;
    }
    let gpu = Gpu::get()?;
    line(format!(
        "chosen: {} ({}, {}) because {}",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type, gpu.reason
    ))?;
    let l = &gpu.limits;
    line(format!("limits in force: {}", gpu.limits_mode.describe()))?;
    let bytes = |v: u64| format!("{v} bytes");
    for (name, value) in [
        (
            "max_storage_buffer_binding_size",
            bytes(l.max_storage_buffer_binding_size),
        ),
        ("max_buffer_size", bytes(l.max_buffer_size)),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension.to_string(),
        ),
        (
            "max_compute_workgroup_storage_size",
            bytes(l.max_compute_workgroup_storage_size.into()),
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup.to_string(),
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage.to_string(),
        ),
        (
            "min_uniform_buffer_offset_alignment",
            bytes(l.min_uniform_buffer_offset_alignment.into()),
        ),
    ] {
        line(format!("  {name:<38}{value}"))?;
    }
    line(format!("features: {:?}", gpu.features))?;
    line(
        "precision: fp32 everywhere by default; --precision mixed keeps saved activations as halves \
         (integer conversion, no feature needed) and runs matrix products and convolutions on \
         half-precision operands"
            .to_string(),
    )?;
    line(format!(
        "  half-precision products: {} | SHADER_F16 {}",
        half_matmul::path(gpu),
        if gpu.half.f16 { "on" } else { "not offered" }
    ))?;
    line(format!(
        "  half-precision convolutions: {}",
        crate::engine::ops::conv::conv2d::mixed::path_note(gpu)
    ))?;
    line(format!("  {}", half_matmul::coop_note(gpu)))?;
    if !gpu.half.coop_configs.is_empty() {
        line(format!(
            "  cooperative-matrix configurations listed: {}",
            gpu.half.coop_configs.join(", ")
        ))?;
    }
    let (relu_ok, worst, half_ok) = self_test();
    let mm_ok = worst < 1e-4;
    let products_ok = half_matmul::path_self_test(gpu, half_matmul::path(gpu));
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    line(format!(
        "self-test: relu {} | matmul {} (worst relative error {worst:.2e}) | half precision storage {} | \
         half-precision products {}",
        ok(relu_ok),
        ok(mm_ok),
        ok(half_ok),
        ok(products_ok)
    ))?;
    if relu_ok && mm_ok && half_ok && products_ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "self-test failed: this adapter computes different results from the CPU reference"
                .into(),
        ))
    }
}

/// relu and a (10 × 100) · (100 × 10) matmul on the GPU and on the CPU: whether relu agrees exactly, and the
/// worst relative error of the matmul.
fn self_test() -> (bool, f32, bool) {
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 7.0).collect();
    let cpu = Tensor::from_vec(x.clone(), &[10, 100], Device::Cpu);
    let gpu = Tensor::from_vec(x, &[10, 100], Device::Gpu);
    let relu_ok = cpu.relu().to_vec() == gpu.relu().to_vec();
    let a = cpu.matmul(&cpu.transpose(0, 1)).to_vec();
    let b = gpu.matmul(&gpu.transpose(0, 1)).to_vec();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| ((p - q) / p.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    // The half-precision storage of --precision mixed: the same values as the CPU's, bit for bit.
    let bits = |t: &Tensor| -> Vec<u32> {
        t.to_half()
            .to_f32()
            .to_vec()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let half_ok = bits(&cpu) == bits(&gpu);
    (relu_ok, worst, half_ok)
}
