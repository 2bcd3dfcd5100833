//! Kernel benchmarks (criterion), each variant beside the others on the same shapes (llm.c style):
//! - `matmul`: square 256..2048 and the shapes the models use (L-TAE keys, PSE's skinny layers and their
//!   weight gradients), with each kernel plan — `matmul.wgsl` (64 × 64), `matmul_128.wgsl` (128 × 128), and
//!   the automatic plan with its split-K;
//! - `matmul_half`: `--precision mixed`'s products (operands rounded to halves, float32 sums) on every path
//!   the adapter has — rounded float32, f16 tiles, cooperative matrices — beside float32, square up to 4096³
//!   and two model shapes;
//! - `conv2d_half`: `--precision mixed`'s convolutions (rounded operands on the float32 kernels, or unfolded
//!   onto the f16 tiles / cooperative matrices) beside float32, on U-TAE's encoder shapes;
//! - `conv2d`: U-TAE's encoder shapes, the forward with each tile (wide 64 × 128, narrow 16 × 256, direct),
//!   the input gradient (its stride phases on the forward's kernel + the pad fold, vs the gather), the weight
//!   gradient with each tile, and the decoder's transposed convolution;
//! - `attention` (L-TAE weights + apply), `group_norm` (forward, backward), `adam` (one step over the paper
//!   U-TAE's 1.09 M parameters) and the memory-bound ops (softmax, add, relu).
//!
//! Throughput is FLOP/s for matmul and conv (2·M·N·K; 2·N·C_out·H_out·W_out·C_in·kH·kW, the same for each
//! gradient), bytes/s (read + written) for the others. The adapter name is printed first. Each sample records
//! its iterations back to back and waits once at the end (`Gpu::synchronize` inside the timed region), so the
//! figures are kernel throughput with the launch cost amortised, as in a training step. Without an adapter
//! the benches print a skip line. `SITSGPU_BENCH_QUICK=1` shortens every group (0.1 s warm-up, 1 s
//! measurement) for a lease on a remote GPU.
//!
//! Run: `cargo bench --bench ops` (filter: `cargo bench --bench ops -- matmul`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use sitsgpu::engine::gpu::Gpu;
use sitsgpu::engine::storage::Storage;
use sitsgpu::{no_grad, Device, Tensor};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

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

fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    let quick = std::env::var("SITSGPU_BENCH_QUICK").is_ok_and(|v| v == "1");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 100 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }));
    g
}

/// Times `iters` runs of `f` recorded back to back, then waits for the GPU once.
fn timed(gpu: &Gpu, iters: u64, f: &dyn Fn() -> Tensor) -> Duration {
    let _warm = f();
    gpu.synchronize();
    let start = Instant::now();
    for _ in 0..iters {
        let _y = f();
    }
    gpu.synchronize();
    start.elapsed()
}

fn bench(g: &mut Group, gpu: &Gpu, id: BenchmarkId, f: &dyn Fn() -> Tensor) {
    g.bench_function(id, |b| b.iter_custom(|it| no_grad(|| timed(gpu, it, f))));
}

fn matmul(c: &mut Criterion) {
    use sitsgpu::engine::ops::linalg::matmul::{gpu_forward_with, plan, Operand, Plan};
    let Some(gpu) = gpu() else { return };
    let mut g = group(c, "matmul");
    // (name, batch, M, K, N, A stored transposed)
    let mut shapes: Vec<(String, usize, usize, usize, usize, bool)> = [256, 512, 1024, 2048]
        .iter()
        .map(|&s| (format!("square {s}"), 1, s, s, s, false))
        .collect();
    shapes.extend([
        ("ltae keys 40960x256x64".into(), 1, 40960, 256, 64, false),
        ("ltae mlp 1024x256x128".into(), 1, 1024, 256, 128, false),
        ("pse mlp1 196608x32x64".into(), 1, 196_608, 32, 64, false),
        ("pse dW 32x196608x64 (At)".into(), 1, 32, 196_608, 64, true),
        ("batched 64 x 40x4x40".into(), 64, 40, 4, 40, false),
    ]);
    for (name, b, m, k, n, ta) in shapes {
        let a = Tensor::rand_uniform(&[b * m * k], -1.0, 1.0, 1, Device::Gpu);
        let w = Tensor::rand_uniform(&[b * k * n], -1.0, 1.0, 2, Device::Gpu);
        let (oa, ob) = (
            Operand {
                batch: b,
                trans: ta,
            },
            Operand {
                batch: b,
                trans: false,
            },
        );
        g.throughput(Throughput::Elements((2 * b * m * n * k) as u64)); // FLOPs
        let auto = plan(b, m, k, n);
        let plans = [
            (
                "64",
                Plan {
                    big: false,
                    splits: 1,
                },
            ),
            (
                "128",
                Plan {
                    big: true,
                    splits: 1,
                },
            ),
            ("auto", auto),
        ];
        for (label, p) in plans {
            if label != "auto" && p == auto {
                continue; // the automatic plan is timed once, under "auto"
            }
            let id = BenchmarkId::new(format!("flops {label} {p:?}"), &name);
            bench(&mut g, gpu, id, &|| {
                let c = gpu_forward_with(
                    p,
                    a.gpu_storage("b"),
                    oa,
                    w.gpu_storage("b"),
                    ob,
                    b,
                    m,
                    k,
                    n,
                );
                Tensor::from_storage(&[b * m * n], Storage::Gpu(c))
            });
        }
    }
    g.finish();
}

