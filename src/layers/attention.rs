//! The layers L-TAE 2D (U-TAE's temporal encoder, `models/ltae.rs`) and the pixel-set L-TAE
//! (`models/ltae1d.rs`) share — the lesson on how they compute is `engine::ops::attention`:
//! - [`MasterQueryAttention`]: the original's `attention_heads` — one learnt query per head (`Q`, n_head ×
//!   d_k), the key projection `fc1_k`, attention dropout 0.1 in training — over the two fused ops (weights,
//!   then the weighted sum of the values, heads concatenated);
//! - [`InConv`]: the pixel-set encoders' input projection, Conv1d k = 1 then LayerNorm over (d_model, T)
//!   (`inconv.0`, `inconv.1`; L-TAE 1-D and TAE).
//!
//! The sinusoid tables of both are in [`crate::layers::positional_encoding`].

use crate::engine::ops::attention::attention_weights::AttnDropout;
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::conv::normal;
use crate::layers::norm::EPS;
use crate::layers::{prefixed, Ctx, Linear, Module};

/// Attention dropout of both L-TAEs (`nn.Dropout(0.1)` on the weights).
pub const ATTN_DROPOUT: f32 = 0.1;

/// Multi-head attention with master queries: state-dict names `attention_heads.Q`,
/// `attention_heads.fc1_k.{weight,bias}`.
pub struct MasterQueryAttention {
    /// Heads.
    pub n_head: usize,
    /// Key width d_k.
    pub d_k: usize,
    /// Master queries (n_head, d_k).
    pub q: Tensor,
    /// Key projection d_model → n_head·d_k.
    pub fc1_k: Linear,
}

impl MasterQueryAttention {
    /// Q ~ N(0, √(2/d_k)) then `fc1_k` Xavier-normal — the originals' initialisation, in their draw order.
    pub fn new(d_model: usize, n_head: usize, d_k: usize, rng: &mut Rng, device: Device) -> Self {
        let q = Tensor::from_vec(
            normal(rng, n_head * d_k, (2.0 / d_k as f64).sqrt()),
            &[n_head, d_k],
            device,
        )
        .requires_grad_();
        MasterQueryAttention {
            n_head,
            d_k,
            q,
            fc1_k: Linear::xavier(d_model, n_head * d_k, rng, device),
        }
    }

    /// e (N, T, d_model) with N = B·`pixels` sequences; `pad_mask` (B, T) 1.0 on padded dates → (o (N,
    /// d_model): heads concatenated, weights (n_head, B, T, `pixels`)). Attention dropout in training mode
    /// takes the context's next seed.
    pub fn forward(
        &self,
        e: &Tensor,
        pad_mask: Option<&Tensor>,
        pixels: usize,
        ctx: &Ctx,
    ) -> (Tensor, Tensor) {
        let keys = self.fc1_k.forward(e);
        let p = ctx.dropout_p(ATTN_DROPOUT);
        let drop = if p > 0.0 {
            AttnDropout {
                p,
                seed: ctx.next_seed(),
            }
        } else {
            AttnDropout::NONE
        };
        let attn = keys.temporal_attention_weights(&self.q, pad_mask, pixels, drop);
        (attn.temporal_attention_apply(e), attn)
    }

    /// `(state_dict key, parameter)` pairs under `<prefix>attention_heads.`.
    pub fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(format!("{prefix}attention_heads.Q"), self.q.clone())];
        v.extend(
            self.fc1_k
                .named_parameters(&prefixed(prefix, "attention_heads.fc1_k")),
        );
        v
    }
}

/// The input projection: Conv1d k=1 and LayerNorm((d_model, len_max_seq)) (`inconv.0`, `inconv.1`), shared
/// by L-TAE and TAE.
pub struct InConv {
    /// Conv1d weight (d_model, C, 1).
    pub weight: Tensor,
    /// Conv1d bias (d_model).
    pub bias: Tensor,
    /// LayerNorm γ (d_model, len_max_seq).
    pub ln_weight: Tensor,
    /// LayerNorm β (d_model, len_max_seq).
    pub ln_bias: Tensor,
}

impl InConv {
    /// Conv1d weight and bias N(0, 1) (`weight_init`, spec §3.9), LayerNorm γ = 1, β = 0.
    pub fn new(
        c_in: usize,
        d_model: usize,
        len_max_seq: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, device).requires_grad_();
        InConv {
            weight: t(normal(rng, d_model * c_in, 1.0), &[d_model, c_in, 1]),
            bias: t(normal(rng, d_model, 1.0), &[d_model]),
            ln_weight: Tensor::ones(&[d_model, len_max_seq], device).requires_grad_(),
            ln_bias: Tensor::zeros(&[d_model, len_max_seq], device).requires_grad_(),
        }
    }

    /// e (B, T, C) → (B, T, d_model): the per-date projection, then one LayerNorm over each sample's whole
    /// channel-first (d_model, T) block, so T must equal len_max_seq (`what` names the caller in the panic).
    pub fn forward(&self, e: &Tensor, what: &str) -> Tensor {
        let (dm, c) = (self.weight.shape()[0], self.weight.shape()[1]);
        let lms = self.ln_weight.shape()[1];
        let (b, t) = (e.shape()[0], e.shape()[1]);
        assert_eq!(
            t, lms,
            "{what}: with d_model the sequence length must be len_max_seq = {lms}, got {t}"
        );
        let w = self.weight.reshape(&[dm, c]).transpose(0, 1);
        let y = &e.reshape(&[b * t, c]).matmul(&w) + &self.bias;
        let y = y.reshape(&[b, t, dm]).transpose(1, 2);
        y.layer_norm(&[dm, t], Some(&self.ln_weight), Some(&self.ln_bias), EPS)
            .transpose(1, 2)
    }

    /// `(state_dict key, parameter)` pairs under `<prefix>inconv.`.
    pub fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}inconv.0.weight"), self.weight.clone()),
            (format!("{prefix}inconv.0.bias"), self.bias.clone()),
            (format!("{prefix}inconv.1.weight"), self.ln_weight.clone()),
            (format!("{prefix}inconv.1.bias"), self.ln_bias.clone()),
        ]
    }
}
