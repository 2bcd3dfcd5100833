//! Unfolding the depth (time) axis of a 5-D tensor into channels, and its adjoint, folding — im2col and
//! col2im along one axis. They put 3-D convolutions on conv2d's kernels (`engine::ops::conv::conv3d`): a
//! K×k×k convolution is `unfold` (K frames side by side as K·C channels) followed by one k×k conv2d over
//! every output frame; a transposed one is a conv_transpose2d followed by `fold`.
//!
//! Math: x (N, C, D, H, W), K taps, stride s, zero padding p, `Do = (D + 2p − K)/s + 1`:
//! - unfold: `cols[n·Do + o, k·C + c, y, x] = x[n, c, o·s − p + k, y, x]` (0 outside `[0, D)`) → (N·Do, K·C, H, W);
//! - fold: `y[n, c, t, y, x] = Σ_{o, k: o·s − p + k = t} cols[n·Do + o, k·C + c, y, x]` → (N, C, D, H, W).
//!
//! Derivatives: the two maps are each other's transpose (`<unfold(x), g> = <x, fold(g)>`), so unfold's
//! backward is fold of dy and fold's backward is unfold of dy. Nothing is saved but the sizes.
//! Kernels: `time_unfold.wgsl`, `time_fold.wgsl` (a gather: each output element sums its K candidates).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of time_unfold.wgsl and time_fold.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    c: u32,
    d: u32,
    hw: u32,
    k: u32,
    s: u32,
    p: u32,
    d_out: u32,
}

/// `time_unfold.wgsl`: x (N, C, D, H·W) → cols (N·Do, K·C, H·W).
pub const TIME_UNFOLD: Kernel = Kernel::new::<Params>(&shaders::TIME_UNFOLD, "time_unfold", 3);
/// `time_fold.wgsl`: cols (N·Do, K·C, H·W) → y (N, C, D, H·W).
pub const TIME_FOLD: Kernel = Kernel::new::<Params>(&shaders::TIME_FOLD, "time_fold", 3);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[TIME_UNFOLD, TIME_FOLD];

/// The sizes: x (n, c, d, h, w), k taps, stride s, padding p → d_out = (d + 2p − k)/s + 1 frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// N.
    pub n: usize,
    /// C.
    pub c: usize,
    /// D (frames of the unfolded side).
    pub d: usize,
    /// H.
    pub h: usize,
    /// W.
    pub w: usize,
    /// Taps K.
    pub k: usize,
    /// Stride s.
    pub s: usize,
    /// Zero padding p (each side).
    pub p: usize,
}

impl Dims {
    /// Output frames Do of the unfold.
    pub fn d_out(&self) -> usize {
        assert!(
            self.s >= 1 && self.d + 2 * self.p >= self.k,
            "time_unfold: expected stride >= 1 and K <= D + 2p, got {self:?}"
        );
        (self.d + 2 * self.p - self.k) / self.s + 1
    }

    /// x's shape (N, C, D, H, W).
    pub fn x_shape(&self) -> [usize; 5] {
        [self.n, self.c, self.d, self.h, self.w]
    }

    /// cols' shape (N·Do, K·C, H, W).
    pub fn cols_shape(&self) -> [usize; 4] {
        [self.n * self.d_out(), self.k * self.c, self.h, self.w]
    }

    fn params(&self) -> Params {
        let u = |v: usize| u32::try_from(v).expect("time_unfold: size overflows u32");
        Params {
            n: u(self.n),
            c: u(self.c),
            d: u(self.d),
            hw: u(self.h * self.w),
            k: u(self.k),
            s: u(self.s),
            p: u(self.p),
            d_out: u(self.d_out()),
        }
    }

    /// Calls `f(cols index, x index)` for every cols element that reads an x element.
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let (hw, dout) = (self.h * self.w, self.d_out());
        for n in 0..self.n {
            for o in 0..dout {
                for k in 0..self.k {
                    let t = (o * self.s + k) as isize - self.p as isize;
                    if !(0..self.d as isize).contains(&t) {
                        continue;
                    }
                    for c in 0..self.c {
                        let col = ((n * dout + o) * self.k + k) * self.c + c;
                        let xi = (n * self.c + c) * self.d + t as usize;
                        for q in 0..hw {
                            f(col * hw + q, xi * hw + q);
                        }
                    }
                }
            }
        }
    }
}