/// `--precision mixed`'s products (`half_matmul`): float32 beside every half-precision path this adapter has
/// — rounded float32, f16 tiles (SHADER_F16), cooperative matrices (with `SITSGPU_COOPERATIVE_MATRIX=1`
/// where offered). Each half-precision time includes packing both operands (the real cost in a step).
/// 4096³ is the tensor-core target; on lavapipe it takes seconds an iteration.
fn matmul_half(c: &mut Criterion) {
    use sitsgpu::engine::ops::linalg::half_matmul::{self, gpu_forward_on, HalfPath};
    use sitsgpu::engine::ops::linalg::matmul::{gpu_forward, Operand};
    let Some(gpu) = gpu() else { return };
    println!(
        "half-precision products on this device: {}",
        half_matmul::path(gpu)
    );
    let paths = half_matmul::paths_on(gpu);
    let mut g = group(c, "matmul_half");
    let shapes: [(&str, usize, usize, usize); 5] = [
        ("square 1024", 1024, 1024, 1024),
        ("square 2048", 2048, 2048, 2048),
        ("square 4096", 4096, 4096, 4096),
        ("ltae keys 40960x256x64", 40960, 256, 64),
        ("pse mlp1 196608x32x64", 196_608, 32, 64),
    ];
    let plain = Operand {
        batch: 1,
        trans: false,
    };
    for (name, m, k, n) in shapes {
        let a = Tensor::rand_uniform(&[m * k], -1.0, 1.0, 1, Device::Gpu);
        let w = Tensor::rand_uniform(&[k * n], -1.0, 1.0, 2, Device::Gpu);
        g.throughput(Throughput::Elements((2 * m * n * k) as u64)); // FLOPs
        let (ga, gw) = (a.gpu_storage("b"), w.gpu_storage("b"));
        bench(&mut g, gpu, BenchmarkId::new("flops fp32", name), &|| {
            let c = gpu_forward(ga, plain, gw, plain, 1, m, k, n);
            Tensor::from_storage(&[m * n], Storage::Gpu(c))
        });
        for &p in &paths {
            let label = match p {
                HalfPath::Cooperative { .. } => "coop",
                HalfPath::F16Tiles => "f16 tiles",
                HalfPath::RoundedF32 => "rounded fp32",
            };
            bench(
                &mut g,
                gpu,
                BenchmarkId::new(format!("flops half {label}"), name),
                &|| {
                    let c = gpu_forward_on(p, ga, plain, gw, plain, 1, m, k, n);
                    Tensor::from_storage(&[m * n], Storage::Gpu(c))
                },
            );
        }
    }
    g.finish();
}

