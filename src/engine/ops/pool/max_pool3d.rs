//! 3-D max pooling, `nn.MaxPool3d(k)` (window k³, stride k, no padding, floor mode): U-Net 3D's pooling,
//! which halves depth (time) together with height and width.
//!
//! Math: x (N, C, D, H, W) → y (N, C, D/k, H/k, W/k), `y[.., od, oh, ow] = max_{a, b, e < k}
//! x[.., od·k + a, oh·k + b, ow·k + e]`; the window is scanned depth-major and only a strictly larger value
//! replaces the running maximum, so a tie goes to the first position, as PyTorch's kernels.
//! Derivative: dy flows to the chosen position of each window (ties: the first); every other element,
//! including the trailing planes no window covers (odd sizes), gets 0.
//! Saved for backward: x (the backward rescans each window). Kernels: `max_pool3d.wgsl` (one invocation per
//! output), `max_pool3d_backward.wgsl` (a gather: one invocation per input element).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of max_pool3d.wgsl and max_pool3d_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    nc: u32,
    d: u32,
    h: u32,
    w: u32,
    k: u32,
    d_out: u32,
    h_out: u32,
    w_out: u32,
}

/// `max_pool3d.wgsl`: x → y.
pub const MAX_POOL3D: Kernel = Kernel::new::<Params>(&shaders::MAX_POOL3D, "max_pool3d", 3);
/// `max_pool3d_backward.wgsl`: x, dy → dx.
pub const MAX_POOL3D_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::MAX_POOL3D_BACKWARD, "max_pool3d_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[MAX_POOL3D, MAX_POOL3D_BACKWARD];

/// Sizes: x (nc = N·C, d, h, w), window k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// N·C planes.
    pub nc: usize,
    /// D.
    pub d: usize,
    /// H.
    pub h: usize,
    /// W.
    pub w: usize,
    /// Window (and stride) k.
    pub k: usize,
}

impl Dims {
    /// (D/k, H/k, W/k).
    pub fn out(&self) -> [usize; 3] {
        [self.d / self.k, self.h / self.k, self.w / self.k]
    }

    fn params(&self) -> Params {
        let [d_out, h_out, w_out] = self.out().map(|v| v as u32);
        Params {
            nc: self.nc as u32,
            d: self.d as u32,
            h: self.h as u32,
            w: self.w as u32,
            k: self.k as u32,
            d_out,
            h_out,
            w_out,
        }
    }

    /// The input index of the first maximum of output window `o` (nc-plane major).
    fn argmax<T: Real>(&self, x: &[T], o: usize) -> usize {
        let [dd, hh, ww] = self.out();
        let (ow, oh, od, pl) = (
            o % ww,
            (o / ww) % hh,
            (o / (ww * hh)) % dd,
            o / (ww * hh * dd),
        );
        let k = self.k;
        let idx = |a: usize, b: usize, e: usize| {
            ((pl * self.d + od * k + a) * self.h + oh * k + b) * self.w + ow * k + e
        };
        let mut best = idx(0, 0, 0);
        for a in 0..k {
            for b in 0..k {
                for e in 0..k {
                    if x[idx(a, b, e)] > x[best] {
                        best = idx(a, b, e);
                    }
                }
            }
        }
        best
    }
}

// ---- CPU reference ----

/// x (N·C, D, H, W) → y (N·C, D/k, H/k, W/k).
pub fn cpu_forward<T: Real>(x: &[T], d: &Dims) -> Vec<T> {
    let n = d.nc * d.out().iter().product::<usize>();
    (0..n).map(|o| x[d.argmax(x, o)]).collect()
}

/// dx from x and dy.
pub fn cpu_backward<T: Real>(x: &[T], dy: &[T], d: &Dims) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    for (o, &g) in dy.iter().enumerate() {
        dx[d.argmax(x, o)] += g;
    }
    dx
}

// ---- GPU ----

/// Launches max_pool3d.wgsl.
pub fn gpu_forward(x: &GpuStorage, d: &Dims) -> GpuStorage {
    let n = d.nc * d.out().iter().product::<usize>();
    let y = GpuStorage::alloc(x.gpu, n, "max_pool3d");
    let grid = Grid::threads(n).loop_len(d.k.pow(3));
    MAX_POOL3D.dispatch(x.gpu, &[x.buffer(), y.buffer()], &d.params(), grid);
    y
}

