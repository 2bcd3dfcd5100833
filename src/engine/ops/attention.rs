//! L-TAE's multi-head temporal attention with a master query — the op learners come to this project for.
//!
//! ## What it computes
//! A satellite image time series gives every pixel a sequence of T dates. L-TAE (Garnot & Landrieu, 2020)
//! compresses each sequence into one vector by attention, cheaply: instead of one query per date (O(T²)),
//! each head h has **one learnt query** `Q[h]` (d_k numbers) shared by all pixels — the master query.
//! For sequence n = b·P + p (sample b, pixel p of the P = h·w pixels):
//!
//! ```text
//! keys      k[n, t, h]  = (fc1_k applied to the date's features)[h·d_k .. h·d_k + d_k]   (computed before)
//! scores    s[h, n, t]  = <Q[h], k[n, t, h]> / sqrt(d_k),   -1000 where date t of sample b is padding
//! weights   a[h, n, t]  = softmax_t(s[h, n, ·])   (then attention dropout in training mode)
//! values    v[n, t, h]  = the date's features, channels h·d_v .. h·d_v + d_v (no value projection)
//! output    o[n, h·d_v + c] = Σ_t a[h, n, t] · v[n, t, h·d_v + c]      (heads concatenated)
//! ```
//! The attention weights are returned too, laid out (H, B, T, P) — U-TAE reshapes them to (H, B, T, h, w)
//! and reuses them to aggregate the skip connections over time.
//!
//! ## How it is split
//! Two autograd ops, so that the weights can receive gradients from both the output and the skip
//! aggregation:
//! 1. [`Tensor::temporal_attention_weights`] (k, Q, pad mask) → a: `attention.wgsl`; backward
//!    `attention_backward.wgsl` gives dk and the score gradient `dscore`, and dQ is one batched matmul:
//!    `dQ[h] = Σ_{n,t} dscore[h, n, t] k[n, t, h]` — a (1 × N·T) · (N·T × d_k) product per head.
//! 2. [`Tensor::temporal_attention_apply`] (a, v) → o: `attention_apply.wgsl`; backward
//!    `attention_apply_backward_value.wgsl` (dv = a · do) and `attention_apply_backward_attn.wgsl`
//!    (da = Σ_c do · v).
//!
//! Derivatives: softmax backward `ds = a (g - Σ g a)`; masked scores get no gradient (masked_fill);
//! dropout multiplies the gradient by the same mask. Saved: k, Q, the mask and the dropout seed (the softmax
//! is recomputed in the backward instead of stored), and a, v for the apply step.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{groups, launch};
use crate::engine::ops::dropout;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of attention.wgsl and attention_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    heads: u32,
    batch: u32,
    t: u32,
    pixels: u32,
    dk: u32,
    use_mask: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
    inv_temp: f32,
    _pad: [u32; 2],
}

/// Shader `Params` of attention_apply*.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ApplyParams {
    heads: u32,
    batch: u32,
    t: u32,
    pixels: u32,
    dv: u32,
    _pad: [u32; 3],
}

/// Sizes: H heads, B samples, T dates, P sequences (pixels) per sample, d_k key width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Heads H.
    pub heads: usize,
    /// Samples B.
    pub batch: usize,
    /// Dates T.
    pub t: usize,
    /// Sequences per sample P (h · w for L-TAE 2D, 1 for pixel-set L-TAE).
    pub pixels: usize,
    /// Key width d_k.
    pub dk: usize,
}

/// Attention dropout: probability and seed (p = 0: none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnDropout {
    /// Drop probability.
    pub p: f32,
    /// Mask seed.
    pub seed: u32,
}

impl AttnDropout {
    /// No dropout (evaluation).
    pub const NONE: AttnDropout = AttnDropout { p: 0.0, seed: 0 };
}

// ---- CPU reference ----

