//! TAE, the Temporal Attention Encoder of the PSE-TAE paper (`TemporalAttentionEncoder` of
//! lightweight-temporal-attention-pytorch `models/tae.py`, spec §4.4): the heavier predecessor of L-TAE, one of
//! the L-TAE paper's competitors.
//!
//! ```text
//! x (B, T, C)
//! inlayernorm  LayerNorm(C) per date
//! + PE         rows of the frozen table `position_enc.weight` (dimension C, no per-head repetition), added
//!              BEFORE the optional projection: row t (bespoke positions) or t + 1 ("order")
//! inconv       Conv1d k=1 C → d_model, LayerNorm((d_model, len_max_seq))            [only when d_model is set]
//! queries      q = fc2(mean_t fc1_q(e_t)), fc2 = BatchNorm1d(H·d_k) → Linear(H·d_k, H·d_k): one query per
//!              sample and head (the mean query), split into H × d_k
//! keys         k_t = fc1_k(e_t), split into H × d_k
//! weights      a[h, b, t] = softmax_t(<q[b, h], k[b, t, h]> / √d_k), attention dropout 0.1
//! values       the FULL d_model-wide e_t for every head (no channel split): o[b, h·d + c] = Σ_t a[h, b, t] e[b, t, c]
//! mlp          per pair Linear → BatchNorm1d → ReLU (n_neurons[0] = H · d_model);  dropout;
//!              outlayernorm LayerNorm(n_neurons[-1])
//! → out (B, n_neurons[-1]), attention (H, B, T)
//! ```
//!
//! How it runs on the engine: the scores are a composition (elementwise product, sum over d_k, scale, softmax
//! over time, dropout), because the queries are per sample whereas the attention kernel's master queries are
//! shared; the weighted sum reuses L-TAE's `temporal_attention_apply` kernel (`attention_apply.wgsl`) with the
//! values repeated once per head, which is exactly TAE's "every head sees all channels".

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::attention::{InConv, ATTN_DROPOUT};
use crate::layers::norm::EPS;
use crate::layers::positional_encoding::{pe_rows, sinusoid_table};
use crate::layers::{prefixed, BatchNorm, Ctx, Linear, Mlp, Module};
use crate::models::ltae1d::mlp_dropout_norm;

/// Constructor arguments of `TemporalAttentionEncoder` (defaults of `PseTae`, spec §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct TaeConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Heads.
    pub n_head: usize,
    /// Key and query width.
    pub d_k: usize,
    /// Model width (None: no input convolution, d_model = in_channels).
    pub d_model: Option<usize>,
    /// MLP widths; the first must be n_head · d_model.
    pub n_neurons: Vec<usize>,
    /// Dropout after the MLP.
    pub dropout: f32,
    /// Positional-encoding period.
    pub t_period: f64,
    /// Maximal (with d_model: exact) sequence length.
    pub len_max_seq: usize,
    /// Bespoke positions (days since the first date), or None for the 1-based date index.
    pub positions: Option<Vec<i64>>,
}

impl Default for TaeConfig {
    fn default() -> Self {
        TaeConfig {
            in_channels: 128,
            n_head: 4,
            d_k: 32,
            d_model: None,
            n_neurons: vec![512, 128, 128],
            dropout: 0.2,
            t_period: 1000.0,
            len_max_seq: 24,
            positions: None,
        }
    }
}

