//! L-TAE 1D (`LTAE` of lightweight-temporal-attention-pytorch `models/ltae.py`, spec §4.2): the temporal
//! encoder of the pixel-set classifier, one sequence of feature vectors per sample.
//!
//! ```text
//! x (B, T, C)
//! inlayernorm  LayerNorm(C) per date
//! inconv       Conv1d k=1 C → d_model per date, then LayerNorm((d_model, len_max_seq)) over the whole
//!              channel-first block of a sample (so T must equal len_max_seq)   [only when d_model is set]
//! + PE         rows of the frozen table `position_enc.weight`: row t (bespoke positions) or t + 1 ("order")
//! attention    master-query attention (engine/ops/attention/attention_weights.rs with P = 1): weights (H, B, T),
//!              o (B, d_model) heads concatenated; attention dropout 0.1
//! mlp          per pair Linear → BatchNorm1d → ReLU;  dropout;  outlayernorm LayerNorm(n_neurons[-1])
//! → out (B, n_neurons[-1]), attention (H, B, T)
//! ```
//! The PE table (float64 sinusoids cast to float32, inner dimension d_model / n_head repeated n_head times)
//! is a buffer: loaded from the state dict when present, never trained. No padding mask exists in 1D.

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::attention::{InConv, MasterQueryAttention};
use crate::layers::mlp::Mlp;
use crate::layers::norm::EPS;
use crate::layers::positional_encoding::{pe_rows, sinusoid_table};
use crate::layers::{prefixed, Ctx, Module};

pub use crate::layers::attention::ATTN_DROPOUT;

/// Constructor arguments of `LTAE` (spec §4.2 defaults through [`Ltae1dConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Ltae1dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Heads.
    pub n_head: usize,
    /// Key width.
    pub d_k: usize,
    /// MLP widths; the first must be d_model (or in_channels when d_model is None).
    pub n_neurons: Vec<usize>,
    /// Dropout after the MLP.
    pub dropout: f32,
    /// Model width (None: no input convolution, d_model = in_channels).
    pub d_model: Option<usize>,
    /// Positional-encoding period.
    pub t_period: f64,
    /// Maximal (with d_model: exact) sequence length.
    pub len_max_seq: usize,
    /// Bespoke positions (days since the first date), or None for the 1-based date index.
    pub positions: Option<Vec<i64>>,
}

impl Default for Ltae1dConfig {
    fn default() -> Self {
        Ltae1dConfig {
            in_channels: 128,
            n_head: 16,
            d_k: 8,
            n_neurons: vec![256, 128],
            dropout: 0.2,
            d_model: Some(256),
            t_period: 1000.0,
            len_max_seq: 24,
            positions: None,
        }
    }
}

/// The L-TAE 1D temporal encoder.
pub struct Ltae1d {
    /// Configuration.
    pub config: Ltae1dConfig,
    /// Model width.
    pub d_model: usize,
    /// LayerNorm(C) γ.
    pub in_ln_weight: Tensor,
    /// LayerNorm(C) β.
    pub in_ln_bias: Tensor,
    /// Input projection (when d_model is set).
    pub inconv: Option<InConv>,
    /// Frozen positional table (rows, d_model), a buffer.
    pub position_enc: Tensor,
    /// The master-query attention (`attention_heads`).
    pub attention: MasterQueryAttention,
    /// MLP pairs (Linear → BatchNorm1d → ReLU), `mlp.<3i>`, `mlp.<3i+1>`.
    pub mlp: Mlp,
    /// Output LayerNorm γ.
    pub out_ln_weight: Tensor,
    /// Output LayerNorm β.
    pub out_ln_bias: Tensor,
}

