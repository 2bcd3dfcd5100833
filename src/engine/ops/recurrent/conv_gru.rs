//! ConvGRU over a whole sequence (spec §5.2), with backpropagation through time.
//!
//! Math: x (B, T, C_x, H, W); h_0 = 0; for s = 0 .. T-1 (padded frames included):
//! `[z; r] = σ(in_conv([x_s, h_s]))` (weight (2·Hd, C_x + Hd, k, k): z the first Hd channels, r the last),
//! `h~ = tanh(out_conv([x_s, r ⊙ h_s]))` (weight (Hd, C_x + Hd, k, k)), `h_{s+1} = (1 - z) ⊙ h_s + z ⊙ h~`;
//! zero padding k/2. The op returns **h_T** (B, Hd, H, W), the embedding of `ConvGRU_Seg` (spec §5.3).
//!
//! Derivatives, per step going back (D = dL/dh_{s+1}): `da = D·z·(1 - h~²)`, `dz = D·(h~ - h_s)·z(1-z)`;
//! `d[x_s, r⊙h_s] = out_conv input gradient of da`; with g its r⊙h part, `dr = g·h_s·r(1-r)`;
//! `d[x_s, h_s] += in_conv input gradient of [dz; dr]`; `dh_s = (1 - z)·D + g·r + (in_conv's h part)`,
//! `dx_s = (out_conv's x part) + (in_conv's x part)`; weight and bias gradients summed over the steps.
//!
//! **One step = two convolutions + two fused launches** (the candidate convolution reads r ⊙ h_s, which
//! exists only after the first convolution): `conv_gru_gates.wgsl` writes out_conv's input
//! `[x_s, r ⊙ h_s]`, `conv_gru_update.wgsl` writes h_{s+1} straight into the next step's in_conv input
//! `[x_{s+1}, h_{s+1}]`. Backward: `conv_gru_update_backward.wgsl`, out_conv's input and weight gradients,
//! `conv_gru_gates_backward.wgsl`, in_conv's input and weight gradients; the gradient sums are fused into
//! the next launch (it reads the two partial gradients of h_{s+1} and adds them).
//!
//! **Memory per step** (saved, floats per pixel and sample): [x_s, h_s] and [x_s, r⊙h_s] (C_x + Hd each),
//! the pre-activations zr (2·Hd) and a (Hd): `2·C_x + 5·Hd`; `--model convgru` (C_x 10, Hd 180, 128 × 128,
//! B 4): 243 MB a step. Under `--precision mixed` all four are kept as halves (`ops::elementwise::half::
//! KeptGpu`), each once the forward pass has read it for the last time; the backward pass reads the rounded
//! values. Evaluation keeps only the current step.
//!
//! **Gradient checkpointing** (`engine::recompute::gradient_checkpointing`, `--gradient_checkpointing`): only
//! [x_s, h_s] is kept (`C_x + Hd` floats a pixel: 190 at `--model convgru`'s widths instead of 920); each
//! backward step runs in_conv, the gates launch and out_conv again on it (the same kernels on the same
//! values: the same bits in float32), two more convolutions per step (the forward's two of six). Under mixed
//! the recomputation reads the kept, rounded [x_s, h_s].
//!
//! CPU reference: [`cpu_gates_forward`], [`cpu_update_forward`] and their backwards (the fused launches),
//! [`cpu_forward`] / [`cpu_backward`] (the sequence, with conv2d's reference).

use crate::engine::autograd::{is_grad_enabled, Backward};
use crate::engine::kernel::Kernel;
use crate::engine::ops::conv::conv2d;
use crate::engine::ops::elementwise::half::{cpu_keep, KeptGpu};
use crate::engine::ops::recurrent::conv_lstm::{sigmoid, Dims};
use crate::engine::real::Real;
use crate::engine::recompute::gradient_checkpointing;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of conv_gru_gates.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatesParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
}

/// Shader `Params` of conv_gru_update.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UpdateParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
    t: u32,
    t_next: u32,
    cxn: u32,
    init: u32,
}

