//! Batch normalisation (`nn.BatchNorm1d` on (N, C) or (N, C, L), `nn.BatchNorm2d` on (N, C, H, W)), with
//! PyTorch's training and evaluation semantics.
//!
//! Math: x viewed as (N, C, S), S the product of the trailing axes (1 for (N, C)); per channel c, over the
//! M = N·S values x[:, c, :]:
//! - training: μ = Σ x / M, `ss = Σ (x − μ)²` (two passes), normalised with the biased σ² = ss / M; the
//!   running statistics are updated **in place**: `running_mean = (1 − m)·running_mean + m·μ`,
//!   `running_var = (1 − m)·running_var + m·ss / (M − 1)` (the unbiased variance, as PyTorch; the caller, or
//!   [`BatchNormState::forward`], increments `num_batches_tracked`).
//! - eval: μ = running_mean, σ² = running_var.
//! - both: `rstd = 1/√(σ² + eps)`, `x̂ = (x − μ)·rstd`, `y = γ[c]·x̂ + β[c]`.
//!
//! Derivative: `dγ[c] = Σ dy·x̂`, `dβ[c] = Σ dy` (sums over N and S). Training: μ and σ depend on x, giving
//! group norm's formula with the row = the channel: `dx = γ·rstd·(dy − dβ/M − x̂·dγ/M)`. Eval: μ, σ are
//! constants and `dx = γ·rstd·dy` (a per-channel affine map).
//!
//! Saved for backward: x, γ (ones when absent), the (μ, rstd) actually used as a (C, 2) tensor (a copy, so
//! later in-place updates of the running statistics do not change the gradient), and the mode.
//! Kernels (GPU, no readback and no sync: the running statistics are updated in place on the GPU):
//! - `batch_norm_stats.wgsl` (training): μ, then Σ (x − μ)², rstd and the running statistics, as
//!   deterministic reductions over the N·S values of each channel, split into slices of many workgroups
//!   ([`ChannelSlices`]): pass A over the slices, a combine, pass B over the slices, a combine (4 dispatches);
//!   when one slice covers the axis, one dispatch does both passes.
//! - `batch_norm.wgsl`: y, elementwise; in eval it also writes the saved (μ, rstd) from the running statistics.
//!   It can apply a ReLU as it stores y ([`Tensor::batch_norm_relu`], where no gradient is recorded: one
//!   launch instead of two, the same bits).
//! - backward: dγ, dβ by group norm's `group_norm_backward_weight.wgsl` (the same two sums, with the
//!   statistics row = the channel), then `batch_norm_backward.wgsl`: dx, elementwise.
//!
//! On the CPU the running statistics are replaced through `Storage::write`.
//!
//! For recomputation (`engine::recompute`): [`Tensor::batch_norm_train`] also returns the batch's (μ, rstd),
//! and [`Tensor::batch_norm_with_stats`] normalises the same x again with them — `batch_norm.wgsl` alone, no
//! statistics passes, the running statistics untouched — with the training-mode backward: the same bits.
//!
//! Size: over the 400-line budget because the op is one piece: training and evaluation modes, the running
//! statistics updated in place, and the sliced two-pass statistics its forward and backward share.

use crate::engine::autograd::{records, Backward};
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::norm::group_norm::{affine_grads, affine_or_default, gpu_affine_grads};
use crate::engine::ops::reduce::reduce_sum::ChannelSlices;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of batch_norm.wgsl and batch_norm_backward.wgsl (elementwise).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    c: u32,
    s: u32,
    training: u32,
    momentum: f32,
    eps: f32,
    relu: u32,
    _pad: u32,
}

/// Shader `Params` of batch_norm_stats.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsParams {
    n: u32,
    c: u32,
    s: u32,
    tc: u32,
    momentum: f32,
    eps: f32,
    slice_rows: u32,
    nslices: u32,
    mode: u32,
    phase: u32,
    _pad: [u32; 2],
}

/// Sizes of a batch norm: x is (n, c, s).
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch N.
    pub n: usize,
    /// Channels C.
    pub c: usize,
    /// Positions S (product of the trailing axes; 1 for (N, C)).
    pub s: usize,
}

impl Dims {
    fn params(self, training: bool, momentum: f32, eps: f32) -> Params {
        Params {
            n: self.n as u32,
            c: self.c as u32,
            s: self.s as u32,
            training: training as u32,
            momentum,
            eps,
            relu: 0,
            _pad: 0,
        }
    }
}

