//! Kernel benchmarks (criterion): matmul (square 256..2048 and the shapes U-TAE's temporal encoder uses),
//! conv2d / conv_transpose2d (U-TAE's encoder and decoder shapes, forward and both backward kernels),
//! softmax, and elementwise ops. Each group reports throughput — matmul and conv in FLOP/s (2·M·N·K per
//! product; 2·N·C_out·H_out·W_out·C_in·kH·kW per conv), the others in bytes/s (bytes read + written) — and the adapter name is printed first. Timing includes
//! submit and completion (`Gpu::synchronize` inside the timed region). Without an adapter the benches print
//! a skip line.
//!
//! Run: `cargo bench --bench ops` (filter: `cargo bench --bench ops -- matmul`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitsgpu::engine::gpu::Gpu;
use sitsgpu::{no_grad, Device, Tensor};

fn gpu() -> Option<&'static Gpu> {
    match Gpu::get() {
        Ok(g) => {
            println!(
                "adapter: {} ({}, {})",
                g.adapter.name, g.adapter.backend, g.adapter.device_type
            );
            Some(g)
        }
        Err(e) => {
            println!("skipped: no GPU adapter ({e})");
            None
        }
    }
}

/// Times `iters` runs of `f`, each submitted and waited for.
fn timed(gpu: &Gpu, iters: u64, f: &dyn Fn() -> Tensor) -> Duration {
    let _warm = f();
    gpu.synchronize();
    let start = Instant::now();
    for _ in 0..iters {
        let _y = f();
        gpu.synchronize();
    }
    start.elapsed()
}

fn matmul(c: &mut Criterion) {
    let Some(gpu) = gpu() else { return };
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    // (name, batch, M, K, N). U-TAE (B=4, T=40, 16×16 at the bottleneck): L-TAE key projection
    // (B·h·w·T, 256) × (256, n_head·d_k = 64) and its MLP (.., 256) × (256, 128).
    let mut shapes: Vec<(String, usize, usize, usize, usize)> = [256, 512, 1024, 2048]
        .iter()
        .map(|&s| (format!("square {s}"), 1, s, s, s))
        .collect();
    shapes.push(("utae ltae keys 40960x256x64".into(), 1, 40960, 256, 64));
    shapes.push(("utae ltae mlp 1024x256x128".into(), 1, 1024, 256, 128));
    shapes.push(("batched 64 x 40x40x4".into(), 64, 40, 4, 40));
    for (name, b, m, k, n) in shapes {
        let a = Tensor::rand_uniform(&[b, m, k], -1.0, 1.0, 1, Device::Gpu);
        let w = Tensor::rand_uniform(&[b, k, n], -1.0, 1.0, 2, Device::Gpu);
        g.throughput(Throughput::Elements((2 * b * m * n * k) as u64)); // FLOPs
        g.bench_function(BenchmarkId::new("flops", &name), |bch| {
            bch.iter_custom(|iters| no_grad(|| timed(gpu, iters, &|| a.matmul(&w))))
        });
    }
    g.finish();
}

