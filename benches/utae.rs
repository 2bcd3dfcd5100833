//! U-TAE benchmarks (criterion): forward (eval) and one training step (forward, cross-entropy, backward, Adam)
//! for the small fixture config and the paper config (B = 4, T = 40, 128 × 128, 10 bands). Throughput is
//! reported in patches/s (criterion's elements/s) and the adapter name is printed first; without an adapter
//! the benches print a skip line.
//!
//! Run: `cargo bench --bench utae` (one config: `cargo bench --bench utae -- small`). The paper config takes
//! seconds per step on a software adapter (lavapipe): run it on a real GPU.

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitsgpu::engine::gpu::Gpu;
use sitsgpu::layers::{Ctx, Module};
use sitsgpu::models::utae::{PadInfo, UTae, UTaeConfig};
use sitsgpu::train::{Adam, AdamConfig};
use sitsgpu::{no_grad, Device, Tensor};

fn small() -> UTaeConfig {
    UTaeConfig {
        encoder_widths: vec![8, 12, 16, 20],
        decoder_widths: vec![4, 8, 12, 20],
        out_conv: vec![8, 20],
        n_head: 4,
        d_model: 24,
        ..UTaeConfig::default()
    }
}

fn bench(c: &mut Criterion) {
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
    let mut g = c.benchmark_group("utae");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(3));
    for (name, cfg, (b, t, hw)) in [
        ("small 2x8x32x32", small(), (2, 8, 32)),
        ("paper 4x40x128x128", UTaeConfig::default(), (4, 40, 128)),
    ] {
        let model = UTae::new(cfg, 0, Device::Gpu);
        let x = Tensor::rand_uniform(&[b, t, 10, hw, hw], -1.0, 1.0, 1, Device::Gpu);
        let days: Vec<f32> = (0..b * t).map(|i| (i % t) as f32 * 7.0).collect();
        let pad = PadInfo {
            mask: vec![false; b * t],
        };
        let target = Tensor::from_vec(
            (0..b * hw * hw).map(|i| (i % 20) as f32).collect(),
            &[b, hw, hw],
            Device::Gpu,
        );
        g.throughput(Throughput::Elements(b as u64)); // patches
        g.bench_function(BenchmarkId::new("forward patches", name), |bch| {
            bch.iter_custom(|iters| {
                let ctx = Ctx::eval();
                let start = Instant::now();
                for _ in 0..iters {
                    let _y = no_grad(|| model.forward(&x, &days, &pad, &ctx, false).out);
                    gpu.synchronize();
                }
                start.elapsed()
            })
        });
        let mut opt = Adam::new(model.parameters(), AdamConfig::default());
        g.bench_function(BenchmarkId::new("train step patches", name), |bch| {
            bch.iter_custom(|iters| {
                let ctx = Ctx::train(0);
                let start = Instant::now();
                for _ in 0..iters {
                    opt.zero_grad();
                    let out = model.forward(&x, &days, &pad, &ctx, false);
                    out.out.cross_entropy(&target, None, -100).backward();
                    opt.step();
                    gpu.synchronize();
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
