//! 3-D convolution (`nn.Conv3d`, stride 1, zero padding) and 3-D transposed convolution
//! (`nn.ConvTranspose3d`, zero padding, output_padding) — U-Net 3D's layers — as compositions on conv2d's
//! kernels. **No kernels of their own**: the depth (time) axis is unfolded into channels
//! (`engine::ops::movement::time_unfold`), and the k × k part is conv2d's implicit GEMM (`conv2d.wgsl`, or the direct
//! kernel on software adapters), so a 3-D convolution costs what a 2-D one with K·C input channels does.
//!
//! conv3d: x (N, C, D, H, W), weight (C_out, C, K, k, k), bias (C_out), padding p on every axis →
//! y (N, C_out, D', H', W') with `D' = D + 2p − K + 1`:
//! 1. `cols = unfold_time(x, K, 1, p)` (N·D', K·C, H, W): output frame o's K input frames side by side;
//! 2. `w2 = weight.permute(0, 2, 1, 3, 4).reshape(C_out, K·C, k, k)`, so `w2[o, k·C + c] = weight[o, c, k]`;
//! 3. `y2 = conv2d(cols, w2, bias, stride 1, padding p, zeros)` (N·D', C_out, H', W');
//! 4. `y = y2.reshape(N, D', C_out, H', W').permute(0, 2, 1, 3, 4)`.
//!
//! Indeed `y[n, o, t] = b[o] + Σ_{c, k, ky, kx} w[o, c, k, ky, kx] · xpad[n, c, t − p + k, ..]`.
//!
//! conv_transpose3d: x (N, C_in, D, H, W), weight (C_in, C_out, K, k, k), stride s, padding p,
//! output_padding a on every axis → (N, C_out, (D − 1)s − 2p + K + a, likewise H, W):
//! 1. frames `x.permute(0, 2, 1, 3, 4).reshape(N·D, C_in, H, W)`;
//! 2. `w2 = weight.permute(0, 2, 1, 3, 4).reshape(C_in, K·C_out, k, k)`;
//! 3. `y2 = conv_transpose2d(frames, w2, s, p, a)` (N·D, K·C_out, H', W'): every input frame's contribution
//!    to each of its K output frames;
//! 4. `y = fold_time(y2, K, s, p, D')` (N, C_out, D', H', W'): output frame t sums the (input frame i, tap k)
//!    with `i·s − p + k = t` — the transposed convolution's scatter along D — then + bias.
//!
//! Derivatives come from the compositions' backwards (conv2d's, conv_transpose2d's and time_unfold's
//! kernels; movement's copies). The CPU references below are written directly from the definitions, and the
//! tests check the compositions against them (and the references by gradcheck).

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::real::Real;
use crate::engine::tensor::Tensor;

/// The sizes of a 3-D (transposed) convolution with a cubic kernel: x (n, ci, d, h, w), weight
/// (co, ci, k, k, k) for conv3d, (ci, co, k, k, k) for the transposed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// N.
    pub n: usize,
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Input (D, H, W).
    pub dhw: [usize; 3],
    /// Kernel size k (every axis).
    pub k: usize,
    /// Stride s (every axis; 1 for conv3d).
    pub s: usize,
    /// Zero padding p (every axis).
    pub p: usize,
    /// output_padding (transposed only).
    pub a: usize,
}

impl Dims {
    /// Output (D', H', W') of conv3d (stride 1).
    pub fn conv_out(&self) -> [usize; 3] {
        self.dhw.map(|v| v + 2 * self.p + 1 - self.k)
    }

    /// Output (D', H', W') of the transposed convolution.
    pub fn transposed_out(&self) -> [usize; 3] {
        self.dhw
            .map(|v| (v - 1) * self.s + self.k + self.a - 2 * self.p)
    }
}

// ---- CPU reference ----