/// Masked, scaled scores s[h, n, t] (index `(h·N + n)·T + t`), N = B·P.
fn cpu_raw_scores<T: Real>(k: &[T], q: &[T], mask: Option<&[T]>, d: Dims) -> Vec<T> {
    let n_seq = d.batch * d.pixels;
    let inv_temp = T::one() / T::from_f64(d.dk as f64).sqrt();
    let mut s = vec![T::zero(); d.heads * n_seq * d.t];
    for h in 0..d.heads {
        for n in 0..n_seq {
            for t in 0..d.t {
                let padded = mask.is_some_and(|m| m[(n / d.pixels) * d.t + t] != T::zero());
                s[(h * n_seq + n) * d.t + t] = if padded {
                    T::from_f64(-1000.0)
                } else {
                    let kb = (n * d.t + t) * d.heads * d.dk + h * d.dk;
                    let mut acc = T::zero();
                    for j in 0..d.dk {
                        acc += q[h * d.dk + j] * k[kb + j];
                    }
                    acc * inv_temp
                };
            }
        }
    }
    s
}

/// Index of a[h, n, t] in the (H, B, T, P) output layout.
fn attn_index(d: Dims, h: usize, n: usize, t: usize) -> usize {
    let (b, p) = (n / d.pixels, n % d.pixels);
    ((h * d.batch + b) * d.t + t) * d.pixels + p
}

/// k (N, T, H·d_k), q (H, d_k), mask (B, T) or none → attention weights (H, B, T, P), after dropout.
pub fn cpu_scores<T: Real>(
    k: &[T],
    q: &[T],
    mask: Option<&[T]>,
    d: Dims,
    drop: AttnDropout,
) -> Vec<T> {
    let n_seq = d.batch * d.pixels;
    let s = cpu_raw_scores(k, q, mask, d);
    let soft = crate::engine::ops::softmax::cpu_forward(&s, d.heads * n_seq, d.t, 1);
    let (thr, scale) = (
        dropout::threshold(drop.p),
        T::from_f64(dropout::scale(drop.p) as f64),
    );
    let mut a = vec![T::zero(); soft.len()];
    for h in 0..d.heads {
        for n in 0..n_seq {
            for t in 0..d.t {
                let i = attn_index(d, h, n, t);
                let v = soft[(h * n_seq + n) * d.t + t];
                a[i] = if drop.p == 0.0 {
                    v
                } else if dropout::keep(drop.seed, i as u32, thr) {
                    v * scale
                } else {
                    T::zero()
                };
            }
        }
    }
    a
}

/// Gradients (dk (N, T, H·d_k), dq (H, d_k)) from dattn (H, B, T, P).
pub fn cpu_scores_backward<T: Real>(
    k: &[T],
    q: &[T],
    mask: Option<&[T]>,
    dattn: &[T],
    d: Dims,
    drop: AttnDropout,
) -> (Vec<T>, Vec<T>) {
    let n_seq = d.batch * d.pixels;
    let s = cpu_raw_scores(k, q, mask, d);
    let soft = crate::engine::ops::softmax::cpu_forward(&s, d.heads * n_seq, d.t, 1);
    let (thr, scale) = (
        dropout::threshold(drop.p),
        T::from_f64(dropout::scale(drop.p) as f64),
    );
    let inv_temp = T::one() / T::from_f64(d.dk as f64).sqrt();
    let mut dk = vec![T::zero(); k.len()];
    let mut dq = vec![T::zero(); q.len()];
    for h in 0..d.heads {
        for n in 0..n_seq {
            let g = |t: usize| {
                let i = attn_index(d, h, n, t);
                if drop.p == 0.0 {
                    dattn[i]
                } else if dropout::keep(drop.seed, i as u32, thr) {
                    dattn[i] * scale
                } else {
                    T::zero()
                }
            };
            let a = |t: usize| soft[(h * n_seq + n) * d.t + t];
            let mut dot = T::zero();
            for t in 0..d.t {
                dot += g(t) * a(t);
            }
            for t in 0..d.t {
                let padded = mask.is_some_and(|m| m[(n / d.pixels) * d.t + t] != T::zero());
                let ds = if padded {
                    T::zero()
                } else {
                    a(t) * (g(t) - dot) * inv_temp
                };
                let kb = (n * d.t + t) * d.heads * d.dk + h * d.dk;
                for j in 0..d.dk {
                    dk[kb + j] = ds * q[h * d.dk + j];
                    dq[h * d.dk + j] += ds * k[kb + j];
                }
            }
        }
    }
    (dk, dq)
}

