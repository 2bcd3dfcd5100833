//! Sums along axes: sum, mean and `sum_to` (the broadcast-undoing reduction every broadcasting backward
//! uses); the slicing policy of the norms' long statistics reductions ([`ChannelSlices`]). The max is
//! `reduce_max.rs`.
//!
//! Math, for x viewed as (outer, r, inner) around the reduced axis:
//! - sum: `y[o, k] = Σ_j x[o, j, k]`; `dx[o, j, k] = dy[o, k]` (backward = expand, a copy; no kernel).
//! - mean: `sum / r` (a composition: sum, then mul_scalar(1/r)).
//!
//! Several axes are reduced one at a time, innermost first — except, on the GPU, a sum over every axis but one
//! (a bias's gradient: a convolution's `dy.sum(&[0, 2, 3])`, a broadcast bias's `sum_to`), which is one
//! per-channel reduction of x viewed as (N, C, S): `y[c] = Σ_{n, s} x[n, c, s]`, sliced as the norms'
//! statistics are ([`ChannelSlices`]; one or two launches instead of one per axis, coalesced reads).
//! Kernels: `reduce_sum.wgsl` (also the first pass of a two-pass sum when a long axis reduces to few
//! outputs), `channel_sum.wgsl`.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of reduce_sum.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SumParams {
    outer: u32,
    r: u32,
    inner: u32,
    chunk: u32,
    nchunks: u32,
    _pad: [u32; 3],
}

/// Axis length above which a sum with few outputs is done in passes of chunks of this size. Short chunks keep
/// the float32 rounding of a long sum near that of a pairwise sum: a bias gradient over 4,608 rows (PSE's mlp1,
/// exactly 0 in exact arithmetic) is 1.7e-6 with chunks of 1024 and 1e-8 with 32, PyTorch's level.
pub const SUM_CHUNK: usize = 32;

/// `reduce_sum.wgsl`: x (outer, R, inner) → y (outer, inner), fixed-order sums of chunks.
pub const REDUCE_SUM: Kernel = Kernel::new::<SumParams>(&shaders::REDUCE_SUM, "reduce_sum", 3);
/// `channel_sum.wgsl`: x (N, C, S) → y (C), the sum over n and s, sliced ([`ChannelSlices`]).
pub const CHANNEL_SUM: Kernel =
    Kernel::new::<ChannelSumParams>(&shaders::CHANNEL_SUM, "channel_sum", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[REDUCE_SUM, CHANNEL_SUM];

/// Shader `Params` of channel_sum.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ChannelSumParams {
    n: u32,
    c: u32,
    s: u32,
    tc: u32,
    slice_rows: u32,
    nslices: u32,
    phase: u32,
    _pad: u32,
}

// ---- CPU reference ----

/// x (outer, r, inner) → Σ over r: (outer, inner).
/// Accumulates in f64 (PyTorch's CPU sums are pairwise / double-accumulated; a plain f32 running sum over
/// thousands of terms would be the least accurate path in the comparison).
pub fn cpu_sum<T: Real>(x: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    let mut y = vec![0f64; outer * inner];
    for o in 0..outer {
        for j in 0..r {
            for k in 0..inner {
                y[o * inner + k] += x[(o * r + j) * inner + k].to_f64();
            }
        }
    }
    y.into_iter().map(T::from_f64).collect()
}

/// dy (outer, inner) → dx (outer, r, inner): dy repeated along r.
pub fn cpu_sum_backward<T: Real>(dy: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); outer * r * inner];
    for o in 0..outer {
        for j in 0..r {
            for k in 0..inner {
                dx[(o * r + j) * inner + k] = dy[o * inner + k];
            }
        }
    }
    dx
}

/// x (n, c, s) → Σ over n and s: (c), accumulated in f64 ([`cpu_sum`]'s rounding).
pub fn cpu_channel_sum<T: Real>(x: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
    let mut y = vec![0f64; c];
    for (i, v) in x.iter().enumerate().take(n * c * s) {
        y[(i / s) % c] += v.to_f64();
    }
    y.into_iter().map(T::from_f64).collect()
}

// ---- GPU ----

