//! index_select: picks entries of one axis by index (torch.index_select), indices may repeat.
//!
//! Math: x viewed as (outer, n_in, inner), `y[o, j, k] = x[o, idx[j], k]`. Derivative: each input row gets
//! the sum of the output gradients of the positions that picked it, `dx[o, i, k] = Σ_{j: idx[j]=i} dy[o, j, k]`
//! — computed as a gather (no atomics), so repeated indices are deterministic. Saved: the indices.
//! Kernels: `index_select.wgsl`, `index_select_backward.wgsl`.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{upload_u32, Grid, Kernel};
use crate::engine::pool::PooledBuffer;
use crate::engine::real::Real;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of index_select.wgsl and index_select_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    outer: u32,
    n_in: u32,
    n_idx: u32,
    inner: u32,
}

/// `index_select.wgsl`: x, indices → y.
pub const INDEX_SELECT: Kernel = Kernel::new::<Params>(&shaders::INDEX_SELECT, "index_select", 4);
/// `index_select_backward.wgsl`: dy, indices → dx (gather over the indices that chose each row).
pub const INDEX_SELECT_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::INDEX_SELECT_BACKWARD, "index_select_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[INDEX_SELECT, INDEX_SELECT_BACKWARD];

// ---- CPU reference ----

/// x (outer, n_in, inner) → y (outer, idx.len(), inner).
pub fn cpu_forward<T: Real>(
    x: &[T],
    idx: &[u32],
    outer: usize,
    n_in: usize,
    inner: usize,
) -> Vec<T> {
    let mut y = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            y.extend_from_slice(&x[(o * n_in + i as usize) * inner..][..inner]);
        }
    }
    y
}

/// dy (outer, idx.len(), inner) → dx (outer, n_in, inner).
pub fn cpu_backward<T: Real>(
    dy: &[T],
    idx: &[u32],
    outer: usize,
    n_in: usize,
    inner: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); outer * n_in * inner];
    for o in 0..outer {
        for (j, &i) in idx.iter().enumerate() {
            for k in 0..inner {
                dx[(o * n_in + i as usize) * inner + k] += dy[(o * idx.len() + j) * inner + k];
            }
        }
    }
    dx
}

// ---- GPU ----

fn params(outer: usize, n_in: usize, n_idx: usize, inner: usize) -> Params {
    Params {
        outer: outer as u32,
        n_in: n_in as u32,
        n_idx: n_idx as u32,
        inner: inner as u32,
    }
}

/// Launches index_select.wgsl.
pub fn gpu_forward(
    x: &GpuStorage,
    idx: &PooledBuffer,
    n_idx: usize,
    outer: usize,
    n_in: usize,
    inner: usize,
) -> GpuStorage {
    let n = outer * n_idx * inner;
    let y = GpuStorage::alloc(x.gpu, n, "index_select");
    let p = params(outer, n_in, n_idx, inner);
    INDEX_SELECT.dispatch(
        x.gpu,
        &[x.buffer(), idx.buffer(), y.buffer()],
        &p,
        Grid::threads(n),
    );
    y
}

/// Launches index_select_backward.wgsl.
pub fn gpu_backward(
    dy: &GpuStorage,
    idx: &PooledBuffer,
    n_idx: usize,
    outer: usize,
    n_in: usize,
    inner: usize,
) -> GpuStorage {
    let n = outer * n_in * inner;
    let dx = GpuStorage::alloc(dy.gpu, n, "index_select_backward");
    let p = params(outer, n_in, n_idx, inner);
    let bufs = [dy.buffer(), idx.buffer(), dx.buffer()];
    INDEX_SELECT_BACKWARD.dispatch(dy.gpu, &bufs, &p, Grid::threads(n));
    dx
}

// ---- Autograd ----

struct IndexSelectBackward {
    idx: Vec<u32>,
    gpu_idx: Option<PooledBuffer>,
    in_shape: Vec<usize>,
    axis: usize,
}

impl Backward for IndexSelectBackward {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let (o, n_in, i) = shape::outer_axis_inner(&self.in_shape, self.axis);
        let storage = match &self.gpu_idx {
            None => Tensor::cpu_storage(cpu_backward(
                &dy.cpu_data("index_select"),
                &self.idx,
                o,
                n_in,
                i,
            )),
            Some(b) => Storage::Gpu(gpu_backward(
                dy.gpu_storage("index_select"),
                b,
                self.idx.len(),
                o,
                n_in,
                i,
            )),
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// Entries `indices` of `axis` (torch.index_select). Panics naming the index when one is out of range.
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Tensor {
        let ax = shape::norm_axis(axis, self.rank(), "index_select");
        let (o, n_in, i) = shape::outer_axis_inner(self.shape(), ax);
        if let Some(&bad) = indices.iter().find(|&&j| j >= n_in) {
            panic!(
                "index_select: index {bad} out of range for axis {ax} of {:?}",
                self.shape()
            );
        }
        let idx: Vec<u32> = indices.iter().map(|&j| j as u32).collect();
        let mut out = self.shape().to_vec();
        out[ax] = idx.len();
        let (storage, gpu_idx) = match self.device() {
            Device::Cpu => (
                Tensor::cpu_storage(cpu_forward(
                    &self.cpu_data("index_select"),
                    &idx,
                    o,
                    n_in,
                    i,
                )),
                None,
            ),
            Device::Gpu => {
                let g = self.gpu_storage("index_select");
                let b = upload_u32(g.gpu, &idx);
                (
                    Storage::Gpu(gpu_forward(g, &b, idx.len(), o, n_in, i)),
                    Some(b),
                )
            }
        };
        let back = IndexSelectBackward {
            idx,
            gpu_idx,
            in_shape: self.shape().to_vec(),
            axis: ax,
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
    fn exact_values_with_repeats() {
        // rows of [[1, 2], [3, 4], [5, 6]] picked (2, 0, 2): [[5, 6], [1, 2], [5, 6]]; dx with dy = 1 counts picks.
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            cpu_forward(&x, &[2, 0, 2], 1, 3, 2),
            vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]
        );
        assert_eq!(
            cpu_backward(&[1.0f32; 6], &[2, 0, 2], 1, 3, 2),
            vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]
        );
    }

    #[test]
    fn gradcheck_f64() {
        let idx = [3u32, 0, 3, 1];
        let (o, n_in, i) = (2, 4, 3);
        gradcheck(
            "index_select",
            &[random_vec(o * n_in * i, -1.0, 1.0, 31)],
            &[],
            |v| cpu_forward(&v[0], &idx, o, n_in, i),
            |_, g| vec![cpu_backward(g, &idx, o, n_in, i)],
        );
    }
}
