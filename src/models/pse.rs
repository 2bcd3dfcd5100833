//! The Pixel-Set Encoder (`PixelSetEncoder` of `models/pse.py`, spec §4.1), the MLP decoder
//! (`get_decoder`, §4.3) and the full PSE + L-TAE classifier (`PseLTae` of `models/stclassifier.py`), with the
//! original state_dict names (spec A.8), plus the focal loss of the L-TAE training script (§8.3).
//!
//! ```text
//! pixels (B, T, C, S), mask (B, T, S), extra (B, T, E)   → merged to N = B·T pixel sets
//! mlp1      per pair: Linear on every pixel, BatchNorm1d over (N × S) — padding copies included, the mask
//!           is not used (QUIRK) — ReLU
//! pooling   "mean_std" etc.: masked mean Σ M f / Σ M; masked std sqrt(Σ (M (f − μ))² / (d − 1) + 1e-31)
//!           with d = Σ M and d = 1 replaced by 2; max / min over all S positions (mask ignored)
//! + extra   concatenated (with_extra)
//! mlp2      per pair Linear → BatchNorm1d, ReLU after every pair but the last
//! → (B, T, mlp2[-1]) → L-TAE 1D (models/ltae1d.rs) → decoder: (Linear → BN → ReLU)*, Linear → logits
//! ```

use serde_json::Value;

use crate::engine::error::{Error, Result};
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{prefixed, BatchNorm, Ctx, Linear, Module};
use crate::models::ltae1d::{Ltae1d, Ltae1dConfig};

/// A pooling method of the PSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Masked mean.
    Mean,
    /// Masked standard deviation (divisor d − 1, d = 1 → 2, + 1e-31 under the root).
    Std,
    /// Maximum over all positions.
    Max,
    /// Minimum over all positions.
    Min,
}

/// Parses `"mean_std"` (methods joined by `_`).
pub fn parse_pooling(s: &str) -> Option<Vec<Pooling>> {
    s.split('_')
        .map(|m| match m {
            "mean" => Some(Pooling::Mean),
            "std" => Some(Pooling::Std),
            "max" => Some(Pooling::Max),
            "min" => Some(Pooling::Min),
            _ => None,
        })
        .collect()
}

/// The Pixel-Set Encoder.
pub struct PixelSetEncoder {
    /// mlp1 pairs (Linear, BatchNorm1d): `mlp1.<i>.lin`, `mlp1.<i>.bn`.
    pub mlp1: Vec<(Linear, BatchNorm)>,
    /// Pooling methods, concatenated in this order.
    pub pooling: Vec<Pooling>,
    /// mlp2 pairs (Linear, BatchNorm1d): `mlp2.<3i>`, `mlp2.<3i+1>` (a ReLU module follows every pair but
    /// the last).
    pub mlp2: Vec<(Linear, BatchNorm)>,
    /// Extra features concatenated after pooling.
    pub with_extra: bool,
}

impl PixelSetEncoder {
    /// A freshly initialised encoder; panics when `mlp2[0] ≠ mlp1[-1]` · pooling + extra (as the original).
    pub fn new(
        mlp1: &[usize],
        pooling: Vec<Pooling>,
        mlp2: &[usize],
        extra_size: Option<usize>,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let pair = |a: usize, b: usize, rng: &mut Rng| {
            (
                Linear::xavier(a, b, rng, device),
                BatchNorm::new(b, rng, device),
            )
        };
        let inter = mlp1.last().copied().unwrap_or(0) * pooling.len() + extra_size.unwrap_or(0);
        assert_eq!(
            mlp2.first(),
            Some(&inter),
            "PixelSetEncoder: expected mlp2[0] = mlp1[-1]·{} + extra = {inter}, got {mlp2:?}",
            pooling.len()
        );
        PixelSetEncoder {
            mlp1: mlp1.windows(2).map(|w| pair(w[0], w[1], rng)).collect(),
            pooling,
            mlp2: mlp2.windows(2).map(|w| pair(w[0], w[1], rng)).collect(),
            with_extra: extra_size.is_some(),
        }
    }

