//! Bilinear resize with `align_corners = False` (`F.interpolate(x, size=(OH, OW), mode="bilinear")`), used to
//! bring U-TAE's attention masks to each skip's resolution and by PaPs to resize shapes (also downsizing).
//!
//! Math (spec §10.2 item 11), separably in y and x: for output index o along an axis of input length `in`
//! and output length `out`, with the scale `r = in / out`:
//! `src = max((o + 0.5)·r − 0.5, 0)`, `i0 = ⌊src⌋`, `i1 = min(i0 + 1, in − 1)`, `λ = src − i0`, and
//! `y = (1−λy)·((1−λx)·x[i0y, i0x] + λx·x[i0y, i1x]) + λy·((1−λx)·x[i1y, i0x] + λx·x[i1y, i1x])`.
//!
//! **Scale and index arithmetic in f32, as PyTorch.** PyTorch (CPU and CUDA, f32 tensors, `size=` given)
//! computes `r = (float)in / out` and `src = r·(o + 0.5) − 0.5` in float. We do the same: the host computes
//! `r` as `in as f32 / out as f32` and passes it to the kernels, and the CPU reference computes the taps
//! (i0, i1, λ) in f32 whatever its float type, so the f64 reference (gradcheck) uses the very same weights.
//! (A GPU may fuse `(o + 0.5)·r − 0.5` into an fma: λ can then differ by an ulp, within `Tol::KERNEL`.)
//!
//! Derivative: y is linear in x: `dx[iy, ix] = Σ_{oy, ox} wy(oy, iy)·wx(ox, ix)·dy[oy, ox]` where `w(o, i)` is
//! `(1 − λ)` if `i = i0(o)` plus `λ` if `i = i1(o)`. Saved for backward: only the shapes.
//! Kernels: `upsample_bilinear.wgsl` (one invocation per output), `upsample_bilinear_backward.wgsl` (a gather:
//! one invocation per input pixel scans the few outputs that can read it). Shapes: x (N, C, H, W) → (N, C, OH, OW).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of upsample_bilinear.wgsl and upsample_bilinear_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    nc: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    scale_h: f32,
    scale_w: f32,
    _pad: u32,
}

/// Sizes: x (nc = N·C, in_h, in_w) → y (nc, out_h, out_w).
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// N·C planes.
    pub nc: usize,
    /// Input height H.
    pub in_h: usize,
    /// Input width W.
    pub in_w: usize,
    /// Output height OH.
    pub out_h: usize,
    /// Output width OW.
    pub out_w: usize,
}

impl Dims {
    fn params(self) -> Params {
        Params {
            nc: self.nc as u32,
            in_h: self.in_h as u32,
            in_w: self.in_w as u32,
            out_h: self.out_h as u32,
            out_w: self.out_w as u32,
            scale_h: scale(self.in_h, self.out_h),
            scale_w: scale(self.in_w, self.out_w),
            _pad: 0,
        }
    }
}

/// `r = in / out` in f32, as PyTorch's `area_pixel_compute_scale` without `scale_factor`.
pub fn scale(input: usize, output: usize) -> f32 {
    input as f32 / output as f32
}

/// The taps of every output index along one axis: `(i0, i1, 1 − λ, λ)`, computed in f32 (module doc).
pub fn taps<T: Real>(input: usize, output: usize) -> Vec<(usize, usize, T, T)> {
    let r = scale(input, output);
    (0..output)
        .map(|o| {
            let src = ((o as f32 + 0.5) * r - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let lambda = src - i0 as f32;
            let (w0, w1) = (
                T::from_f64((1.0 - lambda) as f64),
                T::from_f64(lambda as f64),
            );
            (i0, (i0 + 1).min(input - 1), w0, w1)
        })
        .collect()
}

/// `upsample_bilinear.wgsl`: x → y.
pub const UPSAMPLE_BILINEAR: Kernel =
    Kernel::new::<Params>(&shaders::UPSAMPLE_BILINEAR, "upsample_bilinear", 3);
/// `upsample_bilinear_backward.wgsl`: dy → dx.
pub const UPSAMPLE_BILINEAR_BACKWARD: Kernel = Kernel::new::<Params>(
    &shaders::UPSAMPLE_BILINEAR_BACKWARD,
    "upsample_bilinear_backward",
    3,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[UPSAMPLE_BILINEAR, UPSAMPLE_BILINEAR_BACKWARD];

// ---- CPU reference ----

/// x (N·C, H, W) → y (N·C, OH, OW).
pub fn cpu_forward<T: Real>(x: &[T], d: Dims) -> Vec<T> {
    let (ty, tx) = (taps::<T>(d.in_h, d.out_h), taps::<T>(d.in_w, d.out_w));
    let mut y = Vec::with_capacity(d.nc * d.out_h * d.out_w);
    for p in 0..d.nc {
        let plane = &x[p * d.in_h * d.in_w..(p + 1) * d.in_h * d.in_w];
        let at = |r: usize, c: usize| plane[r * d.in_w + c];
        for &(y0, y1, wy0, wy1) in &ty {
            for &(x0, x1, wx0, wx1) in &tx {
                let top = wx0 * at(y0, x0) + wx1 * at(y0, x1);
                let bottom = wx0 * at(y1, x0) + wx1 * at(y1, x1);
                y.push(wy0 * top + wy1 * bottom);
            }
        }
    }
    y
}

/// dy (N·C, OH, OW) → dx (N·C, H, W): each output scatters its gradient to its four taps.
pub fn cpu_backward<T: Real>(dy: &[T], d: Dims) -> Vec<T> {
    let (ty, tx) = (taps::<T>(d.in_h, d.out_h), taps::<T>(d.in_w, d.out_w));
    let mut dx = vec![T::zero(); d.nc * d.in_h * d.in_w];
    for p in 0..d.nc {
        let base = p * d.in_h * d.in_w;
        for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
                let g = dy[(p * d.out_h + oy) * d.out_w + ox];
                dx[base + y0 * d.in_w + x0] += wy0 * wx0 * g;
                dx[base + y0 * d.in_w + x1] += wy0 * wx1 * g;
                dx[base + y1 * d.in_w + x0] += wy1 * wx0 * g;
                dx[base + y1 * d.in_w + x1] += wy1 * wx1 * g;
            }
        }
    }
    dx
}