/// Shader `Params` of conv_gru_update_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UpdateBackParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
    t: u32,
    t_dx: u32,
    c1: u32,
    has_d2: u32,
    dx_only: u32,
    _pad: [u32; 3],
}

/// Shader `Params` of conv_gru_gates_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatesBackParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
    c1: u32,
    has_d2: u32,
    _pad: [u32; 2],
}

/// `conv_gru_gates.wgsl`: zr, comb → comb2 = [x_s, r ⊙ h_s].
pub const CONV_GRU_GATES: Kernel =
    Kernel::new::<GatesParams>(&shaders::CONV_GRU_GATES, "conv_gru_gates", 4);
/// `conv_gru_update.wgsl`: zr, a, comb, x → next = [x_{s+1}, h_{s+1}].
pub const CONV_GRU_UPDATE: Kernel =
    Kernel::new::<UpdateParams>(&shaders::CONV_GRU_UPDATE, "conv_gru_update", 6);
/// `conv_gru_update_backward.wgsl`: zr, a, comb, d1, d2 → da, dz, dx (one frame).
pub const CONV_GRU_UPDATE_BACKWARD: Kernel = Kernel::new::<UpdateBackParams>(
    &shaders::CONV_GRU_UPDATE_BACKWARD,
    "conv_gru_update_backward",
    9,
);
/// `conv_gru_gates_backward.wgsl`: zr, comb, dcomb2, d1, d2 → dr, partial d[x_s, h_s].
pub const CONV_GRU_GATES_BACKWARD: Kernel = Kernel::new::<GatesBackParams>(
    &shaders::CONV_GRU_GATES_BACKWARD,
    "conv_gru_gates_backward",
    8,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    CONV_GRU_GATES,
    CONV_GRU_UPDATE,
    CONV_GRU_UPDATE_BACKWARD,
    CONV_GRU_GATES_BACKWARD,
];

// ---- CPU reference ----

/// r ⊙ h: zr (B, 2·Hd, P) pre-activations [z; r], h (B, Hd, P) → (B, Hd, P).
pub fn cpu_gates_forward<T: Real>(zr: &[T], h: &[T], hd: usize, p: usize) -> Vec<T> {
    let r = |j: usize| sigmoid(zr[(2 * (j / (hd * p)) + 1) * hd * p + j % (hd * p)]);
    (0..h.len()).map(|j| r(j) * h[j]).collect()
}

/// h' = (1 - z) ⊙ h + z ⊙ tanh(a): zr (B, 2·Hd, P), a, h (B, Hd, P) → (B, Hd, P).
pub fn cpu_update_forward<T: Real>(zr: &[T], a: &[T], h: &[T], hd: usize, p: usize) -> Vec<T> {
    let z = |j: usize| sigmoid(zr[2 * (j / (hd * p)) * hd * p + j % (hd * p)]);
    (0..h.len())
        .map(|j| (T::one() - z(j)) * h[j] + z(j) * a[j].tanh())
        .collect()
}

/// The update's gradient from dh' → (da, d(z pre-activation), (1 - z) ⊙ dh'), each (B, Hd, P).
pub fn cpu_update_backward<T: Real>(
    zr: &[T],
    a: &[T],
    h: &[T],
    dh: &[T],
    hd: usize,
    p: usize,
) -> [Vec<T>; 3] {
    let one = T::one();
    let mut out = [
        vec![T::zero(); h.len()],
        vec![T::zero(); h.len()],
        vec![T::zero(); h.len()],
    ];
    for j in 0..h.len() {
        let z = sigmoid(zr[2 * (j / (hd * p)) * hd * p + j % (hd * p)]);
        let hc = a[j].tanh();
        out[0][j] = dh[j] * z * (one - hc * hc);
        out[1][j] = dh[j] * (hc - h[j]) * z * (one - z);
        out[2][j] = dh[j] * (one - z);
    }
    out
}

