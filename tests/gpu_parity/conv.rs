//! GPU parity of the 2-D convolutions (forward, both tiles, every input-gradient path, the weight gradient)
//! and the transposed convolution.

use super::*;

#[test]
fn conv2d_padding_modes_strides_and_bias() {
    use sitsgpu::engine::ops::conv::conv2d::PaddingMode::{Reflect, Zeros};
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
        ([2, 37, 11, 6], [40, 37, 5, 5], 1, 2, Reflect, true), // wide tiles both ways, two mirrors per side
        ([1, 4, 6, 7], [5, 4, 3, 3], 1, 0, Zeros, true), // stride 1, no padding: nothing to fold
        ([1, 3, 12, 10], [2, 3, 2, 2], 1, 1, Zeros, false), // even kernel, padding folded by a crop
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

/// Both tiles on the same convolutions (the planner picks one by C_out), forward and weight gradient, against
/// the CPU reference.
#[test]
fn conv2d_both_tiles() {
    use sitsgpu::engine::ops::conv::conv2d::{
        cpu_forward, gpu_forward_with, ForwardKernel, Geom, PaddingMode,
    };
    use sitsgpu::engine::storage::Storage;
    if gpu_or_skip("conv2d tiles").is_none() {
        return;
    }
    for (xs, ws, st, pad, mode) in [
        (
            [2usize, 5, 9, 11],
            [7usize, 5, 3, 3],
            1,
            1,
            PaddingMode::Reflect,
        ),
        ([1, 19, 8, 6], [66, 19, 4, 4], 2, 1, PaddingMode::Zeros),
        ([3, 2, 40, 41], [5, 2, 3, 3], 1, 1, PaddingMode::Reflect), // many pixel slices
    ] {
        let g = Geom::new(&xs, &ws, st, pad, mode);
        let xv = values(xs.iter().product(), Gen::Uniform(-1.0, 1.0), 3);
        let wv = values(ws.iter().product(), Gen::Uniform(-1.0, 1.0), 4);
        let bv = values(ws[0], Gen::Uniform(-1.0, 1.0), 5);
        let want = cpu_forward(&xv, &wv, Some(&bv), &g);
        let (x, w, b) = (
            Tensor::from_vec(xv, &xs, Device::Gpu),
            Tensor::from_vec(wv, &ws, Device::Gpu),
            Tensor::from_vec(bv, &[ws[0]], Device::Gpu),
        );
        for k in [
            ForwardKernel::Wide,
            ForwardKernel::Narrow,
            ForwardKernel::Direct,
        ] {
            let go = || {
                let p = g.kernel_params(true);
                let y = gpu_forward_with(
                    k,
                    x.gpu_storage("t"),
                    w.gpu_storage("t"),
                    Some(b.gpu_storage("t")),
                    &g,
                    p,
                );
                Tensor::from_storage(&[want.len()], Storage::Gpu(y)).to_vec()
            };
            let name = format!("conv2d {k:?} x {xs:?} w {ws:?}");
            assert_close(&go(), &want, Tol::REDUCE, &name);
            assert_close(
                &with_max_workgroups(3, go),
                &want,
                Tol::REDUCE,
                &format!("{name} [fold]"),
            );
        }
    }
}

/// The input gradient through each forward tile (one stride phase at a time, flip = 1) and through the gather,
/// against the CPU reference: strides 1..3, kernels smaller than the stride (phases with no tap), rectangular
/// kernels, reflect mirrors, with the forced dispatch fold.
#[test]
fn conv2d_input_gradient_every_path() {
    use sitsgpu::engine::ops::conv::conv2d::{
        cpu_backward, gpu_backward_input_gather, gpu_backward_input_with, ForwardKernel, Geom,
        PaddingMode::{Reflect, Zeros},
    };
    use sitsgpu::engine::storage::Storage;
    if gpu_or_skip("conv2d input gradient").is_none() {
        return;
    }
    for (xs, ws, st, pad, mode) in [
        ([2usize, 3, 9, 8], [5usize, 3, 4, 4], 2, 1, Reflect),
        ([1, 4, 10, 7], [3, 4, 3, 2], 3, 1, Zeros),
        ([2, 2, 7, 9], [3, 2, 1, 1], 2, 0, Zeros), // 1 × 1 kernel, stride 2: three phases without a tap
        ([1, 33, 6, 5], [40, 33, 3, 3], 1, 1, Reflect),
        ([1, 5, 8, 8], [70, 5, 5, 5], 2, 2, Reflect),
    ] {
        let g = Geom::new(&xs, &ws, st, pad, mode);
        let xv = values(xs.iter().product(), Gen::Uniform(-1.0, 1.0), 11);
        let wv = values(ws.iter().product(), Gen::Uniform(-1.0, 1.0), 12);
        let dyv = values(xs[0] * ws[0] * g.ho * g.wo, Gen::Uniform(-1.0, 1.0), 13);
        let want = cpu_backward(&xv, &wv, &dyv, &g).0;
        let w = Tensor::from_vec(wv, &ws, Device::Gpu);
        let dy = Tensor::from_vec(dyv, &[xs[0], ws[0], g.ho, g.wo], Device::Gpu);
        let read = |d| Tensor::from_storage(&[want.len()], Storage::Gpu(d)).to_vec();
        let (gdy, gw) = (dy.gpu_storage("t"), w.gpu_storage("t"));
        for k in [
            ForwardKernel::Wide,
            ForwardKernel::Narrow,
            ForwardKernel::Direct,
        ] {
            let name = format!("conv2d dx {k:?} x {xs:?} w {ws:?} s{st} p{pad} {mode:?}");
            assert_close(
                &read(gpu_backward_input_with(k, gdy, gw, &g)),
                &want,
                Tol::REDUCE,
                &name,
            );
            let folded = with_max_workgroups(3, || read(gpu_backward_input_with(k, gdy, gw, &g)));
            assert_close(&folded, &want, Tol::REDUCE, &format!("{name} [fold]"));
        }
        let name = format!("conv2d dx gather x {xs:?} w {ws:?} s{st} p{pad} {mode:?}");
        assert_close(
            &read(gpu_backward_input_gather(gdy, gw, &g)),
            &want,
            Tol::REDUCE,
            &name,
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
                sitsgpu::engine::ops::conv::conv2d::PaddingMode::Reflect,
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

#[test]
fn conv_transpose2d_output_padding() {
    // U-Net 3D's frames: k3 s2 p1 with output_padding 1 doubles H and W; and an odd case.
    for (xs, ws, s, p, a) in [
        ([2, 3, 4, 5], [3, 2, 3, 3], 2, 1, 1),
        ([1, 2, 3, 3], [2, 3, 3, 2], 3, 1, 2),
    ] {
        check(
            &format!("conv_transpose2d x {xs:?} w {ws:?} s{s} p{p} output_padding {a}"),
            &[
                input(&xs, -1.0, 1.0),
                input(&ws, -1.0, 1.0),
                input(&[ws[1]], -1.0, 1.0),
            ],
            Tol::REDUCE,
            |x| x[0].conv_transpose2d_padded(&x[1], Some(&x[2]), s, p, a),
        );
    }
}
