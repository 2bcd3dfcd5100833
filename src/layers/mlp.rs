//! `Mlp`: the `nn.Sequential` of (Linear → BatchNorm1d → ReLU) pairs that every pixel-set model repeats —
//! L-TAE's and TAE's `mlp`, TempCNN's `linear`, the PSE's `mlp2`, the hidden layers of the decoder.
//!
//! PyTorch numbers a Sequential's children, ReLUs included, so pair i lives at `<prefix>.<3i>` (Linear) and
//! `<prefix>.<3i+1>` (BatchNorm1d), with the ReLU module at `3i + 2`. Where the last pair has no ReLU (the PSE's
//! mlp2), the numbering of the earlier pairs is unchanged. Initialisation: `weight_init` of the original
//! repositories (spec §3.9): Linear Xavier-normal weight and N(0, 1) bias, BatchNorm weight N(0, 1), bias 0.

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{BatchNorm, Ctx, Linear, Module};

/// (Linear → BatchNorm1d → ReLU) per pair of consecutive widths.
pub struct Mlp {
    /// The pairs, in order.
    pub pairs: Vec<(Linear, BatchNorm)>,
    /// Whether the last pair is followed by a ReLU (false for the PSE's mlp2).
    pub relu_last: bool,
}

impl Mlp {
    /// Pairs for widths `w[0] → w[1] → …` (no pair for fewer than two widths).
    pub fn new(widths: &[usize], relu_last: bool, rng: &mut Rng, device: Device) -> Self {
        Mlp {
            pairs: widths
                .windows(2)
                .map(|w| {
                    (
                        Linear::xavier(w[0], w[1], rng, device),
                        BatchNorm::new(w[1], rng, device),
                    )
                })
                .collect(),
            relu_last,
        }
    }

    /// x (N, `w[0]`) → (N, `w[-1]`); the identity without pairs. BatchNorm statistics are over the N rows.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut o = x.clone();
        let last = self.pairs.len();
        for (i, (lin, bn)) in self.pairs.iter().enumerate() {
            let z = lin.forward(&o);
            o = if i + 1 < last || self.relu_last {
                bn.forward_relu(&z, ctx)
            } else {
                bn.forward(&z, ctx)
            };
        }
        o
    }

    /// Number of Sequential children (Linear, BatchNorm, ReLU per pair; no ReLU after the last pair when
    /// `relu_last` is false): the index a module placed after the stack gets.
    pub fn len_children(&self) -> usize {
        3 * self.pairs.len() - usize::from(!self.relu_last && !self.pairs.is_empty())
    }
}

impl Module for Mlp {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (lin, bn)) in self.pairs.iter().enumerate() {
            v.extend(lin.named_parameters(&format!("{prefix}{}.", 3 * i)));
            v.extend(bn.named_parameters(&format!("{prefix}{}.", 3 * i + 1)));
        }
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (_, bn)) in self.pairs.iter().enumerate() {
            v.extend(bn.named_buffers(&format!("{prefix}{}.", 3 * i + 1)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts() {
        // [4, 3, 2]: Linear 4·3 + 3, BN 2·3, Linear 3·2 + 2, BN 2·2 = 15 + 6 + 8 + 4 = 33.
        let m = Mlp::new(&[4, 3, 2], true, &mut Rng::new(0), Device::Cpu);
        assert_eq!(m.num_parameters(), 33);
        let names: Vec<String> = m
            .named_parameters("mlp.")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            names,
            [
                "mlp.0.weight",
                "mlp.0.bias",
                "mlp.1.weight",
                "mlp.1.bias",
                "mlp.3.weight",
                "mlp.3.bias",
                "mlp.4.weight",
                "mlp.4.bias"
            ]
        );
        assert_eq!(m.len_children(), 6);
        let no_last = Mlp::new(&[4, 3, 2], false, &mut Rng::new(0), Device::Cpu);
        assert_eq!(no_last.len_children(), 5);
        assert_eq!(
            Mlp::new(&[4], true, &mut Rng::new(0), Device::Cpu).len_children(),
            0
        );
    }

    #[test]
    fn relu_placement() {
        // One pair 1 → 1 with w = 1, b = 0, eval BN (0, 1) with γ = 1: y = x / √(1 + eps); relu_last zeroes
        // the negative input, the other keeps it.
        let x = Tensor::from_vec(vec![-2.0, 3.0], &[2, 1], Device::Cpu);
        for relu_last in [true, false] {
            let m = Mlp::new(&[1, 1], relu_last, &mut Rng::new(0), Device::Cpu);
            let (lin, bn) = &m.pairs[0];
            lin.weight.storage().write(&[1.0]);
            lin.bias.as_ref().unwrap().storage().write(&[0.0]);
            bn.weight.storage().write(&[1.0]);
            let y = m.forward(&x, &Ctx::eval()).to_vec();
            let r = 1.0 / (1.0f32 + 1e-5).sqrt();
            let first = if relu_last { 0.0 } else { -2.0 * r };
            assert!((y[0] - first).abs() < 1e-6 && (y[1] - 3.0 * r).abs() < 1e-6);
        }
    }
}
