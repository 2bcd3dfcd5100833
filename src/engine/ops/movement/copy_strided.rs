//! Movement ops: reshape (no copy), permute / transpose, narrow (slice), expand (broadcast), cat, chunk,
//! and the strided copy they all reduce to.
//!
//! Every op copies a box of elements from one strided layout to another (`copy_strided.wgsl`):
//! - permute(perm): box = output shape, source strides = the input's strides permuted. Backward: the
//!   inverse permutation.
//! - narrow(axis, start, len): source offset `start · stride[axis]`. Backward: zeros of the input shape with
//!   dy copied into the same region (the copy's destination strides are the input's).
//! - expand(shape): source stride 0 on broadcast axes. Backward: `sum_to` the input shape.
//! - cat(axis): one copy per input, into its region of the output. Backward: narrow of dy per input.
//! - reshape: the same storage with another shape (tensors are always contiguous). Backward: reshape back.
//!
//! Saved for backward: only shapes and offsets. Kernels: `copy_strided.wgsl`; no backward kernels.
//!
//! Size: over the 400-line budget because it is one piece — seven movement ops share one kernel
//! (`copy_strided.wgsl`), one CPU reference and one strided-view description; split, each would repeat it.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{pack8, Grid, Kernel};
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of copy_strided.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    shape: [[u32; 4]; 2],
    src_strides: [[u32; 4]; 2],
    dst_strides: [[u32; 4]; 2],
}

/// One strided copy: a box of `shape`, read at `src_offset + c · src_strides`, written at
/// `dst_offset + c · dst_strides`.
#[derive(Debug, Clone)]
pub struct StridedCopy {
    /// Box sizes.
    pub shape: Vec<usize>,
    /// Source offset (elements).
    pub src_offset: usize,
    /// Source strides.
    pub src_strides: Vec<usize>,
    /// Destination offset.
    pub dst_offset: usize,
    /// Destination strides.
    pub dst_strides: Vec<usize>,
}

/// `copy_strided.wgsl`: src (strided view) → dst (strided view).
pub const COPY_STRIDED: Kernel = Kernel::new::<Params>(&shaders::COPY_STRIDED, "copy_strided", 3);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[COPY_STRIDED];

// ---- CPU reference ----

/// Performs `c` on host slices.
pub fn cpu_copy_strided<T: Copy>(src: &[T], dst: &mut [T], c: &StridedCopy) {
    for i in 0..shape::numel(&c.shape) {
        let co = shape::unravel(i, &c.shape);
        let s: usize = c.src_offset
            + co.iter()
                .zip(&c.src_strides)
                .map(|(a, b)| a * b)
                .sum::<usize>();
        let d: usize = c.dst_offset
            + co.iter()
                .zip(&c.dst_strides)
                .map(|(a, b)| a * b)
                .sum::<usize>();
        dst[d] = src[s];
    }
}

// ---- GPU ----

/// Records copy_strided.wgsl for `c` (axes merged where both layouts are contiguous).
pub fn gpu_copy_strided(src: &GpuStorage, dst: &GpuStorage, c: &StridedCopy) {
    let n = shape::numel(&c.shape);
    let (dims, st) = shape::collapse(&c.shape, &[c.src_strides.clone(), c.dst_strides.clone()]);
    let p = Params {
        n: n as u32,
        rank: dims.len() as u32,
        src_offset: c.src_offset as u32,
        dst_offset: c.dst_offset as u32,
        shape: pack8(&dims),
        src_strides: pack8(&st[0]),
        dst_strides: pack8(&st[1]),
    };
    COPY_STRIDED.dispatch(src.gpu, &[src.buffer(), dst.buffer()], &p, Grid::threads(n));
}

/// A destination being filled by strided copies, on either device.
enum Dst {
    Cpu(Vec<f32>),
    Gpu(GpuStorage),
}

impl Dst {
    /// `n` elements; zero-filled when `zero` (else every element must be written by the copies).
    fn new(like: &Tensor, n: usize, zero: bool, op: &str) -> Dst {
        match like.device() {
            Device::Cpu => Dst::Cpu(vec![0.0; n]),
            Device::Gpu => {
                let g = GpuStorage::alloc(like.gpu_storage(op).gpu, n, op);
                if zero && n > 0 {
                    g.gpu.clear(g.buffer(), 4 * n as u64);
                }
                Dst::Gpu(g)
            }
        }
    }

