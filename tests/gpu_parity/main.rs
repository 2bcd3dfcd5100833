//! GPU vs CPU parity of every op: forward and every backward output, on odd sizes (not multiples of the
//! workgroup size or the matmul tile) and again with the per-dimension workgroup limit forced to 3, so the
//! folded dispatch path runs at small sizes. Tolerances: `Tol::KERNEL` for elementwise ops, `Tol::REDUCE`
//! for reductions. Without a GPU adapter every test prints a loud skip line (fails with
//! `SITSGPU_REQUIRE_GPU=1`). `.ci/run` runs it again with `SITSGPU_LIMITS=webgpu` (WebGPU's default limits
//! instead of the adapter's; the first test below checks that the device has them).
//!
//! This file holds the harness and the elementwise, reduction, attention and norm rows; `conv.rs` the 2-D
//! convolutions; `baselines.rs` the U-TAE paper's baselines' ops (ConvLSTM, ConvGRU, the 3-D ops).

mod baselines;
mod conv;

use sitsgpu::engine::kernel::with_max_workgroups;
use sitsgpu::engine::ops::reduce::reduce_sum::with_slice_rows;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::testing::{assert_close, assert_limits_in_force, gpu_or_skip, Tol};
use sitsgpu::{Device, Tensor};

mod paps;

/// One input: its shape, how its values are drawn, and whether it gets a gradient.
struct In {
    shape: Vec<usize>,
    gen: Gen,
    grad: bool,
}

#[derive(Clone, Copy)]
enum Gen {
    /// Uniform in [lo, hi).
    Uniform(f32, f32),
    /// Integers in [0, n) (class ids, 0/1 masks).
    Int(u64),
}

fn input(shape: &[usize], lo: f32, hi: f32) -> In {
    In {
        shape: shape.to_vec(),
        gen: Gen::Uniform(lo, hi),
        grad: true,
    }
}

fn constant(shape: &[usize], gen: Gen) -> In {
    In {
        shape: shape.to_vec(),
        gen,
        grad: false,
    }
}

fn values(n: usize, gen: Gen, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| match gen {
            Gen::Uniform(lo, hi) => lo + (hi - lo) * rng.next_f32(),
            Gen::Int(k) => rng.below(k) as f32,
        })
        .collect()
}

/// Runs `f` on both devices with the same inputs and upstream gradient; returns (forward, grads) per device.
fn run(
    inputs: &[In],
    device: Device,
    f: &dyn Fn(&[Tensor]) -> Tensor,
) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
    let xs: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let t = Tensor::from_vec(
                values(i.shape.iter().product(), i.gen, 100 + k as u64),
                &i.shape,
                device,
            );
            if i.grad {
                t.requires_grad_()
            } else {
                t
            }
        })
        .collect();
    let y = f(&xs);
    let forward = y.to_vec();
    if inputs.iter().any(|i| i.grad) {
        let g = Tensor::from_vec(
            values(y.numel(), Gen::Uniform(-1.0, 1.0), 7),
            y.shape(),
            device,
        );
        y.backward_with(g);
    }
    (
        forward,
        xs.iter().map(|x| x.grad().map(|g| g.to_vec())).collect(),
    )
}

fn check(name: &str, inputs: &[In], tol: Tol, f: impl Fn(&[Tensor]) -> Tensor) {
    if gpu_or_skip(name).is_none() {
        return;
    }
    let (y_cpu, g_cpu) = run(inputs, Device::Cpu, &f);
    for (mode, forced) in [("", None), (" [forced 2-D fold]", Some(3))] {
        let (y_gpu, g_gpu) = match forced {
            None => run(inputs, Device::Gpu, &f),
            Some(m) => with_max_workgroups(m, || run(inputs, Device::Gpu, &f)),
        };
        assert_close(&y_gpu, &y_cpu, tol, &format!("{name}{mode}: forward"));
        for (k, (gg, gc)) in g_gpu.iter().zip(&g_cpu).enumerate() {
            match (gg, gc) {
                (Some(a), Some(b)) => {
                    assert_close(a, b, tol, &format!("{name}{mode}: gradient of input {k}"))
                }
                (None, None) => {}
                _ => panic!("{name}{mode}: input {k} has a gradient on one device only"),
            }
        }
    }
}