/// channel_sum.wgsl: x (n, c, s) → y (c), Σ over n and s in a fixed order: pass 1 over [`ChannelSlices`],
/// then (several slices) one combine dispatch of c workgroups. With no values (n · s = 0) the sums are 0.
pub fn gpu_channel_sum(x: &GpuStorage, n: usize, c: usize, s: usize) -> GpuStorage {
    let gpu = x.gpu;
    let y = GpuStorage::alloc(gpu, c.max(1), "channel_sum");
    if n * s == 0 {
        // No workgroup would run: the sums over nothing are zero, cleared, not left as the pool's bytes.
        if c > 0 {
            gpu.clear(y.buffer(), 4 * c as u64);
        }
        return y;
    }
    let sl = ChannelSlices::new(n, c, s);
    let partial = GpuStorage::alloc(gpu, (c * sl.slices).max(1), "channel_sum");
    let bufs = [x.buffer(), partial.buffer(), y.buffer()];
    let p = |phase: u32| ChannelSumParams {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        tc: sl.tc as u32,
        slice_rows: sl.rows as u32,
        nslices: sl.slices as u32,
        phase,
        _pad: 0,
    };
    let partial_bytes = 4 * c * sl.slices;
    let grid = Grid::groups(sl.workgroups())
        .bytes(4 * n * c * s + partial_bytes)
        .loop_len(sl.loop_len());
    CHANNEL_SUM.dispatch(gpu, &bufs, &p(0), grid);
    if sl.slices > 1 {
        let grid = Grid::groups(c)
            .bytes(partial_bytes + 4 * c)
            .loop_len(sl.slices.div_ceil(CHANNEL_SUM.wg as usize));
        CHANNEL_SUM.dispatch(gpu, &bufs, &p(1), grid);
    }
    y
}

fn launch_sum(x: &GpuStorage, outer: usize, r: usize, inner: usize, chunk: usize) -> GpuStorage {
    let nchunks = r.div_ceil(chunk).max(1);
    let n = outer * nchunks * inner;
    let y = GpuStorage::alloc(x.gpu, n, "reduce_sum");
    let p = SumParams {
        outer: outer as u32,
        r: r as u32,
        inner: inner as u32,
        chunk: chunk as u32,
        nchunks: nchunks as u32,
        _pad: [0; 3],
    };
    REDUCE_SUM.dispatch(x.gpu, &[x.buffer(), y.buffer()], &p, Grid::threads(n));
    y
}

/// Σ over r of x (outer, r, inner) → (outer, inner). A long axis with few outputs is summed in passes
/// (chunks of [`SUM_CHUNK`], then the partial sums, recursively) so that more invocations share the work and
/// the rounding stays close to a pairwise sum's.
pub fn gpu_sum(x: &GpuStorage, outer: usize, r: usize, inner: usize) -> GpuStorage {
    if r > 4 * SUM_CHUNK && outer * inner <= 4096 {
        let partial = launch_sum(x, outer, r, inner, SUM_CHUNK);
        gpu_sum(&partial, outer, r.div_ceil(SUM_CHUNK), inner)
    } else {
        launch_sum(x, outer, r, inner, r.max(1))
    }
}

/// Rows of its slice that one invocation of a sliced per-channel reduction sums in order (see
/// [`ChannelSlices`]): long enough to amortise the workgroup tree, short enough that the f32 rounding stays
/// near a pairwise sum's (as [`SUM_CHUNK`]) and that a long axis is cut into many workgroups.
pub const SLICE_ROWS_PER_INVOCATION: usize = 32;

/// An axis of at most this many default slices is reduced as one slice (see [`ChannelSlices`]).
pub const MAX_WHOLE_SLICES: usize = 4;

/// How a deterministic per-channel reduction over the M = N·S values of each channel of x (N, C, S) — the
/// statistics of batch norm, the weight gradients of group and batch norm — is spread over workgroups, as in
/// the perf notes' "Deterministic long reductions" (no float atomics, the same bits on every run):
/// - pass 1: `slices · blocks` workgroups; workgroup (q, b) sums the values j ∈ [q·rows, (q+1)·rows)
///   (j = n·S + s) of the `tc` channels b·tc .. b·tc + tc − 1 into `partial[q][c]`. Its `WG` invocations are
///   `tc` channel lanes × `WG / tc` row lanes (lane index = row lane · tc + channel lane); each sums every
///   `WG / tc`-th row of the slice in order, then the workgroup halves over the row lanes.
/// - pass 2 (only when `slices > 1`): one workgroup per channel sums its `slices` partials in a fixed order.
///
/// Coalescing: for S = 1 (the channel-last (N, C) layout of BatchNorm1d) `tc` is up to 32 channels, so
/// consecutive invocations read consecutive addresses of one row; for S > 1 (BatchNorm2d, group norm),
/// `tc = 1` and consecutive invocations read consecutive positions s. A short axis is one slice: pass 1 then
/// finishes the reduction itself and no pass 2 is launched; so is an axis of at most [`MAX_WHOLE_SLICES`]
/// default slices (a loop a few times longer costs less than the extra launches of pass 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSlices {
    /// Channel lanes per workgroup (a power of two dividing `WG`).
    pub tc: usize,
    /// Values j per slice.
    pub rows: usize,
    /// Slices of the M values (0 when M = 0).
    pub slices: usize,
    /// Channel blocks, ceil(C / tc).
    pub blocks: usize,
}