/// conv3d, stride 1: x (N, C_in, D, H, W), weight (C_out, C_in, k, k, k), bias (C_out) → (N, C_out, D', H', W').
pub fn cpu_conv3d<T: Real>(x: &[T], w: &[T], b: &[T], d: &Dims) -> Vec<T> {
    let ([dd, hh, ww], [od, oh, ow], k, p) = (d.dhw, d.conv_out(), d.k, d.p as isize);
    let mut y = vec![T::zero(); d.n * d.co * od * oh * ow];
    for (i, v) in y.iter_mut().enumerate() {
        let (q, r, t) = (i % ow, (i / ow) % oh, (i / (ow * oh)) % od);
        let (o, n) = ((i / (ow * oh * od)) % d.co, i / (ow * oh * od * d.co));
        let mut acc = b[o];
        for c in 0..d.ci {
            for (kt, ky, kx) in (0..k * k * k).map(|j| (j / (k * k), (j / k) % k, j % k)) {
                let (st, sy, sx) = (
                    t as isize + kt as isize - p,
                    r as isize + ky as isize - p,
                    q as isize + kx as isize - p,
                );
                if st < 0
                    || sy < 0
                    || sx < 0
                    || st >= dd as isize
                    || sy >= hh as isize
                    || sx >= ww as isize
                {
                    continue;
                }
                let xi =
                    (((n * d.ci + c) * dd + st as usize) * hh + sy as usize) * ww + sx as usize;
                acc += w[(((o * d.ci + c) * k + kt) * k + ky) * k + kx] * x[xi];
            }
        }
        *v = acc;
    }
    y
}

/// The transposed convolution as a scatter: x (N, C_in, D, H, W), weight (C_in, C_out, k, k, k), bias (C_out)
/// → (N, C_out, D', H', W'), `y[s·i − p + k] += x[i]·w[k]` on every axis.
pub fn cpu_conv_transpose3d<T: Real>(x: &[T], w: &[T], b: &[T], d: &Dims) -> Vec<T> {
    let ([dd, hh, ww], [od, oh, ow], k) = (d.dhw, d.transposed_out(), d.k);
    let mut y: Vec<T> = (0..d.n * d.co * od * oh * ow)
        .map(|i| b[(i / (od * oh * ow)) % d.co])
        .collect();
    let pos = |i: usize, kk: usize, len: usize| {
        let v = (i * d.s + kk) as isize - d.p as isize;
        (0..len as isize).contains(&v).then_some(v as usize)
    };
    for (xi, &xv) in x.iter().enumerate() {
        let (q, r, t) = (xi % ww, (xi / ww) % hh, (xi / (ww * hh)) % dd);
        let (c, n) = ((xi / (ww * hh * dd)) % d.ci, xi / (ww * hh * dd * d.ci));
        for o in 0..d.co {
            for (kt, ky, kx) in (0..k * k * k).map(|j| (j / (k * k), (j / k) % k, j % k)) {
                let (Some(yt), Some(yr), Some(yq)) =
                    (pos(t, kt, od), pos(r, ky, oh), pos(q, kx, ow))
                else {
                    continue;
                };
                let yi = (((n * d.co + o) * od + yt) * oh + yr) * ow + yq;
                y[yi] += xv * w[(((c * d.co + o) * k + kt) * k + ky) * k + kx];
            }
        }
    }
    y
}

// ---- Autograd (compositions) ----

impl Tensor {
    /// `nn.Conv3d(C_in, C_out, k, stride=1, padding=p)`: x (N, C_in, D, H, W), weight (C_out, C_in, k, k, k),
    /// bias (C_out) → (N, C_out, D + 2p − k + 1, ...), zero padding. See the module doc.
    pub fn conv3d(&self, weight: &Tensor, bias: Option<&Tensor>, padding: usize) -> Tensor {
        let (xs, ws) = (self.shape(), weight.shape());
        assert!(
            xs.len() == 5 && ws.len() == 5 && ws[1] == xs[1] && ws[2] == ws[3] && ws[3] == ws[4],
            "conv3d: expected x (N, C_in, D, H, W) and a cubic weight (C_out, C_in, k, k, k), got {xs:?} and {ws:?}"
        );
        let (n, co, k) = (xs[0], ws[0], ws[2]);
        let cols = self.unfold_time(k, 1, padding);
        let dout = cols.shape()[0] / n;
        let w2 = weight
            .permute(&[0, 2, 1, 3, 4])
            .reshape(&[co, k * xs[1], k, k]);
        let y = cols.conv2d(&w2, bias, 1, padding, PaddingMode::Zeros);
        let (h, w) = (y.shape()[2], y.shape()[3]);
        y.reshape(&[n, dout, co, h, w]).permute(&[0, 2, 1, 3, 4])
    }