/// `--precision mixed`'s convolutions (`conv2d::mixed`): float32 beside every path this adapter has —
/// rounded operands on the float32 kernels, and the f16 tiles and the cooperative matrices (the device's own
/// choice takes the latter only) with the input unfolded into memory first (`Copy`: `half_im2col.wgsl`) or
/// inside the tiles (`InTiles`: `half_conv.wgsl`, `half_conv_coop.wgsl` where the shape allows, else the
/// copy). Each half-precision time includes rounding or unfolding the input and the bias. Then the backward pass's weight and input
/// gradients, float32 beside mixed's choice.
fn conv2d_half(c: &mut Criterion) {
    use sitsgpu::engine::ops::conv::conv2d::{self as conv, mixed, Geom, PaddingMode::Reflect};
    use sitsgpu::engine::ops::linalg::half_matmul::{self, HalfPath};
    let Some(gpu) = gpu() else { return };
    println!(
        "half-precision products on this device: {}",
        half_matmul::path(gpu)
    );
    let paths = half_matmul::paths_on(gpu);
    let mut g = group(c, "conv2d_half");
    let frames = std::env::var("SITSGPU_BENCH_FRAMES").map_or(16, |v| v.parse().unwrap_or(16));
    let shapes = [
        (
            "in_conv 10->64 k3 128x128",
            [frames, 10, 128, 128],
            [64, 10, 3, 3],
            1,
        ),
        (
            "conv 64->64 k3 128x128",
            [frames, 64, 128, 128],
            [64, 64, 3, 3],
            1,
        ),
        (
            "down 64->64 k4 s2 128x128",
            [frames, 64, 128, 128],
            [64, 64, 4, 4],
            2,
        ),
    ];
    for (name, xs, ws, s) in shapes {
        let x = Tensor::rand_uniform(&xs, -1.0, 1.0, 5, Device::Gpu);
        let w = Tensor::rand_uniform(&ws, -1.0, 1.0, 6, Device::Gpu);
        let b = Tensor::rand_uniform(&[ws[0]], -1.0, 1.0, 7, Device::Gpu);
        let geo = Geom::new(&xs, &ws, s, 1, Reflect);
        let ys = [xs[0], ws[0], geo.ho, geo.wo];
        let flops = 2 * xs[0] * ws[0] * geo.ho * geo.wo * ws[1] * ws[2] * ws[3];
        g.throughput(Throughput::Elements(flops as u64));
        let (gx, gw, gb) = (x.gpu_storage("b"), w.gpu_storage("b"), b.gpu_storage("b"));
        bench(&mut g, gpu, BenchmarkId::new("flops fp32", name), &|| {
            Tensor::from_storage(&ys, Storage::Gpu(conv::gpu_forward(gx, gw, Some(gb), &geo)))
        });
        let ways = paths.iter().flat_map(|&p| {
            let unfolded = p != HalfPath::RoundedF32;
            let copy = (p, mixed::Unfolding::Copy);
            let in_tiles = (p, mixed::Unfolding::InTiles);
            std::iter::once(copy).chain(unfolded.then_some(in_tiles))
        });
        for (p, unfolding) in ways {
            let label = match (p, unfolding) {
                (HalfPath::RoundedF32, _) => "rounded fp32".to_string(),
                (HalfPath::Cooperative { tile, .. }, u) => format!("coop{tile} {u:?}"),
                (HalfPath::F16Tiles, u) => format!("f16 tiles {u:?}"),
            };
            bench(
                &mut g,
                gpu,
                BenchmarkId::new(format!("flops half {label}"), name),
                &|| {
                    let y = mixed::gpu_forward_on((p, unfolding), gx, gw, Some(gb), &geo);
                    Tensor::from_storage(&ys, Storage::Gpu(y))
                },
            );
        }
        // The backward pass's two products (same flops each), float32 beside mixed's choice on this device
        // (`mixed::gpu_backward_weight`, `gpu_backward_input`: unfolded where the forward is, the input
        // gradient phase by phase when its stride phases are square), on the rounded operands a mixed
        // backward reads.
        let dy = Tensor::rand_uniform(&ys, -1.0, 1.0, 8, Device::Gpu).rounded_to_half();
        let (hx, hw) = (x.clone().rounded_to_half(), w.clone().rounded_to_half());
        let (gdy, ghx, ghw) = (
            dy.gpu_storage("b"),
            hx.gpu_storage("b"),
            hw.gpu_storage("b"),
        );
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("flops fp32 dw", name),
            &|| Tensor::from_storage(&ws, Storage::Gpu(conv::gpu_backward_weight(ghx, gdy, &geo))),
        );
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("flops half dw", name),
            &|| mixed::gpu_backward_weight(ghx, gdy, &geo),
        );
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("flops fp32 dx", name),
            &|| Tensor::from_storage(&xs, Storage::Gpu(conv::gpu_backward_input(gdy, ghw, &geo))),
        );
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("flops half dx", name),
            &|| Tensor::from_storage(&xs, Storage::Gpu(mixed::gpu_backward_input(gdy, ghw, &geo))),
        );
    }
    g.finish();
}

