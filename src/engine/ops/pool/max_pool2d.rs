//! Max pooling with a k × k window, stride 1 and "same" padding r = (k − 1)/2 that never wins
//! (`nn.MaxPool2d(k, stride=1, padding=r)`: PyTorch pads max pooling with −∞). PaPs finds its centers as the
//! pixels equal to the 3 × 3 max-pooled heatmap (spec §6.3 step 3).
//!
//! Math: x (N, C, H, W) → y (N, C, H, W), `y[i, j] = max x[i + a, j + b]` over `a, b ∈ [−r, r]` with the pixel
//! inside the image. The window is scanned row-major and a value replaces the running maximum only when
//! strictly greater, so the **first** maximum of a tie is the argmax (PyTorch's CPU kernel).
//! Derivative: the whole gradient of an output goes to its argmax: `dx[s, t] = Σ dy[i, j]` over the windows
//! whose argmax is (s, t). Saved for backward: the input (the backward kernel rescans each window rather
//! than storing indices). Kernels: `max_pool2d.wgsl` (one invocation per output), `max_pool2d_backward.wgsl`
//! (a gather: one invocation per input pixel over the ≤ k² windows containing it). Non-finite values: the
//! heatmap is a sigmoid output; NaN handling is not PyTorch's (a NaN never wins here).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of max_pool2d.wgsl and max_pool2d_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    planes: u32,
    h: u32,
    w: u32,
    r: u32,
}

/// Sizes: `planes` = N·C planes of H × W, window half-width r (k = 2r + 1).
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// N·C.
    pub planes: usize,
    /// H.
    pub h: usize,
    /// W.
    pub w: usize,
    /// Half-width r of the window.
    pub r: usize,
}

impl Dims {
    fn params(self) -> Params {
        Params {
            planes: self.planes as u32,
            h: self.h as u32,
            w: self.w as u32,
            r: self.r as u32,
        }
    }

    /// Row-major window bounds `(y0, y1, x0, x1)` (inclusive) of output (i, j), clamped to the image.
    fn window(self, i: usize, j: usize) -> (usize, usize, usize, usize) {
        (
            i.saturating_sub(self.r),
            (i + self.r).min(self.h - 1),
            j.saturating_sub(self.r),
            (j + self.r).min(self.w - 1),
        )
    }
}

/// `max_pool2d.wgsl`: x → y.
pub const MAX_POOL2D: Kernel = Kernel::new::<Params>(&shaders::MAX_POOL2D, "max_pool2d", 3);
/// `max_pool2d_backward.wgsl`: x, dy → dx.
pub const MAX_POOL2D_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::MAX_POOL2D_BACKWARD, "max_pool2d_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[MAX_POOL2D, MAX_POOL2D_BACKWARD];

// ---- CPU reference ----

/// Flat in-plane index of the first maximum of the window of (i, j).
fn argmax<T: Real>(plane: &[T], d: Dims, i: usize, j: usize) -> usize {
    let (y0, y1, x0, x1) = d.window(i, j);
    let mut arg = y0 * d.w + x0;
    for a in y0..=y1 {
        for b in x0..=x1 {
            if plane[a * d.w + b] > plane[arg] {
                arg = a * d.w + b;
            }
        }
    }
    arg
}

/// x (P, H, W) → y (P, H, W).
pub fn cpu_forward<T: Real>(x: &[T], d: Dims) -> Vec<T> {
    let hw = d.h * d.w;
    let mut y = Vec::with_capacity(d.planes * hw);
    for p in 0..d.planes {
        let plane = &x[p * hw..(p + 1) * hw];
        for i in 0..d.h {
            for j in 0..d.w {
                y.push(plane[argmax(plane, d, i, j)]);
            }
        }
    }
    y
}

/// x, dy (P, H, W) → dx (P, H, W): each output's gradient to its window's first maximum.
pub fn cpu_backward<T: Real>(x: &[T], dy: &[T], d: Dims) -> Vec<T> {
    let hw = d.h * d.w;
    let mut dx = vec![T::zero(); d.planes * hw];
    for p in 0..d.planes {
        let plane = &x[p * hw..(p + 1) * hw];
        for i in 0..d.h {
            for j in 0..d.w {
                dx[p * hw + argmax(plane, d, i, j)] += dy[p * hw + i * d.w + j];
            }
        }
    }
    dx
}

// ---- GPU ----