/// a (H, B, T, P), v (N, T, H·d_v) → o (N, H·d_v).
pub fn cpu_apply<T: Real>(a: &[T], v: &[T], d: Dims, dv: usize) -> Vec<T> {
    let (n_seq, width) = (d.batch * d.pixels, d.heads * dv);
    let mut o = vec![T::zero(); n_seq * width];
    for n in 0..n_seq {
        for ch in 0..width {
            let h = ch / dv;
            let mut acc = T::zero();
            for t in 0..d.t {
                acc += a[attn_index(d, h, n, t)] * v[(n * d.t + t) * width + ch];
            }
            o[n * width + ch] = acc;
        }
    }
    o
}

/// (da (H, B, T, P), dv (N, T, H·d_v)) from do (N, H·d_v).
pub fn cpu_apply_backward<T: Real>(
    a: &[T],
    v: &[T],
    dout: &[T],
    d: Dims,
    dv: usize,
) -> (Vec<T>, Vec<T>) {
    let (n_seq, width) = (d.batch * d.pixels, d.heads * dv);
    let mut da = vec![T::zero(); a.len()];
    let mut dvv = vec![T::zero(); v.len()];
    for n in 0..n_seq {
        for ch in 0..width {
            let h = ch / dv;
            for t in 0..d.t {
                let ai = attn_index(d, h, n, t);
                let vi = (n * d.t + t) * width + ch;
                da[ai] += dout[n * width + ch] * v[vi];
                dvv[vi] = a[ai] * dout[n * width + ch];
            }
        }
    }
    (da, dvv)
}

// ---- GPU ----

fn params(d: Dims, use_mask: bool, drop: AttnDropout) -> Params {
    Params {
        heads: d.heads as u32,
        batch: d.batch as u32,
        t: d.t as u32,
        pixels: d.pixels as u32,
        dk: d.dk as u32,
        use_mask: use_mask as u32,
        seed: drop.seed,
        threshold: if drop.p == 0.0 {
            0
        } else {
            dropout::threshold(drop.p).max(1)
        },
        scale: dropout::scale(drop.p),
        inv_temp: 1.0 / (d.dk as f32).sqrt(),
        _pad: [0; 2],
    }
}

fn apply_params(d: Dims, dv: usize) -> ApplyParams {
    ApplyParams {
        heads: d.heads as u32,
        batch: d.batch as u32,
        t: d.t as u32,
        pixels: d.pixels as u32,
        dv: dv as u32,
        _pad: [0; 3],
    }
}

/// Launches attention.wgsl → attn (H, B, T, P). `mask` is bound even when unused (then any buffer).
pub fn gpu_scores(
    k: &GpuStorage,
    q: &GpuStorage,
    mask: Option<&GpuStorage>,
    d: Dims,
    drop: AttnDropout,
) -> GpuStorage {
    let rows = d.heads * d.batch * d.pixels;
    let attn = GpuStorage::alloc(k.gpu, rows * d.t, "attention");
    let m = mask.unwrap_or(q);
    let p = params(d, mask.is_some(), drop);
    let bufs = [k.buffer(), q.buffer(), m.buffer(), attn.buffer()];
    launch(
        k.gpu,
        &shaders::ATTENTION,
        "attention",
        &bufs,
        &p,
        groups(rows, shaders::ATTENTION.wg),
    );
    attn
}

/// Launches attention_backward.wgsl → (dk (N, T, H·d_k), dscore (H, B, T, P)).
pub fn gpu_scores_backward(
    k: &GpuStorage,
    q: &GpuStorage,
    mask: Option<&GpuStorage>,
    dattn: &GpuStorage,
    d: Dims,
    drop: AttnDropout,
) -> (GpuStorage, GpuStorage) {
    let rows = d.heads * d.batch * d.pixels;
    let dk = GpuStorage::alloc(
        k.gpu,
        d.batch * d.pixels * d.t * d.heads * d.dk,
        "attention_backward",
    );
    let dscore = GpuStorage::alloc(k.gpu, rows * d.t, "attention_backward");
    let m = mask.unwrap_or(q);
    let p = params(d, mask.is_some(), drop);
    let bufs = [
        k.buffer(),
        q.buffer(),
        m.buffer(),
        dattn.buffer(),
        dk.buffer(),
        dscore.buffer(),
    ];
    launch(
        k.gpu,
        &shaders::ATTENTION_BACKWARD,
        "attention_backward",
        &bufs,
        &p,
        groups(rows, shaders::ATTENTION_BACKWARD.wg),
    );
    (dk, dscore)
}

