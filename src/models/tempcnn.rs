//! The TempCNN competitor of the L-TAE paper (`TempConv` of lightweight-temporal-attention-pytorch
//! `models/competings.py`, spec §4.5): 1-D convolutions over time, then a flattening MLP.
//!
//! ```text
//! x (B, T, C)  [+ rows 1..T of a positional table, only when positions are given — see recurrent.rs]
//! conv1d   per width of nker: Conv1d(k 3, padding 1, zeros) → BatchNorm1d → ReLU over (B, C, T)
//! flatten  (B, C_last, T) channel-major → (B, C_last · seq_len)
//! linear   per pair of [C_last · seq_len] + nfc: Linear → BatchNorm1d → ReLU
//! → (B, nfc[-1])
//! ```
//!
//! The convolution is an im2col composition: the sequence is zero-padded by one date on each side, the three
//! shifted copies are concatenated along channels ((B, T, 3C), index k·C + c for tap k), and one matmul with the
//! weight laid out (3C, C_out) gives every output — `y[b, t, o] = b_o + Σ_k Σ_c w[o, c, k] · x[b, t + k − 1, c]`,
//! which is PyTorch's cross-correlation. BatchNorm1d over (B, C_out, T) normalises each channel over B·T values,
//! the same statistics as a BatchNorm over the (B·T, C_out) rows. Names: `conv1d.<3i>` (weight (C_out, C_in, 3),
//! bias), `conv1d.<3i+1>`, `linear.<3i>`, `linear.<3i+1>`; `weight_init`: Conv1d weight and bias N(0, 1).

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::conv::normal;
use crate::layers::positional_encoding::{pe_rows, sinusoid_table};
use crate::layers::{prefixed, BatchNorm, Ctx, Mlp, Module};
use crate::models::recurrent::COMPETITOR_PE_PERIOD;

/// Constructor arguments of `TempConv` (defaults of `PseTempCNN`).
#[derive(Debug, Clone, PartialEq)]
pub struct TempCnnConfig {
    /// Input channels.
    pub input_size: usize,
    /// Convolution widths.
    pub nker: Vec<usize>,
    /// Sequence length (fixed: the flattening width depends on it).
    pub seq_len: usize,
    /// Widths of the MLP after flattening.
    pub nfc: Vec<usize>,
    /// Positions of an additive positional table (None: no positional encoding).
    pub positions: Option<Vec<i64>>,
}

impl Default for TempCnnConfig {
    fn default() -> Self {
        TempCnnConfig {
            input_size: 128,
            nker: vec![32, 32, 128],
            seq_len: 24,
            nfc: vec![128, 128],
            positions: None,
        }
    }
}

/// One Conv1d(k 3, p 1) → BatchNorm1d → ReLU layer.
pub struct ConvLayer {
    /// Weight (C_out, C_in, 3).
    pub weight: Tensor,
    /// Bias (C_out).
    pub bias: Tensor,
    /// The BatchNorm1d.
    pub bn: BatchNorm,
}

impl ConvLayer {
    /// x (B, T, C_in) → (B, T, C_out).
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let co = self.weight.shape()[0];
        let zero = Tensor::zeros(&[b, 1, c], x.device());
        let padded = Tensor::cat(&[&zero, x, &zero], 1);
        let taps: Vec<Tensor> = (0..3).map(|k| padded.narrow(1, k, t)).collect();
        let cols = Tensor::cat(&[&taps[0], &taps[1], &taps[2]], 2).reshape(&[b * t, 3 * c]);
        // w (C_out, C_in, 3) → (3, C_in, C_out) → (3·C_in, C_out): row k·C + c holds w[·, c, k].
        let w = self.weight.permute(&[2, 1, 0]).reshape(&[3 * c, co]);
        let y = &cols.matmul(&w) + &self.bias;
        self.bn.forward_relu(&y, ctx).reshape(&[b, t, co])
    }
}

/// The TempCNN temporal encoder.
pub struct TempCnn {
    /// Configuration.
    pub config: TempCnnConfig,
    /// Convolution layers.
    pub conv: Vec<ConvLayer>,
    /// The flattening MLP (`linear`).
    pub linear: Mlp,
    /// Positional table (positions, C), a buffer, when positions are given.
    pub position_enc: Option<Tensor>,
}

