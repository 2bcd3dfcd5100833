//! Normalisation layers with PyTorch names: `GroupNorm` (weight, bias), `BatchNorm` 1d/2d (weight, bias and
//! the buffers running_mean, running_var, num_batches_tracked), and the [`Norm`] choice used by U-TAE's conv
//! blocks (group / batch / instance / none).
//!
//! BatchNorm in training mode normalises with the batch statistics and updates the running statistics in
//! place (momentum 0.1, unbiased variance), and counts `num_batches_tracked`; in evaluation mode it uses the
//! running statistics. Initialisation follows U-TAE's `weight_init` (§3.9): BatchNorm weight N(0, 1) (sic),
//! bias 0; GroupNorm weight 1, bias 0.

use std::sync::{Arc, OnceLock};

use crate::engine::decisions;
use crate::engine::recompute::RecomputeFn;
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::conv::normal;
use crate::layers::{Ctx, Module};

/// PyTorch's default eps for every norm.
pub const EPS: f32 = 1e-5;
/// PyTorch's default BatchNorm momentum.
pub const MOMENTUM: f32 = 0.1;

/// GroupNorm with affine parameters.
pub struct GroupNorm {
    /// Number of groups.
    pub groups: usize,
    /// γ (C).
    pub weight: Tensor,
    /// β (C).
    pub bias: Tensor,
}

impl GroupNorm {
    /// γ = 1, β = 0.
    pub fn new(groups: usize, channels: usize, device: Device) -> Self {
        GroupNorm {
            groups,
            weight: Tensor::ones(&[channels], device).requires_grad_(),
            bias: Tensor::zeros(&[channels], device).requires_grad_(),
        }
    }

    /// x (N, C, *) → same shape.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), EPS)
    }
}

impl Module for GroupNorm {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}weight"), self.weight.clone()),
            (format!("{prefix}bias"), self.bias.clone()),
        ]
    }
}

/// The activation a norm is followed by, recomputed with it ([`BatchNorm::forward_act`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// `nn.ReLU` (over the norm's output, in place where nothing else holds it: `Tensor::relu_owned`).
    Relu,
    /// `nn.LeakyReLU(slope)`.
    LeakyRelu(f32),
}

impl Act {
    /// The activation of `x`, which the caller gives up.
    pub fn apply(self, x: Tensor) -> Tensor {
        match self {
            Act::Relu => x.relu_owned(),
            Act::LeakyRelu(a) => x.leaky_relu(a),
        }
    }
}

/// BatchNorm1d / BatchNorm2d (the same computation over (N, C, *)).
pub struct BatchNorm {
    /// γ (C).
    pub weight: Tensor,
    /// β (C).
    pub bias: Tensor,
    /// Running mean (C), updated in place in training mode.
    pub running_mean: Tensor,
    /// Running (unbiased) variance (C).
    pub running_var: Tensor,
    /// Batches seen in training mode (a one-element tensor; int64 in checkpoints).
    pub num_batches_tracked: Tensor,
}

impl BatchNorm {
    /// γ ~ N(0, 1) as U-TAE's weight_init (from `rng`), β = 0, running stats (0, 1).
    pub fn new(channels: usize, rng: &mut Rng, device: Device) -> Self {
        BatchNorm {
            weight: Tensor::from_vec(normal(rng, channels, 1.0), &[channels], device)
                .requires_grad_(),
            bias: Tensor::zeros(&[channels], device).requires_grad_(),
            running_mean: Tensor::zeros(&[channels], device),
            running_var: Tensor::ones(&[channels], device),
            num_batches_tracked: Tensor::zeros(&[], Device::Cpu),
        }
    }

