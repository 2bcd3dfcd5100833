//! The first half of L-TAE's master-query attention: the attention weights (the lesson is the family's module
//! doc, [`crate::engine::ops::attention`]).
//!
//! Math: for head `head`, sequence n = b·P + p and date t, the score
//! `s = ⟨Q[head], k[n, t, head·d_k ..]⟩ · inv_temp` (`inv_temp` = 1/√d_k; −1000 on padded dates), the weights
//! `a = softmax_t(s)`, then attention dropout (keep when the seeded hash passes; kept weights times
//! `keep_scale` = 1/(1 − p)). Derivatives: `ds = a (g − Σ_t g·a) · inv_temp` (0 on padded dates; g the
//! incoming gradient after the same dropout mask), `dk = ds · Q[head]`, `dQ[head] = Σ_{n,t} ds · k` (a batched
//! matmul, outside the kernel). Saved for backward: k, Q, the mask and the dropout seed (the softmax is
//! recomputed). Shapes: k (N, T, H·d_k), Q (H, d_k), pad mask (B, T) → a (H, B, T, P).
//!
//! Kernels: `attention_weights.wgsl` (one invocation per (head, sequence), three passes over the dates:
//! maximum, normaliser, output) and `attention_weights_backward.wgsl` (dk and ds). [`forward_flops`] and
//! [`backward_flops`] are the launches' arithmetic.
//!
//! **The dropout threshold sentinel.** A date is kept when `pcg_hash(seed ^ pcg_hash(i)) >= threshold`,
//! `threshold = round(p · 2^32)` (`dropout::threshold`). The shaders read `threshold = 0` as "no dropout"
//! (every hash passes), which is what the CPU reference decides with `p == 0.0`; a non-zero p whose
//! threshold rounds to 0 is sent as 1 ([`AttnDropout::threshold`], used by both paths), so "off" and "on"
//! never meet at the same value. The hash of element i is `dropout.wgsl`'s: the fused kernel's dropout equals
//! [`Tensor::dropout`] applied to the (H, B, T, P) weights (tested).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::elementwise::dropout;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of attention_weights.wgsl and attention_weights_backward.wgsl.
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
    keep_scale: f32,
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

/// `attention_weights.wgsl`: keys, queries, mask → attention weights.
pub const ATTENTION_WEIGHTS: Kernel =
    Kernel::new::<Params>(&shaders::ATTENTION_WEIGHTS, "attention_weights", 5);