impl TempCnn {
    /// A freshly initialised encoder.
    pub fn new(config: TempCnnConfig, rng: &mut Rng, device: Device) -> Self {
        let mut widths = vec![config.input_size];
        widths.extend(&config.nker);
        let conv = widths
            .windows(2)
            .map(|w| ConvLayer {
                weight: Tensor::from_vec(
                    normal(rng, w[1] * w[0] * 3, 1.0),
                    &[w[1], w[0], 3],
                    device,
                )
                .requires_grad_(),
                bias: Tensor::from_vec(normal(rng, w[1], 1.0), &[w[1]], device).requires_grad_(),
                bn: BatchNorm::new(w[1], rng, device),
            })
            .collect();
        let mut fc = vec![widths.last().unwrap() * config.seq_len];
        fc.extend(&config.nfc);
        let linear = Mlp::new(&fc, true, rng, device);
        let position_enc = config.positions.as_ref().map(|p| {
            let pos: Vec<f64> = p.iter().map(|&v| v as f64).collect();
            let table = sinusoid_table(&pos, config.input_size, COMPETITOR_PE_PERIOD, 1);
            Tensor::from_vec(table, &[pos.len(), config.input_size], device)
        });
        TempCnn {
            config,
            conv,
            linear,
            position_enc,
        }
    }

    /// Output width (nfc[-1], or the flattened width without nfc).
    pub fn out_width(&self) -> usize {
        self.config.nfc.last().copied().unwrap_or_else(|| {
            self.config.nker.last().unwrap_or(&self.config.input_size) * self.config.seq_len
        })
    }

    /// x (B, T, C) → (B, out_width).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let c = &self.config;
        let s = x.shape();
        assert!(
            s.len() == 3 && s[2] == c.input_size && s[1] == c.seq_len,
            "TempCnn: expected x (B, {}, {}) (seq_len is fixed by the flattening), got {s:?}",
            c.seq_len,
            c.input_size
        );
        let (b, t) = (s[0], s[1]);
        let mut o = match &self.position_enc {
            Some(table) => x + &pe_rows(table, false, t, "TempCnn (positions given)"),
            None => x.clone(),
        };
        for layer in &self.conv {
            o = layer.forward(&o, ctx);
        }
        let co = o.shape()[2];
        let flat = o.transpose(1, 2).reshape(&[b, co * t]);
        self.linear.forward(&flat, ctx)
    }
}

impl Module for TempCnn {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, l) in self.conv.iter().enumerate() {
            v.push((format!("{prefix}conv1d.{}.weight", 3 * i), l.weight.clone()));
            v.push((format!("{prefix}conv1d.{}.bias", 3 * i), l.bias.clone()));
            v.extend(l.bn.named_parameters(&prefixed(prefix, &format!("conv1d.{}", 3 * i + 1))));
        }
        v.extend(self.linear.named_parameters(&prefixed(prefix, "linear")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, l) in self.conv.iter().enumerate() {
            v.extend(l.bn.named_buffers(&prefixed(prefix, &format!("conv1d.{}", 3 * i + 1))));
        }
        v.extend(self.linear.named_buffers(&prefixed(prefix, "linear")));
        v.extend(
            self.position_enc
                .iter()
                .map(|t| (format!("{prefix}position_enc.weight"), t.clone())),
        );
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolution_by_hand() {
        // C_in = C_out = 1, T = 3, x = (1, 2, 3), taps w = (1, 10, 100), bias 0: zero padding gives
        // y_0 = 10·1 + 100·2 = 210, y_1 = 1 + 20 + 300 = 321, y_2 = 2 + 30 = 32.
        // Eval BatchNorm with (0, 1) statistics and γ = 1 only divides by √(1 + eps); ReLU keeps positives.
        let m = TempCnn::new(
            TempCnnConfig {
                input_size: 1,
                nker: vec![1],
                seq_len: 3,
                nfc: vec![],
                positions: None,
            },
            &mut Rng::new(0),
            Device::Cpu,
        );
        let l = &m.conv[0];
        l.weight.storage().write(&[1.0, 10.0, 100.0]);
        l.bias.storage().write(&[0.0]);
        l.bn.weight.storage().write(&[1.0]);
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3, 1], Device::Cpu);
        let y = m.forward(&x, &Ctx::eval()).to_vec();
        let r = 1.0 / (1.0f32 + 1e-5).sqrt();
        for (a, e) in y.iter().zip([210.0, 321.0, 32.0]) {
            assert!((a - e * r).abs() < 1e-3, "{a} vs {}", e * r);
        }
        assert_eq!(m.out_width(), 3);
    }

    #[test]
    fn parameter_count_of_the_14k_variant() {
        // config_fig2 "14k" (spec §4.5: 14,320): conv 128→16 (6,144 + 16) + BN 32, 16→16 twice (768 + 16 + 32),
        // linear 384→16 (6,144 + 16) + BN 32, 16→16 (256 + 16) + BN 32.
        let m = TempCnn::new(
            TempCnnConfig {
                nker: vec![16, 16, 16],
                nfc: vec![16, 16],
                ..TempCnnConfig::default()
            },
            &mut Rng::new(0),
            Device::Cpu,
        );
        assert_eq!(m.num_parameters(), 14_320);
    }
}