fn conv2d(c: &mut Criterion) {
    use sitsgpu::engine::ops::conv::conv2d::{
        self as conv, ForwardKernel, Geom, PaddingMode::Reflect,
    };
    let Some(gpu) = gpu() else { return };
    let mut g = group(c, "conv2d");
    // U-TAE's encoder on B·T frames: (name, x shape, weight shape, stride, padding). The paper config has
    // B·T = 160 frames; 16 here keep the buffers small (the throughput is the same per frame).
    let frames = std::env::var("SITSGPU_BENCH_FRAMES").map_or(16, |v| v.parse().unwrap_or(16));
    let shapes = [
        (
            "in_conv 10->64 k3 128x128",
            [frames, 10, 128, 128],
            [64, 10, 3, 3],
            1,
            1,
        ),
        (
            "conv 64->64 k3 128x128",
            [frames, 64, 128, 128],
            [64, 64, 3, 3],
            1,
            1,
        ),
        (
            "conv 64->64 k3 64x64",
            [frames, 64, 64, 64],
            [64, 64, 3, 3],
            1,
            1,
        ),
        (
            "down 64->64 k4 s2 128x128",
            [frames, 64, 128, 128],
            [64, 64, 4, 4],
            2,
            1,
        ),
        (
            "small 12->16 k3 16x16",
            [16, 12, 16, 16],
            [16, 12, 3, 3],
            1,
            1,
        ),
    ];
    for (name, xs, ws, s, p) in shapes {
        let x = Tensor::rand_uniform(&xs, -1.0, 1.0, 5, Device::Gpu);
        let w = Tensor::rand_uniform(&ws, -1.0, 1.0, 6, Device::Gpu);
        let b = Tensor::rand_uniform(&[ws[0]], -1.0, 1.0, 7, Device::Gpu);
        let geo = Geom::new(&xs, &ws, s, p, Reflect);
        let dys = [xs[0], ws[0], geo.ho, geo.wo];
        let dy = Tensor::rand_uniform(&dys, -1.0, 1.0, 8, Device::Gpu);
        let flops = 2 * xs[0] * ws[0] * geo.ho * geo.wo * ws[1] * ws[2] * ws[3];
        g.throughput(Throughput::Elements(flops as u64));
        let (gx, gw, gb, gdy) = (
            x.gpu_storage("b"),
            w.gpu_storage("b"),
            b.gpu_storage("b"),
            dy.gpu_storage("b"),
        );
        let tiles = [
            ForwardKernel::Wide,
            ForwardKernel::Narrow,
            ForwardKernel::Direct,
        ];
        for k in tiles {
            bench(
                &mut g,
                gpu,
                BenchmarkId::new(format!("forward {k:?} flops"), name),
                &|| {
                    let y =
                        conv::gpu_forward_with(k, gx, gw, Some(gb), &geo, geo.kernel_params(true));
                    Tensor::from_storage(&dys, Storage::Gpu(y))
                },
            );
        }
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("backward input (auto) flops", name),
            &|| Tensor::from_storage(&xs, Storage::Gpu(conv::gpu_backward_input(gdy, gw, &geo))),
        );
        if s == 1 {
            bench(
                &mut g,
                gpu,
                BenchmarkId::new("backward input (gather) flops", name),
                &|| {
                    let d = conv::gpu_backward_input_gather(gdy, gw, &geo);
                    Tensor::from_storage(&xs, Storage::Gpu(d))
                },
            );
        }
        for k in tiles {
            bench(
                &mut g,
                gpu,
                BenchmarkId::new(format!("backward weight {k:?} flops"), name),
                &|| {
                    let d = conv::gpu_backward_weight_with(k, gx, gdy, &geo);
                    Tensor::from_storage(&ws, Storage::Gpu(d))
                },
            );
        }
    }
    // U-TAE's first up-sampling: (B = 16, 128, 16, 16) -> (16, 64, 32, 32), kernel 4, stride 2, padding 1 (the
    // input gradient's phases). FLOPs: one multiply-add per (input element, C_out, ky, kx).
    let x = Tensor::rand_uniform(&[16, 128, 16, 16], -1.0, 1.0, 9, Device::Gpu);
    let w = Tensor::rand_uniform(&[128, 64, 4, 4], -1.0, 1.0, 10, Device::Gpu);
    g.throughput(Throughput::Elements(
        (2 * 16 * 128 * 16 * 16 * 64 * 16) as u64,
    ));
    bench(
        &mut g,
        gpu,
        BenchmarkId::new("conv_transpose2d forward flops", "128->64 k4 s2 16x16"),
        &|| x.conv_transpose2d(&w, None, 2, 1),
    );
    g.finish();
}