    /// pixels (B, T, C, S), mask (B, T, S) as host values, extra (B, T, E) → (B, T, mlp2[-1]).
    pub fn forward(
        &self,
        pixels: &Tensor,
        mask: &[f32],
        extra: Option<&Tensor>,
        ctx: &Ctx,
    ) -> Tensor {
        let sh = pixels.shape();
        assert_eq!(
            sh.len(),
            4,
            "PixelSetEncoder: expected pixels (B, T, C, S), got {sh:?}"
        );
        let (b, t, c, s) = (sh[0], sh[1], sh[2], sh[3]);
        let n = b * t;
        assert_eq!(
            mask.len(),
            n * s,
            "PixelSetEncoder: expected a mask (B, T, S) of {} values, got {}",
            n * s,
            mask.len()
        );
        let dev = pixels.device();
        // mlp1 on channel-last pixels (N·S, C): BatchNorm1d over (N, ·, S) = over the N·S rows.
        let mut f = pixels.permute(&[0, 1, 3, 2]).reshape(&[n * s, c]);
        for (lin, bn) in &self.mlp1 {
            f = bn.forward(&lin.forward(&f), ctx).relu();
        }
        let k = f.shape()[1];
        let f = f.reshape(&[n, s, k]);
        let m = Tensor::from_vec(mask.to_vec(), &[n, s, 1], dev);
        let counts: Vec<f32> = mask.chunks(s.max(1)).map(|r| r.iter().sum()).collect();
        let msum = Tensor::from_vec(counts.clone(), &[n, 1], dev);
        let dm1 = Tensor::from_vec(
            counts
                .iter()
                .map(|&d| if d == 1.0 { 1.0 } else { d - 1.0 })
                .collect(),
            &[n, 1],
            dev,
        );
        let mean = || (&f * &m).sum(&[1], false).div(&msum);
        let mut parts = Vec::new();
        for p in &self.pooling {
            parts.push(match p {
                Pooling::Mean => mean(),
                Pooling::Std => {
                    let mu = mean().reshape(&[n, 1, k]);
                    let centered = &(&f - &mu) * &m;
                    (&centered * &centered)
                        .sum(&[1], false)
                        .div(&dm1)
                        .add_scalar(1e-31)
                        .sqrt()
                }
                Pooling::Max => f.max(1, false),
                Pooling::Min => f.neg().max(1, false).neg(),
            });
        }
        if self.with_extra {
            let e = extra.expect("PixelSetEncoder: built with extra features, none given");
            let es = e.shape();
            assert!(
                es.len() == 3 && es[0] == b && es[1] == t,
                "PixelSetEncoder: expected extra ({b}, {t}, E), got {es:?}"
            );
            parts.push(e.reshape(&[n, es[2]]));
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let mut o = Tensor::cat(&refs, 1);
        let last = self.mlp2.len();
        for (i, (lin, bn)) in self.mlp2.iter().enumerate() {
            o = bn.forward(&lin.forward(&o), ctx);
            if i + 1 < last {
                o = o.relu();
            }
        }
        let d = o.shape()[1];
        o.reshape(&[b, t, d])
    }
}

impl Module for PixelSetEncoder {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (lin, bn)) in self.mlp1.iter().enumerate() {
            v.extend(lin.named_parameters(&prefixed(prefix, &format!("mlp1.{i}.lin"))));
            v.extend(bn.named_parameters(&prefixed(prefix, &format!("mlp1.{i}.bn"))));
        }
        for (i, (lin, bn)) in self.mlp2.iter().enumerate() {
            // Sequential indices: Linear, BatchNorm1d, and a ReLU module between pairs.
            v.extend(lin.named_parameters(&prefixed(prefix, &format!("mlp2.{}", 3 * i))));
            v.extend(bn.named_parameters(&prefixed(prefix, &format!("mlp2.{}", 3 * i + 1))));
        }
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (_, bn)) in self.mlp1.iter().enumerate() {
            v.extend(bn.named_buffers(&prefixed(prefix, &format!("mlp1.{i}.bn"))));
        }
        for (i, (_, bn)) in self.mlp2.iter().enumerate() {
            v.extend(bn.named_buffers(&prefixed(prefix, &format!("mlp2.{}", 3 * i + 1))));
        }
        v
    }
}

/// `get_decoder(n_neurons)`: (Linear → BatchNorm1d → ReLU) per pair but the last, then a plain Linear.
pub struct Decoder {
    /// Hidden pairs (`decoder.<3i>`, `decoder.<3i+1>`).
    pub hidden: Vec<(Linear, BatchNorm)>,
    /// Final Linear (`decoder.<3·hidden>`).
    pub last: Linear,
}

