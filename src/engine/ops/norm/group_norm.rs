//! Group normalisation (`nn.GroupNorm`), and the two normalisations that are exactly a group norm:
//! instance norm (`nn.InstanceNorm2d` defaults) and layer norm (`nn.LayerNorm`, in `layer_norm.rs`).
//!
//! Math: x (N, C, S) with S the product of the trailing axes (S = 1 when there are none), G groups of
//! D = C / G consecutive channels. Each row (n, g) holds `len = D·S` values; with its mean μ and biased variance
//! σ² (two passes: μ first, then Σ (x − μ)²), `rstd = 1/√(σ² + eps)`, `x̂ = (x − μ)·rstd` and
//! `y[n, c, s] = x̂ · γ[c] + β[c]`.
//!
//! Derivative: with `dx̂ = dy·γ`, differentiating x̂ through μ and σ (the standard result):
//! `dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂))` (means over the row), and
//! `dγ[c] = Σ_{n,s} dy·x̂`, `dβ[c] = Σ_{n,s} dy`.
//!
//! Saved for backward: x, γ (ones when absent), and the per-row statistics (μ, rstd) as a (N·G, 2) tensor.
//! Kernels: `group_norm.wgsl` (one workgroup per row: statistics, y, stats; a ReLU as it stores y where
//! [`Tensor::group_norm_relu`] asks, with no gradient recorded), `group_norm_backward_input.wgsl`
//! (one workgroup per row), `group_norm_backward_weight.wgsl` (dγ and dβ: per-channel sums over the N·S values
//! of each channel, split into slices of many workgroups and combined in a fixed order, see
//! [`ChannelSlices`]; batch norm's dγ, dβ use it too, with the statistics row = the channel).
//! Missing γ / β are passed to the kernels as ones / zeros (multiplying by 1 and adding 0 is exact).
//!
//! Size: over the 400-line budget because the op is one piece: a forward and two gradients sharing the
//! per-(sample, group) statistics; instance and layer norm are compositions of it (`layer_norm.rs`).

use crate::engine::autograd::{records, Backward};
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::reduce::reduce_sum::ChannelSlices;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of group_norm.wgsl and its backward input kernel (which ignores `relu`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
    eps: f32,
    relu: u32,
    _pad: [u32; 2],
}

/// Shader `Params` of group_norm_backward_weight.wgsl: statistics row of (n, c) = n·row_stride + c / cpr.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WeightParams {
    n: u32,
    c: u32,
    s: u32,
    row_stride: u32,
    cpr: u32,
    tc: u32,
    slice_rows: u32,
    nslices: u32,
    phase: u32,
    _pad: [u32; 3],
}

/// Sizes of a group norm: x is (n, c, s) with `groups` groups.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch N.
    pub n: usize,
    /// Channels C.
    pub c: usize,
    /// Positions S (product of the trailing axes).
    pub s: usize,
    /// Groups G (divides C).
    pub groups: usize,
}

impl Dims {
    fn params(self, eps: f32) -> Params {
        Params {
            n: self.n as u32,
            c: self.c as u32,
            s: self.s as u32,
            groups: self.groups as u32,
            eps,
            relu: 0,
            _pad: [0; 2],
        }
    }
}

/// `group_norm.wgsl`: x → y, mean, rstd.
pub const GROUP_NORM: Kernel = Kernel::new::<Params>(&shaders::GROUP_NORM, "group_norm", 6);
/// `group_norm_backward_input.wgsl`: dx.
pub const GROUP_NORM_BACKWARD_INPUT: Kernel = Kernel::new::<Params>(
    &shaders::GROUP_NORM_BACKWARD_INPUT,
    "group_norm_backward_input",
    6,
);
/// `group_norm_backward_weight.wgsl`: dγ, dβ (two passes when the N·S values of a channel span slices).
pub const GROUP_NORM_BACKWARD_WEIGHT: Kernel = Kernel::new::<WeightParams>(
    &shaders::GROUP_NORM_BACKWARD_WEIGHT,
    "group_norm_backward_weight",
    7,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    GROUP_NORM,
    GROUP_NORM_BACKWARD_INPUT,
    GROUP_NORM_BACKWARD_WEIGHT,
];

// ---- CPU reference ----

