//! 2-D transposed convolution (PyTorch `nn.ConvTranspose2d`, groups = 1, dilation = 1), zero padding,
//! optional `output_padding`; U-TAE's up-sampling (kernel 4, stride 2, padding 1 doubles H and W), and the
//! frames of U-Net 3D's transposed 3-D convolutions (kernel 3, stride 2, padding 1, output_padding 1).
//!
//! Math: every input element scatters into the output: `y[n, o, s·iy - p + ky, s·ix - p + kx] +=
//! x[n, c, iy, ix] · w[c, o, ky, kx]` (positions outside the output dropped), plus `b[o]`.
//! Shapes: x (N, C_in, H, W), weight **(C_in, C_out, kH, kW)**, bias (C_out) → y (N, C_out, H_out, W_out),
//! `H_out = (H - 1)·s - 2p + kH + output_padding` (the extra rows and columns at the end are real outputs:
//! they receive the taps that land there).
//!
//! Derivatives: `dx[n, c, iy, ix] = Σ_{o, ky, kx} dy[n, o, s·iy - p + ky, s·ix - p + kx] · w[c, o, ky, kx]`
//! (zero outside dy) and `dw[c, o, ky, kx] = Σ_{n, iy, ix} x[n, c, iy, ix] · dy[n, o, s·iy - p + ky, ..]`.
//! Saved for backward: x (only its recipe when it is recomputable, `engine::recompute`) and the weight.
//!
//! **No kernels of its own: the three conv2d kernels are this op, index for index.** Take the conv2d with
//! `C_out' = C_in`, `C_in' = C_out`, input size H_out and output size H (`(H_out + 2p - kH)/s + 1 = H`
//! exactly), zero padding, and the same weight tensor (its (C_in, C_out, kH, kW) layout is that conv2d's
//! (C_out', C_in', kH, kW)). Then:
//! - forward `y` = conv2d's input gradient of `dy' = x` (`conv2d_backward_input.wgsl`: each y element
//!   gathers the inputs that scatter into it, the gather the scatter above describes);
//! - `dx` = conv2d forward of `x' = dy` (`conv2d.wgsl`, the tiled kernel);
//! - `dw` = conv2d's weight gradient with `x' = dy`, `dy' = x` (`conv2d_backward_weight.wgsl`, two passes).
//!
//! Under `--precision mixed` x and the weight are rounded to halves first (autocast's float16 transposed
//! convolution, as `conv2d::mixed`: products exact, float32 sums; the three products on mixed's paths:
//! `conv2d::mixed::gpu_transposed` (which rounds as it unfolds, without rounded copies), `gpu_forward` and
//! `gpu_backward_weight`), and the backward pass reads
//! the same rounded operands and dy rounded as a float16 gradient (autocast's backward products).
//!
//! The bias is a broadcast add after the product (`y + b.reshape(1, C_out, 1, 1)`); its gradient, the sum
//! of dy over (N, H_out, W_out), comes from the add's backward. The CPU reference below is written
//! independently, as the scatter above, so the GPU parity test checks this mapping too.

use crate::engine::autograd::Backward;
use crate::engine::ops::conv::conv2d::{self, Geom, PaddingMode};
use crate::engine::precision::{count_half, precision, Precision};
use crate::engine::real::Real;
use crate::engine::recompute::Saved;
use crate::engine::storage::{Device, Storage};
use crate::engine::tensor::Tensor;

/// The conv2d whose kernels compute the transposed convolution of x `xs` (N, C_in, H, W) by weight `ws`
/// (C_in, C_out, kH, kW) (see the module doc); panics with `conv_transpose2d: expected …, got …`.
pub fn conv_geom(xs: &[usize], ws: &[usize], stride: usize, pad: usize) -> Geom {
    conv_geom_padded(xs, ws, stride, pad, 0)
}

/// [`conv_geom`] with `output_padding` extra output rows and columns (`output_padding < stride`, as PyTorch).
pub fn conv_geom_padded(
    xs: &[usize],
    ws: &[usize],
    stride: usize,
    pad: usize,
    out_pad: usize,
) -> Geom {
    assert!(
        out_pad < stride.max(1),
        "conv_transpose2d: expected output_padding < stride, got {out_pad} and {stride}"
    );
    assert!(
        xs.len() == 4 && ws.len() == 4 && xs[1] == ws[0],
        "conv_transpose2d: expected x (N, C_in, H, W) and weight (C_in, C_out, kH, kW), got {xs:?} and {ws:?}"
    );
    assert!(stride >= 1, "conv_transpose2d: expected stride >= 1, got 0");
    let out = |len: usize, k: usize| (len.max(1) - 1) * stride + k;
    assert!(
        out(xs[2], ws[2]) > 2 * pad && out(xs[3], ws[3]) > 2 * pad && xs[2] > 0 && xs[3] > 0,
        "conv_transpose2d: expected a positive output size (H - 1)·s - 2p + kH, got x {xs:?}, weight {ws:?}, \
         stride {stride}, padding {pad}"
    );
    Geom {
        n: xs[0],
        ci: ws[1],
        h: out(xs[2], ws[2]) - 2 * pad + out_pad,
        w: out(xs[3], ws[3]) - 2 * pad + out_pad,
        co: xs[1],
        kh: ws[2],
        kw: ws[3],
        stride,
        pad,
        ho: xs[2],
        wo: xs[3],
        mode: PaddingMode::Zeros,
    }
}