#[test]
fn the_device_has_the_limits_sitsgpu_limits_asks_for() {
    // `.ci/run` repeats this binary with SITSGPU_LIMITS=webgpu: there the device must have exactly WebGPU's
    // default limits, or the pass would prove nothing about weak adapters.
    if let Some(gpu) = gpu_or_skip("limits_in_force") {
        assert_limits_in_force(gpu);
    }
}

#[test]
fn relu_and_unary_family() {
    let s = [3, 7, 37]; // 777 elements: not a multiple of 256
    check("relu", &[input(&s, -2.0, 2.0)], Tol::KERNEL, |x| {
        x[0].relu()
    });
    // Over a temporary nothing else holds: on the GPU relu_inplace and relu_backward_inplace (the gradient
    // from `* 2` is fresh); on the CPU the plain op.
    check("relu_owned", &[input(&s, -2.0, 2.0)], Tol::KERNEL, |x| {
        &(&x[0] * 1.0).relu_owned() * 2.0
    });
    check("leaky_relu", &[input(&s, -2.0, 2.0)], Tol::KERNEL, |x| {
        x[0].leaky_relu(0.2)
    });
    check("sigmoid", &[input(&s, -6.0, 6.0)], Tol::KERNEL, |x| {
        x[0].sigmoid()
    });
    check("tanh", &[input(&s, -20.0, 20.0)], Tol::KERNEL, |x| {
        x[0].tanh()
    });
    check("exp", &[input(&s, -5.0, 5.0)], Tol::KERNEL, |x| x[0].exp());
    check("log", &[input(&s, 0.1, 10.0)], Tol::KERNEL, |x| x[0].log());
    check("sqrt", &[input(&s, 0.1, 10.0)], Tol::KERNEL, |x| {
        x[0].sqrt()
    });
    check("softplus", &[input(&s, -30.0, 30.0)], Tol::KERNEL, |x| {
        x[0].softplus()
    });
    check("add_scalar", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].add_scalar(0.75)
    });
    check("mul_scalar", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].mul_scalar(-1.5)
    });
    check("neg", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| x[0].neg());
}

#[test]
fn binary_with_broadcasting() {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[5, 67], &[5, 67]),
        (&[4, 1, 33], &[7, 1]),
        (&[3, 5, 7], &[7]),
        (&[3, 5], &[]),
    ];
    for (sa, sb) in cases {
        check(
            &format!("add {sa:?} {sb:?}"),
            &[input(sa, -1.0, 1.0), input(sb, -1.0, 1.0)],
            Tol::REDUCE,
            |x| &x[0] + &x[1],
        );
        check(
            &format!("sub {sa:?} {sb:?}"),
            &[input(sa, -1.0, 1.0), input(sb, -1.0, 1.0)],
            Tol::REDUCE,
            |x| &x[0] - &x[1],
        );
        check(
            &format!("mul {sa:?} {sb:?}"),
            &[input(sa, -1.0, 1.0), input(sb, -1.0, 1.0)],
            Tol::REDUCE,
            |x| &x[0] * &x[1],
        );
        check(
            &format!("div {sa:?} {sb:?}"),
            &[input(sa, -1.0, 1.0), input(sb, 0.5, 2.0)],
            Tol::REDUCE,
            |x| &x[0] / &x[1],
        );
    }
}