/// The reset gate's gradient from g = d(r ⊙ h) → (d(r pre-activation), r ⊙ g), each (B, Hd, P).
pub fn cpu_gates_backward<T: Real>(zr: &[T], h: &[T], g: &[T], hd: usize, p: usize) -> [Vec<T>; 2] {
    let mut out = [vec![T::zero(); h.len()], vec![T::zero(); h.len()]];
    for j in 0..h.len() {
        let r = sigmoid(zr[(2 * (j / (hd * p)) + 1) * hd * p + j % (hd * p)]);
        out[0][j] = g[j] * h[j] * r * (T::one() - r);
        out[1][j] = g[j] * r;
    }
    out
}

/// What the forward keeps per step s: [x_s, h_s], and unless checkpointing zr, [x_s, r ⊙ h_s], a.
pub struct Trace<S> {
    /// [x_s, h_s] (B, C_x + Hd, P).
    pub combs: Vec<S>,
    /// The rest; `None` under gradient checkpointing (the backward pass computes it again from combs).
    pub inner: Option<Inner<S>>,
}

/// What a step keeps beside [x_s, h_s] without gradient checkpointing.
pub struct Inner<S> {
    /// in_conv pre-activations (B, 2·Hd, P).
    pub zrs: Vec<S>,
    /// [x_s, r ⊙ h_s] (B, C_x + Hd, P).
    pub comb2s: Vec<S>,
    /// out_conv pre-activations (B, Hd, P).
    pub acts: Vec<S>,
}

/// The weights of a ConvGRU: in_conv (2·Hd, C_x + Hd, k, k) + bias, out_conv (Hd, C_x + Hd, k, k) + bias
/// (`S` = `[T]` on the CPU, `GpuStorage` on the GPU).
pub struct Weights<'a, S: ?Sized> {
    /// in_conv weight.
    pub w_in: &'a S,
    /// in_conv bias.
    pub b_in: &'a S,
    /// out_conv weight.
    pub w_out: &'a S,
    /// out_conv bias.
    pub b_out: &'a S,
}

fn split_h<T: Real>(d: &Dims, comb: &[T]) -> Vec<T> {
    let mut scratch = vec![T::zero(); d.b * d.t * d.cx * d.p()];
    d.split_comb(comb, 0, &mut scratch)
}

/// [x_s, r ⊙ h_s] from [x_s, h_s] and zr (the candidate convolution's input).
fn cpu_comb2<T: Real>(d: &Dims, comb: &[T], zr: &[T]) -> Vec<T> {
    let (p, c) = (d.p(), d.cx + d.hd);
    let rh = cpu_gates_forward(zr, &split_h(d, comb), d.hd, p);
    let mut out = comb.to_vec();
    for b in 0..d.b {
        out[(b * c + d.cx) * p..(b + 1) * c * p]
            .copy_from_slice(&rh[b * d.hd * p..(b + 1) * d.hd * p]);
    }
    out
}

fn cat_halves<T: Real>(first: &[T], second: &[T], hd: usize, p: usize) -> Vec<T> {
    let n = hd * p;
    let mut out = Vec::with_capacity(2 * first.len());
    for b in 0..first.len() / n {
        out.extend_from_slice(&first[b * n..(b + 1) * n]);
        out.extend_from_slice(&second[b * n..(b + 1) * n]);
    }
    out
}

/// The sequence: x (B, T, C_x, H, W) and the weights → the trace and h_T (B, Hd, H, W).
pub fn cpu_forward<T: Real>(x: &[T], wt: &Weights<[T]>, d: &Dims) -> (Trace<Vec<T>>, Vec<T>) {
    let (gi, go) = (d.geom(2 * d.hd), d.geom(d.hd));
    let mut h = vec![T::zero(); d.b * d.hd * d.p()];
    let (mut combs, mut zrs, mut comb2s, mut acts) = (vec![], vec![], vec![], vec![]);
    for s in 0..d.t {
        let comb = d.comb(x, s, &h);
        let zr = conv2d::cpu_forward(&comb, wt.w_in, Some(wt.b_in), &gi);
        let comb2 = cpu_comb2(d, &comb, &zr);
        let a = conv2d::cpu_forward(&comb2, wt.w_out, Some(wt.b_out), &go);
        h = cpu_update_forward(&zr, &a, &h, d.hd, d.p());
        combs.push(comb);
        zrs.push(zr);
        comb2s.push(comb2);
        acts.push(a);
    }
    let inner = Some(Inner { zrs, comb2s, acts });
    (Trace { combs, inner }, h)
}

