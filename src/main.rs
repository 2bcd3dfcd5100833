//! The `sitsgpu` command. Thin: parses flags and calls the library.
//!
//! - `sitsgpu info`: every adapter wgpu finds, the one chosen and why, its limits and features, and a tiny
//!   self-test kernel compared with the CPU reference. Run this first on a new machine.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sitsgpu::engine::gpu::{enumerate_adapters, Gpu};
use sitsgpu::{Device, Tensor};

#[derive(Parser)]
#[command(
    name = "sitsgpu",
    version,
    about = "Satellite image time series models on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, show the chosen one with its limits, and run a self-test kernel.
    Info,
}

fn info() -> Result<(), String> {
    let adapters = enumerate_adapters();
    println!("adapters found: {}", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let gpu = Gpu::get().map_err(|e| e.to_string())?;
    println!(
        "chosen: {} ({}, {}) because {}",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type, gpu.reason
    );
    let l = &gpu.limits;
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size     {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "  max_buffer_size                     {} bytes",
        l.max_buffer_size
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_workgroup_storage_size  {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!("features: {:?}", gpu.features);
    // Self-test: relu and a small matmul on the GPU against the CPU reference.
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 7.0).collect();
    let cpu = Tensor::from_vec(x.clone(), &[10, 100], Device::Cpu);
    let gpu_t = Tensor::from_vec(x, &[10, 100], Device::Gpu);
    let relu_ok = cpu.relu().to_vec() == gpu_t.relu().to_vec();
    let a = cpu.matmul(&cpu.transpose(0, 1)).to_vec();
    let b = gpu_t.matmul(&gpu_t.transpose(0, 1)).to_vec();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| ((p - q) / p.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    let mm_ok = worst < 1e-4;
    println!(
        "self-test: relu {} | matmul {} (worst relative error {worst:.2e})",
        ok(relu_ok),
        ok(mm_ok)
    );
    if relu_ok && mm_ok {
        Ok(())
    } else {
        Err(
            "self-test failed: this adapter computes different results from the CPU reference"
                .into(),
        )
    }
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