/// `batch_norm_stats.wgsl`: x → (μ, rstd), running statistics updated (training).
pub const BATCH_NORM_STATS: Kernel =
    Kernel::new::<StatsParams>(&shaders::BATCH_NORM_STATS, "batch_norm_stats", 6);
/// `batch_norm.wgsl`: x, (μ, rstd) → y.
pub const BATCH_NORM: Kernel = Kernel::new::<Params>(&shaders::BATCH_NORM, "batch_norm", 8);
/// `batch_norm_backward.wgsl`: dx (given dγ, dβ).
pub const BATCH_NORM_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::BATCH_NORM_BACKWARD, "batch_norm_backward", 8);
/// This op's kernels (collected by `engine::kernels` for the naga tests; dγ, dβ are group norm's kernel).
pub const KERNELS: &[Kernel] = &[BATCH_NORM_STATS, BATCH_NORM, BATCH_NORM_BACKWARD];

// ---- CPU reference ----

/// x (N, C, S) → per channel (μ, biased σ², unbiased variance), each (C); two passes.
pub fn cpu_batch_stats<T: Real>(x: &[T], d: Dims) -> (Vec<T>, Vec<T>, Vec<T>) {
    let m = d.n * d.s;
    let (mut mean, mut var, mut unbiased) = (
        vec![T::zero(); d.c],
        vec![T::zero(); d.c],
        vec![T::zero(); d.c],
    );
    for c in 0..d.c {
        let at = |j: usize| x[((j / d.s) * d.c + c) * d.s + j % d.s]; // j-th value of channel c
                                                                      // f64 sums (PyTorch's CPU batch norm accumulates in double), shifted by the first value so that a
                                                                      // constant channel has exactly its value as mean and x̂ = 0 (see batch_norm.wgsl).
        let x0 = at(0);
        let shift: f64 = (0..m).map(|j| (at(j) - x0).to_f64()).sum();
        mean[c] = x0 + T::from_f64(shift / m as f64);
        let ss: f64 = (0..m)
            .map(|j| ((at(j) - mean[c]) * (at(j) - mean[c])).to_f64())
            .sum();
        var[c] = T::from_f64(ss / m as f64);
        unbiased[c] = T::from_f64(ss / (m as f64 - 1.0));
    }
    (mean, var, unbiased)
}

/// rstd = 1/√(σ² + eps), per channel.
pub fn cpu_rstd<T: Real>(var: &[T], eps: f64) -> Vec<T> {
    var.iter()
        .map(|&v| T::one() / (v + T::from_f64(eps)).sqrt())
        .collect()
}

/// x (N, C, S), γ, β, μ, rstd (C) → y (N, C, S) = (x − μ)·rstd·γ + β.
pub fn cpu_forward<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    rstd: &[T],
    d: Dims,
) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    for (i, (yi, &xi)) in y.iter_mut().zip(x).enumerate() {
        let c = (i / d.s) % d.c;
        *yi = (xi - mean[c]) * rstd[c] * gamma[c] + beta[c];
    }
    y
}

/// In place: `running = (1 − m)·running + m·batch`, for the mean (batch μ) and the variance (unbiased).
pub fn cpu_update_running<T: Real>(
    running_mean: &mut [T],
    running_var: &mut [T],
    mean: &[T],
    unbiased: &[T],
    momentum: T,
) {
    for c in 0..mean.len() {
        running_mean[c] = momentum * mean[c] + (T::one() - momentum) * running_mean[c];
        running_var[c] = momentum * unbiased[c] + (T::one() - momentum) * running_var[c];
    }
}

