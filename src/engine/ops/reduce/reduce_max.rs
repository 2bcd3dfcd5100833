//! The maximum along one axis (values; the argmax is saved for backward) and `argmax`.
//!
//! Math, for x viewed as (outer, r, inner) around the reduced axis: `y[o, k] = max_j x[o, j, k]`,
//! `idx[o, k]` = the first maximal j; `dx[o, j, k] = dy[o, k]` where `j = idx[o, k]`, else 0 (ties: all of the
//! gradient to the first maximum, as torch.max(dim) does). Saved for backward: the indices.
//! Kernels: `reduce_max.wgsl` (one invocation per output: value and index), `reduce_max_backward.wgsl`
//! (one per dx element). `argmax` reads only the indices back.

use crate::engine::autograd::Backward;
use crate::engine::decisions;
use crate::engine::gpu::Gpu;
use crate::engine::kernel::{upload_u32, Grid, Kernel};
use crate::engine::pool::PooledBuffer;
use crate::engine::real::Real;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of reduce_max.wgsl and reduce_max_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MaxParams {
    outer: u32,
    r: u32,
    inner: u32,
    _pad: u32,
}

/// `reduce_max.wgsl`: x (outer, R, inner) → max and argmax (outer, inner).
pub const REDUCE_MAX: Kernel = Kernel::new::<MaxParams>(&shaders::REDUCE_MAX, "reduce_max", 4);
/// `reduce_max_backward.wgsl`: dy, argmax → dx (outer, R, inner).
pub const REDUCE_MAX_BACKWARD: Kernel =
    Kernel::new::<MaxParams>(&shaders::REDUCE_MAX_BACKWARD, "reduce_max_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[REDUCE_MAX, REDUCE_MAX_BACKWARD];

// ---- CPU reference ----

/// x (outer, r, inner) → (max over r, index of the first max), both (outer, inner).
pub fn cpu_max<T: Real>(x: &[T], outer: usize, r: usize, inner: usize) -> (Vec<T>, Vec<u32>) {
    let mut y = Vec::with_capacity(outer * inner);
    let mut idx = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for k in 0..inner {
            let (mut best, mut arg) = (x[o * r * inner + k], 0u32);
            for j in 1..r {
                let v = x[(o * r + j) * inner + k];
                if v > best {
                    best = v;
                    arg = j as u32;
                }
            }
            y.push(best);
            idx.push(arg);
        }
    }
    (y, idx)
}

/// dy, idx (outer, inner) → dx (outer, r, inner): dy at the argmax, 0 elsewhere.
pub fn cpu_max_backward<T: Real>(
    dy: &[T],
    idx: &[u32],
    outer: usize,
    r: usize,
    inner: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); outer * r * inner];
    for o in 0..outer {
        for k in 0..inner {
            dx[(o * r + idx[o * inner + k] as usize) * inner + k] = dy[o * inner + k];
        }
    }
    dx
}

// ---- GPU ----

/// Max over r: values (outer, inner) and argmax indices (u32).
pub fn gpu_max(x: &GpuStorage, outer: usize, r: usize, inner: usize) -> (GpuStorage, PooledBuffer) {
    let n = outer * inner;
    let y = GpuStorage::alloc(x.gpu, n, "reduce_max");
    let idx = x.gpu.pooled(4 * n as u64);
    let p = MaxParams {
        outer: outer as u32,
        r: r as u32,
        inner: inner as u32,
        _pad: 0,
    };
    REDUCE_MAX.dispatch(
        x.gpu,
        &[x.buffer(), y.buffer(), idx.buffer()],
        &p,
        Grid::threads(n),
    );
    (y, idx)
}

/// Gradient of max: dy, idx (outer, inner) → dx (outer, r, inner).
pub fn gpu_max_backward(
    dy: &GpuStorage,
    idx: &PooledBuffer,
    outer: usize,
    r: usize,
    inner: usize,
) -> GpuStorage {
    let n = outer * r * inner;
    let dx = GpuStorage::alloc(dy.gpu, n, "reduce_max_backward");
    let p = MaxParams {
        outer: outer as u32,
        r: r as u32,
        inner: inner as u32,
        _pad: 0,
    };
    let bufs = [dy.buffer(), idx.buffer(), dx.buffer()];
    REDUCE_MAX_BACKWARD.dispatch(dy.gpu, &bufs, &p, Grid::threads(n));
    dx
}

// ---- Autograd ----

enum SavedIdx {
    Cpu(Vec<u32>),
    Gpu(PooledBuffer),
}

impl SavedIdx {
    /// The same indices with `(output, position)` overrides (the decision diagnosis's flips; `n` outputs).
    fn with_choices(self, choices: &[(usize, u32)], n: usize) -> SavedIdx {
        let (mut v, gpu) = match self {
            SavedIdx::Cpu(v) => (v, None),
            SavedIdx::Gpu(b) => {
                let gpu = Gpu::get().expect("a GPU index buffer implies a GPU");
                let bytes = gpu.read_buffer(b.buffer(), 4 * n as u64);
                (bytemuck::pod_collect_to_vec::<u8, u32>(&bytes), Some(gpu))
            }
        };
        for &(i, j) in choices {
            v[i] = j;
        }
        match gpu {
            None => SavedIdx::Cpu(v),
            Some(gpu) => SavedIdx::Gpu(upload_u32(gpu, &v)),
        }
    }
}