/// The TAE temporal encoder.
pub struct Tae {
    /// Configuration.
    pub config: TaeConfig,
    /// Model width.
    pub d_model: usize,
    /// LayerNorm(C) γ.
    pub in_ln_weight: Tensor,
    /// LayerNorm(C) β.
    pub in_ln_bias: Tensor,
    /// Frozen positional table (rows, C), a buffer.
    pub position_enc: Tensor,
    /// Input projection (when d_model is set).
    pub inconv: Option<InConv>,
    /// Query projection d_model → H·d_k (`attention_heads.fc1_q`).
    pub fc1_q: Linear,
    /// Key projection d_model → H·d_k (`attention_heads.fc1_k`).
    pub fc1_k: Linear,
    /// BatchNorm1d of the mean query (`attention_heads.fc2.0`).
    pub fc2_bn: BatchNorm,
    /// Linear of the mean query (`attention_heads.fc2.1`).
    pub fc2_lin: Linear,
    /// MLP (`mlp.<3i>`, `mlp.<3i+1>`).
    pub mlp: Mlp,
    /// Output LayerNorm γ.
    pub out_ln_weight: Tensor,
    /// Output LayerNorm β.
    pub out_ln_bias: Tensor,
}

impl Tae {
    /// A freshly initialised encoder (`weight_init`: Linear Xavier-normal — overriding the constructor's
    /// N(0, √(2/d_k)) of fc1_q/fc1_k, as the original's global init does —, BatchNorm γ ~ N(0, 1), LayerNorms
    /// 1/0). Panics on an inconsistent configuration, as the original asserts.
    pub fn new(config: TaeConfig, rng: &mut Rng, device: Device) -> Self {
        let c = &config;
        let d_model = c.d_model.unwrap_or(c.in_channels);
        assert_eq!(
            c.n_neurons.first(),
            Some(&(c.n_head * d_model)),
            "Tae: expected n_neurons[0] = n_head · d_model = {}, got {:?}",
            c.n_head * d_model,
            c.n_neurons
        );
        let pos: Vec<f64> = match &c.positions {
            Some(p) => p.iter().map(|&v| v as f64).collect(),
            None => (0..=c.len_max_seq).map(|v| v as f64).collect(),
        };
        let table = sinusoid_table(&pos, c.in_channels, c.t_period, 1);
        let hk = c.n_head * c.d_k;
        let last = *c.n_neurons.last().unwrap();
        Tae {
            d_model,
            in_ln_weight: Tensor::ones(&[c.in_channels], device).requires_grad_(),
            in_ln_bias: Tensor::zeros(&[c.in_channels], device).requires_grad_(),
            position_enc: Tensor::from_vec(table, &[pos.len(), c.in_channels], device),
            inconv: c
                .d_model
                .map(|dm| InConv::new(c.in_channels, dm, c.len_max_seq, rng, device)),
            fc1_q: Linear::xavier(d_model, hk, rng, device),
            fc1_k: Linear::xavier(d_model, hk, rng, device),
            fc2_bn: BatchNorm::new(hk, rng, device),
            fc2_lin: Linear::xavier(hk, hk, rng, device),
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
            "Tae: expected x (B, T, {}), got {s:?}",
            c.in_channels
        );
        let (b, t, dm, h, dk) = (s[0], s[1], self.d_model, c.n_head, c.d_k);
        let e = x.layer_norm(
            &[c.in_channels],
            Some(&self.in_ln_weight),
            Some(&self.in_ln_bias),
            EPS,
        );
        let mut e = &e + &pe_rows(&self.position_enc, c.positions.is_some(), t, "Tae");
        if let Some(ic) = &self.inconv {
            e = ic.forward(&e, "Tae");
        }
        // The mean query of each sample: (B, H·d_k) → fc2 → (B, 1, H, d_k).
        let q = self.fc1_q.forward(&e).mean(&[1], false);
        let q = self
            .fc2_lin
            .forward(&self.fc2_bn.forward(&q, ctx))
            .reshape(&[b, 1, h, dk]);
        let k = self.fc1_k.forward(&e).reshape(&[b, t, h, dk]);
        // scores (B, T, H) → (H, B, T), softmax over time, attention dropout.
        let scores = (&k * &q)
            .sum(&[3], false)
            .mul_scalar(1.0 / (dk as f32).sqrt())
            .permute(&[2, 0, 1]);
        let mut attn = scores.softmax(-1);
        let p = ctx.dropout_p(ATTN_DROPOUT);
        if p > 0.0 {
            attn = attn.dropout(p, ctx.next_seed(), true);
        }
        // Every head averages the whole d_model-wide sequence: values repeated H times along channels.
        let v = e
            .reshape(&[b, t, 1, dm])
            .expand(&[b, t, h, dm])
            .reshape(&[b, t, h * dm]);
        let o = attn.reshape(&[h, b, t, 1]).temporal_attention_apply(&v);
        let o = mlp_dropout_norm(
            &o,
            &self.mlp,
            c.dropout,
            (&self.out_ln_weight, &self.out_ln_bias),
            ctx,
        );
        (o, attn)
    }
}