/// Launches attention_apply.wgsl → o (N, H·d_v).
pub fn gpu_apply(a: &GpuStorage, v: &GpuStorage, d: Dims, dv: usize) -> GpuStorage {
    let n = d.batch * d.pixels * d.heads * dv;
    let o = GpuStorage::alloc(a.gpu, n, "attention_apply");
    let p = apply_params(d, dv);
    launch(
        a.gpu,
        &shaders::ATTENTION_APPLY,
        "attention_apply",
        &[a.buffer(), v.buffer(), o.buffer()],
        &p,
        groups(n, shaders::ATTENTION_APPLY.wg),
    );
    o
}

/// Launches the two apply backward kernels → (da, dv).
pub fn gpu_apply_backward(
    a: &GpuStorage,
    v: &GpuStorage,
    dout: &GpuStorage,
    d: Dims,
    dv: usize,
) -> (GpuStorage, GpuStorage) {
    let p = apply_params(d, dv);
    let n_a = d.heads * d.batch * d.t * d.pixels;
    let da = GpuStorage::alloc(a.gpu, n_a, "attention_apply_backward_attn");
    let bufs = [v.buffer(), dout.buffer(), da.buffer()];
    launch(
        a.gpu,
        &shaders::ATTENTION_APPLY_BACKWARD_ATTN,
        "attention_apply_backward_attn",
        &bufs,
        &p,
        groups(n_a, shaders::ATTENTION_APPLY_BACKWARD_ATTN.wg),
    );
    let n_v = d.batch * d.pixels * d.t * d.heads * dv;
    let dvv = GpuStorage::alloc(a.gpu, n_v, "attention_apply_backward_value");
    let bufs = [a.buffer(), dout.buffer(), dvv.buffer()];
    launch(
        a.gpu,
        &shaders::ATTENTION_APPLY_BACKWARD_VALUE,
        "attention_apply_backward_value",
        &bufs,
        &p,
        groups(n_v, shaders::ATTENTION_APPLY_BACKWARD_VALUE.wg),
    );
    (da, dvv)
}

// ---- Autograd ----

struct ScoresBackward {
    k: Tensor,
    q: Tensor,
    mask: Option<Tensor>,
    d: Dims,
    drop: AttnDropout,
}

impl Backward for ScoresBackward {
    fn name(&self) -> &'static str {
        "temporal_attention_weights"
    }
    fn backward(&self, dattn: &Tensor) -> Vec<Option<Tensor>> {
        let (k, q, d, op) = (&self.k, &self.q, self.d, "attention_backward");
        match dattn.device() {
            Device::Cpu => {
                let m = self.mask.as_ref().map(|m| m.cpu_data(op).clone());
                let (dk, dq) = cpu_scores_backward(
                    &k.cpu_data(op),
                    &q.cpu_data(op),
                    m.as_deref(),
                    &dattn.cpu_data(op),
                    d,
                    self.drop,
                );
                let mut g = vec![
                    Some(k.new_like(dk, k.shape())),
                    Some(q.new_like(dq, q.shape())),
                ];
                g.extend(self.mask.as_ref().map(|_| None));
                g
            }
            Device::Gpu => {
                let m = self.mask.as_ref().map(|m| m.gpu_storage(op));
                let (dk, dscore) = gpu_scores_backward(
                    k.gpu_storage(op),
                    q.gpu_storage(op),
                    m,
                    dattn.gpu_storage(op),
                    d,
                    self.drop,
                );
                // dQ[h] = dscore[h] (1 × B·T·P) · k_h (B·T·P × d_k), with k_h = k as (B, P, T, H, d_k) → (H, B, T, P, d_k).
                let dscore = Tensor::from_storage(
                    &[d.heads, 1, d.batch * d.t * d.pixels],
                    Storage::Gpu(dscore),
                );
                let kh = k
                    .reshape(&[d.batch, d.pixels, d.t, d.heads, d.dk])
                    .permute(&[3, 0, 2, 1, 4])
                    .reshape(&[d.heads, d.batch * d.t * d.pixels, d.dk]);
                let dq = dscore.matmul(&kh).reshape(q.shape());
                let mut g = vec![
                    Some(Tensor::from_storage(k.shape(), Storage::Gpu(dk))),
                    Some(dq),
                ];
                g.extend(self.mask.as_ref().map(|_| None));
                g
            }
        }
    }
}