// ---- CPU reference ----

/// x (N, C, D, H, W) → cols (N·Do, K·C, H, W).
pub fn cpu_unfold<T: Real>(x: &[T], d: &Dims) -> Vec<T> {
    let mut cols = vec![T::zero(); d.cols_shape().iter().product()];
    d.for_each(|ci, xi| cols[ci] = x[xi]);
    cols
}

/// cols (N·Do, K·C, H, W) → y (N, C, D, H, W), the adjoint of [`cpu_unfold`].
pub fn cpu_fold<T: Real>(cols: &[T], d: &Dims) -> Vec<T> {
    let mut y = vec![T::zero(); d.x_shape().iter().product()];
    d.for_each(|ci, xi| y[xi] += cols[ci]);
    y
}

// ---- GPU ----

/// Launches time_unfold.wgsl.
pub fn gpu_unfold(x: &GpuStorage, d: &Dims) -> GpuStorage {
    let n = d.cols_shape().iter().product();
    let cols = GpuStorage::alloc(x.gpu, n, "time_unfold");
    TIME_UNFOLD.dispatch(
        x.gpu,
        &[x.buffer(), cols.buffer()],
        &d.params(),
        Grid::threads(n),
    );
    cols
}

/// Launches time_fold.wgsl.
pub fn gpu_fold(cols: &GpuStorage, d: &Dims) -> GpuStorage {
    let n = d.x_shape().iter().product();
    let y = GpuStorage::alloc(cols.gpu, n, "time_fold");
    let grid = Grid::threads(n).loop_len(d.k);
    TIME_FOLD.dispatch(cols.gpu, &[cols.buffer(), y.buffer()], &d.params(), grid);
    y
}

fn unfold_storage(x: &Tensor, d: &Dims) -> Storage {
    match x.device() {
        Device::Cpu => Tensor::cpu_storage(cpu_unfold(&x.cpu_data("time_unfold"), d)),
        Device::Gpu => Storage::Gpu(gpu_unfold(x.gpu_storage("time_unfold"), d)),
    }
}

fn fold_storage(cols: &Tensor, d: &Dims) -> Storage {
    match cols.device() {
        Device::Cpu => Tensor::cpu_storage(cpu_fold(&cols.cpu_data("time_fold"), d)),
        Device::Gpu => Storage::Gpu(gpu_fold(cols.gpu_storage("time_fold"), d)),
    }
}

// ---- Autograd ----

impl Tensor {
    /// x (N, C, D, H, W) → (N·Do, K·C, H, W): the K frames each output frame of a K-tap, stride-s,
    /// zero-padded (p) convolution along D reads, side by side as channels (`Do = (D + 2p − K)/s + 1`).
    pub fn unfold_time(&self, k: usize, s: usize, p: usize) -> Tensor {
        let sh = self.shape();
        assert_eq!(
            sh.len(),
            5,
            "time_unfold: expected x (N, C, D, H, W), got {sh:?}"
        );
        let d = Dims {
            n: sh[0],
            c: sh[1],
            d: sh[2],
            h: sh[3],
            w: sh[4],
            k,
            s,
            p,
        };
        let storage = unfold_storage(self, &d);
        let cols = Tensor::from_op(&d.cols_shape(), storage, &[self], UnfoldBackward { d });
        // A 3-D convolution saves these columns (K times its input): only their recipe when it can.
        self.pass_recipe(&cols, move |t| t.unfold_time(k, s, p));
        cols
    }