#[test]
fn reductions() {
    let s = [3, 5, 7, 2];
    check("sum axis 1", &[input(&s, -1.0, 1.0)], Tol::REDUCE, |x| {
        x[0].sum(&[1], false)
    });
    check(
        "sum axes 0,2,3 keepdim",
        &[input(&s, -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].sum(&[0, 2, 3], true),
    );
    check("mean axis -1", &[input(&s, -1.0, 1.0)], Tol::REDUCE, |x| {
        x[0].mean(&[-1], false)
    });
    check("max axis 2", &[input(&s, -1.0, 1.0)], Tol::REDUCE, |x| {
        x[0].max(2, false)
    });
    check(
        "max axis 0 keepdim",
        &[input(&s, -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].max(0, true),
    );
    // Long axis, one output: the two-pass chunked sum.
    check(
        "sum_all 9001 (two-pass)",
        &[input(&[9001], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].sum_all(),
    );
    check(
        "mean_all",
        &[input(&[13, 17], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].mean_all(),
    );
}

#[test]
fn argmax_indices_match() {
    if gpu_or_skip("argmax_indices_match").is_none() {
        return;
    }
    // Class scores with ties (values on a coarse grid) so the first-maximum rule is exercised.
    let data: Vec<f32> = values(2 * 20 * 7 * 9, Gen::Int(5), 3);
    let cpu = Tensor::from_vec(data.clone(), &[2, 20, 7, 9], Device::Cpu);
    let gpu = Tensor::from_vec(data, &[2, 20, 7, 9], Device::Gpu);
    assert_eq!(gpu.argmax(1), cpu.argmax(1));
    with_max_workgroups(3, || assert_eq!(gpu.argmax(-1), cpu.argmax(-1)));
}

#[test]
fn matmul_tiled_odd_sizes_and_batches() {
    let cases: [(&[usize], &[usize]); 5] = [
        (&[67, 45], &[45, 33]),         // one batch, tiles cut at every edge
        (&[3, 17, 130], &[3, 130, 70]), // batched, K longer than several K slabs
        (&[2, 5, 9, 16], &[16, 24]),    // weight shared by every batch (batch 1 broadcast)
        (&[8, 64], &[2, 64, 64]),       // left operand shared
        (&[1, 1], &[1, 1]),
    ];
    for (sa, sb) in cases {
        check(
            &format!("matmul {sa:?} x {sb:?}"),
            &[input(sa, -1.0, 1.0), input(sb, -1.0, 1.0)],
            Tol::REDUCE,
            |x| x[0].matmul(&x[1]),
        );
    }
}

/// Every kernel variant and split of the matmul engine, forced at small sizes, against the CPU reference,
/// with each operand plain or stored transposed and broadcast or not (the backward's layouts).
#[test]
fn matmul_every_variant_split_and_layout() {
    use sitsgpu::engine::ops::linalg::matmul::{
        cpu_forward, gpu_forward_with, plan, Operand, Plan,
    };
    use sitsgpu::engine::storage::Storage;
    if gpu_or_skip("matmul variants").is_none() {
        return;
    }
    // (batch, M, K, N): edges cut in every tile, K over several slabs and slices.
    for (batch, m, k, n) in [(2, 131, 77, 129), (1, 5, 700, 3), (3, 17, 33, 70)] {
        for (na, nb) in [(batch, batch), (1, batch), (batch, 1)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (oa, ob) = (
                    Operand {
                        batch: na,
                        trans: ta,
                    },
                    Operand {
                        batch: nb,
                        trans: tb,
                    },
                );
                let av = values(na * m * k, Gen::Uniform(-1.0, 1.0), 1);
                let bv = values(nb * k * n, Gen::Uniform(-1.0, 1.0), 2);
                let want = cpu_forward(&av, oa, &bv, ob, batch, m, k, n);
                let a = Tensor::from_vec(av, &[na * m * k], Device::Gpu);
                let b = Tensor::from_vec(bv, &[nb * k * n], Device::Gpu);
                for big in [false, true] {
                    for splits in [1, 2, 5] {
                        let p = Plan { big, splits };
                        let name =
                            format!("matmul {p:?} b{batch} {m}x{k}x{n} ({na},{ta}) ({nb},{tb})");
                        let go = || {
                            let c = gpu_forward_with(
                                p,
                                a.gpu_storage("t"),
                                oa,
                                b.gpu_storage("t"),
                                ob,
                                batch,
                                m,
                                k,
                                n,
                            );
                            Tensor::from_storage(&[batch * m * n], Storage::Gpu(c)).to_vec()
                        };
                        assert_close(&go(), &want, Tol::REDUCE, &name);
                        if splits == 2 {
                            let got = with_max_workgroups(3, go);
                            assert_close(
                                &got,
                                &want,
                                Tol::REDUCE,
                                &format!("{name} [forced fold]"),
                            );
                        }
                    }
                }
            }
        }
    }
    // The planner: big tiles for big products, split K for few tiles over a long K, nothing for the rest.
    assert_eq!(
        plan(1, 2048, 2048, 2048),
        Plan {
            big: true,
            splits: 1
        }
    );
    assert_eq!(
        plan(1, 10, 196_608, 32),
        Plan {
            big: false,
            splits: 256
        }
    );
    assert_eq!(
        plan(1, 40_960, 256, 64),
        Plan {
            big: false,
            splits: 1
        }
    );
    assert_eq!(
        plan(1, 64, 100, 64),
        Plan {
            big: false,
            splits: 1
        }
    );
}

#[test]
fn softmax_along_each_axis() {
    for axis in [0isize, 1, 2, -1] {
        check(
            &format!("softmax axis {axis}"),
            &[input(&[3, 11, 6], -5.0, 5.0)],
            Tol::REDUCE,
            |x| x[0].softmax(axis),
        );
    }
}

#[test]
fn movement_ops() {
    let s = [2, 3, 5, 7];
    check("permute", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].permute(&[2, 0, 3, 1])
    });
    check("transpose", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].transpose(1, -1)
    });
    check("narrow", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].narrow(2, 1, 3)
    });
    check(
        "expand",
        &[input(&[3, 1, 7], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].expand(&[2, 3, 5, 7]),
    );
    check("reshape", &[input(&s, -1.0, 1.0)], Tol::KERNEL, |x| {
        x[0].reshape(&[6, 35]).transpose(0, 1)
    });
    check(
        "cat",
        &[input(&[2, 3, 7], -1.0, 1.0), input(&[2, 4, 7], -1.0, 1.0)],
        Tol::KERNEL,
        |x| Tensor::cat(&[&x[0], &x[1]], 1),
    );
    check("chunk", &[input(&[4, 6], -1.0, 1.0)], Tol::KERNEL, |x| {
        let c = x[0].chunk(3, 1);
        &(&c[0] * &c[1]) + &c[2]
    });
    check(
        "index_select (repeats)",
        &[input(&s, -1.0, 1.0)],
        Tol::KERNEL,
        |x| x[0].index_select(2, &[4, 0, 4, 2, 2, 2]),
    );
}