/// x (N, C, S), γ, β (C) → (y (N, C, S), stats (N·G, 2) = (μ, rstd) per row).
pub fn cpu_forward<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    d: Dims,
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let cg = d.c / d.groups; // channels per group
    let len = cg * d.s;
    let mut y = vec![T::zero(); x.len()];
    let mut stats = vec![T::zero(); 2 * d.n * d.groups];
    for row in 0..d.n * d.groups {
        let xs = &x[row * len..(row + 1) * len]; // x[n, gD..gD+D, :], contiguous
                                                 // Sums in f64 (as PyTorch's CPU kernels accumulate), shifted by the first value so that a constant
                                                 // group has exactly its value as mean (see group_norm.wgsl).
        let x0 = xs[0];
        let shift: f64 = xs.iter().map(|&v| (v - x0).to_f64()).sum();
        let mean = x0 + T::from_f64(shift / len as f64);
        let ss: f64 = xs.iter().map(|&v| ((v - mean) * (v - mean)).to_f64()).sum();
        let rstd = T::one() / (T::from_f64(ss / len as f64) + T::from_f64(eps)).sqrt();
        for (i, &v) in xs.iter().enumerate() {
            let c = (row % d.groups) * cg + i / d.s;
            y[row * len + i] = (v - mean) * rstd * gamma[c] + beta[c];
        }
        stats[2 * row] = mean;
        stats[2 * row + 1] = rstd;
    }
    (y, stats)
}

/// x, dy (N, C, S), γ (C), stats (N·G, 2) → (dx (N, C, S), dγ (C), dβ (C)).
pub fn cpu_backward<T: Real>(
    x: &[T],
    gamma: &[T],
    stats: &[T],
    dy: &[T],
    d: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let cg = d.c / d.groups;
    let len = cg * d.s;
    let mut dx = vec![T::zero(); x.len()];
    let mut dgamma = vec![0f64; d.c];
    let mut dbeta = vec![0f64; d.c];
    for row in 0..d.n * d.groups {
        let (mean, rstd) = (stats[2 * row], stats[2 * row + 1]);
        let chan = |i: usize| (row % d.groups) * cg + i / d.s;
        let (mut a, mut b) = (0f64, 0f64); // Σ dx̂, Σ dx̂·x̂ (accumulated in f64)
        for i in 0..len {
            let p = row * len + i;
            let xh = (x[p] - mean) * rstd;
            let g = dy[p] * gamma[chan(i)];
            a += g.to_f64();
            b += (g * xh).to_f64();
            dgamma[chan(i)] += (dy[p] * xh).to_f64();
            dbeta[chan(i)] += dy[p].to_f64();
        }
        let (ma, mb) = (T::from_f64(a / len as f64), T::from_f64(b / len as f64));
        for i in 0..len {
            let p = row * len + i;
            let xh = (x[p] - mean) * rstd;
            dx[p] = rstd * (dy[p] * gamma[chan(i)] - ma - xh * mb);
        }
    }
    let back = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect();
    (dx, back(dgamma), back(dbeta))
}

// ---- GPU ----

/// Launches group_norm.wgsl → (y (N, C, S), stats (N·G, 2)); with `relu`, y is max(y, 0) (the ReLU fused
/// into the store, [`Tensor::group_norm_relu`]).
pub fn gpu_forward(
    x: &GpuStorage,
    gamma: &GpuStorage,
    beta: &GpuStorage,
    d: Dims,
    eps: f32,
    relu: bool,
) -> (GpuStorage, GpuStorage) {
    let y = GpuStorage::alloc(x.gpu, d.n * d.c * d.s, "group_norm");
    let stats = GpuStorage::alloc(x.gpu, 2 * d.n * d.groups, "group_norm");
    let bufs = [
        x.buffer(),
        gamma.buffer(),
        beta.buffer(),
        y.buffer(),
        stats.buffer(),
    ];
    let rows = d.n * d.groups;
    let params = Params {
        relu: u32::from(relu),
        ..d.params(eps)
    };
    GROUP_NORM.dispatch(x.gpu, &bufs, &params, Grid::groups(rows));
    (y, stats)
}