/// Step s's zr, [x_s, r ⊙ h_s] and a: kept, or computed again from [x_s, h_s] (gradient checkpointing).
fn cpu_step<'a, T: Real>(
    tr: &'a Trace<Vec<T>>,
    wt: &Weights<[T]>,
    s: usize,
    d: &Dims,
) -> [std::borrow::Cow<'a, [T]>; 3] {
    use std::borrow::Cow;
    match &tr.inner {
        Some(k) => [
            Cow::Borrowed(&k.zrs[s][..]),
            Cow::Borrowed(&k.comb2s[s][..]),
            Cow::Borrowed(&k.acts[s][..]),
        ],
        None => {
            let zr = conv2d::cpu_forward(&tr.combs[s], wt.w_in, Some(wt.b_in), &d.geom(2 * d.hd));
            let comb2 = cpu_comb2(d, &tr.combs[s], &zr);
            let a = conv2d::cpu_forward(&comb2, wt.w_out, Some(wt.b_out), &d.geom(d.hd));
            [zr.into(), comb2.into(), a.into()]
        }
    }
}

/// Backpropagation through time from dh_T (B, Hd, H, W) → [dx, dW_in, db_in, dW_out, db_out].
pub fn cpu_backward<T: Real>(
    tr: &Trace<Vec<T>>,
    wt: &Weights<[T]>,
    dh_t: &[T],
    d: &Dims,
) -> [Vec<T>; 5] {
    let (gi, go, (hd, p)) = (d.geom(2 * d.hd), d.geom(d.hd), (d.hd, d.p()));
    let z = |n: usize| vec![T::zero(); n];
    let mut g = [
        z(d.b * d.t * d.cx * p),
        z(wt.w_in.len()),
        z(2 * hd),
        z(wt.w_out.len()),
        z(hd),
    ];
    let mut dh = dh_t.to_vec();
    let add = |acc: &mut Vec<T>, v: Vec<T>| acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    for s in (0..d.t).rev() {
        let h = split_h(d, &tr.combs[s]);
        let [zr, comb2, a] = cpu_step(tr, wt, s, d);
        let [da, dz, dh_a] = cpu_update_backward(&zr, &a, &h, &dh, hd, p);
        let (dcomb2, dwo, dbo) = conv2d::cpu_backward(&comb2, wt.w_out, &da, &go);
        let drh = d.split_comb(&dcomb2, s, &mut g[0]);
        let [dr, dh_b] = cpu_gates_backward(&zr, &h, &drh, hd, p);
        let (dcomb, dwi, dbi) =
            conv2d::cpu_backward(&tr.combs[s], wt.w_in, &cat_halves(&dz, &dr, hd, p), &gi);
        let dh_c = d.split_comb(&dcomb, s, &mut g[0]);
        add(&mut g[1], dwi);
        add(&mut g[2], dbi);
        add(&mut g[3], dwo);
        add(&mut g[4], dbo);
        dh = (0..dh.len()).map(|j| dh_a[j] + dh_b[j] + dh_c[j]).collect();
    }
    g
}

// ---- GPU ----

mod gpu;
pub use gpu::{gpu_backward, gpu_forward};

// ---- Autograd ----