    /// x (N, C, *) → same shape; training mode updates the running statistics.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        self.count(ctx);
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            &self.running_mean,
            &self.running_var,
            ctx.training,
            MOMENTUM,
            EPS,
        )
    }

    /// `relu(self.forward(x))`, recomputed in the backward pass ([`BatchNorm::forward_act`]).
    pub fn forward_relu(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        self.forward_act(x, ctx, Act::Relu)
    }

    /// `act(self.forward(x))`, recomputed in the backward pass instead of keeping the norm's output and the
    /// activation's (`engine::recompute`): the same numbers, a third of the memory of a Linear / conv →
    /// BatchNorm → activation layer. In training mode the first evaluation computes the batch statistics and
    /// updates the running ones; the recomputations normalise with those same statistics
    /// ([`Tensor::batch_norm_with_stats`]: one pass, the same bits, the running statistics untouched), and
    /// `num_batches_tracked` counts the batch once. A ReLU is applied by the norm's own launch where no
    /// gradient is recorded (the first evaluation, and evaluation: [`Tensor::batch_norm_relu`]).
    pub fn forward_act(&self, x: &Tensor, ctx: &Ctx, act: Act) -> Tensor {
        if decisions::active() {
            return act.apply(self.forward(x, ctx));
        }
        self.count(ctx);
        let (rm, rv, training) = (
            self.running_mean.clone(),
            self.running_var.clone(),
            ctx.training,
        );
        // The first evaluation computes the batch statistics (and updates the running ones); the later ones
        // normalise with those same (μ, rstd): one pass instead of the statistics' passes, same bits.
        let batch_stats = OnceLock::new();
        let f: RecomputeFn = Arc::new(move |t: &[Tensor]| {
            let (w, b) = (Some(&t[1]), Some(&t[2]));
            if act == Act::Relu && (!training || batch_stats.get().is_none()) {
                // Evaluation, or the first evaluation in training: one launch where nothing is recorded
                // (`batch_norm_relu`; the recomputations, recorded, take the two ops below).
                let (y, stats) = t[0].batch_norm_relu(w, b, &rm, &rv, training, MOMENTUM, EPS);
                if training {
                    let _ = batch_stats.set(stats);
                }
                return y;
            }
            let y = if !training {
                t[0].batch_norm(w, b, &rm, &rv, false, MOMENTUM, EPS)
            } else if let Some(stats) = batch_stats.get() {
                t[0].batch_norm_with_stats(w, b, stats)
            } else {
                let (y, stats) = t[0].batch_norm_train(w, b, &rm, &rv, MOMENTUM, EPS);
                let _ = batch_stats.set(stats);
                y
            };
            act.apply(y)
        });
        Tensor::recomputed(&[x, &self.weight, &self.bias], f)
    }

    /// Counts a training-mode batch in `num_batches_tracked`.
    fn count(&self, ctx: &Ctx) {
        if ctx.training {
            let n = self.num_batches_tracked.item();
            self.num_batches_tracked.storage().write(&[n + 1.0]);
        }
    }
}

impl Module for BatchNorm {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}weight"), self.weight.clone()),
            (format!("{prefix}bias"), self.bias.clone()),
        ]
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}running_mean"), self.running_mean.clone()),
            (format!("{prefix}running_var"), self.running_var.clone()),
            (
                format!("{prefix}num_batches_tracked"),
                self.num_batches_tracked.clone(),
            ),
        ]
    }
}

/// The norm choice of U-TAE's conv layers (`encoder_norm` / `norm` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// GroupNorm with 4 groups (U-TAE's `n_groups`).
    Group,
    /// BatchNorm2d.
    Batch,
    /// InstanceNorm2d (affine false, no running statistics).
    Instance,
    /// No norm.
    None,
}

impl NormKind {
    /// From the original string ("group", "batch", "instance"; anything else: none).
    pub fn parse(s: &str) -> NormKind {
        match s {
            "group" => NormKind::Group,
            "batch" => NormKind::Batch,
            "instance" => NormKind::Instance,
            _ => NormKind::None,
        }
    }

    /// The original's spelling (conf.json, `--encoder_norm`).
    pub fn name(self) -> &'static str {
        match self {
            NormKind::Group => "group",
            NormKind::Batch => "batch",
            NormKind::Instance => "instance",
            NormKind::None => "none",
        }
    }
}

/// A norm layer of one of the kinds.
pub enum Norm {
    /// GroupNorm.
    Group(GroupNorm),
    /// BatchNorm2d.
    Batch(BatchNorm),
    /// InstanceNorm2d.
    Instance,
}