impl Ltae1d {
    /// A freshly initialised encoder (Linear Xavier-normal, BatchNorm γ ~ N(0, 1), Q ~ N(0, √(2/d_k)),
    /// LayerNorms γ = 1, β = 0). Panics on an inconsistent configuration (as the original asserts).
    pub fn new(config: Ltae1dConfig, rng: &mut Rng, device: Device) -> Self {
        let c = &config;
        let d_model = c.d_model.unwrap_or(c.in_channels);
        assert!(
            d_model.is_multiple_of(c.n_head),
            "Ltae1d: d_model {d_model} must be a multiple of n_head {}",
            c.n_head
        );
        assert_eq!(
            c.n_neurons.first(),
            Some(&d_model),
            "Ltae1d: expected n_neurons[0] = d_model = {d_model}, got {:?}",
            c.n_neurons
        );
        let inconv = c
            .d_model
            .map(|dm| InConv::new(c.in_channels, dm, c.len_max_seq, rng, device));
        let pos: Vec<f64> = match &c.positions {
            Some(p) => p.iter().map(|&v| v as f64).collect(),
            None => (0..=c.len_max_seq).map(|v| v as f64).collect(),
        };
        let rows = pos.len();
        let pe = sinusoid_table(&pos, d_model / c.n_head, c.t_period, c.n_head);
        let last = *c.n_neurons.last().unwrap();
        Ltae1d {
            d_model,
            in_ln_weight: Tensor::ones(&[c.in_channels], device).requires_grad_(),
            in_ln_bias: Tensor::zeros(&[c.in_channels], device).requires_grad_(),
            inconv,
            position_enc: Tensor::from_vec(pe, &[rows, d_model], device),
            attention: MasterQueryAttention::new(d_model, c.n_head, c.d_k, rng, device),
            mlp: Mlp::new(&c.n_neurons, true, rng, device),
            out_ln_weight: Tensor::ones(&[last], device).requires_grad_(),
            out_ln_bias: Tensor::zeros(&[last], device).requires_grad_(),
            config,
        }
    }

    /// x (B, T, C) → (out (B, n_neurons[-1]), attention (n_head, B, T)).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> (Tensor, Tensor) {
        let c = &self.config;
        let s = x.shape();
        assert!(
            s.len() == 3 && s[2] == c.in_channels,
            "Ltae1d: expected x (B, T, {}), got {s:?}",
            c.in_channels
        );
        let (b, t) = (s[0], s[1]);
        let mut e = x.layer_norm(
            &[c.in_channels],
            Some(&self.in_ln_weight),
            Some(&self.in_ln_bias),
            EPS,
        );
        if let Some(ic) = &self.inconv {
            e = ic.forward(&e, "Ltae1d");
        }
        let e = &e + &pe_rows(&self.position_enc, c.positions.is_some(), t, "Ltae1d");
        // Master-query attention, one "pixel" per sample.
        let (o, attn) = self.attention.forward(&e, None, 1, ctx);
        let o = mlp_dropout_norm(
            &o,
            &self.mlp,
            c.dropout,
            (&self.out_ln_weight, &self.out_ln_bias),
            ctx,
        );
        (o, attn.reshape(&[c.n_head, b, t]))
    }
}

/// The common tail of L-TAE and TAE: `mlp`, dropout, then `outlayernorm` (γ, β) over the last width.
pub fn mlp_dropout_norm(
    o: &Tensor,
    mlp: &Mlp,
    dropout: f32,
    out_ln: (&Tensor, &Tensor),
    ctx: &Ctx,
) -> Tensor {
    let mut o = mlp.forward(o, ctx);
    let p = ctx.dropout_p(dropout);
    if p > 0.0 {
        o = o.dropout(p, ctx.next_seed(), true);
    }
    let last = o.shape()[1];
    o.layer_norm(&[last], Some(out_ln.0), Some(out_ln.1), EPS)
}

impl Module for Ltae1d {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(ic) = &self.inconv {
            v.extend(ic.named_parameters(prefix));
        }
        v.push((
            format!("{prefix}inlayernorm.weight"),
            self.in_ln_weight.clone(),
        ));
        v.push((format!("{prefix}inlayernorm.bias"), self.in_ln_bias.clone()));
        v.push((
            format!("{prefix}outlayernorm.weight"),
            self.out_ln_weight.clone(),
        ));
        v.push((
            format!("{prefix}outlayernorm.bias"),
            self.out_ln_bias.clone(),
        ));
        v.extend(self.attention.named_parameters(prefix));
        v.extend(self.mlp.named_parameters(&prefixed(prefix, "mlp")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(
            format!("{prefix}position_enc.weight"),
            self.position_enc.clone(),
        )];
        v.extend(self.mlp.named_buffers(&prefixed(prefix, "mlp")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_of_the_paper_variants() {
        // config_fig2.json (spec §4.3): 9k with d_model None, 112k default.
        let mut rng = Rng::new(0);
        let small = Ltae1d::new(
            Ltae1dConfig {
                n_head: 8,
                n_neurons: vec![128],
                d_model: None,
                ..Ltae1dConfig::default()
            },
            &mut rng,
            Device::Cpu,
        );
        assert_eq!(small.num_parameters(), 8_832);
        let def = Ltae1d::new(Ltae1dConfig::default(), &mut rng, Device::Cpu);
        assert_eq!(def.num_parameters(), 112_000);
    }
}
