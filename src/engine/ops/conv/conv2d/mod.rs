//! 2-D convolution (PyTorch `nn.Conv2d`, groups = 1, dilation = 1) with stride, zero or reflect padding and
//! an optional bias.
//!
//! Math: `y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]`,
//! where `xpad` is x padded by p on each side: zeros, or reflect (`x[-i] = x[i]`, `x[H-1+i] = x[H-1-i]`,
//! needs p < H and p < W). The padding is index arithmetic (`src` below), never a padded copy.
//! Shapes: x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) → y (N, C_out, H_out, W_out),
//! `H_out = (H + 2p - kH) / s + 1` (floor), likewise W_out.
//!
//! Derivatives (each forward read `x[src(..)]` contributes `dy · w` to that x element, `dy · x` to w):
//! - `dx[n, c, i, j] = Σ dy[n, o, oy, ox] w[o, c, ky, kx]` over every (o, oy, ky, ox, kx) whose read lands on
//!   (i, j); with reflect padding a border element is also reached through its mirrored positions, and those
//!   contributions add up.
//! - `dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]`.
//! - `db[o] = Σ_{n, oy, ox} dy[n, o, oy, ox]` (a composition: `dy.sum(&[0, 2, 3])`, on the GPU one per-channel
//!   reduction, `reduce_sum`'s `channel_sum.wgsl`).
//!
//! Saved for backward: x and the weight. The op is three files, for length: this one (math, CPU reference,
//! autograd, tests), `geom.rs` (the sizes and the shaders' shared `Params`) and `gpu.rs` (kernels and
//! launchers). Kernels, variants side by side in `benches/ops.rs`:
//! - forward: `conv2d.wgsl` (implicit GEMM walked tap by tap, 64 output channels × 128 pixels per workgroup,
//!   4 × 8 outputs per invocation in registers), `conv2d_narrow.wgsl` (16 × 256, for few output channels),
//!   `conv2d_direct.wgsl` (no workgroup memory, for software adapters);
//! - input gradient: the gradient of the padded input is a transposed convolution; each stride phase of it is
//!   an ordinary convolution of dy with the phase's taps flipped and transposed, run on the forward kernels
//!   (flip mode), then `conv2d_pad_fold.wgsl` folds the padding back (mirrors included). The one-invocation
//!   gather `conv2d_backward_input.wgsl` is kept as a variant;
//! - weight gradient: `conv2d_backward_weight.wgsl` (split-K GEMM over slices of the output pixels, 64 × 64
//!   tiles; `_narrow` 16 × 64), `conv2d_backward_weight_direct.wgsl` (software adapters), the slices summed
//!   by `reduce_sum::gpu_sum` in order — two deterministic passes.
//!
//! `conv_transpose2d` reuses them (see its doc).
//!
//! Measured (NVIDIA H200, Vulkan, `cargo bench --bench ops -- conv2d`, 16 frames, same run; PyTorch 2.11
//! strict fp32 cuDNN from `benches/device/torch_ref.py` on the same GPU): 64 → 64 k3 at 128²: forward
//! 20.0 TFLOP/s (cuDNN 32.7), input gradient 20.8 (24.7), weight gradient 14.5 (25.6); the down-sampling
//! k4 s2: input gradient 8.5 TFLOP/s through the phases (cuDNN 8.9), where the gather ran at 0.9.

mod geom;
mod gpu;
pub mod mixed;

pub use geom::{Geom, PaddingMode, Params};
pub use gpu::*;

use crate::engine::autograd::Backward;
use crate::engine::precision::{count_half, precision, Precision};
use crate::engine::real::Real;
use crate::engine::recompute::Saved;
use crate::engine::storage::{Device, Storage};
use crate::engine::tensor::Tensor;

// ---- CPU reference ----