/// `attention_weights_backward.wgsl`: dk, dscore.
pub const ATTENTION_WEIGHTS_BACKWARD: Kernel = Kernel::new::<Params>(
    &shaders::ATTENTION_WEIGHTS_BACKWARD,
    "attention_weights_backward",
    7,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[ATTENTION_WEIGHTS, ATTENTION_WEIGHTS_BACKWARD];

// ---- CPU reference ----

/// Masked, scaled scores s[h, n, t] (index `(h·N + n)·T + t`), N = B·P.
fn cpu_raw_scores<T: Real>(k: &[T], q: &[T], mask: Option<&[T]>, d: Dims) -> Vec<T> {
    let n_seq = d.batch * d.pixels;
    let inv_temp = T::one() / T::from_f64(d.dk as f64).sqrt();
    let mut s = vec![T::zero(); d.heads * n_seq * d.t];
    for head in 0..d.heads {
        for n in 0..n_seq {
            for t in 0..d.t {
                let padded = mask.is_some_and(|m| m[(n / d.pixels) * d.t + t] != T::zero());
                s[(head * n_seq + n) * d.t + t] = if padded {
                    T::from_f64(-1000.0)
                } else {
                    let kb = (n * d.t + t) * d.heads * d.dk + head * d.dk;
                    let mut acc = T::zero();
                    for j in 0..d.dk {
                        acc += q[head * d.dk + j] * k[kb + j];
                    }
                    acc * inv_temp
                };
            }
        }
    }
    s
}

/// Index of a[h, n, t] in the (H, B, T, P) output layout.
fn attn_index(d: Dims, head: usize, n: usize, t: usize) -> usize {
    let (b, p) = (n / d.pixels, n % d.pixels);
    ((head * d.batch + b) * d.t + t) * d.pixels + p
}

/// k (N, T, H·d_k), q (H, d_k), mask (B, T) or none → attention weights (H, B, T, P), after dropout.
pub fn cpu_weights<T: Real>(
    k: &[T],
    q: &[T],
    mask: Option<&[T]>,
    d: Dims,
    drop: AttnDropout,
) -> Vec<T> {
    let n_seq = d.batch * d.pixels;
    let s = cpu_raw_scores(k, q, mask, d);
    let soft = crate::engine::ops::reduce::softmax::cpu_forward(&s, d.heads * n_seq, d.t, 1);
    let (thr, keep_scale) = (drop.threshold(), T::from_f64(dropout::scale(drop.p) as f64));
    let mut a = vec![T::zero(); soft.len()];
    for head in 0..d.heads {
        for n in 0..n_seq {
            for t in 0..d.t {
                let i = attn_index(d, head, n, t);
                let v = soft[(head * n_seq + n) * d.t + t];
                a[i] = if drop.p == 0.0 {
                    v
                } else if dropout::keep(drop.seed, i as u32, thr) {
                    v * keep_scale
                } else {
                    T::zero()
                };
            }
        }
    }
    a
}

/// Gradients (dk (N, T, H·d_k), dq (H, d_k)) from dattn (H, B, T, P).
pub fn cpu_weights_backward<T: Real>(
    k: &[T],
    q: &[T],
    mask: Option<&[T]>,
    dattn: &[T],
    d: Dims,
    drop: AttnDropout,
) -> (Vec<T>, Vec<T>) {
    let n_seq = d.batch * d.pixels;
    let s = cpu_raw_scores(k, q, mask, d);
    let soft = crate::engine::ops::reduce::softmax::cpu_forward(&s, d.heads * n_seq, d.t, 1);
    let (thr, keep_scale) = (drop.threshold(), T::from_f64(dropout::scale(drop.p) as f64));
    let inv_temp = T::one() / T::from_f64(d.dk as f64).sqrt();
    let mut dk = vec![T::zero(); k.len()];
    let mut dq = vec![T::zero(); q.len()];
    for head in 0..d.heads {
        for n in 0..n_seq {
            let g = |t: usize| {
                let i = attn_index(d, head, n, t);
                if drop.p == 0.0 {
                    dattn[i]
                } else if dropout::keep(drop.seed, i as u32, thr) {
                    dattn[i] * keep_scale
                } else {
                    T::zero()
                }
            };
            let a = |t: usize| soft[(head * n_seq + n) * d.t + t];
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
                let kb = (n * d.t + t) * d.heads * d.dk + head * d.dk;
                for j in 0..d.dk {
                    dk[kb + j] = ds * q[head * d.dk + j];
                    dq[head * d.dk + j] += ds * k[kb + j];
                }
            }
        }
    }
    (dk, dq)
}

// ---- GPU ----

/// Arithmetic of the forward launch as executed: per (head, sequence) row and date, the score is computed in
/// each of the three passes (maximum, normaliser, output: 2·d_k + 1 each, kept in registers rather than
/// stored) plus two exponentials, a subtraction, a division: `rows · T · (6·d_k + 6)`. The bytes are the
/// bound buffers (k, Q, the mask and the weights, each read or written once from memory).
pub fn forward_flops(d: Dims) -> usize {
    d.heads * d.batch * d.pixels * d.t * (6 * d.dk + 6)
}

/// Arithmetic of the backward launch: four score passes (maximum, normaliser, Σ g·a, the gradient) plus
/// the softmax backward and dk = ds·Q: `rows · T · (9·d_k + 12)` (dQ is a separate matmul, counted there).
pub fn backward_flops(d: Dims) -> usize {
    d.heads * d.batch * d.pixels * d.t * (9 * d.dk + 12)
}

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
        keep_scale: dropout::scale(drop.p),
        inv_temp: 1.0 / (d.dk as f32).sqrt(),
        _pad: [0; 2],
    }
}