fn conv2d(c: &mut Criterion) {
    use sitsgpu::engine::ops::conv2d::{self as conv, Geom, PaddingMode::Reflect};
    use sitsgpu::engine::storage::Storage;
    let Some(gpu) = gpu() else { return };
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    // U-TAE on B·T = 16 frames: (name, x shape, weight shape, stride, padding).
    let shapes = [
        (
            "in_conv 10->64 k3 128x128",
            [16, 10, 128, 128],
            [64, 10, 3, 3],
            1,
            1,
        ),
        (
            "conv 64->64 k3 64x64",
            [16, 64, 64, 64],
            [64, 64, 3, 3],
            1,
            1,
        ),
        (
            "down 64->64 k4 s2 64x64",
            [16, 64, 64, 64],
            [64, 64, 4, 4],
            2,
            1,
        ),
    ];
    for (name, xs, ws, s, p) in shapes {
        let x = Tensor::rand_uniform(&xs, -1.0, 1.0, 5, Device::Gpu);
        let w = Tensor::rand_uniform(&ws, -1.0, 1.0, 6, Device::Gpu);
        let b = Tensor::rand_uniform(&[ws[0]], -1.0, 1.0, 7, Device::Gpu);
        let geo = Geom::new(&xs, &ws, s, p, Reflect);
        let dy = Tensor::rand_uniform(&[xs[0], ws[0], geo.ho, geo.wo], -1.0, 1.0, 8, Device::Gpu);
        // FLOPs: one multiply-add per (output element, C_in, ky, kx), the same for each backward kernel.
        let flops = 2 * xs[0] * ws[0] * geo.ho * geo.wo * ws[1] * ws[2] * ws[3];
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(BenchmarkId::new("forward (tiled) flops", name), |bch| {
            bch.iter_custom(|it| {
                no_grad(|| timed(gpu, it, &|| x.conv2d(&w, Some(&b), s, p, Reflect)))
            })
        });
        let (gx, gw, gdy) = (
            x.gpu_storage("bench"),
            w.gpu_storage("bench"),
            dy.gpu_storage("bench"),
        );
        g.bench_function(
            BenchmarkId::new("backward input (gather) flops", name),
            |bch| {
                bch.iter_custom(|it| {
                    timed(gpu, it, &|| {
                        let d = conv::gpu_backward_input(gdy, gw, &geo);
                        Tensor::from_storage(&xs, Storage::Gpu(d))
                    })
                })
            },
        );
        g.bench_function(
            BenchmarkId::new("backward weight (two-pass) flops", name),
            |bch| {
                bch.iter_custom(|it| {
                    timed(gpu, it, &|| {
                        let d = conv::gpu_backward_weight(gx, gdy, &geo);
                        Tensor::from_storage(&ws, Storage::Gpu(d))
                    })
                })
            },
        );
    }
    // U-TAE's first up-sampling: (B = 16, 128, 16, 16) -> (16, 64, 32, 32), kernel 4, stride 2, padding 1.
    let x = Tensor::rand_uniform(&[16, 128, 16, 16], -1.0, 1.0, 9, Device::Gpu);
    let w = Tensor::rand_uniform(&[128, 64, 4, 4], -1.0, 1.0, 10, Device::Gpu);
    // FLOPs: one multiply-add per (input element, C_out, ky, kx).
    g.throughput(Throughput::Elements(
        (2 * 16 * 128 * 16 * 16 * 64 * 16) as u64,
    ));
    g.bench_function(
        BenchmarkId::new("conv_transpose2d forward flops", "128->64 k4 s2 16x16"),
        |bch| {
            bch.iter_custom(|it| no_grad(|| timed(gpu, it, &|| x.conv_transpose2d(&w, None, 2, 1))))
        },
    );
    g.finish();
}

fn softmax_and_elementwise(c: &mut Criterion) {
    let Some(gpu) = gpu() else { return };
    let mut g = c.benchmark_group("memory_bound");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for &n in &[1usize << 16, 1 << 20, 1 << 22] {
        let x = Tensor::rand_uniform(&[n / 40, 40], -1.0, 1.0, 3, Device::Gpu);
        let y = Tensor::rand_uniform(&[n / 40, 40], -1.0, 1.0, 4, Device::Gpu);
        // softmax over T = 40: reads and writes every element once (3 passes read, 1 writes).
        g.throughput(Throughput::Bytes((8 * n) as u64));
        g.bench_function(BenchmarkId::new("softmax T=40 bytes", n), |b| {
            b.iter_custom(|it| no_grad(|| timed(gpu, it, &|| x.softmax(-1))))
        });
        // add: reads two, writes one.
        g.throughput(Throughput::Bytes((12 * n) as u64));
        g.bench_function(BenchmarkId::new("add bytes", n), |b| {
            b.iter_custom(|it| no_grad(|| timed(gpu, it, &|| &x + &y)))
        });
        // relu: reads one, writes one.
        g.throughput(Throughput::Bytes((8 * n) as u64));
        g.bench_function(BenchmarkId::new("relu bytes", n), |b| {
            b.iter_custom(|it| no_grad(|| timed(gpu, it, &|| x.relu())))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = matmul, conv2d, softmax_and_elementwise
}
criterion_main!(benches);
