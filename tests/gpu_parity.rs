//! GPU vs CPU parity of every op: forward and every backward output, on odd sizes (not multiples of the
//! workgroup size or the matmul tile) and again with the per-dimension workgroup limit forced to 3, so the
//! folded dispatch path runs at small sizes. Tolerances: `Tol::KERNEL` for elementwise ops, `Tol::REDUCE`
//! for reductions. Without a GPU adapter every test prints a loud skip line (fails with
//! `SITSGPU_REQUIRE_GPU=1`).

use sitsgpu::engine::kernel::with_max_workgroups;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::testing::{assert_close, gpu_or_skip, Tol};
use sitsgpu::{Device, Tensor};

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
fn relu_and_unary_family() {
    let s = [3, 7, 37]; // 777 elements: not a multiple of 256
    check("relu", &[input(&s, -2.0, 2.0)], Tol::KERNEL, |x| {
        x[0].relu()
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
fn conv2d_padding_modes_strides_and_bias() {
    use sitsgpu::engine::ops::conv2d::PaddingMode::{Reflect, Zeros};
    // (x, weight, stride, padding, mode, bias)
    let cases = [
        ([2, 3, 9, 7], [4, 3, 3, 3], 1, 1, Reflect, true), // ConvBlock, odd sizes
        ([2, 3, 8, 6], [3, 3, 4, 4], 2, 1, Reflect, true), // DownConvBlock's `down` on even sizes
        ([1, 5, 7, 9], [6, 5, 3, 3], 2, 2, Reflect, false), // stride 2, padding 2, no bias
        ([2, 3, 9, 7], [4, 3, 3, 3], 1, 1, Zeros, false),
        ([1, 2, 6, 5], [3, 2, 3, 2], 2, 0, Zeros, true), // rectangular kernel, no padding
        ([2, 6, 5, 3], [7, 6, 1, 1], 1, 0, Zeros, true), // 1×1 (UpConvBlock's skip_conv)
        ([1, 2, 2, 3], [2, 2, 3, 3], 1, 1, Reflect, false), // H = 2: both mirrors hit one row
        ([1, 20, 9, 9], [70, 20, 3, 3], 1, 1, Reflect, true), // K = 180 > several slabs, C_out > 64
    ];
    for (xs, ws, s, p, mode, bias) in cases {
        let mut ins = vec![input(&xs, -1.0, 1.0), input(&ws, -1.0, 1.0)];
        if bias {
            ins.push(input(&[ws[0]], -1.0, 1.0));
        }
        check(
            &format!("conv2d x {xs:?} w {ws:?} s{s} p{p} {mode:?} bias {bias}"),
            &ins,
            Tol::REDUCE,
            |x| x[0].conv2d(&x[1], x.get(2), s, p, mode),
        );
    }
}

#[test]
fn conv2d_weight_gradient_two_pass() {
    // N·H_out·W_out = 3·40·40 = 4800 products per weight gradient: chunks of 25 rows, then reduce_sum.
    check(
        "conv2d two-pass weight gradient",
        &[
            input(&[3, 2, 40, 40], -1.0, 1.0),
            input(&[2, 2, 3, 3], -1.0, 1.0),
        ],
        Tol::REDUCE,
        |x| {
            x[0].conv2d(
                &x[1],
                None,
                1,
                1,
                sitsgpu::engine::ops::conv2d::PaddingMode::Reflect,
            )
        },
    );
}

#[test]
fn conv_transpose2d_strides_and_bias() {
    // (x, weight (C_in, C_out, kH, kW), stride, padding, bias)
    let cases = [
        ([2, 5, 4, 3], [5, 3, 4, 4], 2, 1, true), // U-TAE's up-sampling: doubles H and W
        ([1, 3, 3, 5], [3, 4, 3, 2], 2, 0, false),
        ([2, 2, 5, 4], [2, 3, 3, 3], 1, 1, true),
        ([1, 2, 3, 3], [2, 2, 5, 3], 3, 2, false),
    ];
    for (xs, ws, s, p, bias) in cases {
        let mut ins = vec![input(&xs, -1.0, 1.0), input(&ws, -1.0, 1.0)];
        if bias {
            ins.push(input(&[ws[1]], -1.0, 1.0));
        }
        check(
            &format!("conv_transpose2d x {xs:?} w {ws:?} s{s} p{p} bias {bias}"),
            &ins,
            Tol::REDUCE,
            |x| x[0].conv_transpose2d(&x[1], x.get(2), s, p),
        );
    }
}
