//! Patch-model benchmarks (criterion): U-TAE, the U-TAE paper's baselines (uconvlstm, buconvlstm, fpn,
//! convlstm, convgru, unet3d) and U-TAE + PaPs (utae_paps: the forward with the pseudo-NMS, the training step
//! with PaPsLoss on synthetic parcels), each model's evaluation forward and one training step (forward, loss,
//! backward, Adam, the loss read back) for the small config (widths about an eighth of the paper's:
//! `train::profile::{utae_small_config, small_kwargs}`; B = 2, T = 8, 32 × 32) and the paper config
//! (get_model's; B = 4, T = 40, 128 × 128, 10 bands) — the workloads of `sitsgpu profile --model M`
//! (`train::profile::Workload`), which explains these figures kernel by kernel. Throughput is reported in
//! patches/s (criterion's elements/s); the adapter name is printed first; without an adapter the benches
//! print a skip line. Before each model's timings a `memory` line gives the buffer pool's peaks (live and held)
//! of one evaluation forward and one training step. The paper config takes seconds per step on a software adapter (lavapipe): it runs
//! there only with `SITSGPU_BENCH_PAPER=1`. `SITSGPU_BENCH_QUICK=1` shortens the measurement.
//!
//! `SITSGPU_BENCH_PRECISION=mixed` times `--precision mixed` (products on half-precision operands, saved
//! activations as halves).
//!
//! Run: `cargo bench --bench utae` (one model: `cargo bench --bench utae -- convlstm`; one config:
//! `-- small`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitsgpu::engine::gpu::Gpu;
use sitsgpu::engine::{with_precision, Precision};
use sitsgpu::models::semantic::MODELS;
use sitsgpu::train::profile::{MemoryPeak, Workload};
use sitsgpu::Device;

fn bench(c: &mut Criterion) {
    let precision =
        Precision::from_env("SITSGPU_BENCH_PRECISION").unwrap_or_else(|e| panic!("{e}"));
    println!("precision: {precision} (SITSGPU_BENCH_PRECISION)");
    with_precision(precision, || bench_in(c));
}

fn bench_in(c: &mut Criterion) {
    let gpu = match Gpu::get() {
        Ok(g) => g,
        Err(e) => {
            println!("skipped: no GPU adapter ({e})");
            return;
        }
    };
    println!(
        "adapter: {} ({}, {})",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type
    );
    let quick = std::env::var("SITSGPU_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut g = c.benchmark_group("utae");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 3 }));
    let runs = [
        ("small 2x8x32x32", "small", (2, 8, 32)),
        ("paper 4x40x128x128", "paper", (4, 40, 128)),
    ];
    for (model, (name, config, (b, t, hw))) in MODELS
        .iter()
        .chain(&["utae_paps"])
        .flat_map(|m| runs.iter().map(move |r| (*m, *r)))
    {
        let name = format!("{model} {name}");
        if config == "paper"
            && gpu.is_software()
            && std::env::var("SITSGPU_BENCH_PAPER").map_or(true, |v| v != "1")
        {
            println!("skipped: {name} on a software adapter (SITSGPU_BENCH_PAPER=1 to run it)");
            continue;
        }
        let workload = if model == "utae_paps" {
            Workload::panoptic(config, b, t, hw)
        } else {
            Workload::semantic(model, config, b, t, hw)
        };
        let mut w = workload.expect("a known config").prepare(Device::Gpu);
        g.throughput(Throughput::Elements(b as u64)); // patches
                                                      // Memory beside the times: the pool's peaks of one warm evaluation forward and one training step.
        let _ = w.train_step();
        gpu.synchronize();
        gpu.pool.reset_peak();
        w.forward();
        gpu.synchronize();
        let fwd = MemoryPeak::measure(gpu);
        gpu.pool.reset_peak();
        let _ = w.train_step();
        gpu.synchronize();
        println!(
            "memory {name}: evaluation forward {}; training step {}",
            fwd.text(),
            MemoryPeak::measure(gpu).text()
        );
        g.bench_function(BenchmarkId::new("forward patches", &name), |bch| {
            bch.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    w.forward(); // reads the predicted classes back
                }
                start.elapsed()
            })
        });
        g.bench_function(BenchmarkId::new("train step patches", &name), |bch| {
            bch.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let _loss = w.train_step(); // reads the loss back
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
