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
//! 1. This file: [`Tensor::temporal_attention_weights`] (k, Q, pad mask) → a: `attention.wgsl`; backward
//!    `attention_backward.wgsl` gives dk and the score gradient `dscore`, and dQ is one batched matmul:
//!    `dQ[h] = Σ_{n,t} dscore[h, n, t] k[n, t, h]` — a (1 × N·T) · (N·T × d_k) product per head.
//! 2. `attention_apply.rs`: [`Tensor::temporal_attention_apply`] (a, v) → o: `attention_apply.wgsl`;
//!    backward `attention_apply_backward_value.wgsl` (dv = a · do) and
//!    `attention_apply_backward_attn.wgsl` (da = Σ_c do · v).
//!
//! Derivatives: softmax backward `ds = a (g - Σ g a)`; masked scores get no gradient (masked_fill);
//! dropout multiplies the gradient by the same mask. Saved: k, Q, the mask and the dropout seed (the softmax
//! is recomputed in the backward instead of stored).
//!
//! **The dropout threshold sentinel.** A date is kept when `pcg_hash(seed ^ pcg_hash(i)) >= threshold`,
//! `threshold = round(p · 2^32)` (`dropout::threshold`). The shaders read `threshold = 0` as "no dropout"
//! (every hash passes), which is what the CPU reference decides with `p == 0.0`; a non-zero p whose
//! threshold rounds to 0 is sent as 1 ([`AttnDropout::threshold`], used by both paths), so "off" and "on" never meet at the same value.
//!
//! Size: over the 400-line budget on purpose: this is the file learners read, and its explanation is most of
//! it; the code is one op (the apply half is `attention_apply.rs`).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
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

    /// The keep threshold the shaders and the CPU reference compare hashes with: 0 means "off" (every hash
    /// passes; exactly when p = 0), any p > 0 gives at least 1 (see the module doc's sentinel note).
    pub fn threshold(self) -> u32 {
        if self.p == 0.0 {
            0
        } else {
            dropout::threshold(self.p).max(1)
        }
    }
}

/// `attention.wgsl`: scores → attention weights.
pub const ATTENTION: Kernel = Kernel::new::<Params>(&shaders::ATTENTION, "attention", 5);
/// `attention_backward.wgsl`: dk, dscore.
pub const ATTENTION_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::ATTENTION_BACKWARD, "attention_backward", 7);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[ATTENTION, ATTENTION_BACKWARD];

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
    let (thr, scale) = (drop.threshold(), T::from_f64(dropout::scale(drop.p) as f64));
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
    let (thr, scale) = (drop.threshold(), T::from_f64(dropout::scale(drop.p) as f64));
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
        threshold: drop.threshold(),
        scale: dropout::scale(drop.p),
        inv_temp: 1.0 / (d.dk as f32).sqrt(),
        _pad: [0; 2],
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
    ATTENTION.dispatch(k.gpu, &bufs, &p, Grid::threads(rows));
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
    ATTENTION_BACKWARD.dispatch(k.gpu, &bufs, &p, Grid::threads(rows));
    (dk, dscore)
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
    }

    #[test]
    fn gradcheck_f64_weights() {
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
    }
}