#[test]
fn masked_fill_and_dropout() {
    check(
        "masked_fill broadcast mask",
        &[input(&[3, 5, 7], -1.0, 1.0), constant(&[5, 1], Gen::Int(2))],
        Tol::KERNEL,
        |x| x[0].masked_fill(&x[1], -1000.0),
    );
    check(
        "dropout p=0.3",
        &[input(&[3, 333], -1.0, 1.0)],
        Tol::KERNEL,
        |x| x[0].dropout(0.3, 1234, true),
    );
}

#[test]
fn cross_entropy_weights_and_ignore_index() {
    // Scores (N=2, C=5, H=3, W=7), targets in 0..6 where 5 is the ignore index; weights with a zero.
    let ins = [
        input(&[2, 5, 3, 7], -3.0, 3.0),
        constant(&[2, 3, 7], Gen::Int(6)),
        constant(&[5], Gen::Uniform(0.0, 2.0)),
    ];
    check("cross_entropy mean", &ins, Tol::REDUCE, |x| {
        x[0].cross_entropy(&x[1], Some(&x[2]), 5)
    });
    check("cross_entropy per position", &ins, Tol::REDUCE, |x| {
        x[0].cross_entropy_per_position(&x[1], Some(&x[2]), 5).0
    });
    let flat = [input(&[9, 4], -3.0, 3.0), constant(&[9], Gen::Int(4))];
    check("cross_entropy (N, C)", &flat, Tol::REDUCE, |x| {
        x[0].cross_entropy(&x[1], None, -100)
    });
}