/// Launches group_norm_backward_input.wgsl → dx (N, C, S).
pub fn gpu_backward_input(
    x: &GpuStorage,
    gamma: &GpuStorage,
    stats: &GpuStorage,
    dy: &GpuStorage,
    d: Dims,
) -> GpuStorage {
    let name = "group_norm_backward_input";
    let dx = GpuStorage::alloc(x.gpu, d.n * d.c * d.s, name);
    let bufs = [
        x.buffer(),
        gamma.buffer(),
        stats.buffer(),
        dy.buffer(),
        dx.buffer(),
    ];
    let rows = d.n * d.groups;
    GROUP_NORM_BACKWARD_INPUT.dispatch(x.gpu, &bufs, &d.params(0.0), Grid::groups(rows));
    dx
}

/// Launches group_norm_backward_weight.wgsl → (dγ (C), dβ (C)).
pub fn gpu_backward_weight(
    x: &GpuStorage,
    stats: &GpuStorage,
    dy: &GpuStorage,
    d: Dims,
) -> (GpuStorage, GpuStorage) {
    gpu_affine_grads(x, stats, dy, (d.n, d.c, d.s), d.groups, d.c / d.groups)
}

/// dγ[c] = Σ dy·x̂, dβ[c] = Σ dy over the N·S values of each channel of x, dy (N, C, S), with x̂ from the
/// statistics row `n·row_stride + c / cpr` of `stats` (rows, 2) = (μ, rstd): group norm (G, C / G), batch norm
/// (0, 1). Pass 1 over [`ChannelSlices`], then (several slices) one combine dispatch of C workgroups.
pub(crate) fn gpu_affine_grads(
    x: &GpuStorage,
    stats: &GpuStorage,
    dy: &GpuStorage,
    (n, c, s): (usize, usize, usize),
    row_stride: usize,
    cpr: usize,
) -> (GpuStorage, GpuStorage) {
    let name = "group_norm_backward_weight";
    let sl = ChannelSlices::new(n, c, s);
    let dgamma = GpuStorage::alloc(x.gpu, c, name);
    let dbeta = GpuStorage::alloc(x.gpu, c, name);
    let partial = GpuStorage::alloc(x.gpu, 2 * c * sl.slices.max(1), name);
    let bufs = [
        x.buffer(),
        stats.buffer(),
        dy.buffer(),
        partial.buffer(),
        dgamma.buffer(),
        dbeta.buffer(),
    ];
    let p = |phase: u32| WeightParams {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        row_stride: row_stride as u32,
        cpr: cpr as u32,
        tc: sl.tc as u32,
        slice_rows: sl.rows as u32,
        nslices: sl.slices as u32,
        phase,
        _pad: [0; 3],
    };
    // Pass 1 reads x and dy (and a statistics pair per value, cached) and writes 2 sums per (slice, channel).
    let out = 2 * c * if sl.slices > 1 { sl.slices } else { 1 };
    let grid = Grid::groups(sl.workgroups())
        .bytes(4 * (2 * n * c * s + out))
        .loop_len(sl.loop_len());
    if sl.slices == 0 {
        // No values (N·S = 0): no workgroup runs, and the sums over nothing are zero — cleared, not left as
        // whatever the pool's buffers held.
        for b in [&dgamma, &dbeta].into_iter().filter(|_| c > 0) {
            x.gpu.clear(b.buffer(), 4 * c as u64);
        }
        return (dgamma, dbeta);
    }
    GROUP_NORM_BACKWARD_WEIGHT.dispatch(x.gpu, &bufs, &p(0), grid);
    if sl.slices > 1 {
        let grid = Grid::groups(c)
            .bytes(4 * (out + 2 * c))
            .loop_len(sl.slices.div_ceil(GROUP_NORM_BACKWARD_WEIGHT.wg as usize));
        GROUP_NORM_BACKWARD_WEIGHT.dispatch(x.gpu, &bufs, &p(1), grid);
    }
    (dgamma, dbeta)
}

// ---- Autograd ----

/// `weight` or ones / `bias` or zeros, shape (C), on x's device (checked).
pub(crate) fn affine_or_default(
    op: &str,
    x: &Tensor,
    t: Option<&Tensor>,
    c: usize,
    fill: f32,
) -> Tensor {
    match t {
        Some(t) => {
            assert_eq!(
                t.shape(),
                &[c],
                "{op}: expected an affine parameter ({c}), got {:?}",
                t.shape()
            );
            t.detach()
        }
        None => Tensor::full(&[c], fill, x.device()),
    }
}