    fn copy_from(&mut self, src: &Tensor, c: &StridedCopy, op: &str) {
        match self {
            Dst::Cpu(d) => cpu_copy_strided(&src.cpu_data(op), d, c),
            Dst::Gpu(d) => gpu_copy_strided(src.gpu_storage(op), d, c),
        }
    }

    fn into_storage(self) -> Storage {
        match self {
            Dst::Cpu(v) => Tensor::cpu_storage(v),
            Dst::Gpu(g) => Storage::Gpu(g),
        }
    }
}

// ---- Autograd ----

struct ReshapeBackward(Vec<usize>);
impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(dy.reshape(&self.0))]
    }
}

struct PermuteBackward(Vec<usize>);
impl Backward for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let mut inv = vec![0; self.0.len()];
        for (i, &p) in self.0.iter().enumerate() {
            inv[p] = i;
        }
        vec![Some(dy.permute(&inv))]
    }
}

struct NarrowBackward {
    in_shape: Vec<usize>,
    axis: usize,
    start: usize,
}
impl Backward for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let st = shape::strides(&self.in_shape);
        let c = StridedCopy {
            shape: dy.shape().to_vec(),
            src_offset: 0,
            src_strides: shape::strides(dy.shape()),
            dst_offset: self.start * st[self.axis],
            dst_strides: st,
        };
        let mut dst = Dst::new(dy, shape::numel(&self.in_shape), true, "narrow_backward");
        dst.copy_from(dy, &c, "narrow_backward");
        vec![Some(Tensor::from_storage(
            &self.in_shape,
            dst.into_storage(),
        ))]
    }
}

struct ExpandBackward(Vec<usize>);
impl Backward for ExpandBackward {
    fn name(&self) -> &'static str {
        "expand"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(dy.sum_to(&self.0))]
    }
}

struct CatBackward {
    axis: usize,
    sizes: Vec<usize>,
}
impl Backward for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let mut start = 0;
        self.sizes
            .iter()
            .map(|&len| {
                let g = dy.narrow(self.axis as isize, start, len);
                start += len;
                Some(g)
            })
            .collect()
    }
}

impl Tensor {
    /// The same data with another shape of the same size (no copy). One axis may be `usize::MAX` (-1 in
    /// PyTorch): it is inferred.
    pub fn reshape(&self, new_shape: &[usize]) -> Tensor {
        let mut s = new_shape.to_vec();
        if let Some(k) = s.iter().position(|&d| d == usize::MAX) {
            let known: usize = s.iter().filter(|&&d| d != usize::MAX).product();
            s[k] = self.numel() / known.max(1);
        }
        assert_eq!(
            shape::numel(&s),
            self.numel(),
            "reshape: expected {} elements in {new_shape:?}, got {:?}",
            self.numel(),
            self.shape()
        );
        self.with_shape_sharing(&s, ReshapeBackward(self.shape().to_vec()))
    }