impl ChannelSlices {
    /// The split for x (n, c, s): slices of `(WG / tc) ·` [`SLICE_ROWS_PER_INVOCATION`] values (one slice when
    /// the axis is at most [`MAX_WHOLE_SLICES`] of them), or the slice length forced by [`with_slice_rows`].
    pub fn new(n: usize, c: usize, s: usize) -> ChannelSlices {
        let wg = crate::engine::kernel::WG as usize;
        let tc = if s == 1 {
            c.max(1).next_power_of_two().min(32)
        } else {
            1
        };
        let (m, rows) = (n * s, wg / tc * SLICE_ROWS_PER_INVOCATION);
        let rows = match FORCED_SLICE_ROWS.with(|r| r.get()) {
            Some(forced) => forced,
            None if m <= MAX_WHOLE_SLICES * rows => m.max(1),
            None => rows,
        };
        ChannelSlices {
            tc,
            rows,
            slices: m.div_ceil(rows),
            blocks: c.div_ceil(tc),
        }
    }

    /// Workgroups of pass 1.
    pub fn workgroups(&self) -> usize {
        self.slices * self.blocks
    }

    /// The longest loop of one invocation of pass 1 (rows of its slice it sums).
    pub fn loop_len(&self) -> usize {
        self.rows
            .div_ceil(crate::engine::kernel::WG as usize / self.tc)
    }
}

thread_local! {
    static FORCED_SLICE_ROWS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the slice length of [`ChannelSlices`] forced to `rows` on this thread (tests: two or three
/// slices, hence both passes, on tiny tensors).
pub fn with_slice_rows<R>(rows: usize, f: impl FnOnce() -> R) -> R {
    assert!(rows >= 1, "with_slice_rows: rows must be at least 1");
    crate::engine::scoped::with_set(&FORCED_SLICE_ROWS, Some(rows), f)
}

// ---- Autograd ----

struct SumBackward(Vec<usize>);
impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        // dy has the keepdim shape: repeat it along the reduced axis.
        vec![Some(dy.expand(&self.0))]
    }
}