#[test]
fn temporal_attention_and_aggregation() {
    use sitsgpu::engine::ops::attention::attention_weights::AttnDropout;
    // B = 2 samples, P = 6 pixels, T = 5 dates, H = 3 heads, d_k = 4, d_v = 2; padded dates in the mask.
    let (b, p, t, h, dk, dv) = (2, 6, 5, 3, 4, 2);
    let ins = [
        input(&[b * p, t, h * dk], -2.0, 2.0),
        input(&[h, dk], -1.0, 1.0),
        constant(&[b, t], Gen::Int(2)),
        input(&[b * p, t, h * dv], -1.0, 1.0),
    ];
    for drop in [AttnDropout::NONE, AttnDropout { p: 0.25, seed: 9 }] {
        check(
            &format!("attention weights + apply {drop:?}"),
            &ins,
            Tol::REDUCE,
            |x| {
                let a = x[0].temporal_attention_weights(&x[1], Some(&x[2]), p, drop);
                // Use the weights twice (output and returned masks), as U-TAE does.
                let o = a.temporal_attention_apply(&x[3]);
                &o.sum_all() + &(&a * &a).sum_all()
            },
        );
    }
    check(
        "attention weights without mask",
        &ins[..2],
        Tol::REDUCE,
        |x| x[0].temporal_attention_weights(&x[1], None, p, AttnDropout::NONE),
    );
    let agg = [
        input(&[2, 3, 4, 5, 3], -1.0, 1.0),
        input(&[2, 2, 3, 5, 3], 0.0, 1.0),
    ];
    check("temporal_aggregate", &agg, Tol::REDUCE, |x| {
        x[0].temporal_aggregate(&x[1])
    });
}

#[test]
fn masked_mean_std() {
    // N = 70 sets (not a multiple of 256 invocations at K = 3), S = 9 pixels; masks: full, a prefix, a single
    // real pixel (the d = 1 → 2 quirk), chosen per set.
    let (n, s, k) = (70, 9, 3);
    let mask: Vec<f32> = (0..n * s)
        .map(|i| {
            let (set, px) = (i / s, i % s);
            match set % 3 {
                0 => 1.0,
                1 => f32::from(u8::from(px < 1 + set % s)),
                _ => f32::from(u8::from(px == 0)),
            }
        })
        .collect();
    check(
        "masked_mean_std",
        &[input(&[n, s, k], -2.0, 2.0)],
        Tol::REDUCE,
        |x| {
            let m = Tensor::from_vec(mask.clone(), &[n, s], x[0].device());
            x[0].masked_mean_std(&m)
        },
    );
}