/// x, dy (N, C, S), γ, μ, rstd (C) → (dx (N, C, S), dγ (C), dβ (C)); `training`: through the batch statistics.
pub fn cpu_backward<T: Real>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    d: Dims,
    training: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    // Per-channel sums accumulated in f64 (as PyTorch's CPU kernels do).
    let (mut dg64, mut db64) = (vec![0f64; d.c], vec![0f64; d.c]);
    for (i, (&xi, &g)) in x.iter().zip(dy).enumerate() {
        let c = (i / d.s) % d.c;
        dg64[c] += (g * (xi - mean[c]) * rstd[c]).to_f64();
        db64[c] += g.to_f64();
    }
    let dgamma: Vec<T> = dg64.into_iter().map(T::from_f64).collect();
    let dbeta: Vec<T> = db64.into_iter().map(T::from_f64).collect();
    let m = T::from_f64((d.n * d.s) as f64);
    let mut dx = vec![T::zero(); x.len()];
    for (i, dxi) in dx.iter_mut().enumerate() {
        let c = (i / d.s) % d.c;
        let scale = gamma[c] * rstd[c];
        *dxi = if training {
            let xh = (x[i] - mean[c]) * rstd[c];
            scale * (dy[i] - dbeta[c] / m - xh * (dgamma[c] / m))
        } else {
            scale * dy[i]
        };
    }
    (dx, dgamma, dbeta)
}

// ---- GPU ----

/// Launches batch_norm_stats.wgsl (training) and batch_norm.wgsl → (y (N, C, S), stats (C, 2)); in training
/// also updates `running_mean`, `running_var` (C) in place. With `relu`, y is max(y, 0) (the ReLU fused into
/// the store, [`Tensor::batch_norm_relu`]).
#[allow(clippy::too_many_arguments)]
pub fn gpu_forward(
    x: &GpuStorage,
    gamma: &GpuStorage,
    beta: &GpuStorage,
    running_mean: &GpuStorage,
    running_var: &GpuStorage,
    d: Dims,
    training: bool,
    momentum: f32,
    eps: f32,
    relu: bool,
) -> (GpuStorage, GpuStorage) {
    let stats = GpuStorage::alloc(x.gpu, 2 * d.c, "batch_norm");
    if training {
        gpu_batch_stats(x, running_mean, running_var, &stats, d, momentum, eps);
    }
    let y = gpu_normalise(
        x,
        gamma,
        beta,
        (running_mean, running_var, &stats),
        d,
        (training, momentum, eps),
        relu,
    );
    (y, stats)
}

/// Launches batch_norm.wgsl → y (N, C, S): in training mode with the (μ, rstd) in `stats` (C, 2), as
/// batch_norm_stats.wgsl left them; in eval mode from the running statistics, also written to `stats`; with
/// `relu`, max(y, 0).
fn gpu_normalise(
    x: &GpuStorage,
    gamma: &GpuStorage,
    beta: &GpuStorage,
    (running_mean, running_var, stats): (&GpuStorage, &GpuStorage, &GpuStorage),
    d: Dims,
    (training, momentum, eps): (bool, f32, f32),
    relu: bool,
) -> GpuStorage {
    let numel = d.n * d.c * d.s;
    let y = GpuStorage::alloc(x.gpu, numel, "batch_norm");
    let bufs = [
        x.buffer(),
        gamma.buffer(),
        beta.buffer(),
        running_mean.buffer(),
        running_var.buffer(),
        stats.buffer(),
        y.buffer(),
    ];
    let p = Params {
        relu: u32::from(relu),
        ..d.params(training, momentum, eps)
    };
    let grid = Grid::threads(numel).bytes(4 * (2 * numel + 5 * d.c));
    BATCH_NORM.dispatch(x.gpu, &bufs, &p, grid);
    y
}

/// Launches batch_norm_stats.wgsl: (μ, rstd) of x (N, C, S) into `stats` (C, 2), running statistics updated.
/// One slice: a single dispatch (both passes); several: pass A, combine, pass B, combine.
fn gpu_batch_stats(
    x: &GpuStorage,
    running_mean: &GpuStorage,
    running_var: &GpuStorage,
    stats: &GpuStorage,
    d: Dims,
    momentum: f32,
    eps: f32,
) {
    let name = "batch_norm_stats";
    let sl = ChannelSlices::new(d.n, d.c, d.s);
    let partial = GpuStorage::alloc(x.gpu, d.c * sl.slices.max(1), name);
    let bufs = [
        x.buffer(),
        running_mean.buffer(),
        running_var.buffer(),
        partial.buffer(),
        stats.buffer(),
    ];
    let p = |mode: u32, phase: u32| StatsParams {
        n: d.n as u32,
        c: d.c as u32,
        s: d.s as u32,
        tc: sl.tc as u32,
        momentum,
        eps,
        slice_rows: sl.rows as u32,
        nslices: sl.slices as u32,
        mode,
        phase,
        _pad: [0; 2],
    };
    let x_bytes = 4 * d.n * d.c * d.s;
    if sl.slices <= 1 {
        let grid = Grid::groups(sl.workgroups())
            .bytes(2 * x_bytes + 4 * 6 * d.c)
            .loop_len(sl.loop_len());
        BATCH_NORM_STATS.dispatch(x.gpu, &bufs, &p(2, 0), grid);
        return;
    }
    let partial_bytes = 4 * d.c * sl.slices;
    for mode in [0, 1] {
        let grid = Grid::groups(sl.workgroups())
            .bytes(x_bytes + partial_bytes)
            .loop_len(sl.loop_len());
        BATCH_NORM_STATS.dispatch(x.gpu, &bufs, &p(mode, 0), grid);
        let grid = Grid::groups(d.c)
            .bytes(partial_bytes + 4 * 6 * d.c)
            .loop_len(sl.slices.div_ceil(BATCH_NORM_STATS.wg as usize));
        BATCH_NORM_STATS.dispatch(x.gpu, &bufs, &p(mode, 1), grid);
    }
}