/// Launches attention_weights.wgsl → attn (H, B, T, P). `mask` is bound even when unused (then any buffer).
pub fn gpu_weights(
    k: &GpuStorage,
    q: &GpuStorage,
    mask: Option<&GpuStorage>,
    d: Dims,
    drop: AttnDropout,
) -> GpuStorage {
    let rows = d.heads * d.batch * d.pixels;
    let attn = GpuStorage::alloc(k.gpu, rows * d.t, "attention_weights");
    let m = mask.unwrap_or(q);
    let p = params(d, mask.is_some(), drop);
    let bufs = [k.buffer(), q.buffer(), m.buffer(), attn.buffer()];
    let grid = Grid::threads(rows)
        .flops(forward_flops(d))
        .loop_len(3 * d.t * d.dk);
    ATTENTION_WEIGHTS.dispatch(k.gpu, &bufs, &p, grid);
    attn
}

/// Launches attention_weights_backward.wgsl → (dk (N, T, H·d_k), dscore (H, B, T, P)).
pub fn gpu_weights_backward(
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
        "attention_weights_backward",
    );
    let dscore = GpuStorage::alloc(k.gpu, rows * d.t, "attention_weights_backward");
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
    let grid = Grid::threads(rows)
        .flops(backward_flops(d))
        .loop_len(4 * d.t * d.dk);
    ATTENTION_WEIGHTS_BACKWARD.dispatch(k.gpu, &bufs, &p, grid);
    (dk, dscore)
}

// ---- Autograd ----

struct WeightsBackward {
    k: Tensor,
    q: Tensor,
    mask: Option<Tensor>,
    d: Dims,
    drop: AttnDropout,
}