impl Tensor {
    /// Sum over one axis, keeping it with size 1.
    fn sum_axis_keepdim(&self, axis: usize) -> Tensor {
        let (o, r, i) = shape::outer_axis_inner(self.shape(), axis);
        let mut out = self.shape().to_vec();
        out[axis] = 1;
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_sum(&self.cpu_data("sum"), o, r, i)),
            Device::Gpu => Storage::Gpu(gpu_sum(self.gpu_storage("sum"), o, r, i)),
        };
        Tensor::from_op(&out, storage, &[self], SumBackward(self.shape().to_vec()))
    }

    /// Sum of a GPU tensor over every axis but `c`, keeping them with size 1: x viewed as (N, C, S) around
    /// axis c, summed over n and s by channel_sum.wgsl (its reference: [`cpu_channel_sum`]).
    fn gpu_channel_sum_keepdim(&self, c: usize) -> Tensor {
        let (n, ch, s) = shape::outer_axis_inner(self.shape(), c);
        let out: Vec<usize> = (0..self.rank())
            .map(|d| if d == c { ch } else { 1 })
            .collect();
        let y = gpu_channel_sum(self.gpu_storage("sum"), n, ch, s);
        Tensor::from_op(
            &out,
            Storage::Gpu(y),
            &[self],
            SumBackward(self.shape().to_vec()),
        )
    }

    /// Sum over `axes` (negative counts from the end); `keepdim` keeps them with size 1.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| shape::norm_axis(a, self.rank(), "sum"))
            .collect();
        ax.sort_unstable();
        ax.dedup();
        let mut y = self.clone();
        let kept: Vec<usize> = (0..self.rank()).filter(|d| !ax.contains(d)).collect();
        match kept[..] {
            // Every axis but one, on the GPU: one per-channel reduction (module doc). The CPU keeps its
            // per-axis f64 sums, so the reference's numbers are those they always were.
            [c] if self.device() == Device::Gpu && ax.len() >= 2 => {
                y = y.gpu_channel_sum_keepdim(c)
            }
            _ => {
                for &a in ax.iter().rev() {
                    y = y.sum_axis_keepdim(a);
                }
            }
        }
        if keepdim {
            y
        } else {
            let s: Vec<usize> = (0..self.rank())
                .filter(|d| !ax.contains(d))
                .map(|d| self.shape()[d])
                .collect();
            y.reshape(&s)
        }
    }

    /// Mean over `axes` (sum, then times 1/count).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Tensor {
        let count: usize = axes
            .iter()
            .map(|&a| self.shape()[shape::norm_axis(a, self.rank(), "mean")])
            .product();
        self.sum(axes, keepdim).mul_scalar(1.0 / count as f32)
    }

    /// Sum of every element, shape `[]`.
    pub fn sum_all(&self) -> Tensor {
        self.reshape(&[self.numel()]).sum(&[0], false)
    }

    /// Mean of every element, shape `[]`.
    pub fn mean_all(&self) -> Tensor {
        self.sum_all().mul_scalar(1.0 / self.numel() as f32)
    }

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting `shape` to `self.shape()`).
    pub fn sum_to(&self, target: &[usize]) -> Tensor {
        if self.shape() == target {
            return self.clone();
        }
        let lead = self.rank() - target.len();
        let axes: Vec<isize> = (0..self.rank())
            .filter(|&d| d < lead || (target[d - lead] == 1 && self.shape()[d] != 1))
            .map(|d| d as isize)
            .collect();
        self.sum(&axes, true).reshape(target)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x = [[1, 5, 2], [7, 3, 7]] (2, 3): sums over axis 1 = (8, 17); the mean of all six is 25/6.
        let x = [1.0f32, 5.0, 2.0, 7.0, 3.0, 7.0];
        assert_eq!(cpu_sum(&x, 2, 3, 1), vec![8.0, 17.0]);
        let t = Tensor::from_vec(x.to_vec(), &[2, 3], Device::Cpu).requires_grad_();
        assert!((t.mean(&[0, 1], false).item() - 25.0 / 6.0).abs() < 1e-6);
    }

    #[test]
    fn gradcheck_f64() {
        let (o, r, i) = (2, 5, 3);
        let x = random_vec(o * r * i, -1.0, 1.0, 7);
        gradcheck(
            "sum",
            std::slice::from_ref(&x),
            &[],
            |v| cpu_sum(&v[0], o, r, i),
            |_, g| vec![cpu_sum_backward(g, o, r, i)],
        );
    }

    #[test]
    fn channel_slices_fill_a_big_gpu_and_keep_short_axes_whole() {
        // PSE's mlp1 BatchNorm1d on (196608, 32): 32 channel lanes × 8 row lanes, slices of 8·32 = 256 rows.
        let s = ChannelSlices::new(196_608, 32, 1);
        assert_eq!((s.tc, s.rows, s.slices, s.blocks), (32, 256, 768, 1));
        assert_eq!(ChannelSlices::new(196_608, 64, 1).workgroups(), 1536);
        assert_eq!(s.loop_len(), 32);
        // PSE's mlp2 on (3072, 128): 12 slices; the decoder's (128, 64): one slice (no second pass), as is an
        // axis of up to 4 default slices (1024 rows here).
        assert_eq!(ChannelSlices::new(3072, 128, 1).workgroups(), 12 * 4);
        assert_eq!(ChannelSlices::new(128, 64, 1).slices, 1);
        let s = ChannelSlices::new(1024, 64, 1);
        assert_eq!((s.rows, s.slices, s.loop_len()), (1024, 1, 128));
        // BatchNorm2d / group norm (N, C, S): one channel per workgroup, 256 consecutive positions; U-TAE
        // paper (B·T = 160, 64, 128²): 320 slices of 8192; U-TAE small (16, 64, 32²): one slice.
        let s = ChannelSlices::new(160, 64, 16384);
        assert_eq!((s.tc, s.rows, s.slices, s.blocks), (1, 8192, 320, 64));
        assert_eq!(ChannelSlices::new(16, 64, 1024).slices, 1);
        let s = with_slice_rows(3, || ChannelSlices::new(2, 5, 4));
        assert_eq!((s.tc, s.rows, s.slices), (1, 3, 3));
        assert_eq!(ChannelSlices::new(2, 5, 4).slices, 1);
    }

    #[test]
    fn channel_sum_exact_values_and_gradcheck_f64() {
        // x (2, 3, 2) = 1..=12: channel c sums x[0, c, :] and x[1, c, :]:
        // c 0: 1 + 2 + 7 + 8 = 18, c 1: 3 + 4 + 9 + 10 = 26, c 2: 5 + 6 + 11 + 12 = 34.
        let x: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        assert_eq!(cpu_channel_sum(&x, 2, 3, 2), vec![18.0, 26.0, 34.0]);
        // The same as summing the axes one at a time.
        let t = Tensor::from_vec(x, &[2, 3, 2], Device::Cpu);
        assert_eq!(t.sum(&[0, 2], false).to_vec(), vec![18.0, 26.0, 34.0]);
        // Backward: dy repeated over n and s.
        let (n, c, s) = (3, 4, 5);
        let x = random_vec(n * c * s, -1.0, 1.0, 11);
        gradcheck(
            "channel_sum",
            std::slice::from_ref(&x),
            &[],
            |v| cpu_channel_sum(&v[0], n, c, s),
            |_, g| vec![(0..n * c * s).map(|i| g[(i / s) % c]).collect()],
        );
    }

    /// The GPU's sliced per-channel sum against the CPU: one slice, several (both passes), the (N, C) layout
    /// of channel lanes (C not a multiple of them), a 4-D bias gradient through `Tensor::sum`, nothing to sum;
    /// and its backward.
    #[test]
    fn gpu_channel_sum_matches_the_cpu() {
        use crate::engine::testing::{assert_close, gpu_or_skip, Tol};
        if gpu_or_skip("channel_sum").is_none() {
            return;
        }
        let cases: [((usize, usize, usize), Option<usize>); 5] = [
            ((2, 5, 4), None),
            ((2, 5, 4), Some(3)),
            ((300, 40, 1), None),
            ((7, 3, 1000), Some(64)),
            ((3, 17, 1), Some(5)),
        ];
        for ((n, c, s), rows) in cases {
            let x: Vec<f32> = random_vec(n * c * s, -1.0, 1.0, (n * c + s) as u64)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let want = cpu_channel_sum(&x, n, c, s);
            let t = Tensor::from_vec(x, &[n, c, s], Device::Gpu);
            let got = match rows {
                Some(r) => with_slice_rows(r, || t.sum(&[0, 2], false)),
                None => t.sum(&[0, 2], false),
            };
            assert_eq!(got.shape(), [c]);
            let what = format!("channel_sum ({n}, {c}, {s}), slice rows {rows:?}");
            assert_close(&got.to_vec(), &want, Tol::REDUCE, &what);
        }
        // A convolution's bias gradient, (N, C, H, W) summed over 0, 2, 3, keeping the dims; and its backward.
        let (n, c, h, w) = (3, 6, 5, 7);
        let x: Vec<f32> = random_vec(n * c * h * w, -2.0, 2.0, 5)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let cpu = Tensor::from_vec(x.clone(), &[n, c, h, w], Device::Cpu).sum(&[0, 2, 3], true);
        let t = Tensor::from_vec(x, &[n, c, h, w], Device::Gpu).requires_grad_();
        let y = t.sum(&[0, 2, 3], true);
        assert_eq!(y.shape(), [1, c, 1, 1]);
        assert_close(&y.to_vec(), &cpu.to_vec(), Tol::REDUCE, "bias gradient");
        let dy: Vec<f32> = (0..c).map(|i| i as f32 - 2.5).collect();
        y.backward_with(Tensor::from_vec(dy.clone(), &[1, c, 1, 1], Device::Gpu));
        let dx = t.grad().expect("x's gradient").to_vec();
        let want: Vec<f32> = (0..n * c * h * w).map(|i| dy[(i / (h * w)) % c]).collect();
        assert_eq!(dx, want, "backward: dy repeated over n, h, w");
        // Nothing to sum: zeros, not the pool's bytes.
        let empty = Tensor::zeros(&[0, 4, 3], Device::Gpu).sum(&[0, 2], false);
        assert_eq!(empty.to_vec(), vec![0.0; 4]);
    }

    #[test]
    fn sum_to_undoes_broadcasting() {
        let g = Tensor::ones(&[4, 2, 3], Device::Cpu);
        assert_eq!(g.sum_to(&[2, 1]).to_vec(), vec![12.0, 12.0]);
        assert_eq!(g.sum_to(&[3]).to_vec(), vec![8.0, 8.0, 8.0]);
    }
}