impl Module for Tae {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![
            (
                format!("{prefix}inlayernorm.weight"),
                self.in_ln_weight.clone(),
            ),
            (format!("{prefix}inlayernorm.bias"), self.in_ln_bias.clone()),
        ];
        if let Some(ic) = &self.inconv {
            v.extend(ic.named_parameters(prefix));
        }
        v.push((
            format!("{prefix}outlayernorm.weight"),
            self.out_ln_weight.clone(),
        ));
        v.push((
            format!("{prefix}outlayernorm.bias"),
            self.out_ln_bias.clone(),
        ));
        let heads = prefixed(prefix, "attention_heads");
        v.extend(self.fc1_q.named_parameters(&prefixed(&heads, "fc1_q")));
        v.extend(self.fc1_k.named_parameters(&prefixed(&heads, "fc1_k")));
        v.extend(self.fc2_bn.named_parameters(&prefixed(&heads, "fc2.0")));
        v.extend(self.fc2_lin.named_parameters(&prefixed(&heads, "fc2.1")));
        v.extend(self.mlp.named_parameters(&prefixed(prefix, "mlp")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(
            format!("{prefix}position_enc.weight"),
            self.position_enc.clone(),
        )];
        v.extend(
            self.fc2_bn
                .named_buffers(&prefixed(prefix, "attention_heads.fc2.0")),
        );
        v.extend(self.mlp.named_buffers(&prefixed(prefix, "mlp")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_of_pse_tae() {
        // Spec §4.4: the default PseTae's temporal module has 132,992 trainable parameters:
        // inlayernorm 256, fc1_q 16,512, fc1_k 16,512, fc2 256 + 16,512, mlp 65,664 + 256 + 16,512 + 256,
        // outlayernorm 256.
        let m = Tae::new(TaeConfig::default(), &mut Rng::new(0), Device::Cpu);
        assert_eq!(m.num_parameters(), 132_992);
        assert_eq!(m.position_enc.shape(), &[25, 128]);
    }

    #[test]
    fn uniform_keys_give_uniform_attention_and_the_mean_input() {
        // With fc1_k = 0 every score is 0, so a = 1/T and each head's output is the time mean of e; with
        // T = 2, C = 2 and no positional table effect (we zero it), e = LayerNorm(x) per date.
        let cfg = TaeConfig {
            in_channels: 2,
            n_head: 2,
            d_k: 1,
            n_neurons: vec![4],
            len_max_seq: 2,
            ..TaeConfig::default()
        };
        let m = Tae::new(cfg, &mut Rng::new(1), Device::Cpu);
        m.fc1_k.weight.storage().write(&[0.0; 4]);
        m.fc1_k.bias.as_ref().unwrap().storage().write(&[0.0; 2]);
        m.position_enc.storage().write(&[0.0; 6]);
        // x: date 0 = (1, 3) → LN (-1, 1) (up to eps), date 1 = (5, 1) → (1, -1). Mean over dates: (0, 0).
        let x = Tensor::from_vec(vec![1.0, 3.0, 5.0, 1.0], &[1, 2, 2], Device::Cpu);
        let ctx = Ctx::eval();
        let (_, a) = m.forward(&x, &ctx);
        assert_eq!(a.shape(), &[2, 1, 2]);
        assert!(a.to_vec().iter().all(|&v| (v - 0.5).abs() < 1e-7));
    }
}
