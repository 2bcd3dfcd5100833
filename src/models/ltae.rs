//! L-TAE 2D (`LTAE2d` of utae-paps, spec §3.4): the temporal encoder of U-TAE, applied at the lowest
//! resolution to every pixel's sequence of feature vectors.
//!
//! ```text
//! x (B, T, C, h, w) → sequences (N = B·h·w, T, C)         n = (b·h + i)·w + j
//! in_norm   GroupNorm(n_head groups) over (C, T) per sequence — padded dates included (QUIRK, §10.2.7)
//! inconv    Conv1d k=1: C → d_model per date
//! + positional encoding of the day offsets (CPU table, f32), same 16-vector for every head
//! attention master-query multi-head attention (engine/ops/attention/attention_weights.rs): weights a (H, B, T, P) and
//!           o (N, d_model) = heads concatenated; padded dates scored -1000; attention dropout 0.1
//! mlp       Linear d_model → C_out, BatchNorm1d, ReLU;  dropout 0.2;  out_norm GroupNorm(n_head groups)
//! → out (B, C_out, h, w), attention (H, B, T, h, w)
//! ```
//! Parameter names follow the original state_dict: `inconv`, `attention_heads.Q`, `attention_heads.fc1_k`,
//! `in_norm`, `out_norm`, `mlp.0` (Linear), `mlp.1` (BatchNorm1d).

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::attention::MasterQueryAttention;
use crate::layers::conv::normal;
use crate::layers::{positional_encoding, prefixed, BatchNorm, Ctx, GroupNorm, Linear, Module};

pub use crate::layers::attention::ATTN_DROPOUT;
/// Dropout after the MLP.
pub const MLP_DROPOUT: f32 = 0.2;
/// Positional-encoding period.
pub const PE_PERIOD: f32 = 1000.0;

/// The L-TAE 2D temporal encoder.
pub struct Ltae2d {
    /// Heads.
    pub n_head: usize,
    /// Model width.
    pub d_model: usize,
    /// Key width.
    pub d_k: usize,
    /// Conv1d k=1 weight (d_model, C_in, 1).
    pub inconv_weight: Tensor,
    /// Conv1d bias (d_model).
    pub inconv_bias: Tensor,
    /// The master-query attention (`attention_heads`).
    pub attention: MasterQueryAttention,
    /// Input GroupNorm.
    pub in_norm: GroupNorm,
    /// Output GroupNorm.
    pub out_norm: GroupNorm,
    /// MLP Linear.
    pub mlp_linear: Linear,
    /// MLP BatchNorm1d.
    pub mlp_bn: BatchNorm,
}

/// The outputs of L-TAE 2D.
pub struct LtaeOutput {
    /// (B, C_out, h, w).
    pub out: Tensor,
    /// (n_head, B, T, h, w), after attention dropout.
    pub attn: Tensor,
}

impl Ltae2d {
    /// A freshly initialised encoder (U-TAE's weight_init: Q ~ N(0, √(2/d_k)), inconv N(0, 1), Linear
    /// Xavier-normal, BatchNorm γ ~ N(0, 1)).
    pub fn new(
        in_channels: usize,
        d_model: usize,
        n_head: usize,
        d_k: usize,
        out_channels: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        assert!(
            d_model.is_multiple_of(n_head),
            "Ltae2d: d_model {d_model} must be a multiple of n_head {n_head}"
        );
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, device).requires_grad_();
        Ltae2d {
            n_head,
            d_model,
            d_k,
            inconv_weight: t(
                normal(rng, d_model * in_channels, 1.0),
                &[d_model, in_channels, 1],
            ),
            inconv_bias: t(normal(rng, d_model, 1.0), &[d_model]),
            attention: MasterQueryAttention::new(d_model, n_head, d_k, rng, device),
            in_norm: GroupNorm::new(n_head, in_channels, device),
            out_norm: GroupNorm::new(n_head, out_channels, device),
            mlp_linear: Linear::xavier(d_model, out_channels, rng, device),
            mlp_bn: BatchNorm::new(out_channels, rng, device),
        }
    }

    /// x (B, T, C, h, w); `days` (B, T) day offsets (0 on padded dates); `pad_mask` (B, T) 1.0 on padded dates
    /// (None: no padding in the batch).
    pub fn forward(
        &self,
        x: &Tensor,
        days: &[f32],
        pad_mask: Option<&Tensor>,
        ctx: &Ctx,
    ) -> LtaeOutput {
        let s = x.shape();
        assert_eq!(s.len(), 5, "Ltae2d: expected x (B, T, C, h, w), got {s:?}");
        let (b, t, c, h, w) = (s[0], s[1], s[2], s[3], s[4]);
        assert_eq!(
            days.len(),
            b * t,
            "Ltae2d: expected {} day offsets, got {}",
            b * t,
            days.len()
        );
        let (p, n, dm) = (h * w, b * h * w, self.d_model);
        // (B, T, C, h, w) → (N, T, C), sequence n = (b·h + i)·w + j.
        let seq = x.permute(&[0, 3, 4, 1, 2]).reshape(&[n, t, c]);
        // in_norm over (C, T) per sequence: GroupNorm on (N, C, T).
        let normed = self.in_norm.forward(&seq.transpose(1, 2)).transpose(1, 2);
        // inconv: a per-date linear map with the Conv1d weight (d_model, C, 1).
        let w_in = self.inconv_weight.reshape(&[dm, c]).transpose(0, 1);
        let e = &normed.reshape(&[n * t, c]).matmul(&w_in) + &self.inconv_bias;
        // + positional encoding (B, T, d_model), the same for every pixel of a sample.
        let pe = positional_encoding::table(days, dm / self.n_head, PE_PERIOD, self.n_head);
        let pe = Tensor::from_vec(pe, &[b, 1, t, dm], x.device());
        let e = (&e.reshape(&[b, p, t, dm]) + &pe).reshape(&[n, t, dm]);
        // Master-query attention.
        let (o, attn) = self.attention.forward(&e, pad_mask, p, ctx);
        // mlp → dropout → out_norm.
        let o = self.mlp_bn.forward_relu(&self.mlp_linear.forward(&o), ctx);
        let p_mlp = ctx.dropout_p(MLP_DROPOUT);
        let o = if p_mlp > 0.0 {
            o.dropout(p_mlp, ctx.next_seed(), true)
        } else {
            o
        };
        let o = self.out_norm.forward(&o);
        let c_out = o.shape()[1];
        LtaeOutput {
            out: o.reshape(&[b, h, w, c_out]).permute(&[0, 3, 1, 2]),
            attn: attn.reshape(&[self.n_head, b, t, h, w]),
        }
    }
}

impl Module for Ltae2d {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![
            (format!("{prefix}inconv.weight"), self.inconv_weight.clone()),
            (format!("{prefix}inconv.bias"), self.inconv_bias.clone()),
        ];
        v.extend(self.attention.named_parameters(prefix));
        v.extend(self.in_norm.named_parameters(&prefixed(prefix, "in_norm")));
        v.extend(
            self.out_norm
                .named_parameters(&prefixed(prefix, "out_norm")),
        );
        v.extend(self.mlp_linear.named_parameters(&prefixed(prefix, "mlp.0")));
        v.extend(self.mlp_bn.named_parameters(&prefixed(prefix, "mlp.1")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.mlp_bn.named_buffers(&prefixed(prefix, "mlp.1"))
    }
}