#[test]
fn group_instance_and_layer_norm() {
    // Rows of 2·5·7 = 70 values and of 2·17·19 = 646 values (longer than a workgroup: strided loops).
    let affine = |s: &[usize], c: usize| {
        [
            input(s, -2.0, 3.0),
            input(&[c], 0.5, 1.5),
            input(&[c], -0.5, 0.5),
        ]
    };
    check(
        "group_norm (3, 6, 5, 7) G=3 affine",
        &affine(&[3, 6, 5, 7], 6),
        Tol::REDUCE,
        |x| x[0].group_norm(3, Some(&x[1]), Some(&x[2]), 1e-5),
    );
    check(
        "group_norm (2, 4, 17, 19) G=2 affine",
        &affine(&[2, 4, 17, 19], 4),
        Tol::REDUCE,
        |x| x[0].group_norm(2, Some(&x[1]), Some(&x[2]), 1e-5),
    );
    check(
        "group_norm (5, 8) G=4 weight only",
        &[input(&[5, 8], -1.0, 1.0), input(&[8], 0.5, 1.5)],
        Tol::REDUCE,
        |x| x[0].group_norm(4, Some(&x[1]), None, 1e-5),
    );
    check(
        "group_norm (3, 4, 3, 5) no affine",
        &[input(&[3, 4, 3, 5], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].group_norm(2, None, None, 1e-5),
    );
    check(
        "instance_norm (2, 3, 5, 7)",
        &[input(&[2, 3, 5, 7], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].instance_norm(1e-5),
    );
    check(
        "layer_norm (3, 7, 9) over [9]",
        &[
            input(&[3, 7, 9], -1.0, 1.0),
            input(&[9], 0.5, 1.5),
            input(&[9], -0.5, 0.5),
        ],
        Tol::REDUCE,
        |x| x[0].layer_norm(&[9], Some(&x[1]), Some(&x[2]), 1e-5),
    );
    check(
        "layer_norm (3, 7, 9) over [7, 9] no affine",
        &[input(&[3, 7, 9], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].layer_norm(&[7, 9], None, None, 1e-5),
    );
}

#[test]
fn batch_norm_training_and_eval() {
    let ins = |s: &[usize], c: usize| {
        [
            input(s, -2.0, 3.0),
            input(&[c], 0.5, 1.5),
            input(&[c], -0.5, 0.5),
            constant(&[c], Gen::Uniform(-0.5, 0.5)),
            constant(&[c], Gen::Uniform(0.5, 2.0)),
        ]
    };
    for (s, training) in [
        (vec![3, 5, 4, 7], true),
        (vec![7, 5], true),
        (vec![2, 5, 11, 13], true),
        (vec![3, 5, 4, 7], false),
    ] {
        check(
            &format!("batch_norm {s:?} training={training}"),
            &ins(&s, 5),
            Tol::REDUCE,
            |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), &x[3], &x[4], training, 0.1, 1e-5),
        );
    }
    check(
        "batch_norm (6, 3, 5) no affine",
        &[
            input(&[6, 3, 5], -1.0, 1.0),
            constant(&[3], Gen::Uniform(-0.5, 0.5)),
            constant(&[3], Gen::Uniform(0.5, 2.0)),
        ],
        Tol::REDUCE,
        |x| x[0].batch_norm(None, None, &x[1], &x[2], true, 0.1, 1e-5),
    );
}

#[test]
fn batch_norm_running_statistics_match() {
    if gpu_or_skip("batch_norm running statistics").is_none() {
        return;
    }
    // Two training calls (the second sees the first's update), then the running stats on both devices.
    let run = |device: Device| {
        let rm = Tensor::from_vec(values(5, Gen::Uniform(-0.5, 0.5), 3), &[5], device);
        let rv = Tensor::from_vec(values(5, Gen::Uniform(0.5, 2.0), 4), &[5], device);
        for seed in [1, 2] {
            let x = Tensor::from_vec(
                values(3 * 5 * 7 * 9, Gen::Uniform(-2.0, 3.0), seed),
                &[3, 5, 7, 9],
                device,
            );
            x.batch_norm(None, None, &rm, &rv, true, 0.1, 1e-5);
        }
        (rm.to_vec(), rv.to_vec())
    };
    let (m_cpu, v_cpu) = run(Device::Cpu);
    for (mode, forced) in [("", None), (" [forced 2-D fold]", Some(3))] {
        let (m_gpu, v_gpu) = match forced {
            None => run(Device::Gpu),
            Some(m) => with_max_workgroups(m, || run(Device::Gpu)),
        };
        assert_close(&m_gpu, &m_cpu, Tol::REDUCE, &format!("running_mean{mode}"));
        assert_close(&v_gpu, &v_cpu, Tol::REDUCE, &format!("running_var{mode}"));
    }
}

/// `check` with the norm reductions' slices forced to `rows` values (so a tiny tensor spans 2–3 slices: pass 1
/// and the combine both run), once as `check` does (plain and 2-D fold at 3) and once with the fold at 2.
fn check_sliced(name: &str, rows: usize, inputs: &[In], f: impl Fn(&[Tensor]) -> Tensor) {
    with_slice_rows(rows, || {
        let name = format!("{name} [slices of {rows}]");
        check(&name, inputs, Tol::REDUCE, &f);
        with_max_workgroups(2, || {
            check(&format!("{name} [fold 2]"), inputs, Tol::REDUCE, &f)
        });
    });
}

#[test]
fn norm_reductions_in_several_slices() {
    let bn = |s: &[usize], c: usize| {
        [
            input(s, -2.0, 3.0),
            input(&[c], 0.5, 1.5),
            input(&[c], -0.5, 0.5),
            constant(&[c], Gen::Uniform(-0.5, 0.5)),
            constant(&[c], Gen::Uniform(0.5, 2.0)),
        ]
    };
    // (N, C) = channel-last BatchNorm1d: 8 channel lanes with 5 live (7 rows: slices of 3, 3, 1); 37 channels
    // in two blocks of 32 lanes, the second with 5 live (40 rows: slices of 16, 16, 8). (N, C, S) with S = 6:
    // 18 values per channel in slices of 7, 7, 4. Eval runs the sliced dγ, dβ only.
    for (s, c, rows) in [
        (vec![7, 5], 5, 3),
        (vec![40, 37], 37, 16),
        (vec![3, 5, 2, 3], 5, 7),
    ] {
        for training in [true, false] {
            check_sliced(
                &format!("batch_norm {s:?} training={training}"),
                rows,
                &bn(&s, c),
                |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), &x[3], &x[4], training, 0.1, 1e-5),
            );
        }
    }
    // Group norm's weight gradient: 3·35 = 105 values per channel in slices of 40; (N, C) rows of 5 in 2 + 2 + 1.
    check_sliced(
        "group_norm (3, 6, 5, 7) G=3 affine",
        40,
        &[
            input(&[3, 6, 5, 7], -2.0, 3.0),
            input(&[6], 0.5, 1.5),
            input(&[6], -0.5, 0.5),
        ],
        |x| x[0].group_norm(3, Some(&x[1]), Some(&x[2]), 1e-5),
    );
    check_sliced(
        "group_norm (5, 8) G=4 weight only",
        2,
        &[input(&[5, 8], -1.0, 1.0), input(&[8], 0.5, 1.5)],
        |x| x[0].group_norm(4, Some(&x[1]), None, 1e-5),
    );
}