impl Decoder {
    /// A freshly initialised decoder for widths `n` (at least 2 entries).
    pub fn new(n: &[usize], rng: &mut Rng, device: Device) -> Self {
        assert!(
            n.len() >= 2,
            "Decoder: expected at least 2 widths, got {n:?}"
        );
        let k = n.len() - 1;
        Decoder {
            hidden: n[..k]
                .windows(2)
                .map(|w| {
                    (
                        Linear::xavier(w[0], w[1], rng, device),
                        BatchNorm::new(w[1], rng, device),
                    )
                })
                .collect(),
            last: Linear::xavier(n[k - 1], n[k], rng, device),
        }
    }

    /// x (B, `n[0]`) → (B, `n[-1]`).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut o = x.clone();
        for (lin, bn) in &self.hidden {
            o = bn.forward(&lin.forward(&o), ctx).relu();
        }
        self.last.forward(&o)
    }
}

impl Module for Decoder {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (lin, bn)) in self.hidden.iter().enumerate() {
            v.extend(lin.named_parameters(&format!("{prefix}{}.", 3 * i)));
            v.extend(bn.named_parameters(&format!("{prefix}{}.", 3 * i + 1)));
        }
        v.extend(
            self.last
                .named_parameters(&format!("{prefix}{}.", 3 * self.hidden.len())),
        );
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (_, bn)) in self.hidden.iter().enumerate() {
            v.extend(bn.named_buffers(&format!("{prefix}{}.", 3 * i + 1)));
        }
        v
    }
}

/// Constructor arguments of `PseLTae` (defaults: spec §4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PseLTaeConfig {
    /// Input bands.
    pub input_dim: usize,
    /// mlp1 widths (first = input_dim).
    pub mlp1: Vec<usize>,
    /// Pooling methods.
    pub pooling: Vec<Pooling>,
    /// mlp2 widths.
    pub mlp2: Vec<usize>,
    /// Extra features per date (None: with_extra false).
    pub extra_size: Option<usize>,
    /// The L-TAE (its in_channels = mlp2[-1]).
    pub ltae: Ltae1dConfig,
    /// Decoder widths (mlp4; first = mlp3[-1], last = number of classes).
    pub mlp4: Vec<usize>,
}

impl Default for PseLTaeConfig {
    fn default() -> Self {
        PseLTaeConfig {
            input_dim: 10,
            mlp1: vec![10, 32, 64],
            pooling: vec![Pooling::Mean, Pooling::Std],
            mlp2: vec![132, 128],
            extra_size: Some(4),
            ltae: Ltae1dConfig::default(),
            mlp4: vec![128, 64, 32, 20],
        }
    }
}