/// Launches max_pool2d.wgsl.
pub fn gpu_forward(x: &GpuStorage, d: Dims) -> GpuStorage {
    let n = d.planes * d.h * d.w;
    let y = GpuStorage::alloc(x.gpu, n, "max_pool2d");
    let grid = Grid::threads(n).loop_len((2 * d.r + 1) * (2 * d.r + 1));
    MAX_POOL2D.dispatch(x.gpu, &[x.buffer(), y.buffer()], &d.params(), grid);
    y
}

/// Launches max_pool2d_backward.wgsl.
pub fn gpu_backward(x: &GpuStorage, dy: &GpuStorage, d: Dims) -> GpuStorage {
    let n = d.planes * d.h * d.w;
    let dx = GpuStorage::alloc(x.gpu, n, "max_pool2d_backward");
    let k2 = (2 * d.r + 1) * (2 * d.r + 1);
    let bufs = [x.buffer(), dy.buffer(), dx.buffer()];
    MAX_POOL2D_BACKWARD.dispatch(
        x.gpu,
        &bufs,
        &d.params(),
        Grid::threads(n).loop_len(k2 * k2),
    );
    dx
}

// ---- Autograd ----

struct MaxPoolBackward {
    x: Tensor,
    d: Dims,
}

impl Backward for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "max_pool2d_backward";
        let storage = match Tensor::same_device(op, &[&self.x, dy]) {
            Device::Cpu => {
                Tensor::cpu_storage(cpu_backward(&self.x.cpu_data(op), &dy.cpu_data(op), self.d))
            }
            Device::Gpu => Storage::Gpu(gpu_backward(
                self.x.gpu_storage(op),
                dy.gpu_storage(op),
                self.d,
            )),
        };
        vec![Some(Tensor::from_storage(self.x.shape(), storage))]
    }
}

impl Tensor {
    /// `nn.MaxPool2d(k, stride=1, padding=(k − 1)/2)` of x (N, C, H, W) (k odd): same shape out.
    pub fn max_pool2d_same(&self, k: usize) -> Tensor {
        let op = "max_pool2d";
        let sh = self.shape();
        assert!(
            sh.len() == 4 && sh[2] > 0 && sh[3] > 0,
            "{op}: expected x (N, C, H, W) with H, W > 0, got {sh:?}"
        );
        assert!(k % 2 == 1, "{op}: expected an odd window, got {k}");
        let d = Dims {
            planes: sh[0] * sh[1],
            h: sh[2],
            w: sh[3],
            r: k / 2,
        };
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), d)),
        };
        let back = MaxPoolBackward { x: self.clone(), d };
        Tensor::from_op(sh, storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // 2 × 3 plane [[1, 5, 2], [5, 0, 3]], 3 × 3 windows clamped to the image. Output (0, 0) sees
        // {1, 5, 5, 0}: max 5, the first 5 (0, 1) in row-major order; every window holds a 5.
        // Output (0, 2) sees {5, 2, 0, 3} → 5 at (0, 1); (1, 2) likewise. So y is all 5 and the gradient of
        // dy = 1 goes entirely to (0, 1) (6 windows) — the tie with (1, 0) is won by the first maximum.
        let d = Dims {
            planes: 1,
            h: 2,
            w: 3,
            r: 1,
        };
        let x = [1.0f64, 5.0, 2.0, 5.0, 0.0, 3.0];
        assert_eq!(cpu_forward(&x, d), vec![5.0; 6]);
        assert_eq!(
            cpu_backward(&x, &[1.0; 6], d),
            vec![0.0, 6.0, 0.0, 0.0, 0.0, 0.0]
        );
        // Padding never wins: an all-negative plane keeps its values' maxima.
        let neg = [-3.0f64, -1.0, -2.0, -4.0, -5.0, -6.0];
        assert_eq!(cpu_forward(&neg, d), vec![-1.0; 6]);
    }

    #[test]
    fn gradcheck_f64() {
        // Distinct values (no ties, so the max is differentiable), 2 planes of 5 × 4, k = 3 and 5.
        for r in [1, 2] {
            let d = Dims {
                planes: 2,
                h: 5,
                w: 4,
                r,
            };
            let x = random_vec(40, -1.0, 1.0, 3 + r as u64);
            gradcheck(
                "max_pool2d",
                &[x],
                &[],
                |i| cpu_forward(&i[0], d),
                |i, g| vec![cpu_backward(&i[0], g, d)],
            );
        }
    }
}