/// Calls `f(y index, x index, weight index)` for every product of the forward, in a fixed order.
fn for_each_tap(g: &Geom, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..g.n {
        for o in 0..g.co {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let yi = ((n * g.co + o) * g.ho + oy) * g.wo + ox;
                    for c in 0..g.ci {
                        for ky in 0..g.kh {
                            let Some(iy) =
                                g.src((oy * g.stride + ky) as isize - g.pad as isize, g.h)
                            else {
                                continue;
                            };
                            for kx in 0..g.kw {
                                let t = (ox * g.stride + kx) as isize - g.pad as isize;
                                let Some(ix) = g.src(t, g.w) else { continue };
                                let xi = ((n * g.ci + c) * g.h + iy) * g.w + ix;
                                f(yi, xi, ((o * g.ci + c) * g.kh + ky) * g.kw + kx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) → y (N, C_out, H_out, W_out).
pub fn cpu_forward<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
    let mut y = vec![T::zero(); g.n * g.co * g.ho * g.wo];
    for_each_tap(g, |yi, xi, wi| y[yi] += w[wi] * x[xi]);
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / (g.ho * g.wo)) % g.co];
        }
    }
    y
}

/// (dx (N, C_in, H, W), dw (C_out, C_in, kH, kW), db (C_out)) from x, weight and dy (N, C_out, H_out, W_out):
/// every forward product `y += w · x` sends `dy · w` to x and `dy · x` to w (mirrored reads included).
pub fn cpu_backward<T: Real>(x: &[T], w: &[T], dy: &[T], g: &Geom) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dx = vec![T::zero(); x.len()];
    let mut dw = vec![T::zero(); w.len()];
    let mut db = vec![T::zero(); g.co];
    for_each_tap(g, |yi, xi, wi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    for (i, &v) in dy.iter().enumerate() {
        db[(i / (g.ho * g.wo)) % g.co] += v;
    }
    (dx, dw, db)
}

// ---- Autograd ----

impl Tensor {
    /// 2-D convolution of x (N, C_in, H, W) with weight (C_out, C_in, kH, kW) and an optional bias (C_out):
    /// stride and padding on both axes, zero or reflect padding → (N, C_out, H_out, W_out),
    /// `H_out = (H + 2·padding - kH) / stride + 1`. Reflect padding needs padding < H and < W.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        mode: PaddingMode,
    ) -> Tensor {
        let g = Geom::new(self.shape(), weight.shape(), stride, padding, mode);
        if let Some(b) = bias {
            assert_eq!(
                b.shape(),
                [g.co],
                "conv2d: expected bias ({}), got {:?}",
                g.co,
                b.shape()
            );
        }
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        // Under --precision mixed input and weight are rounded to halves (`mixed`): two roundings.
        let mixed = precision() == Precision::Mixed;
        if mixed {
            count_half();
            count_half();
        }
        let storage = match Tensor::same_device("conv2d", &inputs) {
            Device::Cpu => {
                let b = bias.map(|b| b.cpu_data("conv2d").clone());
                let (x, w) = (self.cpu_data("conv2d"), weight.cpu_data("conv2d"));
                Tensor::cpu_storage(if mixed {
                    mixed::cpu_forward(&x, &w, b.as_deref(), &g)
                } else {
                    cpu_forward(&x, &w, b.as_deref(), &g)
                })
            }
            Device::Gpu => {
                let (x, w) = (self.gpu_storage("conv2d"), weight.gpu_storage("conv2d"));
                let b = bias.map(|b| b.gpu_storage("conv2d"));
                Storage::Gpu(if mixed {
                    mixed::gpu_forward(x, w, b, &g)
                } else {
                    gpu_forward(x, w, b, &g)
                })
            }
        };
        let back = Conv2dBackward {
            x: Saved::new(self),
            x_grad: self.requires_grad(),
            w: weight.clone(),
            has_bias: bias.is_some(),
            g,
            mixed,
        };
        Tensor::from_op(&[g.n, g.co, g.ho, g.wo], storage, &inputs, back)
    }
}