impl PseLTaeConfig {
    /// From the original constructor kwargs / train.py conf.json (keys `input_dim`, `mlp1`, `pooling`,
    /// `mlp2`, `n_head`, `d_k`, `mlp3`, `dropout`, `T`, `len_max_seq` or `lms`, `positions` (a list, or a
    /// string: "bespoke" needs `bespoke_positions`), `mlp4`, `d_model`, `with_extra` or `geomfeat`,
    /// `extra_size`); missing keys keep the defaults. `path` names the file in errors.
    pub fn from_json(
        v: &Value,
        bespoke_positions: Option<&[i64]>,
        path: &std::path::Path,
    ) -> Result<Self> {
        let mut c = PseLTaeConfig::default();
        let bad = |k: &str, what: &str| Error::format(path, format!("{k:?}: {what}"));
        let usize_of = |k: &str| -> Result<Option<usize>> {
            v.get(k)
                .map(|x| {
                    x.as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| bad(k, "expected a non-negative integer"))
                })
                .transpose()
        };
        let list = |k: &str| -> Result<Option<Vec<usize>>> {
            v.get(k)
                .map(|x| {
                    x.as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|n| n.as_u64().map(|n| n as usize))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| bad(k, "expected a list of integers"))
                })
                .transpose()
        };
        if let Some(n) = usize_of("input_dim")? {
            c.input_dim = n;
        }
        if let Some(l) = list("mlp1")? {
            c.mlp1 = l;
        }
        if let Some(p) = v.get("pooling") {
            c.pooling = p
                .as_str()
                .and_then(parse_pooling)
                .ok_or_else(|| bad("pooling", "expected methods mean/std/max/min joined by _"))?;
        }
        if let Some(l) = list("mlp2")? {
            c.mlp2 = l;
        }
        let with_extra = match v.get("with_extra").or(v.get("geomfeat")) {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(x) => x.as_i64().map(|n| n != 0).unwrap_or(true),
        };
        let es = usize_of("extra_size")?.unwrap_or(4);
        c.extra_size = with_extra.then_some(es);
        let l = &mut c.ltae;
        if let Some(n) = usize_of("n_head")? {
            l.n_head = n;
        }
        if let Some(n) = usize_of("d_k")? {
            l.d_k = n;
        }
        if let Some(x) = list("mlp3")? {
            l.n_neurons = x;
        }
        if let Some(x) = v.get("dropout").and_then(Value::as_f64) {
            l.dropout = x as f32;
        }
        if let Some(x) = v.get("T").and_then(Value::as_f64) {
            l.t_period = x;
        }
        if let Some(n) = usize_of("len_max_seq")?.or(usize_of("lms")?) {
            l.len_max_seq = n;
        }
        match v.get("d_model") {
            None => {}
            Some(Value::Null) => l.d_model = None,
            Some(_) => l.d_model = usize_of("d_model")?,
        }
        l.positions = match v.get("positions") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "order" => None,
            Some(Value::String(s)) if s == "bespoke" => Some(
                bespoke_positions
                    .ok_or_else(|| {
                        bad(
                            "positions",
                            "\"bespoke\" needs the dataset's date positions",
                        )
                    })?
                    .to_vec(),
            ),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(Value::as_i64)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("positions", "expected a list of integers"))?,
            ),
            Some(_) => {
                return Err(bad(
                    "positions",
                    "expected \"bespoke\", \"order\" or a list",
                ))
            }
        };
        if let Some(x) = list("mlp4")? {
            c.mlp4 = x;
        }
        c.ltae.in_channels = *c.mlp2.last().ok_or_else(|| bad("mlp2", "empty"))?;
        Ok(c)
    }
}

/// The PSE + L-TAE classifier: `spatial_encoder`, `temporal_encoder`, `decoder`.
pub struct PseLTae {
    /// Configuration.
    pub config: PseLTaeConfig,
    /// The pixel-set encoder.
    pub spatial_encoder: PixelSetEncoder,
    /// The L-TAE.
    pub temporal_encoder: Ltae1d,
    /// The MLP decoder.
    pub decoder: Decoder,
}

impl PseLTae {
    /// A freshly initialised classifier from `seed`.
    pub fn new(config: PseLTaeConfig, seed: u64, device: Device) -> Self {
        let mut rng = Rng::new(seed);
        assert_eq!(
            config.mlp1.first(),
            Some(&config.input_dim),
            "PseLTae: expected mlp1[0] = input_dim = {}, got {:?}",
            config.input_dim,
            config.mlp1
        );
        let spatial_encoder = PixelSetEncoder::new(
            &config.mlp1,
            config.pooling.clone(),
            &config.mlp2,
            config.extra_size,
            &mut rng,
            device,
        );
        let temporal_encoder = Ltae1d::new(config.ltae.clone(), &mut rng, device);
        let decoder = Decoder::new(&config.mlp4, &mut rng, device);
        PseLTae {
            config,
            spatial_encoder,
            temporal_encoder,
            decoder,
        }
    }

    /// Number of classes (mlp4[-1]).
    pub fn num_classes(&self) -> usize {
        *self.config.mlp4.last().unwrap()
    }

    /// pixels (B, T, C, S), mask (B, T, S) host values, extra (B, T, E) → (logits (B, classes), attention
    /// (n_head, B, T)).
    pub fn forward(
        &self,
        pixels: &Tensor,
        mask: &[f32],
        extra: Option<&Tensor>,
        ctx: &Ctx,
    ) -> (Tensor, Tensor) {
        let f = self.spatial_encoder.forward(pixels, mask, extra, ctx);
        let (o, attn) = self.temporal_encoder.forward(&f, ctx);
        (self.decoder.forward(&o, ctx), attn)
    }
}