    /// Reorders the axes: output axis i is input axis `perm[i]` (torch.permute).
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let r = self.rank();
        let mut seen = vec![false; r];
        assert!(
            perm.len() == r
                && perm
                    .iter()
                    .all(|&p| p < r && !std::mem::replace(&mut seen[p], true)),
            "permute: expected a permutation of 0..{r}, got {perm:?}"
        );
        let st = shape::strides(self.shape());
        let out: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let c = StridedCopy {
            shape: out.clone(),
            src_offset: 0,
            src_strides: perm.iter().map(|&p| st[p]).collect(),
            dst_offset: 0,
            dst_strides: shape::strides(&out),
        };
        let mut dst = Dst::new(self, self.numel(), false, "permute");
        dst.copy_from(self, &c, "permute");
        let y = Tensor::from_op(
            &out,
            dst.into_storage(),
            &[self],
            PermuteBackward(perm.to_vec()),
        );
        let perm = perm.to_vec();
        self.pass_recipe(&y, move |t| t.permute(&perm));
        y
    }

    /// Swaps two axes (negative axes count from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Tensor {
        let (a, b) = (
            shape::norm_axis(a, self.rank(), "transpose"),
            shape::norm_axis(b, self.rank(), "transpose"),
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// `len` entries of `axis` starting at `start` (torch.narrow; `x[..., start:start+len, ...]`).
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Tensor {
        let ax = shape::norm_axis(axis, self.rank(), "narrow");
        assert!(
            start + len <= self.shape()[ax],
            "narrow: range {start}..{} out of axis {ax} of {:?}",
            start + len,
            self.shape()
        );
        let st = shape::strides(self.shape());
        let mut out = self.shape().to_vec();
        out[ax] = len;
        let c = StridedCopy {
            shape: out.clone(),
            src_offset: start * st[ax],
            src_strides: st,
            dst_offset: 0,
            dst_strides: shape::strides(&out),
        };
        let mut dst = Dst::new(self, shape::numel(&out), false, "narrow");
        dst.copy_from(self, &c, "narrow");
        let back = NarrowBackward {
            in_shape: self.shape().to_vec(),
            axis: ax,
            start,
        };
        Tensor::from_op(&out, dst.into_storage(), &[self], back)
    }

    /// Splits `axis` into `n` equal parts (torch.chunk with a divisible size).
    pub fn chunk(&self, n: usize, axis: isize) -> Vec<Tensor> {
        let ax = shape::norm_axis(axis, self.rank(), "chunk");
        let size = self.shape()[ax];
        assert!(
            n > 0 && size.is_multiple_of(n),
            "chunk: axis {ax} of {:?} does not split into {n} equal parts",
            self.shape()
        );
        (0..n)
            .map(|k| self.narrow(ax as isize, k * size / n, size / n))
            .collect()
    }

    /// Broadcasts to `shape` (a copy; size-1 axes and missing leading axes repeat).
    pub fn expand(&self, to: &[usize]) -> Tensor {
        assert_eq!(
            shape::broadcast(self.shape(), to).as_deref(),
            Some(to),
            "expand: expected a shape {:?} broadcasts to, got {to:?}",
            self.shape()
        );
        if self.shape() == to {
            return self.clone();
        }
        let c = StridedCopy {
            shape: to.to_vec(),
            src_offset: 0,
            src_strides: shape::broadcast_strides(self.shape(), to),
            dst_offset: 0,
            dst_strides: shape::strides(to),
        };
        let mut dst = Dst::new(self, shape::numel(to), false, "expand");
        dst.copy_from(self, &c, "expand");
        Tensor::from_op(
            to,
            dst.into_storage(),
            &[self],
            ExpandBackward(self.shape().to_vec()),
        )
    }

    /// Concatenates along `axis` (torch.cat). Every other axis must match.
    pub fn cat(ts: &[&Tensor], axis: isize) -> Tensor {
        assert!(!ts.is_empty(), "cat: expected at least one tensor");
        Tensor::same_device("cat", ts);
        let ax = shape::norm_axis(axis, ts[0].rank(), "cat");
        let mut out = ts[0].shape().to_vec();
        out[ax] = 0;
        for t in ts {
            let mut s = t.shape().to_vec();
            s[ax] = 0;
            let mut o = out.clone();
            o[ax] = 0;
            assert_eq!(
                s,
                o,
                "cat: expected shapes equal except on axis {ax}, got {:?} and {:?}",
                ts[0].shape(),
                t.shape()
            );
            out[ax] += t.shape()[ax];
        }
        let ost = shape::strides(&out);
        let mut dst = Dst::new(ts[0], shape::numel(&out), false, "cat");
        let mut start = 0;
        for t in ts {
            let c = StridedCopy {
                shape: t.shape().to_vec(),
                src_offset: 0,
                src_strides: shape::strides(t.shape()),
                dst_offset: start * ost[ax],
                dst_strides: ost.clone(),
            };
            dst.copy_from(t, &c, "cat");
            start += t.shape()[ax];
        }
        let back = CatBackward {
            axis: ax,
            sizes: ts.iter().map(|t| t.shape()[ax]).collect(),
        };
        Tensor::from_op(&out, dst.into_storage(), ts, back)
    }
}

/// A tensor assembled along axis 0 from parts written at given rows, for inference (autograd off): each part
/// can be dropped as soon as it is written, so what is alive is the result plus one part, not every part and
/// then their concatenation (`Tensor::cat`). Rows no part writes are zero. One strided copy per part.
pub struct RowAssembler {
    dst: Dst,
    shape: Vec<usize>,
}