impl Norm {
    /// A norm of `kind` over `channels` (None for `NormKind::None`). GroupNorm uses `groups` groups.
    pub fn new(
        kind: NormKind,
        channels: usize,
        groups: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Option<Norm> {
        match kind {
            NormKind::Group => Some(Norm::Group(GroupNorm::new(groups, channels, device))),
            NormKind::Batch => Some(Norm::Batch(BatchNorm::new(channels, rng, device))),
            NormKind::Instance => Some(Norm::Instance),
            NormKind::None => None,
        }
    }

    /// x (N, C, H, W) → same shape.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        match self {
            Norm::Group(g) => g.forward(x),
            Norm::Batch(b) => b.forward(x, ctx),
            Norm::Instance => x.instance_norm(EPS),
        }
    }

    /// `relu(norm(x))`. While gradients are recorded, the norm and its ReLU are recomputed in the backward
    /// pass instead of keeping their outputs (`engine::recompute`: the same numbers, a third of the memory of a
    /// conv → norm → ReLU layer; a batch norm's running statistics are updated once,
    /// [`BatchNorm::forward_relu`]). Everything runs plainly while the decision recorder runs (each ReLU site
    /// must run once).
    pub fn forward_relu(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        if decisions::active() {
            return self.forward(x, ctx).relu();
        }
        match self {
            Norm::Group(g) => {
                let groups = g.groups;
                // One launch where nothing is recorded (the first evaluation): `group_norm_relu`.
                let f: RecomputeFn = Arc::new(move |t: &[Tensor]| {
                    t[0].group_norm_relu(groups, Some(&t[1]), Some(&t[2]), EPS)
                });
                Tensor::recomputed(&[x, &g.weight, &g.bias], f)
            }
            Norm::Instance => {
                // Instance norm is the group norm of one-channel groups (`Tensor::instance_norm`).
                let f: RecomputeFn =
                    Arc::new(|t: &[Tensor]| t[0].group_norm_relu(t[0].shape()[1], None, None, EPS));
                Tensor::recomputed(&[x], f)
            }
            Norm::Batch(b) => b.forward_relu(x, ctx),
        }
    }

    /// Whether this norm has batch statistics (affected by U-TAE's dummy-pass quirk).
    pub fn is_batch(&self) -> bool {
        matches!(self, Norm::Batch(_))
    }
}

impl Module for Norm {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        match self {
            Norm::Group(g) => g.named_parameters(prefix),
            Norm::Batch(b) => b.named_parameters(prefix),
            Norm::Instance => Vec::new(),
        }
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        match self {
            Norm::Batch(b) => b.named_buffers(prefix),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::gpu_or_skip;
    use crate::layers::Linear;

    /// Linear → BatchNorm1d → ReLU (or LeakyReLU) → Linear, trained one step, plainly and with the norm and
    /// activation recomputed (`forward_act`): the same output, loss and gradients, the running statistics updated once with the
    /// batch's statistics and `num_batches_tracked` counted once — bit for bit on the CPU and on the GPU
    /// (where the recomputed ReLU writes over the norm's output and its backward over its incoming gradient).
    #[test]
    fn batch_norm_recomputation_changes_no_bit_and_counts_once() {
        let mut devices = vec![Device::Cpu];
        if gpu_or_skip("batch norm recomputation (GPU half)").is_some() {
            devices.push(Device::Gpu);
        }
        let cases = devices
            .into_iter()
            .flat_map(|d| [(d, Act::Relu), (d, Act::LeakyRelu(0.01))]);
        for (device, act) in cases {
            let run = |recompute: bool| {
                let mut rng = Rng::new(7);
                let (l1, bn, l2) = (
                    Linear::xavier(5, 6, &mut rng, device),
                    BatchNorm::new(6, &mut rng, device),
                    Linear::xavier(6, 3, &mut rng, device),
                );
                let x = Tensor::rand_uniform(&[37, 5], -1.0, 1.0, 3, device).requires_grad_();
                let ctx = Ctx::train(0);
                let z = l1.forward(&x);
                let h = match (recompute, act) {
                    (true, _) => bn.forward_act(&z, &ctx, act),
                    (false, Act::Relu) => bn.forward(&z, &ctx).relu(),
                    (false, Act::LeakyRelu(a)) => bn.forward(&z, &ctx).leaky_relu(a),
                };
                drop(z);
                let o = l2.forward(&h);
                let loss = (&o * &o).sum_all();
                loss.backward();
                let mut seen = vec![h.to_vec(), vec![loss.item()]];
                let params = [&x, &l1.weight, &bn.weight, &bn.bias, &l2.weight];
                seen.extend(params.iter().map(|t| t.grad().expect("grad").to_vec()));
                for b in [&bn.running_mean, &bn.running_var, &bn.num_batches_tracked] {
                    seen.push(b.to_vec());
                }
                seen
            };
            let (plain, recomputed) = (run(false), run(true));
            assert_eq!(plain, recomputed, "{device:?} {act:?}");
            assert_eq!(
                plain.last().unwrap(),
                &vec![1.0],
                "{device:?} {act:?}: one batch counted"
            );
        }
    }
}
