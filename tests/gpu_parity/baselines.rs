//! GPU parity of the baselines' ops: the ConvLSTM and ConvGRU sequences (the fused cells and
//! backpropagation through time), the GRU cell of PSE + GRU, the time unfold / fold behind the 3-D convolutions, conv3d and
//! conv_transpose3d, max_pool3d and the masked temporal mean — forward and every gradient, on odd sizes, and
//! (by `check`) again with the workgroup limit forced to 3.

use super::*;

#[test]
fn conv_lstm_sequences() {
    // (x (B, T, C_x, H, W), Hd): odd pixel counts, one step, and more threads than a workgroup.
    for (xs, hd) in [
        ([2, 3, 3, 5, 7], 3),
        ([1, 1, 2, 3, 3], 2),
        ([2, 4, 5, 4, 5], 6),
    ] {
        let cw = xs[2] + hd;
        check(
            &format!("conv_lstm x {xs:?} Hd {hd}"),
            &[
                input(&xs, -1.0, 1.0),
                input(&[4 * hd, cw, 3, 3], -0.4, 0.4),
                input(&[4 * hd], -0.5, 0.5),
            ],
            Tol::REDUCE,
            |x| x[0].conv_lstm(&x[1], &x[2]),
        );
    }
}

#[test]
fn conv_gru_sequences() {
    for (xs, hd) in [
        ([2, 3, 3, 5, 7], 3),
        ([1, 1, 2, 3, 3], 2),
        ([2, 4, 5, 4, 5], 6),
    ] {
        let cw = xs[2] + hd;
        check(
            &format!("conv_gru x {xs:?} Hd {hd}"),
            &[
                input(&xs, -1.0, 1.0),
                input(&[2 * hd, cw, 3, 3], -0.4, 0.4),
                input(&[2 * hd], -0.5, 0.5),
                input(&[hd, cw, 3, 3], -0.4, 0.4),
                input(&[hd], -0.5, 0.5),
            ],
            Tol::REDUCE,
            |x| x[0].conv_gru(&x[1], &x[2], &x[3], &x[4]),
        );
    }
}

#[test]
fn gru_cells() {
    // (B, Hd): odd sizes and more threads than a workgroup.
    for (b, hd) in [(2, 3), (1, 1), (5, 67)] {
        check(
            &format!("gru_cell B {b} Hd {hd}"),
            &[
                input(&[b, 3 * hd], -2.0, 2.0),
                input(&[b, 3 * hd], -2.0, 2.0),
                input(&[b, hd], -1.0, 1.0),
            ],
            Tol::KERNEL,
            |x| x[0].gru_cell(&x[1], &x[2]),
        );
    }
}

#[test]
fn time_unfold_and_fold() {
    for (xs, k, s, p) in [
        ([2, 3, 5, 3, 7], 3, 1, 1),
        ([1, 2, 6, 5, 3], 3, 2, 1),
        ([2, 3, 4, 2, 3], 2, 2, 0),
    ] {
        check(
            &format!("time_unfold x {xs:?} k{k} s{s} p{p}"),
            &[input(&xs, -1.0, 1.0)],
            Tol::KERNEL,
            |x| x[0].unfold_time(k, s, p),
        );
        let d_out = (xs[2] + 2 * p - k) / s + 1;
        check(
            &format!("time_fold into {xs:?} k{k} s{s} p{p}"),
            &[input(&[xs[0] * d_out, k * xs[1], xs[3], xs[4]], -1.0, 1.0)],
            Tol::KERNEL,
            |x| x[0].fold_time(k, s, p, xs[2]),
        );
    }
}

#[test]
fn conv3d_and_conv_transpose3d() {
    for (xs, co) in [([2, 3, 5, 7, 6], 4), ([1, 10, 4, 8, 8], 12)] {
        check(
            &format!("conv3d x {xs:?} -> {co} k3 p1"),
            &[
                input(&xs, -1.0, 1.0),
                input(&[co, xs[1], 3, 3, 3], -0.5, 0.5),
                input(&[co], -1.0, 1.0),
            ],
            Tol::REDUCE,
            |x| x[0].conv3d(&x[1], Some(&x[2]), 1),
        );
    }
    // U-Net 3D's up-sampling: k3 s2 p1 output_padding 1 doubles D, H, W.
    for (xs, co) in [([2, 3, 2, 3, 5], 4), ([1, 6, 3, 4, 4], 5)] {
        check(
            &format!("conv_transpose3d x {xs:?} -> {co} k3 s2 p1 op1"),
            &[
                input(&xs, -1.0, 1.0),
                input(&[xs[1], co, 3, 3, 3], -0.5, 0.5),
                input(&[co], -1.0, 1.0),
            ],
            Tol::REDUCE,
            |x| x[0].conv_transpose3d(&x[1], Some(&x[2]), 2, 1, 1),
        );
    }
}

#[test]
fn max_pool3d_and_masked_mean() {
    // Odd sizes: trailing planes no window covers. Random values: ties have probability 0.
    for xs in [[2, 3, 5, 7, 6], [1, 4, 4, 9, 9]] {
        check(
            &format!("max_pool3d(2) x {xs:?}"),
            &[input(&xs, -1.0, 1.0)],
            Tol::KERNEL,
            |x| x[0].max_pool3d(2),
        );
    }
    // keep (B, T): sample 1 has two padded dates.
    check(
        "masked_mean over axis 2 of (2, 3, 4, 5, 7)",
        &[input(&[2, 3, 4, 5, 7], -1.0, 1.0)],
        Tol::REDUCE,
        |x| {
            let keep = Tensor::from_vec(
                vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
                &[2, 4],
                x[0].device(),
            );
            x[0].masked_mean(2, &keep)
        },
    );
}