impl RowAssembler {
    /// `rows` rows shaped like the rows of `like` (its axis 0 aside), on its device; zero-filled first when
    /// `zero` (some rows will not be written). Panics when autograd is on (the result has no backward).
    pub fn new(like: &Tensor, rows: usize, zero: bool) -> RowAssembler {
        assert!(
            !crate::engine::autograd::is_grad_enabled(),
            "RowAssembler: for inference only (inside no_grad)"
        );
        let mut shape = like.shape().to_vec();
        shape[0] = rows;
        RowAssembler {
            dst: Dst::new(like, shape::numel(&shape), zero, "RowAssembler"),
            shape,
        }
    }

    /// Writes `part` (its rows shaped as the result's) at rows `start..start + part.shape()[0]`.
    pub fn put(&mut self, start: usize, part: &Tensor) {
        let ps = part.shape();
        assert!(
            ps[1..] == self.shape[1..] && start + ps[0] <= self.shape[0],
            "RowAssembler: a part {ps:?} at row {start} does not fit {:?}",
            self.shape
        );
        let st = shape::strides(&self.shape);
        let c = StridedCopy {
            shape: ps.to_vec(),
            src_offset: 0,
            src_strides: shape::strides(ps),
            dst_offset: start * st[0],
            dst_strides: st,
        };
        self.dst.copy_from(part, &c, "RowAssembler");
    }

    /// The assembled tensor.
    pub fn finish(self) -> Tensor {
        Tensor::from_storage(&self.shape, self.dst.into_storage())
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data: Vec<f32>, s: &[usize]) -> Tensor {
        Tensor::from_vec(data, s, Device::Cpu)
    }

    #[test]
    fn exact_values() {
        let x = t((0..6).map(|v| v as f32).collect(), &[2, 3]); // [[0,1,2],[3,4,5]]
        assert_eq!(
            x.transpose(0, 1).to_vec(),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        assert_eq!(x.narrow(1, 1, 2).to_vec(), vec![1.0, 2.0, 4.0, 5.0]);
        assert_eq!(
            t(vec![1.0, 2.0], &[2, 1]).expand(&[2, 3]).to_vec(),
            vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        let c = Tensor::cat(&[&x, &t(vec![9.0, 9.0], &[2, 1])], 1);
        assert_eq!(c.to_vec(), vec![0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0, 9.0]);
        assert_eq!(x.reshape(&[3, usize::MAX]).shape(), &[3, 2]);
    }

    #[test]
    fn row_assembler_writes_parts_at_their_rows_and_zeros_the_rest() {
        let out = crate::engine::no_grad(|| {
            let mut a = RowAssembler::new(&t(vec![0.0; 2], &[1, 2]), 4, true);
            a.put(2, &t(vec![5.0, 6.0, 7.0, 8.0], &[2, 2]));
            a.put(0, &t(vec![1.0, 2.0], &[1, 2]));
            a.finish()
        });
        assert_eq!(out.shape(), &[4, 2]);
        assert_eq!(out.to_vec(), vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn backwards_route_gradients_back() {
        // d/dx Σ (w ⊙ f(x)) for each movement f: the gradient is w moved back to where x's elements went.
        let x = t((0..6).map(|v| v as f32).collect(), &[2, 3]).requires_grad_();
        let w = t((1..=6).map(|v| v as f32).collect(), &[3, 2]);
        x.transpose(0, 1).mul(&w).sum_all().backward();
        assert_eq!(
            x.grad().unwrap().to_vec(),
            vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
        );
        x.zero_grad();
        x.narrow(1, 1, 2).sum_all().backward();
        assert_eq!(
            x.grad().unwrap().to_vec(),
            vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
        );
        let b = t(vec![1.0, 2.0], &[2, 1]).requires_grad_();
        b.expand(&[2, 3]).sum_all().backward();
        assert_eq!(b.grad().unwrap().to_vec(), vec![3.0, 3.0]);
        let y = t(vec![7.0], &[1, 1]).requires_grad_();
        let c = Tensor::cat(&[&b, &y], 0);
        c.mul(&t(vec![1.0, 2.0, 3.0], &[3, 1])).sum_all().backward();
        assert_eq!(y.grad().unwrap().to_vec(), vec![3.0]);
    }
}