/// Launches group_norm_backward_weight.wgsl (dγ, dβ; statistics row = channel), then batch_norm_backward.wgsl
/// → (dx (N, C, S), dγ (C), dβ (C)).
pub fn gpu_backward(
    x: &GpuStorage,
    gamma: &GpuStorage,
    stats: &GpuStorage,
    dy: &GpuStorage,
    d: Dims,
    training: bool,
) -> (GpuStorage, GpuStorage, GpuStorage) {
    let numel = d.n * d.c * d.s;
    let (dgamma, dbeta) = gpu_affine_grads(x, stats, dy, (d.n, d.c, d.s), 0, 1);
    let dx = GpuStorage::alloc(x.gpu, numel, "batch_norm_backward");
    let bufs = [
        x.buffer(),
        gamma.buffer(),
        stats.buffer(),
        dy.buffer(),
        dgamma.buffer(),
        dbeta.buffer(),
        dx.buffer(),
    ];
    let p = d.params(training, 0.0, 0.0);
    let grid = Grid::threads(numel).bytes(4 * (3 * numel + 5 * d.c));
    BATCH_NORM_BACKWARD.dispatch(x.gpu, &bufs, &p, grid);
    (dx, dgamma, dbeta)
}

// ---- Autograd ----

struct BatchNormBackward {
    x: Tensor,
    gamma: Tensor,
    stats: Tensor,
    d: Dims,
    training: bool,
    has_weight: bool,
    has_bias: bool,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "batch_norm_backward";
        let (x, d) = (&self.x, self.d);
        let (dx, dgamma, dbeta) = match Tensor::same_device(op, &[x, dy]) {
            Device::Cpu => {
                let st = self.stats.cpu_data(op);
                let mean: Vec<f32> = st.iter().step_by(2).copied().collect();
                let rstd: Vec<f32> = st.iter().skip(1).step_by(2).copied().collect();
                let gamma = self.gamma.cpu_data(op);
                let (dx, dg, db) = cpu_backward(
                    &x.cpu_data(op),
                    &gamma,
                    &mean,
                    &rstd,
                    &dy.cpu_data(op),
                    d,
                    self.training,
                );
                (
                    Tensor::cpu_storage(dx),
                    Tensor::cpu_storage(dg),
                    Tensor::cpu_storage(db),
                )
            }
            Device::Gpu => {
                let (dx, dg, db) = gpu_backward(
                    x.gpu_storage(op),
                    self.gamma.gpu_storage(op),
                    self.stats.gpu_storage(op),
                    dy.gpu_storage(op),
                    d,
                    self.training,
                );
                (Storage::Gpu(dx), Storage::Gpu(dg), Storage::Gpu(db))
            }
        };
        let (hw, hb) = (self.has_weight, self.has_bias);
        affine_grads(x.shape(), dx, (hw, dgamma), (hb, dbeta))
    }
}

/// Where a batch norm's (μ, rstd) come from.
#[derive(Clone, Copy)]
enum Stats<'a> {
    /// The batch (training: running statistics updated in place) or the running statistics (eval).
    Running {
        mean: &'a Tensor,
        var: &'a Tensor,
        training: bool,
        momentum: f32,
    },
    /// Training-mode (μ, rstd) (C, 2) computed earlier on the same x: no statistics pass, no update.
    Given(&'a Tensor),
}