impl Tensor {
    /// ConvGRU over x (B, T, C_x, H, W) with in_conv (2·Hd, C_x + Hd, k, k) + bias (2·Hd) and out_conv
    /// (Hd, C_x + Hd, k, k) + bias (Hd), from h_0 = 0 over all T steps → the last state h_T (B, Hd, H, W).
    pub fn conv_gru(&self, w_in: &Tensor, b_in: &Tensor, w_out: &Tensor, b_out: &Tensor) -> Tensor {
        let op = "conv_gru";
        let d = Dims::new(op, self.shape(), w_in.shape(), 2);
        assert!(
            w_out.shape() == [d.hd, d.cx + d.hd, d.k, d.k]
                && b_in.shape() == [2 * d.hd]
                && b_out.shape() == [d.hd],
            "{op}: expected out_conv ({}, {}, {}, {}) and biases ({}), ({}), got {:?}, {:?}, {:?}",
            d.hd,
            d.cx + d.hd,
            d.k,
            d.k,
            2 * d.hd,
            d.hd,
            w_out.shape(),
            b_in.shape(),
            b_out.shape()
        );
        let inputs = [self, w_in, b_in, w_out, b_out];
        let keep = is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let keep_inner = keep && !gradient_checkpointing();
        let (storage, trace) = match Tensor::same_device(op, &inputs) {
            Device::Cpu => {
                let v: Vec<_> = inputs.iter().map(|t| t.cpu_data(op).clone()).collect();
                let wt = Weights {
                    w_in: &v[1][..],
                    b_in: &v[2][..],
                    w_out: &v[3][..],
                    b_out: &v[4][..],
                };
                let (mut tr, h) = cpu_forward(&v[0], &wt, &d);
                if !keep_inner {
                    tr.inner = None;
                }
                if keep {
                    // What the GPU keeps, as it keeps it (halves under --precision mixed).
                    let inner = tr
                        .inner
                        .iter_mut()
                        .flat_map(|k| k.zrs.iter_mut().chain(&mut k.comb2s).chain(&mut k.acts));
                    for v in tr.combs.iter_mut().chain(inner) {
                        cpu_keep(v);
                    }
                }
                (Tensor::cpu_storage(h), Saved::Cpu(tr, v))
            }
            Device::Gpu => {
                let g: Vec<&GpuStorage> = inputs.iter().map(|t| t.gpu_storage(op)).collect();
                let wt = Weights {
                    w_in: g[1],
                    b_in: g[2],
                    w_out: g[3],
                    b_out: g[4],
                };
                let (tr, h) = gpu_forward(g[0], &wt, &d, keep, keep_inner);
                (Storage::Gpu(h), Saved::Gpu(tr))
            }
        };
        let back = ConvGruBackward {
            weights: [w_in, b_in, w_out, b_out].map(Tensor::clone),
            d,
            trace: keep.then_some(trace),
        };
        Tensor::from_op(&[d.b, d.hd, d.h, d.w], storage, &inputs, back)
    }
}

enum Saved {
    Cpu(Trace<Vec<f32>>, Vec<Vec<f32>>),
    Gpu(Trace<KeptGpu>),
}

struct ConvGruBackward {
    /// in_conv's weight and bias, out_conv's (the biases read only to recompute: gradient checkpointing).
    weights: [Tensor; 4],
    d: Dims,
    trace: Option<Saved>,
}

impl Backward for ConvGruBackward {
    fn name(&self) -> &'static str {
        "conv_gru"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let d = &self.d;
        let grads = match self
            .trace
            .as_ref()
            .expect("conv_gru: trace kept when recording")
        {
            Saved::Cpu(tr, v) => {
                let wt = Weights {
                    w_in: &v[1][..],
                    b_in: &v[2][..],
                    w_out: &v[3][..],
                    b_out: &v[4][..],
                };
                let g = cpu_backward(tr, &wt, &dy.cpu_data("conv_gru"), d);
                let shapes = [
                    &[d.b, d.t, d.cx, d.h, d.w][..],
                    self.weights[0].shape(),
                    &[2 * d.hd],
                    self.weights[2].shape(),
                    &[d.hd],
                ];
                let mut out = Vec::new();
                for (gv, s) in g.into_iter().zip(shapes) {
                    out.push(dy.new_like(gv, s));
                }
                out
            }
            Saved::Gpu(tr) => {
                gpu_backward(tr, &self.weights, dy.gpu_storage("conv_gru"), d).to_vec()
            }
        };
        grads.into_iter().map(Some).collect()
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests;