/// The gradients of (x, weight?, bias?) in input order: dx, then dγ (C) and dβ (C) for the present ones.
pub(crate) fn affine_grads(
    x_shape: &[usize],
    dx: Storage,
    (has_weight, dgamma): (bool, Storage),
    (has_bias, dbeta): (bool, Storage),
) -> Vec<Option<Tensor>> {
    let c = x_shape[1];
    let mut out = vec![Some(Tensor::from_storage(x_shape, dx))];
    if has_weight {
        out.push(Some(Tensor::from_storage(&[c], dgamma)));
    }
    if has_bias {
        out.push(Some(Tensor::from_storage(&[c], dbeta)));
    }
    out
}

struct GroupNormBackward {
    x: Tensor,
    gamma: Tensor,
    stats: Tensor,
    d: Dims,
    has_weight: bool,
    has_bias: bool,
}

impl Backward for GroupNormBackward {
    fn name(&self) -> &'static str {
        "group_norm"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "group_norm_backward";
        let (x, d) = (&self.x, self.d);
        let want_affine = self.has_weight || self.has_bias;
        let (dx, dgamma, dbeta) = match Tensor::same_device(op, &[x, dy]) {
            Device::Cpu => {
                let (dx, dg, db) = cpu_backward(
                    &x.cpu_data(op),
                    &self.gamma.cpu_data(op),
                    &self.stats.cpu_data(op),
                    &dy.cpu_data(op),
                    d,
                );
                (
                    Tensor::cpu_storage(dx),
                    Tensor::cpu_storage(dg),
                    Tensor::cpu_storage(db),
                )
            }
            Device::Gpu => {
                let (xs, ss, dys) = (
                    x.gpu_storage(op),
                    self.stats.gpu_storage(op),
                    dy.gpu_storage(op),
                );
                let dx = gpu_backward_input(xs, self.gamma.gpu_storage(op), ss, dys, d);
                if !want_affine {
                    return vec![Some(Tensor::from_storage(x.shape(), Storage::Gpu(dx)))];
                }
                let (dg, db) = gpu_backward_weight(xs, ss, dys, d);
                (Storage::Gpu(dx), Storage::Gpu(dg), Storage::Gpu(db))
            }
        };
        let (hw, hb) = (self.has_weight, self.has_bias);
        affine_grads(x.shape(), dx, (hw, dgamma), (hb, dbeta))
    }
}

impl Tensor {
    /// `nn.GroupNorm(groups, C, eps)` on x (N, C, *) (any number of trailing axes, including none): each
    /// group of C / groups channels of each sample is normalised with its mean and biased variance, then
    /// `γ[c]·x̂ + β[c]` with `weight` γ and `bias` β of shape (C) (absent: 1 and 0).
    pub fn group_norm(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        self.group_norm_then(groups, weight, bias, eps, false)
    }

    /// `relu(group_norm(x))`. Where no gradient is recorded (a recomputed layer's first evaluation, every
    /// evaluation and prediction) the ReLU is applied as y is stored: on the GPU by group_norm.wgsl's one
    /// launch (the same expression as relu_inplace.wgsl's on the same value: the same bits), on the CPU by
    /// the ReLU's reference on the norm's output; otherwise the two ops (the backward pass needs both).
    pub fn group_norm_relu(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        let inputs: Vec<&Tensor> = [Some(self), weight, bias].into_iter().flatten().collect();
        if records(&inputs) {
            return self.group_norm(groups, weight, bias, eps).relu_owned();
        }
        self.group_norm_then(groups, weight, bias, eps, true)
    }