struct MaxBackward {
    idx: SavedIdx,
    in_shape: Vec<usize>,
    axis: usize,
    /// The decision recorder's site (diagnostics only, `engine::decisions`).
    site: Option<usize>,
}
impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        decisions::on_backward(self.site, dy);
        let (o, r, i) = shape::outer_axis_inner(&self.in_shape, self.axis);
        let storage = match &self.idx {
            SavedIdx::Cpu(idx) => {
                Tensor::cpu_storage(cpu_max_backward(&dy.cpu_data("max_backward"), idx, o, r, i))
            }
            SavedIdx::Gpu(idx) => Storage::Gpu(gpu_max_backward(
                dy.gpu_storage("max_backward"),
                idx,
                o,
                r,
                i,
            )),
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// Index of the first maximum along `axis`, read back to the host (torch.argmax; no gradient). On the
    /// GPU only the indices cross the bus (the `reduce_max` kernel's argmax), not the whole tensor.
    pub fn argmax(&self, axis: isize) -> Vec<i64> {
        let ax = shape::norm_axis(axis, self.rank(), "argmax");
        let (o, r, i) = shape::outer_axis_inner(self.shape(), ax);
        assert!(r > 0, "argmax: axis {ax} of {:?} is empty", self.shape());
        decisions::on_max(self, ax, decisions::Kind::Argmax); // diagnostics only (engine::decisions)
        let idx = match self.device() {
            Device::Cpu => cpu_max(&self.cpu_data("argmax"), o, r, i).1,
            Device::Gpu => {
                let g = self.gpu_storage("argmax");
                let (_, idx) = gpu_max(g, o, r, i);
                bytemuck::cast_slice(&g.gpu.read_buffer(idx.buffer(), 4 * (o * i) as u64)).to_vec()
            }
        };
        idx.into_iter().map(i64::from).collect()
    }

    /// Maximum over one axis (values; the gradient flows to the first maximum).
    pub fn max(&self, axis: isize, keepdim: bool) -> Tensor {
        let ax = shape::norm_axis(axis, self.rank(), "max");
        let (o, r, i) = shape::outer_axis_inner(self.shape(), ax);
        assert!(r > 0, "max: axis {ax} of {:?} is empty", self.shape());
        // Diagnostics only (engine::decisions): recorded, and maybe flipped, while a recorder runs.
        let hook = decisions::on_max(self, ax, decisions::Kind::Max);
        let mut out = self.shape().to_vec();
        if keepdim {
            out[ax] = 1;
        } else {
            out.remove(ax);
        }
        let (storage, mut idx) = match self.device() {
            Device::Cpu => {
                let (y, idx) = cpu_max(&self.cpu_data("max"), o, r, i);
                (Tensor::cpu_storage(y), SavedIdx::Cpu(idx))
            }
            Device::Gpu => {
                let (y, idx) = gpu_max(self.gpu_storage("max"), o, r, i);
                (Storage::Gpu(y), SavedIdx::Gpu(idx))
            }
        };
        if !hook.choices.is_empty() {
            // Diagnostics: flipped decisions send their gradient to the runner-up (forward unchanged).
            idx = idx.with_choices(&hook.choices, o * i);
        }
        let back = MaxBackward {
            idx,
            in_shape: self.shape().to_vec(),
            axis: ax,
            site: hook.site,
        };
        Tensor::from_op(&out, storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x = [[1, 5, 2], [7, 3, 7]] (2, 3): max over axis 1 = (5, 7), the first max of row 2 at 0; the gradient
        // of Σ max goes to those two positions.
        let x = [1.0f32, 5.0, 2.0, 7.0, 3.0, 7.0];
        assert_eq!(cpu_max(&x, 2, 3, 1), (vec![5.0, 7.0], vec![1, 0]));
        let t = Tensor::from_vec(x.to_vec(), &[2, 3], Device::Cpu).requires_grad_();
        t.max(1, false).sum_all().backward();
        assert_eq!(
            t.grad().unwrap().to_vec(),
            vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn gradcheck_f64() {
        // Distinct values, so the argmax does not switch under the ±eps nudge.
        let (o, r, i) = (2, 5, 3);
        let x = random_vec(o * r * i, -1.0, 1.0, 7);
        gradcheck(
            "max",
            &[x],
            &[],
            |v| cpu_max(&v[0], o, r, i).0,
            |v, g| vec![cpu_max_backward(g, &cpu_max(&v[0], o, r, i).1, o, r, i)],
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        // (2, 3) rows [1, 5, 5] and [7, 3, 7]: first maxima at 1 and 0; columns (1, 7), (5, 3), (5, 7): [1, 0, 1].
        let t = Tensor::from_vec(vec![1.0, 5.0, 5.0, 7.0, 3.0, 7.0], &[2, 3], Device::Cpu);
        assert_eq!(t.argmax(1), vec![1, 0]);
        assert_eq!(t.argmax(0), vec![1, 0, 1]);
    }
}