impl Tensor {
    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)` on x (N, C) or
    /// (N, C, *): `training` normalises with the batch statistics and updates `running_mean` and
    /// `running_var` (C) **in place** (momentum `momentum`, unbiased variance); otherwise it normalises with
    /// them. `weight`, `bias` (C) default to 1 and 0. The caller counts `num_batches_tracked`.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Tensor {
        let stats = Stats::Running {
            mean: running_mean,
            var: running_var,
            training,
            momentum,
        };
        self.batch_norm_from(weight, bias, stats, eps).0
    }

    /// Training-mode [`Tensor::batch_norm`] that also returns the batch's (μ, rstd) (C, 2) it normalised
    /// with (no gradient), for [`Tensor::batch_norm_with_stats`].
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> (Tensor, Tensor) {
        let stats = Stats::Running {
            mean: running_mean,
            var: running_var,
            training: true,
            momentum,
        };
        self.batch_norm_from(weight, bias, stats, eps)
    }

    /// The training-mode batch norm of `self` again, with the (μ, rstd) (C, 2) that
    /// [`Tensor::batch_norm_train`] returned for these same values: the same output and gradients bit for bit
    /// (the backward treats μ and σ as functions of x, as in training), without the statistics passes and
    /// without touching the running statistics. What a recomputation in the backward pass uses
    /// (`layers::norm::BatchNorm::forward_act`).
    pub fn batch_norm_with_stats(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        stats: &Tensor,
    ) -> Tensor {
        self.batch_norm_from(weight, bias, Stats::Given(stats), 0.0)
            .0
    }

    /// `relu(batch_norm(..))` (training: `relu` of [`Tensor::batch_norm_train`]'s output, and its (μ, rstd)).
    /// Where no gradient is recorded (a recomputed layer's first evaluation, every evaluation and prediction)
    /// the ReLU is applied as y is stored: on the GPU by batch_norm.wgsl's one launch (the same expression as
    /// relu_inplace.wgsl's on the same value: the same bits), on the CPU by the ReLU's reference; otherwise
    /// the two ops.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_relu(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> (Tensor, Tensor) {
        let stats = Stats::Running {
            mean: running_mean,
            var: running_var,
            training,
            momentum,
        };
        let inputs: Vec<&Tensor> = [Some(self), weight, bias].into_iter().flatten().collect();
        if records(&inputs) {
            let (y, stats) = self.batch_norm_then(weight, bias, stats, eps, false);
            return (y.relu_owned(), stats);
        }
        self.batch_norm_then(weight, bias, stats, eps, true)
    }

    fn batch_norm_from(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        source: Stats<'_>,
        eps: f32,
    ) -> (Tensor, Tensor) {
        self.batch_norm_then(weight, bias, source, eps, false)
    }

    /// [`Tensor::batch_norm_from`], and its ReLU fused into the kernel when `relu` (then nothing is recorded).
    fn batch_norm_then(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        source: Stats<'_>,
        eps: f32,
        relu: bool,
    ) -> (Tensor, Tensor) {
        let op = "batch_norm";
        let sh = self.shape();
        assert!(
            sh.len() >= 2,
            "{op}: expected x (N, C) or (N, C, *), got {sh:?}"
        );
        let d = Dims {
            n: sh[0],
            c: sh[1],
            s: sh[2..].iter().product(),
        };
        let checked: Vec<(&str, &Tensor, Vec<usize>)> = match source {
            Stats::Running { mean, var, .. } => {
                vec![
                    ("running_mean", mean, vec![d.c]),
                    ("running_var", var, vec![d.c]),
                ]
            }
            Stats::Given(st) => vec![("stats", st, vec![d.c, 2])],
        };
        for (what, t, want) in &checked {
            assert_eq!(
                t.shape(),
                &want[..],
                "{op}: expected {what} {want:?}, got {:?}",
                t.shape()
            );
        }
        let training = match source {
            Stats::Running { training, .. } => training,
            Stats::Given(_) => true,
        };
        assert!(
            !training || d.n * d.s > 1,
            "{op}: expected more than 1 value per channel when training, got input {sh:?}"
        );
        let gamma = affine_or_default(op, self, weight, d.c, 1.0);
        let beta = affine_or_default(op, self, bias, d.c, 0.0);
        let mut on: Vec<&Tensor> = vec![self, &gamma, &beta];
        on.extend(checked.iter().map(|c| c.1));
        let (y, stats): (Storage, Tensor) = match Tensor::same_device(op, &on) {
            Device::Cpu => {
                let x = self.cpu_data(op);
                let (mean, rstd) = match source {
                    Stats::Running {
                        mean: running_mean,
                        var: running_var,
                        training: true,
                        momentum,
                    } => {
                        let (mean, var, unbiased) = cpu_batch_stats(&x, d);
                        let mut rm = running_mean.to_vec();
                        let mut rv = running_var.to_vec();
                        cpu_update_running(&mut rm, &mut rv, &mean, &unbiased, momentum);
                        running_mean.storage().write(&rm);
                        running_var.storage().write(&rv);
                        (mean, cpu_rstd(&var, eps as f64))
                    }
                    Stats::Running { mean, var, .. } => {
                        (mean.to_vec(), cpu_rstd(&var.to_vec(), eps as f64))
                    }
                    Stats::Given(st) => {
                        let st = st.cpu_data(op);
                        (
                            st.iter().step_by(2).copied().collect(),
                            st.iter().skip(1).step_by(2).copied().collect(),
                        )
                    }
                };
                let y = cpu_forward(&x, &gamma.cpu_data(op), &beta.cpu_data(op), &mean, &rstd, d);
                let y = if relu {
                    crate::engine::ops::elementwise::relu::cpu_forward(&y)
                } else {
                    y
                };
                let stats = match source {
                    Stats::Given(st) => st.clone(),
                    Stats::Running { .. } => Tensor::from_storage(
                        &[d.c, 2],
                        Tensor::cpu_storage(
                            mean.iter().zip(&rstd).flat_map(|(&m, &r)| [m, r]).collect(),
                        ),
                    ),
                };
                (Tensor::cpu_storage(y), stats)
            }
            Device::Gpu => {
                let (g, b) = (gamma.gpu_storage(op), beta.gpu_storage(op));
                match source {
                    Stats::Running {
                        mean,
                        var,
                        training,
                        momentum,
                    } => {
                        let (y, st) = gpu_forward(
                            self.gpu_storage(op),
                            g,
                            b,
                            mean.gpu_storage(op),
                            var.gpu_storage(op),
                            d,
                            training,
                            momentum,
                            eps,
                            relu,
                        );
                        (
                            Storage::Gpu(y),
                            Tensor::from_storage(&[d.c, 2], Storage::Gpu(st)),
                        )
                    }
                    Stats::Given(st) => {
                        // Training mode reads only `stats`; γ and β stand in for the running bindings.
                        let s = st.gpu_storage(op);
                        let (x, given) = (self.gpu_storage(op), (g, b, s));
                        let y = gpu_normalise(x, g, b, given, d, (true, 0.0, 0.0), relu);
                        (Storage::Gpu(y), st.clone())
                    }
                }
            }
        };
        if relu {
            // Fused: asked for only where nothing is recorded (`batch_norm_relu`).
            return (Tensor::from_storage(sh, y), stats);
        }
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let back = BatchNormBackward {
            x: self.detach(),
            gamma,
            stats: stats.clone(),
            d,
            training,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        };
        (Tensor::from_op(sh, y, &inputs, back), stats)
    }
}

/// The buffers of a batch norm layer, named as PyTorch's `state_dict` (`running_mean`, `running_var`,
/// `num_batches_tracked`).
pub struct BatchNormState {
    /// Running mean (C), initially 0.
    pub running_mean: Tensor,
    /// Running (unbiased) variance (C), initially 1.
    pub running_var: Tensor,
    /// Training-mode calls so far.
    pub num_batches_tracked: u64,
}

impl BatchNormState {
    /// Fresh statistics for `c` channels on `device` (mean 0, variance 1, as PyTorch).
    pub fn new(c: usize, device: Device) -> Self {
        BatchNormState {
            running_mean: Tensor::zeros(&[c], device),
            running_var: Tensor::ones(&[c], device),
            num_batches_tracked: 0,
        }
    }

    /// [`Tensor::batch_norm`] with these statistics; counts the batch when `training`.
    pub fn forward(
        &mut self,
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Tensor {
        if training {
            self.num_batches_tracked += 1;
        }
        x.batch_norm(
            weight,
            bias,
            &self.running_mean,
            &self.running_var,
            training,
            momentum,
            eps,
        )
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests;
