//! `Linear` (torch.nn.Linear): `y = x Wᵀ + b` over the last axis, weight (out, in), bias (out), initialised
//! as PyTorch does: U(-1/√in, 1/√in) for both (kaiming_uniform with a = √5 reduces to that bound).

use crate::engine::{Device, Tensor};
use crate::layers::Module;

/// A fully connected layer.
pub struct Linear {
    /// Weight (out_features, in_features).
    pub weight: Tensor,
    /// Bias (out_features), if any.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation from `seed`.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        seed: u64,
        device: Device,
    ) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight =
            Tensor::rand_uniform(&[out_features, in_features], -bound, bound, seed, device)
                .requires_grad_();
        let bias = bias.then(|| {
            Tensor::rand_uniform(&[out_features], -bound, bound, seed ^ 0xB1A5, device)
                .requires_grad_()
        });
        Linear { weight, bias }
    }

    /// A layer initialised as U-TAE's `weight_init` (spec §3.9): Xavier-normal weight, N(0, 1) bias.
    pub fn xavier(
        in_features: usize,
        out_features: usize,
        rng: &mut crate::engine::rng::Rng,
        device: Device,
    ) -> Self {
        use crate::layers::conv::normal;
        let std = (2.0 / (in_features + out_features) as f64).sqrt();
        let weight = Tensor::from_vec(
            normal(rng, out_features * in_features, std),
            &[out_features, in_features],
            device,
        )
        .requires_grad_();
        let bias = Some(
            Tensor::from_vec(normal(rng, out_features, 1.0), &[out_features], device)
                .requires_grad_(),
        );
        Linear { weight, bias }
    }

    /// x (..., in) → y (..., out).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (o, i) = (self.weight.shape()[0], self.weight.shape()[1]);
        let lead: Vec<usize> = x.shape()[..x.rank() - 1].to_vec();
        assert_eq!(
            x.shape().last(),
            Some(&i),
            "Linear: expected input (..., {i}), got {:?}",
            x.shape()
        );
        let x2 = x.reshape(&[x.numel() / i.max(1), i]);
        let mut y = x2.matmul(&self.weight.transpose(0, 1));
        if let Some(b) = &self.bias {
            y = &y + b;
        }
        let mut s = lead;
        s.push(o);
        y.reshape(&s)
    }
}

impl Module for Linear {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(format!("{prefix}weight"), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push((format!("{prefix}bias"), b.clone()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_and_names() {
        let l = Linear::new(2, 1, true, 0, Device::Cpu);
        l.weight.storage().write(&[2.0, -1.0]);
        l.bias.as_ref().unwrap().storage().write(&[0.5]);
        // (3, 4) · (2, -1) + 0.5 = 6 - 4 + 0.5 = 2.5
        let y = l.forward(&Tensor::from_vec(vec![3.0, 4.0], &[1, 2], Device::Cpu));
        assert_eq!(y.to_vec(), vec![2.5]);
        let names: Vec<String> = l
            .named_parameters("fc.")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["fc.weight", "fc.bias"]);
    }
}