    /// `nn.ConvTranspose3d(C_in, C_out, k, stride, padding, output_padding)`: x (N, C_in, D, H, W), weight
    /// (C_in, C_out, k, k, k), bias (C_out) → (N, C_out, (D − 1)·stride − 2·padding + k + output_padding, ...).
    pub fn conv_transpose3d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> Tensor {
        let (xs, ws) = (self.shape(), weight.shape());
        assert!(
            xs.len() == 5 && ws.len() == 5 && ws[0] == xs[1] && ws[2] == ws[3] && ws[3] == ws[4],
            "conv_transpose3d: expected x (N, C_in, D, H, W) and a cubic weight (C_in, C_out, k, k, k), got {xs:?} and {ws:?}"
        );
        let (n, ci, d, co, k) = (xs[0], xs[1], xs[2], ws[1], ws[2]);
        let frames = self
            .permute(&[0, 2, 1, 3, 4])
            .reshape(&[n * d, ci, xs[3], xs[4]]);
        let w2 = weight
            .permute(&[0, 2, 1, 3, 4])
            .reshape(&[ci, k * co, k, k]);
        let y2 = frames.conv_transpose2d_padded(&w2, None, stride, padding, output_padding);
        let d_out = (d - 1) * stride + k + output_padding - 2 * padding;
        let y = y2.fold_time(k, stride, padding, d_out);
        match bias {
            None => y,
            Some(b) => &y + &b.reshape(&[1, co, 1, 1, 1]),
        }
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::Device;
    use crate::engine::testing::{assert_close, random_vec, Tol};

    fn dims(n: usize, ci: usize, co: usize, dhw: [usize; 3], s: usize, a: usize) -> Dims {
        Dims {
            n,
            ci,
            co,
            dhw,
            k: 3,
            s,
            p: 1,
            a,
        }
    }

    #[test]
    fn exact_values() {
        // conv3d of a single 1 at the centre of a 3×3×3 volume with weight w (= 0..26), padding 1: output
        // voxel (t, r, q) reads x at (t + kt - 1, ..), i.e. the 1 through tap (2 - t, 2 - r, 2 - q):
        // y[t, r, q] = w[26 - (9t + 3r + q)] + bias 0.5.
        let d = dims(1, 1, 1, [3, 3, 3], 1, 0);
        let mut x = vec![0.0f64; 27];
        x[13] = 1.0;
        let w: Vec<f64> = (0..27).map(|v| v as f64).collect();
        let y = cpu_conv3d(&x, &w, &[0.5], &d);
        assert!(y
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (26 - i) as f64 + 0.5));
        // The transposed k3 s2 p1 op1 of a single voxel (1×1×1 → 2×2×2): y[s·0 - 1 + k] = w[k] for k = 1, 2.
        let dt = dims(1, 1, 1, [1, 1, 1], 2, 1);
        let y = cpu_conv_transpose3d(&[1.0f64], &w, &[0.0], &dt);
        let want: Vec<f64> = (0..8)
            .map(|i| w[((1 + i / 4) * 3 + 1 + (i / 2) % 2) * 3 + 1 + i % 2])
            .collect();
        assert_eq!(y, want);
    }

