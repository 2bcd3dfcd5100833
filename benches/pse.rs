//! Pixel-set classifier benchmarks (criterion): inference (eval forward) and one training step (forward, focal
//! loss, backward, Adam) of PSE + L-TAE with train.py's defaults (batch 128, T = 24, 10 bands, 64 pixels), in
//! parcels/s (criterion's elements/s), on the GPU and — the baseline of the same run — on the CPU reference
//! path; and the competitors of the L-TAE paper (TAE, GRU, TempCNN at their default sizes) on the GPU. The
//! adapter name is printed first; without an adapter the GPU benches print a skip line.
//!
//! Run: `cargo bench --bench pse` (one model: `cargo bench --bench pse -- pse_ltae`). `SITSGPU_BENCH_QUICK=1`
//! shortens the measurement; `SITSGPU_BENCH_PRECISION=mixed` times `--precision mixed` (products on
//! half-precision operands, saved activations as halves).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use sitsgpu::engine::gpu::Gpu;
use sitsgpu::engine::{with_precision, Precision};
use sitsgpu::layers::{Ctx, Module};
use sitsgpu::models::pse::focal_loss;
use sitsgpu::models::stclassifier::{PixelSetClassifier, PixelSetModelConfig, TemporalKind};
use sitsgpu::train::{Adam, AdamConfig};
use sitsgpu::{no_grad, Device, Tensor};

const B: usize = 128;
const T: usize = 24;
const S: usize = 64;

fn model(kind: TemporalKind, device: Device) -> PixelSetClassifier {
    // The constructor defaults of each class (spec §4): PseLTae 143k, PseTae 164k, PseGru (hidden 128),
    // PseTempCNN; bespoke positions every 14 days for the attention models.
    let positions: Vec<i64> = (0..T as i64).map(|t| 14 * t).collect();
    let conf: Value = match kind {
        TemporalKind::Ltae | TemporalKind::Tae => json!({"positions": positions}),
        TemporalKind::Gru | TemporalKind::TempCnn => json!({}),
    };
    let c = PixelSetModelConfig::from_json_as(kind, &conf, None, std::path::Path::new("bench"))
        .expect("a valid configuration");
    PixelSetClassifier::new(c, 0, device)
}

fn bench_one(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kind: TemporalKind,
    device: Device,
    sync: &dyn Fn(),
) {
    let m = model(kind, device);
    let x = Tensor::rand_uniform(&[B, T, 10, S], -1.0, 1.0, 1, device);
    let mask = vec![1.0f32; B * T * S];
    let extra = Tensor::rand_uniform(&[B, T, 4], -1.0, 1.0, 2, device);
    let targets: Vec<usize> = (0..B).map(|i| i % 20).collect();
    let name = format!("{} {device:?} B{B}", kind.name());
    g.throughput(Throughput::Elements(B as u64)); // parcels
    g.bench_function(BenchmarkId::new("inference parcels", &name), |bch| {
        bch.iter_custom(|iters| {
            let ctx = Ctx::eval();
            let start = Instant::now();
            for _ in 0..iters {
                let (logits, _) = no_grad(|| m.forward(&x, &mask, Some(&extra), &ctx));
                let _ = logits.argmax(1); // the predictions read back, as predict does
                sync();
            }
            start.elapsed()
        })
    });
    let mut opt = Adam::new(m.parameters(), AdamConfig::default());
    g.bench_function(BenchmarkId::new("train step parcels", &name), |bch| {
        bch.iter_custom(|iters| {
            let ctx = Ctx::train(0);
            let start = Instant::now();
            for _ in 0..iters {
                opt.zero_grad();
                let (logits, _) = m.forward(&x, &mask, Some(&extra), &ctx);
                let loss = focal_loss(&logits, &targets, 1.0);
                loss.backward();
                opt.step();
                let _ = loss.item();
                sync();
            }
            start.elapsed()
        })
    });
}

fn bench(c: &mut Criterion) {
    let precision =
        Precision::from_env("SITSGPU_BENCH_PRECISION").unwrap_or_else(|e| panic!("{e}"));
    println!("precision: {precision} (SITSGPU_BENCH_PRECISION)");
    with_precision(precision, || bench_in(c));
}

fn bench_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("pse");
    let quick = std::env::var("SITSGPU_BENCH_QUICK").is_ok_and(|v| v == "1");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }));
    // The baseline of the same run: the CPU reference path.
    bench_one(&mut g, TemporalKind::Ltae, Device::Cpu, &|| {});
    match Gpu::get() {
        Err(e) => println!("skipped (GPU half): no GPU adapter ({e})"),
        Ok(gpu) => {
            println!(
                "adapter: {} ({}, {})",
                gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type
            );
            for kind in [
                TemporalKind::Ltae,
                TemporalKind::Tae,
                TemporalKind::Gru,
                TemporalKind::TempCnn,
            ] {
                bench_one(&mut g, kind, Device::Gpu, &|| gpu.synchronize());
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