    /// [`Tensor::group_norm`], and its ReLU fused into the kernel when `relu` (then nothing is recorded:
    /// [`Tensor::group_norm_relu`] asks only where no gradient is).
    fn group_norm_then(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
        relu: bool,
    ) -> Tensor {
        let op = "group_norm";
        let sh = self.shape();
        assert!(sh.len() >= 2, "{op}: expected x (N, C, *), got {sh:?}");
        let c = sh[1];
        assert!(
            groups > 0 && c.is_multiple_of(groups),
            "{op}: expected a group count dividing C = {c}, got {groups}"
        );
        let d = Dims {
            n: sh[0],
            c,
            s: sh[2..].iter().product(),
            groups,
        };
        let gamma = affine_or_default(op, self, weight, c, 1.0);
        let beta = affine_or_default(op, self, bias, c, 0.0);
        let (y, stats) = match Tensor::same_device(op, &[self, &gamma, &beta]) {
            Device::Cpu => {
                let (y, st) = cpu_forward(
                    &self.cpu_data(op),
                    &gamma.cpu_data(op),
                    &beta.cpu_data(op),
                    d,
                    eps as f64,
                );
                let y = if relu {
                    crate::engine::ops::elementwise::relu::cpu_forward(&y)
                } else {
                    y
                };
                (Tensor::cpu_storage(y), Tensor::cpu_storage(st))
            }
            Device::Gpu => {
                let (y, st) = gpu_forward(
                    self.gpu_storage(op),
                    gamma.gpu_storage(op),
                    beta.gpu_storage(op),
                    d,
                    eps,
                    relu,
                );
                (Storage::Gpu(y), Storage::Gpu(st))
            }
        };
        if relu {
            return Tensor::from_storage(sh, y);
        }
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let back = GroupNormBackward {
            x: self.detach(),
            gamma,
            stats: Tensor::from_storage(&[d.n * groups, 2], stats),
            d,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        };
        Tensor::from_op(sh, y, &inputs, back)
    }

    /// `nn.InstanceNorm2d(C, eps)` with PyTorch's defaults (affine = false, no running statistics) on
    /// x (N, C, *): every (n, c) plane is normalised with its own mean and biased variance. This is exactly
    /// `group_norm(C, None, None, eps)` (groups of one channel), so it is that composition: no kernel of its own.
    pub fn instance_norm(&self, eps: f32) -> Tensor {
        assert!(
            self.rank() >= 2,
            "instance_norm: expected x (N, C, *), got {:?}",
            self.shape()
        );
        self.group_norm(self.shape()[1], None, None, eps)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x (1, 2, 2), one group of 4 values (1, 2, 3, 6): μ = 3, σ² = (4 + 1 + 0 + 9)/4 = 3.5; eps = 0.5
        // gives rstd = 1/√4 = 1/2, x̂ = (−1, −1/2, 0, 3/2). γ = (2, 1), β = (0, 1):
        // y = (−2, −1, 0 + 1, 3/2 + 1) = (−2, −1, 1, 5/2).
        let d = Dims {
            n: 1,
            c: 2,
            s: 2,
            groups: 1,
        };
        let (y, st) = cpu_forward(&[1.0f64, 2.0, 3.0, 6.0], &[2.0, 1.0], &[0.0, 1.0], d, 0.5);
        assert_eq!(y, vec![-2.0, -1.0, 1.0, 2.5]);
        assert_eq!(st, vec![3.0, 0.5]);
        // instance_norm = one group per channel: planes (1, 2) and (3, 6) have μ = 3/2, 9/2 and σ² = 1/4, 9/4;
        // with eps = 0, x̂ = (x − μ)/σ = (−1, 1) for both (f32: 1.5 · (1/1.5) rounds to exactly 1).
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[1, 2, 2], Device::Cpu);
        assert_eq!(t.instance_norm(0.0).to_vec(), vec![-1.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn gradcheck_f64() {
        // (2, 4, 3, 5) with 2 groups: rows of 2·15 = 30 values.
        let d = Dims {
            n: 2,
            c: 4,
            s: 15,
            groups: 2,
        };
        let x = random_vec(2 * 4 * 15, -2.0, 2.0, 21);
        let (gm, bt) = (random_vec(4, 0.5, 1.5, 22), random_vec(4, -0.5, 0.5, 23));
        gradcheck(
            "group_norm",
            &[x, gm, bt],
            &[],
            |v| cpu_forward(&v[0], &v[1], &v[2], d, 1e-5).0,
            |v, g| {
                let st = cpu_forward(&v[0], &v[1], &v[2], d, 1e-5).1;
                let (dx, dg, db) = cpu_backward(&v[0], &v[1], &st, g, d);
                vec![dx, dg, db]
            },
        );
    }

    #[test]
    fn no_trailing_axes_and_autograd() {
        // x (3, 4) with 2 groups: rows of 2 values normalise to (±1)/√(1 + eps/σ²) with the sign of x − μ.
        let x = Tensor::from_vec(
            vec![0.0, 2.0, 5.0, 1.0, 3.0, 3.5, -1.0, 4.0, 2.0, 2.5, 9.0, 1.0],
            &[3, 4],
            Device::Cpu,
        )
        .requires_grad_();
        let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4], Device::Cpu).requires_grad_();
        let y = x.group_norm(2, Some(&w), None, 0.0);
        assert_eq!(&y.to_vec()[..4], &[-1.0, 2.0, 3.0, -4.0]);
        y.sum_all().backward();
        assert_eq!(w.grad().unwrap().shape(), &[4]);
        // Σ_row dx = 0 for every row (the mean is subtracted).
        let gx = x.grad().unwrap().to_vec();
        assert!(gx.chunks(2).all(|r| (r[0] + r[1]).abs() < 1e-5), "{gx:?}");
    }