/// Launches max_pool3d_backward.wgsl.
pub fn gpu_backward(x: &GpuStorage, dy: &GpuStorage, d: &Dims) -> GpuStorage {
    let n = d.nc * d.d * d.h * d.w;
    let dx = GpuStorage::alloc(x.gpu, n, "max_pool3d_backward");
    let grid = Grid::threads(n).loop_len(d.k.pow(3));
    MAX_POOL3D_BACKWARD.dispatch(
        x.gpu,
        &[x.buffer(), dy.buffer(), dx.buffer()],
        &d.params(),
        grid,
    );
    dx
}

// ---- Autograd ----

impl Tensor {
    /// `nn.MaxPool3d(k)`: x (N, C, D, H, W) → (N, C, D/k, H/k, W/k), window = stride = k, floor.
    pub fn max_pool3d(&self, k: usize) -> Tensor {
        let s = self.shape();
        assert!(
            s.len() == 5 && k >= 1 && s[2] >= k && s[3] >= k && s[4] >= k,
            "max_pool3d: expected x (N, C, D, H, W) with D, H, W >= k = {k}, got {s:?}"
        );
        let d = Dims {
            nc: s[0] * s[1],
            d: s[2],
            h: s[3],
            w: s[4],
            k,
        };
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data("max_pool3d"), &d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage("max_pool3d"), &d)),
        };
        let [dd, hh, ww] = d.out();
        Tensor::from_op(
            &[s[0], s[1], dd, hh, ww],
            storage,
            &[self],
            MaxPool3dBackward { x: self.clone(), d },
        )
    }
}

struct MaxPool3dBackward {
    x: Tensor,
    d: Dims,
}

impl Backward for MaxPool3dBackward {
    fn name(&self) -> &'static str {
        "max_pool3d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let x = &self.x;
        let storage = match Tensor::same_device("max_pool3d_backward", &[x, dy]) {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(
                &x.cpu_data("max_pool3d"),
                &dy.cpu_data("max_pool3d"),
                &self.d,
            )),
            Device::Gpu => Storage::Gpu(gpu_backward(
                x.gpu_storage("max_pool3d"),
                dy.gpu_storage("max_pool3d"),
                &self.d,
            )),
        };
        vec![Some(Tensor::from_storage(x.shape(), storage))]
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values_and_ties() {
        // One 2×2×3 plane (D 2, H 2, W 3), k 2: one window (the first two columns); the third column is
        // covered by none. x = t·10 + r·3 + q: the maximum is at (1, 1, 1) = 14.
        let d = Dims {
            nc: 1,
            d: 2,
            h: 2,
            w: 3,
            k: 2,
        };
        let x: Vec<f64> = (0..12)
            .map(|i| ((i / 6) * 10 + ((i / 3) % 2) * 3 + i % 3) as f64)
            .collect();
        assert_eq!(cpu_forward(&x, &d), vec![14.0]);
        let dx = cpu_backward(&x, &[1.0], &d);
        assert_eq!(dx.iter().sum::<f64>(), 1.0);
        assert_eq!(dx[10], 1.0); // (t 1, r 1, q 1)
                                 // All equal: the first position of the window takes the gradient.
        let dx = cpu_backward(&[5.0f64; 12], &[2.0], &d);
        assert_eq!((dx[0], dx.iter().sum::<f64>()), (2.0, 2.0));
    }

    #[test]
    fn gradcheck_f64() {
        // Odd sizes (trailing planes uncovered); distinct values so no tie sits within eps.
        let d = Dims {
            nc: 3,
            d: 5,
            h: 4,
            w: 5,
            k: 2,
        };
        let n = d.nc * d.d * d.h * d.w;
        let mut x = random_vec(n, -1.0, 1.0, 9);
        for (i, v) in x.iter_mut().enumerate() {
            *v += i as f64 * 1e-3;
        }
        gradcheck(
            "max_pool3d",
            &[x],
            &[],
            |v| cpu_forward(&v[0], &d),
            |v, g| vec![cpu_backward(&v[0], g, &d)],
        );
    }
}