// ---- GPU ----

/// Launches upsample_bilinear.wgsl.
pub fn gpu_forward(x: &GpuStorage, d: Dims) -> GpuStorage {
    let n = d.nc * d.out_h * d.out_w;
    let y = GpuStorage::alloc(x.gpu, n, "upsample_bilinear");
    let bufs = [x.buffer(), y.buffer()];
    UPSAMPLE_BILINEAR.dispatch(x.gpu, &bufs, &d.params(), Grid::threads(n));
    y
}

/// Launches upsample_bilinear_backward.wgsl.
pub fn gpu_backward(dy: &GpuStorage, d: Dims) -> GpuStorage {
    let name = "upsample_bilinear_backward";
    let n = d.nc * d.in_h * d.in_w;
    let dx = GpuStorage::alloc(dy.gpu, n, name);
    let bufs = [dy.buffer(), dx.buffer()];
    UPSAMPLE_BILINEAR_BACKWARD.dispatch(dy.gpu, &bufs, &d.params(), Grid::threads(n));
    dx
}

// ---- Autograd ----

struct UpsampleBackward {
    in_shape: Vec<usize>,
    d: Dims,
}

impl Backward for UpsampleBackward {
    fn name(&self) -> &'static str {
        "upsample_bilinear"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "upsample_bilinear_backward";
        let storage = match dy.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(&dy.cpu_data(op), self.d)),
            Device::Gpu => Storage::Gpu(gpu_backward(dy.gpu_storage(op), self.d)),
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// Bilinear resize of x (N, C, H, W) to (N, C, `out_h`, `out_w`), `align_corners = False` (up or down).
    pub fn upsample_bilinear(&self, out_h: usize, out_w: usize) -> Tensor {
        let op = "upsample_bilinear";
        let sh = self.shape();
        assert!(
            sh.len() == 4 && sh[2] > 0 && sh[3] > 0,
            "{op}: expected x (N, C, H, W) with H, W > 0, got {sh:?}"
        );
        assert!(
            out_h > 0 && out_w > 0,
            "{op}: expected an output size > 0, got ({out_h}, {out_w})"
        );
        let d = Dims {
            nc: sh[0] * sh[1],
            in_h: sh[2],
            in_w: sh[3],
            out_h,
            out_w,
        };
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), d)),
        };
        let back = UpsampleBackward {
            in_shape: sh.to_vec(),
            d,
        };
        Tensor::from_op(&[sh[0], sh[1], out_h, out_w], storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // 1 → 2 ... along x: in = 2, out = 4, r = 1/2: src = (o + 0.5)/2 − 0.5 = (−0.25 → 0, 0.25, 0.75, 1.25),
        // taps (0, 1, λ 0), (0, 1, 1/4), (0, 1, 3/4), (1, 1, 1/4). Row (0, 4): y = (0, 1, 3, 4).
        let d = Dims {
            nc: 1,
            in_h: 1,
            in_w: 2,
            out_h: 1,
            out_w: 4,
        };
        assert_eq!(cpu_forward(&[0.0f64, 4.0], d), vec![0.0, 1.0, 3.0, 4.0]);
        // Backward of dy = 1: x0 gets 1 + 3/4 + 1/4 = 2, x1 gets 1/4 + 3/4 + 1 = 2.
        assert_eq!(cpu_backward(&[1.0f64; 4], d), vec![2.0, 2.0]);
        // Downsizing 4 → 2: r = 2, src = (0.5, 2.5): y = (x0 + x1)/2, (x2 + x3)/2 = (1, 6) for x = (0, 2, 4, 8).
        let d = Dims {
            nc: 1,
            in_h: 1,
            in_w: 4,
            out_h: 1,
            out_w: 2,
        };
        assert_eq!(cpu_forward(&[0.0f64, 2.0, 4.0, 8.0], d), vec![1.0, 6.0]);
    }

    #[test]
    fn gradcheck_f64() {
        // ×2, a non-integer factor (3×5 → 7×4: up in y, down in x) and a downsize.
        for (h, w, oh, ow) in [(3, 4, 6, 8), (3, 5, 7, 4), (6, 5, 2, 3)] {
            let d = Dims {
                nc: 2,
                in_h: h,
                in_w: w,
                out_h: oh,
                out_w: ow,
            };
            gradcheck(
                &format!("upsample_bilinear {d:?}"),
                &[random_vec(2 * h * w, -1.0, 1.0, 61)],
                &[],
                |v| cpu_forward(&v[0], d),
                |_, g| vec![cpu_backward(g, d)],
            );
        }
    }

    #[test]
    fn same_size_is_the_identity() {
        let x = Tensor::rand_uniform(&[1, 2, 3, 5], -1.0, 1.0, 9, Device::Cpu);
        assert_eq!(x.upsample_bilinear(3, 5).to_vec(), x.to_vec());
    }
}
