//! The Pixel-Set Encoder (`PixelSetEncoder` of `models/pse.py`, spec §4.1) and the MLP decoder
//! (`get_decoder`, §4.3), with the original state_dict names (spec A.8), plus the focal loss of the L-TAE
//! training script (§8.3). The classifiers that combine them with a temporal encoder are in
//! [`crate::models::stclassifier`].
//!
//! ```text
//! pixels (B, T, C, S), mask (B, T, S), extra (B, T, E)   → merged to N = B·T pixel sets
//! mlp1      per pair: Linear on every pixel, BatchNorm1d over (N × S) — padding copies included, the mask
//!           is not used (QUIRK) — ReLU
//! pooling   "mean_std" etc.: masked mean Σ M f / Σ M; masked std sqrt(Σ (M (f − μ))² / (d − 1) + 1e-31)
//!           with d = Σ M and d = 1 replaced by 2 (one fused kernel: `Tensor::masked_mean_std`); max / min
//!           over all S positions (mask ignored)
//! + extra   concatenated (with_extra)
//! mlp2      per pair Linear → BatchNorm1d, ReLU after every pair but the last
//! → (B, T, mlp2[-1]) → a temporal encoder → decoder: (Linear → BN → ReLU)*, Linear → logits
//! ```

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{prefixed, BatchNorm, Ctx, Linear, Mlp, Module};

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
    pub mlp2: Mlp,
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
            mlp2: Mlp::new(mlp2, false, rng, device),
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
            // The linear's input is let go as soon as it has run (its backward keeps what it needs).
            f = lin.forward(&f);
            f = bn.forward_relu(&f, ctx);
        }
        let k = f.shape()[1];
        let f = f.reshape(&[n, s, k]);
        // Masked mean and std in one fused kernel (engine/ops/reduce/masked_pool.rs), when asked for.
        let stats = self
            .pooling
            .iter()
            .any(|p| matches!(p, Pooling::Mean | Pooling::Std))
            .then(|| f.masked_mean_std(&Tensor::from_vec(mask.to_vec(), &[n, s], dev)));
        let stat = |i: usize| {
            stats
                .as_ref()
                .expect("computed for mean and std")
                .narrow(0, i, 1)
                .reshape(&[n, k])
        };
        let mut parts = Vec::new();
        for p in &self.pooling {
            parts.push(match p {
                Pooling::Mean => stat(0),
                Pooling::Std => stat(1),
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
        let o = self.mlp2.forward(&Tensor::cat(&refs, 1), ctx);
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
        v.extend(self.mlp2.named_parameters(&prefixed(prefix, "mlp2")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (_, bn)) in self.mlp1.iter().enumerate() {
            v.extend(bn.named_buffers(&prefixed(prefix, &format!("mlp1.{i}.bn"))));
        }
        v.extend(self.mlp2.named_buffers(&prefixed(prefix, "mlp2")));
        v
    }
}

/// `get_decoder(n_neurons)`: (Linear → BatchNorm1d → ReLU) per pair but the last, then a plain Linear.
pub struct Decoder {
    /// Hidden pairs (`decoder.<3i>`, `decoder.<3i+1>`).
    pub hidden: Mlp,
    /// Final Linear (`decoder.<3·pairs>`).
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
            hidden: Mlp::new(&n[..k], true, rng, device),
            last: Linear::xavier(n[k - 1], n[k], rng, device),
        }
    }

    /// x (B, `n[0]`) → (B, `n[-1]`).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        self.last.forward(&self.hidden.forward(x, ctx))
    }
}

impl Module for Decoder {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = self.hidden.named_parameters(prefix);
        v.extend(
            self.last
                .named_parameters(&format!("{prefix}{}.", self.hidden.len_children())),
        );
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.hidden.named_buffers(prefix)
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
    // (1 − p_t)^γ from the detached p_t = exp(−nll), on the logits' device (no readback mid-step).
    let one_minus_pt = nll.detach().neg().exp().neg().add_scalar(1.0);
    let factor = if gamma == 1.0 {
        one_minus_pt
    } else if gamma == 0.0 {
        Tensor::ones(&[s[0]], dev)
    } else {
        // x^γ = exp(γ ln x); x = 0 gives exp(−∞) = 0, as powf.
        one_minus_pt.log().mul_scalar(gamma).exp()
    };
    (&nll * &factor).mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focal_loss_is_the_weighted_nll_with_a_detached_factor() {
        // logits (2, 3), targets (2, 0): p_t = softmax(row)[t]; loss = mean −(1 − p_t)^γ ln p_t, and the
        // gradient treats (1 − p_t)^γ as a constant.
        let lv = [1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
        let p_t = |r: usize, t: usize| {
            let row = &lv[3 * r..3 * r + 3];
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            (row[t] as f64).exp() / z
        };
        for gamma in [0.0f32, 1.0, 2.0] {
            let logits = Tensor::from_vec(lv.to_vec(), &[2, 3], Device::Cpu).requires_grad_();
            let loss = focal_loss(&logits, &[2, 0], gamma);
            let want: f64 = [(0, 2), (1, 0)]
                .iter()
                .map(|&(r, t)| -(1.0 - p_t(r, t)).powf(gamma as f64) * p_t(r, t).ln())
                .sum::<f64>()
                / 2.0;
            assert!(
                (loss.item() as f64 - want).abs() < 1e-5,
                "γ {gamma}: {} vs {want}",
                loss.item()
            );
            loss.backward();
            // d/dz_t of −f ln p_t with f constant: −f (1 − p_t) / 2 (the batch mean).
            let g = logits.grad().unwrap().to_vec();
            let f = (1.0 - p_t(0, 2)).powf(gamma as f64);
            assert!(
                (g[2] as f64 + f * (1.0 - p_t(0, 2)) / 2.0).abs() < 1e-5,
                "γ {gamma}: {g:?}"
            );
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
        let (l2, bn2) = &pse.mlp2.pairs[0];
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