struct ApplyBackward {
    a: Tensor,
    v: Tensor,
    d: Dims,
    dv: usize,
}

impl Backward for ApplyBackward {
    fn name(&self) -> &'static str {
        "temporal_attention_apply"
    }
    fn backward(&self, dout: &Tensor) -> Vec<Option<Tensor>> {
        let (a, v, op) = (&self.a, &self.v, "attention_apply_backward");
        let (da, dv) = match dout.device() {
            Device::Cpu => {
                let (da, dv) = cpu_apply_backward(
                    &a.cpu_data(op),
                    &v.cpu_data(op),
                    &dout.cpu_data(op),
                    self.d,
                    self.dv,
                );
                (Tensor::cpu_storage(da), Tensor::cpu_storage(dv))
            }
            Device::Gpu => {
                let (da, dv) = gpu_apply_backward(
                    a.gpu_storage(op),
                    v.gpu_storage(op),
                    dout.gpu_storage(op),
                    self.d,
                    self.dv,
                );
                (Storage::Gpu(da), Storage::Gpu(dv))
            }
        };
        vec![
            Some(Tensor::from_storage(a.shape(), da)),
            Some(Tensor::from_storage(v.shape(), dv)),
        ]
    }
}

impl Tensor {
    /// Attention weights of master-query attention. `self` = keys k (B·P, T, H·d_k); `q` = master queries
    /// (H, d_k); `pad_mask` (B, T) with 1.0 on padded dates (None: no padding in the batch); `pixels` = P
    /// sequences per sample. Returns a (H, B, T, P), after attention dropout when `drop.p > 0`.
    pub fn temporal_attention_weights(
        &self,
        q: &Tensor,
        pad_mask: Option<&Tensor>,
        pixels: usize,
        drop: AttnDropout,
    ) -> Tensor {
        let op = "temporal_attention_weights";
        assert_eq!(
            q.rank(),
            2,
            "{op}: expected master queries (H, d_k), got {:?}",
            q.shape()
        );
        let (heads, dk) = (q.shape()[0], q.shape()[1]);
        let s = self.shape();
        assert!(
            s.len() == 3 && s[2] == heads * dk && s[0].is_multiple_of(pixels),
            "{op}: expected keys (B·{pixels}, T, {}), got {s:?}",
            heads * dk
        );
        let d = Dims {
            heads,
            batch: s[0] / pixels,
            t: s[1],
            pixels,
            dk,
        };
        if let Some(m) = pad_mask {
            assert_eq!(
                m.shape(),
                &[d.batch, d.t],
                "{op}: expected a pad mask ({}, {}), got {:?}",
                d.batch,
                d.t,
                m.shape()
            );
        }
        let mut inputs = vec![self, q];
        let storage = match Tensor::same_device(op, &[self, q]) {
            Device::Cpu => {
                let m = pad_mask.map(|m| m.cpu_data(op).clone());
                Tensor::cpu_storage(cpu_scores(
                    &self.cpu_data(op),
                    &q.cpu_data(op),
                    m.as_deref(),
                    d,
                    drop,
                ))
            }
            Device::Gpu => Storage::Gpu(gpu_scores(
                self.gpu_storage(op),
                q.gpu_storage(op),
                pad_mask.map(|m| m.gpu_storage(op)),
                d,
                drop,
            )),
        };
        if let Some(m) = pad_mask {
            inputs.push(m);
        }
        let back = ScoresBackward {
            k: self.clone(),
            q: q.clone(),
            mask: pad_mask.map(|m| m.detach()),
            d,
            drop,
        };
        Tensor::from_op(&[heads, d.batch, d.t, pixels], storage, &inputs, back)
    }

