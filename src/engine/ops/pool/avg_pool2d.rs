//! Average pooling `F.avg_pool2d(x, kernel, stride)`: no padding, `ceil_mode = False` (floor), so every
//! window lies inside the input and the divisor is always k·k. (Used by U-TAE's temporal aggregator when a
//! skip is smaller than the attention map, and by the PaPs baselines.)
//!
//! Math: x (N, C, H, W) → y (N, C, OH, OW) with `OH = (H − k)/s + 1`, `OW = (W − k)/s + 1` (integer division),
//! `y[oy, ox] = Σ_{a, b < k} x[oy·s + a, ox·s + b] / (k·k)`.
//! Derivative: `dx[iy, ix] = Σ dy[oy, ox] / (k·k)` over the windows containing (iy, ix), i.e.
//! `oy ∈ [⌈(iy − k + 1)/s⌉, ⌊iy/s⌋] ∩ [0, OH)` and likewise for ox; pixels in no window get 0.
//! Saved for backward: only the shapes. Kernels: `avg_pool2d.wgsl` (one invocation per output),
//! `avg_pool2d_backward.wgsl` (a gather: one invocation per input pixel).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of avg_pool2d.wgsl and avg_pool2d_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    nc: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k: u32,
    stride: u32,
    _pad: u32,
}

/// Sizes: x (nc = N·C, in_h, in_w), kernel k, stride s → y (nc, out_h, out_w).
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// N·C planes.
    pub nc: usize,
    /// Input height H.
    pub in_h: usize,
    /// Input width W.
    pub in_w: usize,
    /// Window size k.
    pub k: usize,
    /// Stride s.
    pub stride: usize,
}

impl Dims {
    /// (OH, OW) = ((H − k)/s + 1, (W − k)/s + 1).
    pub fn out(self) -> (usize, usize) {
        (
            (self.in_h - self.k) / self.stride + 1,
            (self.in_w - self.k) / self.stride + 1,
        )
    }

    fn params(self) -> Params {
        let (oh, ow) = self.out();
        Params {
            nc: self.nc as u32,
            in_h: self.in_h as u32,
            in_w: self.in_w as u32,
            out_h: oh as u32,
            out_w: ow as u32,
            k: self.k as u32,
            stride: self.stride as u32,
            _pad: 0,
        }
    }
}

/// `avg_pool2d.wgsl`: x → y.
pub const AVG_POOL2D: Kernel = Kernel::new::<Params>(&shaders::AVG_POOL2D, "avg_pool2d", 3);
/// `avg_pool2d_backward.wgsl`: dy → dx.
pub const AVG_POOL2D_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::AVG_POOL2D_BACKWARD, "avg_pool2d_backward", 3);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[AVG_POOL2D, AVG_POOL2D_BACKWARD];

// ---- CPU reference ----

/// x (N·C, H, W) → y (N·C, OH, OW).
pub fn cpu_forward<T: Real>(x: &[T], d: Dims) -> Vec<T> {
    let (oh, ow) = d.out();
    let div = T::from_f64((d.k * d.k) as f64);
    let mut y = Vec::with_capacity(d.nc * oh * ow);
    for p in 0..d.nc {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = T::zero();
                for a in 0..d.k {
                    for b in 0..d.k {
                        acc += x[(p * d.in_h + oy * d.stride + a) * d.in_w + ox * d.stride + b];
                    }
                }
                y.push(acc / div);
            }
        }
    }
    y
}

/// dy (N·C, OH, OW) → dx (N·C, H, W): each output spreads dy / (k·k) over its window.
pub fn cpu_backward<T: Real>(dy: &[T], d: Dims) -> Vec<T> {
    let (oh, ow) = d.out();
    let div = T::from_f64((d.k * d.k) as f64);
    let mut dx = vec![T::zero(); d.nc * d.in_h * d.in_w];
    for p in 0..d.nc {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = dy[(p * oh + oy) * ow + ox] / div;
                for a in 0..d.k {
                    for b in 0..d.k {
                        dx[(p * d.in_h + oy * d.stride + a) * d.in_w + ox * d.stride + b] += g;
                    }
                }
            }
        }
    }
    dx
}