impl Backward for WeightsBackward {
    fn name(&self) -> &'static str {
        "temporal_attention_weights"
    }
    fn backward(&self, dattn: &Tensor) -> Vec<Option<Tensor>> {
        let (k, q, d, op) = (&self.k, &self.q, self.d, "attention_weights_backward");
        match dattn.device() {
            Device::Cpu => {
                let m = self.mask.as_ref().map(|m| m.cpu_data(op).clone());
                let (dk, dq) = cpu_weights_backward(
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
                let (dk, dscore) = gpu_weights_backward(
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
                Tensor::cpu_storage(cpu_weights(
                    &self.cpu_data(op),
                    &q.cpu_data(op),
                    m.as_deref(),
                    d,
                    drop,
                ))
            }
            Device::Gpu => Storage::Gpu(gpu_weights(
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
        let back = WeightsBackward {
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
        let a = cpu_weights(
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

    /// The lesson's napkin math (module doc of the family): U-TAE paper configuration, B 4, T 40, L-TAE on
    /// 16 × 16 with 16 heads, d_k 4, d_model 256.
    #[test]
    fn the_napkin_math_of_the_paper_configuration() {
        let d = Dims {
            heads: 16,
            batch: 4,
            t: 40,
            pixels: 16 * 16,
            dk: 4,
        };
        let n = d.batch * d.pixels;
        let weights_flops = forward_flops(d) as f64;
        let weights_bytes =
            4.0 * (n * d.t * d.heads * d.dk + d.heads * d.batch * d.t * d.pixels) as f64;
        let dv = 256 / d.heads;
        let apply = crate::engine::ops::attention::attention_apply::Dims {
            heads: d.heads,
            batch: d.batch,
            t: d.t,
            pixels: d.pixels,
            dv,
        };
        let outs = n * d.heads * dv;
        let apply_flops = (2 * outs * apply.t) as f64;
        let apply_bytes =
            4.0 * (d.heads * d.batch * d.t * d.pixels + n * d.t * d.heads * dv + outs) as f64;
        let (mf, mb) = (1e-6, 1e-6);
        assert!((weights_flops * mf - 19.7).abs() < 0.05, "{weights_flops}");
        assert!((apply_flops * mf - 21.0).abs() < 0.05, "{apply_flops}");
        assert!(((weights_flops + apply_flops) * mf - 41.0).abs() < 0.5);
        assert!((weights_bytes * mb - 13.1).abs() < 0.1, "{weights_bytes}");
        assert!((apply_bytes * mb - 45.6).abs() < 0.1, "{apply_bytes}");
        assert!(((weights_bytes + apply_bytes) * mb - 59.0).abs() < 1.0);
    }

    /// The fused kernel against the attention written with ordinary ops — matmul for the scores, masked_fill
    /// for the padding, softmax, dropout — element by element, forward and backward, on the CPU and (when
    /// there is one) the GPU.
    #[test]
    fn the_fused_kernel_equals_the_composition_of_ordinary_ops() {
        let d = Dims {
            heads: 3,
            batch: 2,
            t: 5,
            pixels: 4,
            dk: 2,
        };
        let n = d.batch * d.pixels;
        let k = random_vec(n * d.t * d.heads * d.dk, -2.0, 2.0, 7)
            .into_iter()
            .map(|v| v as f32)
            .collect::<Vec<f32>>();
        let q = random_vec(d.heads * d.dk, -2.0, 2.0, 8)
            .into_iter()
            .map(|v| v as f32)
            .collect::<Vec<f32>>();
        let mask = vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut devices = vec![Device::Cpu];
        if crate::engine::testing::gpu_or_skip("attention composition (GPU half)").is_some() {
            devices.push(Device::Gpu);
        }
        for device in devices {
            for drop in [AttnDropout::NONE, AttnDropout { p: 0.4, seed: 11 }] {
                let run = |fused: bool| {
                    let kt = Tensor::from_vec(k.clone(), &[n, d.t, d.heads * d.dk], device)
                        .requires_grad_();
                    let qt = Tensor::from_vec(q.clone(), &[d.heads, d.dk], device).requires_grad_();
                    let m = Tensor::from_vec(mask.clone(), &[d.batch, d.t], device);
                    let a = if fused {
                        kt.temporal_attention_weights(&qt, Some(&m), d.pixels, drop)
                    } else {
                        // scores (H, N·T, 1) = k as (H, N·T, d_k) @ Q as (H, d_k, 1), scaled.
                        let kh = kt
                            .reshape(&[n, d.t, d.heads, d.dk])
                            .permute(&[2, 0, 1, 3])
                            .reshape(&[d.heads, n * d.t, d.dk]);
                        let s = kh
                            .matmul(&qt.reshape(&[d.heads, d.dk, 1]))
                            .mul_scalar(1.0 / (d.dk as f32).sqrt())
                            .reshape(&[d.heads, d.batch, d.pixels, d.t]);
                        let s = s.masked_fill(&m.reshape(&[1, d.batch, 1, d.t]), -1000.0);
                        let a = s.softmax(-1).permute(&[0, 1, 3, 2]);
                        a.dropout(drop.p, drop.seed, drop.p > 0.0)
                    };
                    // A fixed, uneven upstream gradient.
                    let w = Tensor::from_vec(
                        (0..a.numel())
                            .map(|i| ((i * 7) % 11) as f32 - 5.0)
                            .collect(),
                        a.shape(),
                        device,
                    );
                    (&a * &w).sum_all().backward();
                    let grads = (kt.grad().unwrap().to_vec(), qt.grad().unwrap().to_vec());
                    (a.to_vec(), grads)
                };
                let (fa, (fk, fq)) = run(true);
                let (ca, (ck, cq)) = run(false);
                let close = |x: &[f32], y: &[f32], what: &str| {
                    assert_eq!(x.len(), y.len(), "{what}");
                    for (i, (a, b)) in x.iter().zip(y).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{what} [{device:?}, p {}] element {i}: fused {a}, composed {b}",
                            drop.p
                        );
                    }
                };
                close(&fa, &ca, "weights");
                close(&fk, &ck, "dk");
                close(&fq, &cq, "dQ");
            }
        }
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
                |x| cpu_weights(&x[0], &x[1], Some(&mask), d, drop),
                |x, g| {
                    let (dk, dq) = cpu_weights_backward(&x[0], &x[1], Some(&m2), g, d, drop);
                    vec![dk, dq]
                },
            );
        }
    }
}
