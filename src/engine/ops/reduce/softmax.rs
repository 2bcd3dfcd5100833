//! Softmax along one axis.
//!
//! Math: `y_j = e^{x_j - m} / Σ_i e^{x_i - m}` with `m = max_i x_i` (subtracting the max changes nothing but
//! keeps e^x finite). Derivative: the Jacobian is `diag(y) - y yᵀ`, so `dx_j = y_j (dy_j - Σ_i dy_i y_i)`.
//! Saved for backward: the output y. Shapes: any; the axis is viewed as (outer, r, inner).
//! Kernels: `softmax.wgsl`, `softmax_backward.wgsl` (one invocation per row).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of softmax.wgsl and softmax_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    outer: u32,
    r: u32,
    inner: u32,
    _pad: u32,
}

/// `softmax.wgsl`: x → y along an axis.
pub const SOFTMAX: Kernel = Kernel::new::<Params>(&shaders::SOFTMAX, "softmax", 3);
/// `softmax_backward.wgsl`: y, dy → dx.
pub const SOFTMAX_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::SOFTMAX_BACKWARD, "softmax_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[SOFTMAX, SOFTMAX_BACKWARD];

// ---- CPU reference ----

/// x (outer, r, inner) → y (outer, r, inner), softmax over r.
pub fn cpu_forward<T: Real>(x: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    for o in 0..outer {
        for k in 0..inner {
            let at = |j: usize| (o * r + j) * inner + k;
            let mut m = x[at(0)];
            for j in 1..r {
                m = m.max(x[at(j)]);
            }
            let mut s = T::zero();
            for j in 0..r {
                s += (x[at(j)] - m).exp();
            }
            for j in 0..r {
                y[at(j)] = (x[at(j)] - m).exp() / s;
            }
        }
    }
    y
}

/// y, dy (outer, r, inner) → dx = y (dy - Σ dy y).
pub fn cpu_backward<T: Real>(y: &[T], dy: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    for o in 0..outer {
        for k in 0..inner {
            let at = |j: usize| (o * r + j) * inner + k;
            let mut dot = T::zero();
            for j in 0..r {
                dot += dy[at(j)] * y[at(j)];
            }
            for j in 0..r {
                dx[at(j)] = y[at(j)] * (dy[at(j)] - dot);
            }
        }
    }
    dx
}

// ---- GPU ----

fn params(outer: usize, r: usize, inner: usize) -> Params {
    Params {
        outer: outer as u32,
        r: r as u32,
        inner: inner as u32,
        _pad: 0,
    }
}

/// Launches softmax.wgsl.
pub fn gpu_forward(x: &GpuStorage, outer: usize, r: usize, inner: usize) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, outer * r * inner, "softmax");
    let p = params(outer, r, inner);
    SOFTMAX.dispatch(
        x.gpu,
        &[x.buffer(), y.buffer()],
        &p,
        Grid::threads(outer * inner),
    );
    y
}

/// Launches softmax_backward.wgsl.
pub fn gpu_backward(
    y: &GpuStorage,
    dy: &GpuStorage,
    outer: usize,
    r: usize,
    inner: usize,
) -> GpuStorage {
    let dx = GpuStorage::alloc(y.gpu, outer * r * inner, "softmax_backward");
    let p = params(outer, r, inner);
    let bufs = [y.buffer(), dy.buffer(), dx.buffer()];
    SOFTMAX_BACKWARD.dispatch(y.gpu, &bufs, &p, Grid::threads(outer * inner));
    dx
}

// ---- Autograd ----

struct SoftmaxBackward {
    y: Tensor,
    axis: usize,
}

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let (o, r, i) = shape::outer_axis_inner(self.y.shape(), self.axis);
        let storage = match Tensor::same_device("softmax_backward", &[&self.y, dy]) {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(
                &self.y.cpu_data("softmax"),
                &dy.cpu_data("softmax"),
                o,
                r,
                i,
            )),
            Device::Gpu => Storage::Gpu(gpu_backward(
                self.y.gpu_storage("softmax"),
                dy.gpu_storage("softmax"),
                o,
                r,
                i,
            )),
        };
        vec![Some(Tensor::from_storage(self.y.shape(), storage))]
    }
}

impl Tensor {
    /// Softmax along `axis` (negative counts from the end).
    pub fn softmax(&self, axis: isize) -> Tensor {
        let ax = shape::norm_axis(axis, self.rank(), "softmax");
        let (o, r, i) = shape::outer_axis_inner(self.shape(), ax);
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data("softmax"), o, r, i)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage("softmax"), o, r, i)),
        };
        let y = Tensor::from_storage(self.shape(), storage);
        y.attach_op(
            &[self],
            SoftmaxBackward {
                y: y.clone(),
                axis: ax,
            },
        )
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // softmax(0, ln 3) = (1/4, 3/4); adding 1000 to both changes nothing (max subtracted).
        let y = cpu_forward(&[1000.0f64, 1000.0 + 3f64.ln()], 1, 2, 1);
        assert!((y[0] - 0.25).abs() < 1e-12 && (y[1] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn gradcheck_f64() {
        let (o, r, i) = (2, 4, 3);
        gradcheck(
            "softmax",
            &[random_vec(o * r * i, -2.0, 2.0, 11)],
            &[],
            |v| cpu_forward(&v[0], o, r, i),
            |v, g| vec![cpu_backward(&cpu_forward(&v[0], o, r, i), g, o, r, i)],
        );
    }
}