// ---- GPU ----

/// Launches avg_pool2d.wgsl.
pub fn gpu_forward(x: &GpuStorage, d: Dims) -> GpuStorage {
    let (oh, ow) = d.out();
    let n = d.nc * oh * ow;
    let y = GpuStorage::alloc(x.gpu, n, "avg_pool2d");
    AVG_POOL2D.dispatch(
        x.gpu,
        &[x.buffer(), y.buffer()],
        &d.params(),
        Grid::threads(n),
    );
    y
}

/// Launches avg_pool2d_backward.wgsl.
pub fn gpu_backward(dy: &GpuStorage, d: Dims) -> GpuStorage {
    let name = "avg_pool2d_backward";
    let n = d.nc * d.in_h * d.in_w;
    let dx = GpuStorage::alloc(dy.gpu, n, name);
    AVG_POOL2D_BACKWARD.dispatch(
        dy.gpu,
        &[dy.buffer(), dx.buffer()],
        &d.params(),
        Grid::threads(n),
    );
    dx
}

// ---- Autograd ----

struct AvgPoolBackward {
    in_shape: Vec<usize>,
    d: Dims,
}

impl Backward for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "avg_pool2d_backward";
        let storage = match dy.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(&dy.cpu_data(op), self.d)),
            Device::Gpu => Storage::Gpu(gpu_backward(dy.gpu_storage(op), self.d)),
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// `F.avg_pool2d(x, kernel, stride)` on x (N, C, H, W): no padding, floor mode.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Tensor {
        let op = "avg_pool2d";
        let sh = self.shape();
        assert!(
            sh.len() == 4 && kernel > 0 && stride > 0 && sh[2] >= kernel && sh[3] >= kernel,
            "{op}: expected x (N, C, H, W) with H, W ≥ kernel {kernel} and stride {stride} > 0, got {sh:?}"
        );
        let d = Dims {
            nc: sh[0] * sh[1],
            in_h: sh[2],
            in_w: sh[3],
            k: kernel,
            stride,
        };
        let (oh, ow) = d.out();
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), d)),
        };
        let back = AvgPoolBackward {
            in_shape: sh.to_vec(),
            d,
        };
        Tensor::from_op(&[sh[0], sh[1], oh, ow], storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x (1, 1, 3, 3) = 1..9, k = 2, s = 1: OH = OW = 2, y = ((1+2+4+5)/4, (2+3+5+6)/4, ...) = (3, 4, 6, 7).
        let d = Dims {
            nc: 1,
            in_h: 3,
            in_w: 3,
            k: 2,
            stride: 1,
        };
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(cpu_forward(&x, d), vec![3.0, 4.0, 6.0, 7.0]);
        // dy = 1: each pixel gets (number of windows containing it)/4: corners 1/4, edges 2/4, centre 4/4.
        assert_eq!(
            cpu_backward(&[1.0f64; 4], d),
            vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]
        );
        // k = 2, s = 2 on 3×3 (floor mode): one window, the last row and column are unused (gradient 0).
        let d = Dims { stride: 2, ..d };
        assert_eq!(cpu_forward(&x, d), vec![3.0]);
        assert_eq!(
            cpu_backward(&[4.0f64], d),
            vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn gradcheck_f64() {
        for (k, s) in [(2, 2), (3, 2), (2, 3)] {
            let d = Dims {
                nc: 2,
                in_h: 7,
                in_w: 6,
                k,
                stride: s,
            };
            gradcheck(
                &format!("avg_pool2d {d:?}"),
                &[random_vec(2 * 7 * 6, -1.0, 1.0, 71)],
                &[],
                |v| cpu_forward(&v[0], d),
                |_, g| vec![cpu_backward(g, d)],
            );
        }
    }
}