// ---- CPU reference ----
// Written in the transposed conv's own terms, with g = conv_geom(..): x (N, C_in = g.co, H = g.ho, W = g.wo),
// weight (C_in, C_out = g.ci, kH, kW), y (N, C_out, H_out = g.h, W_out = g.w).

/// Calls `f(x index, y index, weight index)` for every product of the scatter, in a fixed order.
fn for_each_tap(g: &Geom, mut f: impl FnMut(usize, usize, usize)) {
    let (cin, cout, (h, w), (hout, wout)) = (g.co, g.ci, (g.ho, g.wo), (g.h, g.w));
    for n in 0..g.n {
        for c in 0..cin {
            for iy in 0..h {
                for ix in 0..w {
                    let xi = ((n * cin + c) * h + iy) * w + ix;
                    for o in 0..cout {
                        for ky in 0..g.kh {
                            let oy = (g.stride * iy + ky) as isize - g.pad as isize;
                            if !(0..hout as isize).contains(&oy) {
                                continue;
                            }
                            for kx in 0..g.kw {
                                let ox = (g.stride * ix + kx) as isize - g.pad as isize;
                                if !(0..wout as isize).contains(&ox) {
                                    continue;
                                }
                                let yi = ((n * cout + o) * hout + oy as usize) * wout + ox as usize;
                                f(xi, yi, ((c * cout + o) * g.kh + ky) * g.kw + kx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// x (N, C_in, H, W), weight (C_in, C_out, kH, kW) → y (N, C_out, H_out, W_out), without the bias.
pub fn cpu_forward<T: Real>(x: &[T], w: &[T], g: &Geom) -> Vec<T> {
    let mut y = vec![T::zero(); g.n * g.ci * g.h * g.w];
    for_each_tap(g, |xi, yi, wi| y[yi] += x[xi] * w[wi]);
    y
}

/// (dx (N, C_in, H, W), dw (C_in, C_out, kH, kW)) from x, weight and dy (N, C_out, H_out, W_out).
pub fn cpu_backward<T: Real>(x: &[T], w: &[T], dy: &[T], g: &Geom) -> (Vec<T>, Vec<T>) {
    let mut dx = vec![T::zero(); x.len()];
    let mut dw = vec![T::zero(); w.len()];
    for_each_tap(g, |xi, yi, wi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += x[xi] * dy[yi];
    });
    (dx, dw)
}

// ---- Autograd ----

impl Tensor {
    /// Transposed convolution of x (N, C_in, H, W) by weight (C_in, C_out, kH, kW) with an optional bias
    /// (C_out), zero padding → (N, C_out, (H - 1)·stride - 2·padding + kH, likewise W).
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Tensor {
        self.conv_transpose2d_padded(weight, bias, stride, padding, 0)
    }

    /// [`Tensor::conv_transpose2d`] with `output_padding` (< stride) more output rows and columns at the end.
    pub fn conv_transpose2d_padded(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> Tensor {
        let g = conv_geom_padded(
            self.shape(),
            weight.shape(),
            stride,
            padding,
            output_padding,
        );
        // Under --precision mixed input and weight are rounded to halves, as conv2d's (`conv2d::mixed`):
        // two roundings, products exact, sums float32.
        let mixed = precision() == Precision::Mixed;
        if mixed {
            count_half();
            count_half();
        }
        let storage = match Tensor::same_device("conv_transpose2d", &[self, weight]) {
            Device::Cpu => {
                let (x, w) = if mixed {
                    (
                        self.clone().rounded_to_half(),
                        weight.clone().rounded_to_half(),
                    )
                } else {
                    (self.clone(), weight.clone())
                };
                let y = cpu_forward(
                    &x.cpu_data("conv_transpose2d"),
                    &w.cpu_data("conv_transpose2d"),
                    &g,
                );
                Tensor::cpu_storage(y)
            }
            Device::Gpu => {
                let (gx, gw) = (
                    self.gpu_storage("conv_transpose2d"),
                    weight.gpu_storage("conv_transpose2d"),
                );
                // Under mixed on the half-precision product where it pays, rounding as it goes
                // (`conv2d::mixed::gpu_transposed`).
                Storage::Gpu(match mixed {
                    true => conv2d::mixed::gpu_transposed(gx, gw, &g),
                    false => conv2d::gpu_backward_input(gx, gw, &g),
                })
            }
        };
        let back = ConvTranspose2dBackward {
            x: Saved::new(self),
            x_shape: self.shape().to_vec(),
            x_wants: self.requires_grad(),
            w: weight.clone(),
            g,
            mixed,
        };
        let y = Tensor::from_op(&[g.n, g.ci, g.h, g.w], storage, &[self, weight], back);
        match bias {
            None => y,
            Some(b) => {
                assert_eq!(
                    b.shape(),
                    [g.ci],
                    "conv_transpose2d: expected bias ({}), got {:?}",
                    g.ci,
                    b.shape()
                );
                &y + &b.reshape(&[1, g.ci, 1, 1])
            }
        }
    }
}

struct ConvTranspose2dBackward {
    /// x (only its recipe when it is recomputable, `engine::recompute`): the weight gradient reads it.
    x: Saved,
    x_shape: Vec<usize>,
    x_wants: bool,
    w: Tensor,
    g: Geom,
    /// The forward ran under --precision mixed: the backward reads h(x) and h(w), as the forward did, and
    /// the incoming gradient rounded as a float16 gradient.
    mixed: bool,
}

impl Backward for ConvTranspose2dBackward {
    fn name(&self) -> &'static str {
        "conv_transpose2d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        self.backward_owned(dy.clone())
    }
    fn backward_owned(&self, dy: Tensor) -> Vec<Option<Tensor>> {
        // Under mixed dy is rounded as a float16 gradient (in place when the walk let it go).
        let dy = &dy.into_gradient_operand(self.mixed);
        // h(w): on the GPU `conv2d::mixed::gpu_forward` rounds it (packing it, or a rounded copy for the
        // float32 kernel), so no copy here; the weight gradient does not read w.
        let w = &if self.mixed && self.w.device() == Device::Cpu {
            self.w.clone().rounded_to_half()
        } else {
            self.w.clone()
        };
        let (g, x_shape) = (&self.g, &self.x_shape);
        let op = "conv_transpose2d_backward";
        match Tensor::same_device(op, &[w, dy]) {
            Device::Cpu => {
                let x = self.x.get_as(self.mixed);
                let (dx, dw) = cpu_backward(&x.cpu_data(op), &w.cpu_data(op), &dy.cpu_data(op), g);
                vec![
                    Some(x.new_like(dx, x_shape)),
                    Some(w.new_like(dw, w.shape())),
                ]
            }
            Device::Gpu => {
                let (gw, gdy) = (w.gpu_storage(op), dy.gpu_storage(op));
                let dx = self.x_wants.then(|| {
                    // Under mixed a convolution of h(dy) and h(w): mixed's own (the unfolded product
                    // where it pays), which rounds w (rounding what is rounded changes nothing).
                    let dx = match self.mixed {
                        true => conv2d::mixed::gpu_forward(gdy, gw, None, g),
                        false => conv2d::gpu_forward(gdy, gw, None, g),
                    };
                    Tensor::from_storage(x_shape, Storage::Gpu(dx))
                });
                let dw = self.w.requires_grad().then(|| {
                    let x = self.x.get_as(self.mixed);
                    let gx = x.gpu_storage(op);
                    match self.mixed {
                        // Under mixed, on the half-precision product where it pays (`conv2d::mixed`).
                        true => conv2d::mixed::gpu_backward_weight(gdy, gx, g).reshape(w.shape()),
                        false => Tensor::from_storage(
                            w.shape(),
                            Storage::Gpu(conv2d::gpu_backward_weight(gdy, gx, g)),
                        ),
                    }
                });
                vec![dx, dw]
            }
        }
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{assert_close_f64, gradcheck, random_vec, Tol};

    #[test]
    fn exact_values_one_row() {
        // x = [1, 2] (1, 1, 1, 2), w = [1, 10, 100] (1, 1, 1, 3), stride 2, padding 0: out[2i + k] += x[i] w[k]:
        // i = 0 writes 1, 10, 100 at 0, 1, 2; i = 1 writes 2, 20, 200 at 2, 3, 4 → [1, 10, 102, 20, 200]
        // (W_out = (2 - 1)·2 + 3 = 5).
        let g = conv_geom(&[1, 1, 1, 2], &[1, 1, 1, 3], 2, 0);
        assert_eq!((g.h, g.w), (1, 5));
        let (x, w) = ([1.0f32, 2.0], [1.0f32, 10.0, 100.0]);
        assert_eq!(cpu_forward(&x, &w, &g), vec![1.0, 10.0, 102.0, 20.0, 200.0]);
        // dy = [1, 0, 1, 0, 0]: dx[0] = w0·1 + w2·1 = 101, dx[1] = w0·dy[2] = 1; dw = (x0 + x1, 0, x0) = (3, 0, 1).
        let (dx, dw) = cpu_backward(&x, &w, &[1.0, 0.0, 1.0, 0.0, 0.0], &g);
        assert_eq!((dx, dw), (vec![101.0, 1.0], vec![3.0, 0.0, 1.0]));
    }

    #[test]
    fn exact_values_k4_s2_p1_doubles() {
        // x = 1 (1, 1, 1, 1), w 4×4 = 0..15, stride 2, padding 1: H_out = 0·2 - 2 + 4 = 2; the single input
        // lands at (ky - 1, kx - 1), so y = the centre 2×2 of w: [[5, 6], [9, 10]].
        let g = conv_geom(&[1, 1, 1, 1], &[1, 1, 4, 4], 2, 1);
        let w: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(cpu_forward(&[1.0f32], &w, &g), vec![5.0, 6.0, 9.0, 10.0]);
        assert_eq!(conv_geom(&[2, 3, 5, 7], &[3, 4, 4, 4], 2, 1).h, 10);
    }

    #[test]
    fn the_conv2d_kernels_compute_this_op() {
        // The mapping the GPU path uses, checked on the CPU references (module doc).
        let (xs, ws) = ([2, 3, 4, 5], [3, 2, 4, 4]);
        let g = conv_geom(&xs, &ws, 2, 1);
        let x = random_vec(xs.iter().product(), -1.0, 1.0, 61);
        let w = random_vec(ws.iter().product(), -1.0, 1.0, 62);
        let y = cpu_forward(&x, &w, &g);
        let dy = random_vec(y.len(), -1.0, 1.0, 63);
        let (dx, dw) = cpu_backward(&x, &w, &dy, &g);
        let tol = Tol {
            abs: 1e-12,
            rel: 1e-12,
        };
        assert_close_f64(
            &conv2d::cpu_backward(&dy, &w, &x, &g).0,
            &y,
            tol,
            "forward = conv2d dx",
        );
        assert_close_f64(
            &conv2d::cpu_forward(&dy, &w, None, &g),
            &dx,
            tol,
            "dx = conv2d forward",
        );
        assert_close_f64(
            &conv2d::cpu_backward(&dy, &w, &x, &g).1,
            &dw,
            tol,
            "dw = conv2d dw",
        );
    }

    #[test]
    fn gradcheck_f64() {
        let cases = [
            ([2, 3, 4, 3], [3, 2, 4, 4], 2, 1), // U-TAE's up-sampling
            ([1, 2, 3, 5], [2, 3, 3, 2], 2, 0), // odd sizes, overlap-free in width
            ([1, 2, 5, 4], [2, 2, 3, 3], 1, 1), // stride 1 ("same")
            ([1, 1, 3, 3], [1, 2, 5, 3], 3, 2), // stride 3, padding 2
        ];
        for (k, (xs, ws, s, p)) in cases.into_iter().enumerate() {
            // U-Net 3D's frames: k3 s2 p1 with output_padding 1 (H_out = 2H) beside each case without.
            let op = if s == 2 { 1 } else { 0 };
            let g = conv_geom_padded(&xs, &ws, s, p, op);
            let ins = [
                random_vec(xs.iter().product(), -1.0, 1.0, 71 + k as u64),
                random_vec(ws.iter().product(), -1.0, 1.0, 81 + k as u64),
            ];
            gradcheck(
                &format!("conv_transpose2d {xs:?} {ws:?} s{s} p{p}"),
                &ins,
                &[],
                |v| cpu_forward(&v[0], &v[1], &g),
                |v, dy| {
                    let (dx, dw) = cpu_backward(&v[0], &v[1], dy, &g);
                    vec![dx, dw]
                },
            );
        }
    }

    #[test]
    fn bias_gradient_through_the_broadcast_add() {
        // y = x ⋆ w + b; d(sum y)/db[o] = N · H_out · W_out = 1 · 2 · 2 = 4 per channel.
        let x = Tensor::ones(&[1, 1, 1, 1], Device::Cpu).requires_grad_();
        let w = Tensor::ones(&[1, 2, 4, 4], Device::Cpu).requires_grad_();
        let b = Tensor::from_vec(vec![0.5, -1.0], &[2], Device::Cpu).requires_grad_();
        let y = x.conv_transpose2d(&w, Some(&b), 2, 1);
        assert_eq!(y.shape(), [1, 2, 2, 2]);
        assert_eq!(y.to_vec(), vec![1.5, 1.5, 1.5, 1.5, 0.0, 0.0, 0.0, 0.0]);
        y.sum_all().backward();
        assert_eq!(b.grad().unwrap().to_vec(), vec![4.0, 4.0]);
        assert_eq!(x.grad().unwrap().to_vec(), vec![8.0]);
    }
}