#[test]
fn norm_reductions_are_bit_reproducible_and_match_at_pse_like_sizes() {
    if gpu_or_skip("norm reductions: reproducibility").is_none() {
        return;
    }
    // (6000, 32): 24 slices of 256 rows (two passes each way). Two GPU runs give the same bits; both match the
    // CPU (forward, dx, dγ, dβ, running statistics).
    let run = |device: Device| {
        let x = Tensor::from_vec(
            values(6000 * 32, Gen::Uniform(-2.0, 3.0), 1),
            &[6000, 32],
            device,
        )
        .requires_grad_();
        let w =
            Tensor::from_vec(values(32, Gen::Uniform(0.5, 1.5), 2), &[32], device).requires_grad_();
        let b = Tensor::from_vec(values(32, Gen::Uniform(-0.5, 0.5), 3), &[32], device)
            .requires_grad_();
        let rm = Tensor::from_vec(values(32, Gen::Uniform(-0.5, 0.5), 4), &[32], device);
        let rv = Tensor::from_vec(values(32, Gen::Uniform(0.5, 2.0), 5), &[32], device);
        let y = x.batch_norm(Some(&w), Some(&b), &rm, &rv, true, 0.1, 1e-5);
        y.backward_with(Tensor::from_vec(
            values(6000 * 32, Gen::Uniform(-1.0, 1.0), 6),
            &[6000, 32],
            device,
        ));
        [
            y.to_vec(),
            x.grad().unwrap().to_vec(),
            w.grad().unwrap().to_vec(),
            b.grad().unwrap().to_vec(),
            rm.to_vec(),
            rv.to_vec(),
        ]
    };
    let names = ["y", "dx", "dweight", "dbias", "running_mean", "running_var"];
    let cpu = run(Device::Cpu);
    let (a, b) = (run(Device::Gpu), run(Device::Gpu));
    for k in 0..names.len() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&a[k]),
            bits(&b[k]),
            "batch_norm (6000, 32): {} differs between two GPU runs",
            names[k]
        );
        assert_close(
            &a[k],
            &cpu[k],
            Tol::REDUCE,
            &format!("batch_norm (6000, 32): {}", names[k]),
        );
    }
}

#[test]
fn upsample_bilinear_and_avg_pool() {
    for (oh, ow) in [(10, 14), (8, 11), (3, 4), (5, 7)] {
        check(
            &format!("upsample_bilinear (2, 3, 5, 7) -> ({oh}, {ow})"),
            &[input(&[2, 3, 5, 7], -1.0, 1.0)],
            Tol::REDUCE,
            |x| x[0].upsample_bilinear(oh, ow),
        );
    }
    // U-TAE's largest factor: 16 → 128 is ×8; here 4 → 32.
    check(
        "upsample_bilinear x8 (1, 2, 4, 3) -> (32, 24)",
        &[input(&[1, 2, 4, 3], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].upsample_bilinear(32, 24),
    );
    for (k, s) in [(2, 2), (3, 2), (2, 3), (3, 1)] {
        check(
            &format!("avg_pool2d (2, 3, 9, 11) k={k} s={s}"),
            &[input(&[2, 3, 9, 11], -1.0, 1.0)],
            Tol::REDUCE,
            |x| x[0].avg_pool2d(k, s),
        );
    }
}