    /// Attention-weighted average over time with heads concatenated. `self` = weights a (H, B, T, P);
    /// `v` = values (B·P, T, H·d_v). Returns o (B·P, H·d_v).
    pub fn temporal_attention_apply(&self, v: &Tensor) -> Tensor {
        let op = "temporal_attention_apply";
        let a = self.shape();
        assert_eq!(a.len(), 4, "{op}: expected weights (H, B, T, P), got {a:?}");
        let d = Dims {
            heads: a[0],
            batch: a[1],
            t: a[2],
            pixels: a[3],
            dk: 0,
        };
        let vs = v.shape();
        assert!(
            vs.len() == 3
                && vs[0] == d.batch * d.pixels
                && vs[1] == d.t
                && vs[2].is_multiple_of(d.heads),
            "{op}: expected values ({}, {}, H·d_v), got {vs:?}",
            d.batch * d.pixels,
            d.t
        );
        let dv = vs[2] / d.heads;
        let storage = match Tensor::same_device(op, &[self, v]) {
            Device::Cpu => {
                Tensor::cpu_storage(cpu_apply(&self.cpu_data(op), &v.cpu_data(op), d, dv))
            }
            Device::Gpu => Storage::Gpu(gpu_apply(self.gpu_storage(op), v.gpu_storage(op), d, dv)),
        };
        let back = ApplyBackward {
            a: self.clone(),
            v: v.clone(),
            d,
            dv,
        };
        Tensor::from_op(&[d.batch * d.pixels, vs[2]], storage, &[self, v], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // One head, d_k = 4 (temperature 2), one sequence of T = 3 dates, the last padded.
        // Q = (1, 0, 0, 0); keys' first components 2 ln 3 and 0 → scores (ln 3, 0, -1000) → a = (3/4, 1/4, 0).
        let d = Dims {
            heads: 1,
            batch: 1,
            t: 3,
            pixels: 1,
            dk: 4,
        };
        let l3 = 3f64.ln();
        let k = [
            2.0 * l3,
            0.0,
            0.0,
            0.0,
            0.0,
            5.0,
            0.0,
            0.0,
            9.0,
            9.0,
            9.0,
            9.0,
        ];
        let a = cpu_scores(
            &k,
            &[1.0, 0.0, 0.0, 0.0],
            Some(&[0.0, 0.0, 1.0]),
            d,
            AttnDropout::NONE,
        );
        assert!(
            (a[0] - 0.75).abs() < 1e-12 && (a[1] - 0.25).abs() < 1e-12 && a[2] == 0.0,
            "{a:?}"
        );
        // Values (d_v = 2): v_t = (t, 10 t) → o = 3/4 (0, 0) + 1/4 (1, 10) = (0.25, 2.5).
        let o = cpu_apply(&a, &[0.0, 0.0, 1.0, 10.0, 2.0, 20.0], d, 2);
        assert!((o[0] - 0.25).abs() < 1e-12 && (o[1] - 2.5).abs() < 1e-12);
    }

    #[test]
    fn gradcheck_f64_weights_and_apply() {
        let d = Dims {
            heads: 2,
            batch: 2,
            t: 4,
            pixels: 3,
            dk: 3,
        };
        let n = d.batch * d.pixels;
        let mask = vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let k = random_vec(n * d.t * d.heads * d.dk, -1.0, 1.0, 61);
        let q = random_vec(d.heads * d.dk, -1.0, 1.0, 62);
        for drop in [AttnDropout::NONE, AttnDropout { p: 0.3, seed: 5 }] {
            let m2 = mask.clone();
            gradcheck(
                "attention weights",
                &[k.clone(), q.clone()],
                &[],
                |x| cpu_scores(&x[0], &x[1], Some(&mask), d, drop),
                |x, g| {
                    let (dk, dq) = cpu_scores_backward(&x[0], &x[1], Some(&m2), g, d, drop);
                    vec![dk, dq]
                },
            );
        }
        let dv = 2;
        let a = cpu_scores(&k, &q, Some(&mask), d, AttnDropout::NONE);
        let v = random_vec(n * d.t * d.heads * dv, -1.0, 1.0, 63);
        gradcheck(
            "attention apply",
            &[a, v],
            &[],
            |x| cpu_apply(&x[0], &x[1], d, dv),
            |x, g| {
                let (da, dvv) = cpu_apply_backward(&x[0], &x[1], g, d, dv);
                vec![da, dvv]
            },
        );
    }
}