impl Module for PseLTae {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .spatial_encoder
            .named_parameters(&prefixed(prefix, "spatial_encoder"));
        v.extend(
            self.temporal_encoder
                .named_parameters(&prefixed(prefix, "temporal_encoder")),
        );
        v.extend(self.decoder.named_parameters(&prefixed(prefix, "decoder")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .spatial_encoder
            .named_buffers(&prefixed(prefix, "spatial_encoder"));
        v.extend(
            self.temporal_encoder
                .named_buffers(&prefixed(prefix, "temporal_encoder")),
        );
        v.extend(self.decoder.named_buffers(&prefixed(prefix, "decoder")));
        v
    }
}

/// The L-TAE repo's `FocalLoss(gamma)` without α: mean over the batch of `−(1 − p_t)^γ · log p_t`, the factor
/// computed from a detached p_t (no gradient through it). logits (B, classes), `targets` class ids.
pub fn focal_loss(logits: &Tensor, targets: &[usize], gamma: f32) -> Tensor {
    let s = logits.shape();
    assert!(
        s.len() == 2 && s[0] == targets.len(),
        "focal_loss: expected logits ({}, classes), got {s:?}",
        targets.len()
    );
    let dev = logits.device();
    let t = Tensor::from_vec(targets.iter().map(|&v| v as f32).collect(), &[s[0]], dev);
    // −log p_t per sample (unit weights).
    let (nll, _) = logits.cross_entropy_per_position(&t, None, -100);
    let factor: Vec<f32> = nll
        .to_vec()
        .iter()
        .map(|&l| (1.0 - (-l).exp()).powf(gamma))
        .collect();
    let factor = Tensor::from_vec(factor, &[s[0]], dev);
    (&nll * &factor).mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameter_count_and_names() {
        let m = PseLTae::new(PseLTaeConfig::default(), 0, Device::Cpu);
        assert_eq!(m.spatial_encoder.num_parameters(), 19_936);
        assert_eq!(m.decoder.num_parameters(), 11_188);
        assert_eq!(m.num_parameters(), 143_124);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        for k in [
            "spatial_encoder.mlp1.1.bn.weight",
            "spatial_encoder.mlp2.1.weight",
            "temporal_encoder.inconv.1.bias",
            "decoder.6.bias",
        ] {
            assert!(names.iter().any(|n| n == k), "{k}");
        }
    }

    #[test]
    fn masked_std_quirks() {
        // One pixel set of 3 positions, mask (1, 0, 0): d = 1 → 2, so σ = sqrt(0/1 + 1e-31); mean = f_0.
        // A single channel through an identity mlp1 is emulated by checking the pooling on the encoder of
        // widths [1, 1]: f = relu(bn(w x + b)); with eval statistics (0, 1), γ = 1, w = 1, b = 0: f = x/√(1+eps).
        let mut rng = Rng::new(0);
        let pse = PixelSetEncoder::new(
            &[1, 1],
            vec![Pooling::Mean, Pooling::Std, Pooling::Max],
            &[3, 1],
            None,
            &mut rng,
            Device::Cpu,
        );
        let (lin, bn) = &pse.mlp1[0];
        lin.weight.storage().write(&[1.0]);
        lin.bias.as_ref().unwrap().storage().write(&[0.0]);
        bn.weight.storage().write(&[1.0]);
        let (l2, bn2) = &pse.mlp2[0];
        // Output = mean + 10·std + 100·max (eval BN with γ = 1 only rescales by 1/√(1+eps)).
        l2.weight.storage().write(&[1.0, 10.0, 100.0]);
        l2.bias.as_ref().unwrap().storage().write(&[0.0]);
        bn2.weight.storage().write(&[1.0]);
        let x = Tensor::from_vec(vec![2.0, 4.0, 6.0], &[1, 1, 1, 3], Device::Cpu);
        let y = pse.forward(&x, &[1.0, 0.0, 0.0], None, &Ctx::eval()).item();
        let r = 1.0 / (1.0f32 + 1e-5).sqrt();
        // mean = 2r, std = sqrt(1e-31) ≈ 3.2e-16, max = 6r.
        let e = (2.0 * r + 600.0 * r) * r;
        assert!((y - e).abs() < 1e-3, "{y} vs {e}");
    }
}