    /// `group_norm_relu` is `group_norm(..).relu()` bit for bit: fused into one launch where nothing is
    /// recorded (GPU), the two ops where a gradient is (the same gradients), and on the CPU.
    #[test]
    fn group_norm_relu_is_the_composition() {
        use crate::engine::autograd::no_grad;
        let bits = |t: &Tensor| -> Vec<u32> { t.to_vec().into_iter().map(f32::to_bits).collect() };
        let (n, c, s, groups) = (3, 8, 37, 4);
        let x: Vec<f32> = random_vec(n * c * s, -2.0, 2.0, 3)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let gw: Vec<f32> = random_vec(c, 0.5, 1.5, 4)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let gb: Vec<f32> = random_vec(c, -0.5, 0.5, 5)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let mut devices = vec![Device::Cpu];
        if crate::engine::testing::gpu_or_skip("group_norm_relu").is_some() {
            devices.push(Device::Gpu);
        }
        for device in devices {
            let t = |v: &[f32], sh: &[usize]| Tensor::from_vec(v.to_vec(), sh, device);
            let (xt, wt, bt) = (t(&x, &[n, c, s]), t(&gw, &[c]), t(&gb, &[c]));
            let plain = xt.group_norm(groups, Some(&wt), Some(&bt), 1e-5).relu();
            let fused = xt.group_norm_relu(groups, Some(&wt), Some(&bt), 1e-5);
            assert!(bits(&fused) == bits(&plain), "{device:?}: unrecorded");
            assert!(plain.to_vec().contains(&0.0), "no value was clipped");
            // Instance norm (groups of one channel) and no affine.
            let plain = xt.instance_norm(1e-5).relu();
            let fused = xt.group_norm_relu(c, None, None, 1e-5);
            assert!(bits(&fused) == bits(&plain), "{device:?}: instance norm");
            // Under no_grad with inputs that would want one: still fused, nothing recorded.
            let xg = xt.detach().requires_grad_();
            let fused = no_grad(|| xg.group_norm_relu(groups, Some(&wt), Some(&bt), 1e-5));
            assert!(!fused.requires_grad(), "{device:?}: recorded under no_grad");
            let want = bits(&plain_gn_relu(&xt, &wt, &bt, groups));
            assert!(bits(&fused) == want, "{device:?}: under no_grad");
            // Recorded: the composition's gradients.
            let grads = |fused: bool| {
                let (xg, wg) = (xt.detach().requires_grad_(), wt.detach().requires_grad_());
                let y = if fused {
                    xg.group_norm_relu(groups, Some(&wg), Some(&bt), 1e-5)
                } else {
                    xg.group_norm(groups, Some(&wg), Some(&bt), 1e-5).relu()
                };
                y.mul_scalar(1.5).sum_all().backward();
                (bits(&xg.grad().unwrap()), bits(&wg.grad().unwrap()))
            };
            assert!(grads(true) == grads(false), "{device:?}: recorded");
        }
    }

    fn plain_gn_relu(x: &Tensor, w: &Tensor, b: &Tensor, groups: usize) -> Tensor {
        x.group_norm(groups, Some(w), Some(b), 1e-5).relu()
    }
}