fn attention_norm_adam(c: &mut Criterion) {
    use sitsgpu::engine::ops::attention::attention_weights::AttnDropout;
    let Some(gpu) = gpu() else { return };
    let mut g = group(c, "attention_norm_adam");
    // L-TAE at U-TAE's bottleneck: B = 4, T = 40, 16 × 16 pixels, 16 heads of d_k = 4, values 16 × 16.
    let (b, t, pix, heads, dk) = (4, 40, 256, 16, 4);
    let k = Tensor::rand_uniform(&[b * pix, t, heads * dk], -1.0, 1.0, 1, Device::Gpu);
    let q = Tensor::rand_uniform(&[heads, dk], -1.0, 1.0, 2, Device::Gpu);
    let v = Tensor::rand_uniform(&[b * pix, t, 256], -1.0, 1.0, 3, Device::Gpu);
    // Bytes: keys read, weights written; then weights and values read, output written.
    g.throughput(Throughput::Bytes(
        (4 * (k.numel() + 2 * heads * b * t * pix + v.numel() + b * pix * 256)) as u64,
    ));
    bench(
        &mut g,
        gpu,
        BenchmarkId::new("ltae attention bytes", "B4 T40 16x16 h16"),
        &|| {
            let a = k.temporal_attention_weights(&q, None, pix, AttnDropout::NONE);
            a.temporal_attention_apply(&v)
        },
    );
    // Group norm over U-TAE's first level: (B·T, 64, 64, 64), 4 groups: read twice, write once.
    let x = Tensor::rand_uniform(&[16, 64, 64, 64], -1.0, 1.0, 4, Device::Gpu);
    g.throughput(Throughput::Bytes((12 * x.numel()) as u64));
    bench(
        &mut g,
        gpu,
        BenchmarkId::new("group_norm forward bytes", "16x64x64x64 g4"),
        &|| x.group_norm(4, None, None, 1e-5),
    );
    g.finish();
    // Adam over the paper U-TAE's parameters: p, g, m, v read, p, m, v written (28 bytes per parameter).
    let model = sitsgpu::models::utae::UTae::new(Default::default(), 0, Device::Gpu);
    use sitsgpu::layers::Module;
    let params = model.parameters();
    // Gradients of Σ p: all ones.
    let total = params.iter().map(|p| p.sum_all()).reduce(|a, b| &a + &b);
    total.expect("parameters").backward();
    let n: usize = params.iter().map(|p| p.numel()).sum();
    let mut opt = sitsgpu::train::Adam::new(params, Default::default());
    let mut g = group(c, "adam");
    g.throughput(Throughput::Bytes((28 * n) as u64));
    g.bench_function(
        BenchmarkId::new("step bytes", format!("utae paper {n} params")),
        |bch| {
            bch.iter_custom(|it| {
                gpu.synchronize();
                let start = Instant::now();
                for _ in 0..it {
                    opt.step();
                }
                gpu.synchronize();
                start.elapsed()
            })
        },
    );
    g.finish();
}

fn memory_bound(c: &mut Criterion) {
    let Some(gpu) = gpu() else { return };
    let mut g = group(c, "memory_bound");
    for &n in &[1usize << 16, 1 << 20, 1 << 22] {
        let x = Tensor::rand_uniform(&[n / 40, 40], -1.0, 1.0, 3, Device::Gpu);
        let y = Tensor::rand_uniform(&[n / 40, 40], -1.0, 1.0, 4, Device::Gpu);
        // softmax over T = 40 and relu read and write every element once; add reads two, writes one.
        g.throughput(Throughput::Bytes((8 * n) as u64));
        bench(
            &mut g,
            gpu,
            BenchmarkId::new("softmax T=40 bytes", n),
            &|| x.softmax(-1),
        );
        bench(&mut g, gpu, BenchmarkId::new("relu bytes", n), &|| x.relu());
        g.throughput(Throughput::Bytes((12 * n) as u64));
        bench(&mut g, gpu, BenchmarkId::new("add bytes", n), &|| &x + &y);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = matmul, matmul_half, conv2d_half, conv2d, attention_norm_adam, memory_bound
}
criterion_main!(benches);