    /// The adjoint of [`Tensor::unfold_time`]: cols (N·Do, K·C, H, W) → (N, C, D, H, W), each frame t the sum
    /// of the (o, k) with o·s − p + k = t. `d` is the folded depth D, consistent with Do.
    pub fn fold_time(&self, k: usize, s: usize, p: usize, d: usize) -> Tensor {
        let sh = self.shape();
        assert!(
            sh.len() == 4 && k > 0 && sh[1].is_multiple_of(k),
            "time_fold: expected cols (N·Do, K·C, H, W) with K = {k}, got {sh:?}"
        );
        let mut dims = Dims {
            n: 0,
            c: sh[1] / k,
            d,
            h: sh[2],
            w: sh[3],
            k,
            s,
            p,
        };
        let dout = dims.d_out();
        assert!(
            sh[0].is_multiple_of(dout),
            "time_fold: expected N·Do rows with Do = {dout} (D = {d}), got {sh:?}"
        );
        dims.n = sh[0] / dout;
        let storage = fold_storage(self, &dims);
        Tensor::from_op(&dims.x_shape(), storage, &[self], FoldBackward { d: dims })
    }
}

struct UnfoldBackward {
    d: Dims,
}

impl Backward for UnfoldBackward {
    fn name(&self) -> &'static str {
        "time_unfold"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(Tensor::from_storage(
            &self.d.x_shape(),
            fold_storage(dy, &self.d),
        ))]
    }
}

struct FoldBackward {
    d: Dims,
}

impl Backward for FoldBackward {
    fn name(&self) -> &'static str {
        "time_fold"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(Tensor::from_storage(
            &self.d.cols_shape(),
            unfold_storage(dy, &self.d),
        ))]
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x = [1, 2, 3] along D (N = C = H = W = 1), K 3, s 1, p 1: frame o reads x[o-1], x[o], x[o+1]:
        // cols = [0 1 2 | 1 2 3 | 2 3 0]. Folding ones back counts each frame's readers: [2, 3, 2].
        let d = Dims {
            n: 1,
            c: 1,
            d: 3,
            h: 1,
            w: 1,
            k: 3,
            s: 1,
            p: 1,
        };
        assert_eq!(
            cpu_unfold(&[1.0f32, 2.0, 3.0], &d),
            vec![0., 1., 2., 1., 2., 3., 2., 3., 0.]
        );
        assert_eq!(cpu_fold(&[1.0f32; 9], &d), vec![2.0, 3.0, 2.0]);
        // Stride 2, D 4 (the transposed conv k3 s2 p1 op1 of 2 frames): Do = (4 + 2 - 3)/2 + 1 = 2; frame t
        // of the fold gathers (o, k) with 2o - 1 + k = t: t0 ← (0,1); t1 ← (0,2), (1,0); t2 ← (1,1); t3 ← (1,2).
        let d = Dims { d: 4, s: 2, ..d };
        let cols: Vec<f32> = (1..=6).map(|v| v as f32).collect(); // (o, k) = (0,0..2) → 1, 2, 3; (1, ..) → 4, 5, 6
        assert_eq!(cpu_fold(&cols, &d), vec![2.0, 3.0 + 4.0, 5.0, 6.0]);
    }

    #[test]
    fn gradcheck_f64_and_adjointness() {
        for (k, d) in [
            Dims {
                n: 2,
                c: 3,
                d: 5,
                h: 2,
                w: 3,
                k: 3,
                s: 1,
                p: 1,
            },
            Dims {
                n: 1,
                c: 2,
                d: 6,
                h: 1,
                w: 2,
                k: 3,
                s: 2,
                p: 1,
            },
            Dims {
                n: 2,
                c: 1,
                d: 4,
                h: 3,
                w: 1,
                k: 2,
                s: 2,
                p: 0,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let nx: usize = d.x_shape().iter().product();
            let nc: usize = d.cols_shape().iter().product();
            let x = random_vec(nx, -1.0, 1.0, 10 + k as u64);
            let g = random_vec(nc, -1.0, 1.0, 20 + k as u64);
            let lhs: f64 = cpu_unfold(&x, &d).iter().zip(&g).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(cpu_fold(&g, &d)).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-12,
                "{d:?}: <unfold x, g> = {lhs}, <x, fold g> = {rhs}"
            );
            gradcheck(
                "time_unfold",
                &[x],
                &[],
                |v| cpu_unfold(&v[0], &d),
                |_, g| vec![cpu_fold(g, &d)],
            );
            gradcheck(
                "time_fold",
                &[g],
                &[],
                |v| cpu_fold(&v[0], &d),
                |_, g| vec![cpu_unfold(g, &d)],
            );
        }
    }
}