    /// The composition's autograd gradients (CPU, f32) against central differences of the f64 reference.
    fn check_gradients(
        name: &str,
        shapes: &[Vec<usize>],
        f: impl Fn(&[Tensor]) -> Tensor,
        r: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    ) {
        let ins: Vec<Vec<f64>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| random_vec(s.iter().product(), -1.0, 1.0, 30 + i as u64))
            .collect();
        let ts: Vec<Tensor> = ins
            .iter()
            .zip(shapes)
            .map(|(v, s)| {
                Tensor::from_vec(v.iter().map(|&a| a as f32).collect(), s, Device::Cpu)
                    .requires_grad_()
            })
            .collect();
        let y = f(&ts);
        let g = random_vec(y.numel(), -1.0, 1.0, 40);
        y.backward_with(Tensor::from_vec(
            g.iter().map(|&a| a as f32).collect(),
            y.shape(),
            Device::Cpu,
        ));
        let loss = |v: &[Vec<f64>]| r(v).iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
        for (k, t) in ts.iter().enumerate() {
            let mut v = ins.clone();
            let numeric: Vec<f32> = (0..ins[k].len())
                .map(|i| {
                    v[k][i] = ins[k][i] + 1e-6;
                    let lp = loss(&v);
                    v[k][i] = ins[k][i] - 1e-6;
                    let lm = loss(&v);
                    v[k][i] = ins[k][i];
                    ((lp - lm) / 2e-6) as f32
                })
                .collect();
            assert_close(
                &t.grad().unwrap().to_vec(),
                &numeric,
                Tol {
                    abs: 1e-4,
                    rel: 1e-4,
                },
                &format!("{name}: d/d input {k}"),
            );
        }
    }

    #[test]
    fn gradients_of_the_compositions_against_the_references() {
        let d = dims(2, 2, 3, [3, 4, 2], 1, 0);
        check_gradients(
            "conv3d",
            &[vec![2, 2, 3, 4, 2], vec![3, 2, 3, 3, 3], vec![3]],
            |t| t[0].conv3d(&t[1], Some(&t[2]), 1),
            |v| cpu_conv3d(&v[0], &v[1], &v[2], &d),
        );
        let d = dims(1, 2, 2, [2, 3, 2], 2, 1);
        check_gradients(
            "conv_transpose3d",
            &[vec![1, 2, 2, 3, 2], vec![2, 2, 3, 3, 3], vec![2]],
            |t| t[0].conv_transpose3d(&t[1], Some(&t[2]), 2, 1, 1),
            |v| cpu_conv_transpose3d(&v[0], &v[1], &v[2], &d),
        );
    }

    #[test]
    fn the_compositions_match_the_references() {
        for (d, transposed) in [
            (dims(2, 3, 4, [4, 3, 5], 1, 0), false),
            (dims(2, 3, 2, [3, 2, 3], 2, 1), true),
        ] {
            let xs = [d.n, d.ci, d.dhw[0], d.dhw[1], d.dhw[2]];
            let ws = if transposed {
                [d.ci, d.co, 3, 3, 3]
            } else {
                [d.co, d.ci, 3, 3, 3]
            };
            let x = random_vec(xs.iter().product(), -1.0, 1.0, 7);
            let w = random_vec(ws.iter().product(), -1.0, 1.0, 8);
            let b = random_vec(d.co, -1.0, 1.0, 9);
            let t = |v: &[f64], s: &[usize]| {
                Tensor::from_vec(v.iter().map(|&a| a as f32).collect(), s, Device::Cpu)
            };
            let (xt, wt, bt) = (t(&x, &xs), t(&w, &ws), t(&b, &[d.co]));
            let (got, want) = if transposed {
                (
                    xt.conv_transpose3d(&wt, Some(&bt), 2, 1, 1),
                    cpu_conv_transpose3d(&x, &w, &b, &d),
                )
            } else {
                (xt.conv3d(&wt, Some(&bt), 1), cpu_conv3d(&x, &w, &b, &d))
            };
            let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            assert_close(
                &got.to_vec(),
                &want,
                Tol::KERNEL,
                if transposed {
                    "conv_transpose3d"
                } else {
                    "conv3d"
                },
            );
        }
    }
}