struct Conv2dBackward {
    /// The input (only its recipe when it is recomputable, `engine::recompute`).
    x: Saved,
    x_grad: bool,
    w: Tensor,
    has_bias: bool,
    g: Geom,
    /// The forward ran under --precision mixed: the backward reads h(x) and h(w), as the forward did, and
    /// the incoming gradient rounded as a float16 gradient.
    mixed: bool,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        self.backward_owned(dy.clone())
    }
    fn backward_owned(&self, dy: Tensor) -> Vec<Option<Tensor>> {
        // Under mixed, the gradients of the function the forward computed: its rounded operands, and dy
        // rounded as a float16 gradient (in place when the walk let it go), bias's gradient included, as
        // autocast's float16 convolution computes them.
        let dy = &dy.into_gradient_operand(self.mixed);
        let x = &self.x.get_as(self.mixed);
        // h(w): on the GPU `mixed::gpu_backward_input` rounds it where its path reads it (packing it, or a
        // rounded copy for the float32 phases), so no copy here; the weight gradient does not read w.
        let w = &if self.mixed && self.w.device() == Device::Cpu {
            self.w.clone().rounded_to_half()
        } else {
            self.w.clone()
        };
        let g = &self.g;
        let mut grads = match Tensor::same_device("conv2d_backward", &[x, w, dy]) {
            Device::Cpu => {
                let (dx, dw, db) = cpu_backward(
                    &x.cpu_data("conv2d"),
                    &w.cpu_data("conv2d"),
                    &dy.cpu_data("conv2d"),
                    g,
                );
                let db = self.has_bias.then(|| dy.new_like(db, &[g.co]));
                vec![
                    Some(x.new_like(dx, x.shape())),
                    Some(w.new_like(dw, w.shape())),
                    db,
                ]
            }
            Device::Gpu => {
                let (gx, gw, gdy) = (
                    x.gpu_storage("conv2d"),
                    w.gpu_storage("conv2d"),
                    dy.gpu_storage("conv2d"),
                );
                let dx = self.x_grad.then(|| {
                    let dx = match self.mixed {
                        // Under mixed, on the half-precision product where it pays (`mixed`).
                        true => mixed::gpu_backward_input(gdy, gw, g),
                        false => gpu_backward_input(gdy, gw, g),
                    };
                    Tensor::from_storage(x.shape(), Storage::Gpu(dx))
                });
                let dw = self.w.requires_grad().then(|| match self.mixed {
                    // Under mixed, on the half-precision product where it pays (`mixed`).
                    true => mixed::gpu_backward_weight(gx, gdy, g).reshape(w.shape()),
                    false => Tensor::from_storage(
                        w.shape(),
                        Storage::Gpu(gpu_backward_weight(gx, gdy, g)),
                    ),
                });
                vec![dx, dw, self.has_bias.then(|| dy.sum(&[0, 2, 3], false))]
            }
        };
        grads.truncate(2 + self.has_bias as usize);
        grads
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values_3x3_input_2x2_kernel() {
        // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], w = [[1, 0], [0, -1]], b = 0.5, no padding, stride 1:
        // y[i, j] = x[i, j] - x[i+1, j+1] + 0.5 = -4 + 0.5 everywhere → [[-3.5, -3.5], [-3.5, -3.5]].
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let g = Geom::new(&[1, 1, 3, 3], &[1, 1, 2, 2], 1, 0, PaddingMode::Zeros);
        assert_eq!(
            cpu_forward(&x, &[1.0, 0.0, 0.0, -1.0], Some(&[0.5]), &g),
            vec![-3.5; 4]
        );
        // With dy = 1 everywhere: dw[ky, kx] = sum of the 2×2 window of x starting at (ky, kx):
        // (1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9) = (12, 16, 24, 28); db = 4;
        // dx = w[0,0] · (cover count of the top-left taps) - (bottom-right taps):
        // [[1, 1, 0], [1, 0, -1], [0, -1, -1]].
        let (dx, dw, db) = cpu_backward(&x, &[1.0, 0.0, 0.0, -1.0], &[1.0; 4], &g);
        assert_eq!(dw, vec![12.0, 16.0, 24.0, 28.0]);
        assert_eq!(db, vec![4.0]);
        assert_eq!(dx, vec![1.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, -1.0]);
    }

    #[test]
    fn exact_values_reflect_row() {
        // x = [[1, 2, 3], [4, 5, 6]] (1, 1, 2, 3), kernel 3×3 whose middle row is ones (the rest 0), padding 1
        // reflect: each output row is its input row convolved with [1, 1, 1]. Padded row 0: [2, 1, 2, 3, 2]
        // → [2+1+2, 1+2+3, 2+3+2] = [5, 6, 7]; padded row 1: [5, 4, 5, 6, 5] → [14, 15, 16].
        // With dy = 1 at y[0, 0] only: x[0, 1] is read twice (directly and through x[0, -1] = x[0, 1]) and
        // x[0, 0] once: dx = [[1, 2, 0], [0, 0, 0]].
        let g = Geom::new(&[1, 1, 2, 3], &[1, 1, 3, 3], 1, 1, PaddingMode::Reflect);
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        assert_eq!(
            cpu_forward(&x, &w, None, &g),
            vec![5.0, 6.0, 7.0, 14.0, 15.0, 16.0]
        );
        let dy = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            cpu_backward(&x, &w, &dy, &g).0,
            vec![1.0, 2.0, 0.0, 0.0, 0.0, 0.0]
        );
        // Zero padding instead: padded rows [0, 1, 2, 3, 0], [0, 4, 5, 6, 0] → [3, 6, 5], [9, 15, 11].
        let z = Geom {
            mode: PaddingMode::Zeros,
            ..g
        };
        assert_eq!(
            cpu_forward(&x, &w, None, &z),
            vec![3.0, 6.0, 5.0, 9.0, 15.0, 11.0]
        );
    }

    #[test]
    fn gradcheck_f64_zeros_and_reflect_strides_odd_sizes() {
        let cases = [
            ([2, 3, 5, 4], [2, 3, 3, 3], 1, 1, PaddingMode::Reflect),
            ([1, 2, 6, 6], [3, 2, 4, 4], 2, 1, PaddingMode::Reflect),
            ([1, 2, 7, 5], [2, 2, 3, 3], 2, 2, PaddingMode::Reflect),
            ([2, 2, 5, 7], [3, 2, 3, 2], 2, 1, PaddingMode::Zeros),
            ([1, 3, 4, 3], [2, 3, 1, 1], 1, 0, PaddingMode::Zeros),
        ];
        for (k, (xs, ws, s, p, mode)) in cases.into_iter().enumerate() {
            let g = Geom::new(&xs, &ws, s, p, mode);
            let n = |s: [usize; 4]| s.iter().product::<usize>();
            let ins = [
                random_vec(n(xs), -1.0, 1.0, 31 + k as u64),
                random_vec(n(ws), -1.0, 1.0, 41 + k as u64),
                random_vec(ws[0], -1.0, 1.0, 51 + k as u64),
            ];
            gradcheck(
                &format!("conv2d {xs:?} {ws:?} s{s} p{p} {mode:?}"),
                &ins,
                &[],
                |v| cpu_forward(&v[0], &v[1], Some(&v[2]), &g),
                |v, dy| {
                    let (dx, dw, db) = cpu_backward(&v[0], &v[1], dy, &g);
                    vec![dx, dw, db]
                },
            );
        }
    }

    #[test]
    #[should_panic(expected = "conv2d: expected reflect padding smaller than H and W")]
    fn reflect_padding_too_large_panics() {
        Geom::new(&[1, 1, 2, 5], &[1, 1, 3, 3], 1, 2, PaddingMode::Reflect);
    }

    #[test]
    fn autograd_on_cpu_tensors() {
        // 1×1 kernel w = 2, bias 1: y = 2x + 1, so d(sum y)/dx = 2, dw = sum x = 10, db = 4.
        let x =
            Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2], Device::Cpu).requires_grad_();
        let w = Tensor::from_vec(vec![2.0], &[1, 1, 1, 1], Device::Cpu).requires_grad_();
        let b = Tensor::from_vec(vec![1.0], &[1], Device::Cpu).requires_grad_();
        let y = x.conv2d(&w, Some(&b), 1, 0, PaddingMode::Zeros);
        assert_eq!(y.to_vec(), vec![3.0, 5.0, 7.0, 9.0]);
        y.sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![2.0; 4]);
        assert_eq!(w.grad().unwrap().to_vec(), vec![10.0]);
        assert_eq!(b.grad().unwrap().to_vec(), vec![4.0]);
    }
}
