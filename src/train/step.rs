//! One optimiser step of a batch, written once for every training workflow (semantic, panoptic, pixel set)
//! and for the memory probe of `train::memory`.
//!
//! A batch runs whole, or — when `train::memory` planned micro-batches — as parts of at most `micro`
//! samples whose gradients accumulate before one Adam step:
//!
//! ```text
//! zero the gradients
//! for each part (the whole batch, or samples start..end):
//!     loss, share = the task's forward pass and loss on the part
//!     backward(share · S · loss)      (the loss itself when the part is the whole batch; S the loss scale
//!                                      under --precision mixed, else 1: train::adam)
//! Adam step                           (which unscales, and skips a step whose gradients overflowed)
//! ```
//!
//! `share` is the part's share of the batch's loss: the task knows its loss's denominator (the class
//! weights of the labelled pixels for the weighted cross-entropy, the samples for a mean over parcels or
//! patches), so the parts' gradients add up to the batch's. A part whose share is 0 (no labelled pixel)
//! contributes nothing and is not back-propagated. What the forward passes save for the backward ones is
//! float32, or half precision under `--precision mixed`: the fold loop sets the mode around each epoch
//! (`engine::precision`).

use crate::engine::{Result, Tensor};
use crate::train::adam::Adam;

/// One part of a batch: samples `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
    /// Whether the part is the whole batch (no slicing, no scaling).
    pub whole: bool,
}

impl Part {
    /// `f` of this part of `batch`: the batch itself when the part is whole, else `slice(batch, start, end)`.
    pub fn of<B, R>(
        &self,
        batch: &B,
        slice: impl Fn(&B, usize, usize) -> B,
        f: impl FnOnce(&B) -> R,
    ) -> R {
        if self.whole {
            f(batch)
        } else {
            f(&slice(batch, self.start, self.end))
        }
    }
}

/// The parts of a batch of `len` samples with at most `micro` samples each (`micro` 0 counts as 1).
pub fn parts(len: usize, micro: usize) -> Vec<Part> {
    let m = micro.max(1);
    let whole = len <= m;
    (0..len)
        .step_by(m)
        .map(|start| Part {
            start,
            end: (start + m).min(len),
            whole,
        })
        .collect()
}

/// [`parts`] for a model that takes at least `min` samples a pass (a train-mode BatchNorm over the samples):
/// a last part smaller than `min` joins the part before it (one part of up to `micro + min - 1` samples).
pub fn parts_at_least(len: usize, micro: usize, min: usize) -> Vec<Part> {
    let mut ps = parts(len, micro.max(min));
    if ps.len() >= 2 && ps[ps.len() - 1].end - ps[ps.len() - 1].start < min {
        let last = ps.pop().map_or(len, |p| p.end);
        if let Some(p) = ps.last_mut() {
            p.end = last;
        }
    }
    ps
}

/// Back-propagates `share · loss` (the loss itself when `share` is 1; nothing when it is 0).
pub fn backward_share(loss: &Tensor, share: f64) {
    if share == 1.0 {
        loss.backward();
    } else if share > 0.0 {
        (loss * share as f32).backward();
    }
}

/// The forward and backward passes of a batch of `len` samples in parts of at most `micro`, without an
/// optimiser step: `part(p)` runs the task's forward pass and loss on part `p` and returns the loss (a scalar
/// tensor) and its share of the batch's loss (ignored for a whole batch). Returns the batch's loss,
/// Σ share · loss.
pub fn accumulate(
    len: usize,
    micro: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    sum_parts(len, (micro, 1), Some(&|l: &Tensor| l.clone()), part)
}

/// [`accumulate`] without the backward passes (evaluation: run it under `no_grad`).
pub fn forward_parts(
    len: usize,
    micro: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    sum_parts(len, (micro, 1), None, part)
}

/// The parts' losses summed; with `backward`, each part's `backward(loss)` back-propagated (the loss
/// itself, or scaled by the optimizer's loss scale).
fn sum_parts(
    len: usize,
    (micro, min): (usize, usize),
    backward: Option<&dyn Fn(&Tensor) -> Tensor>,
    mut part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    let mut total = 0.0;
    for p in parts_at_least(len, micro, min) {
        let (loss, share) = part(p)?;
        let share = if p.whole { 1.0 } else { share };
        if let Some(scaled) = backward {
            backward_share(&scaled(&loss), share);
        }
        if share > 0.0 {
            total += loss.item() as f64 * share;
        }
    }
    Ok(total)
}

/// One optimiser step of a batch (module doc): the gradients zeroed, [`accumulate`] (each part's loss
/// multiplied by the optimizer's loss scale first under `--precision mixed`: `Adam::scale_loss`), one Adam
/// step. Returns the batch's loss (unscaled).
pub fn train_batch(
    opt: &mut Adam,
    len: usize,
    micro: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    train_batch_at_least(opt, len, micro, 1, part)
}

/// [`train_batch`] for a model that takes at least `min` samples a pass ([`parts_at_least`]).
pub fn train_batch_at_least(
    opt: &mut Adam,
    len: usize,
    micro: usize,
    min: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    opt.zero_grad();
    let loss = {
        let scaled = |l: &Tensor| opt.scale_loss(l);
        sum_parts(len, (micro, min), Some(&scaled), part)?
    };
    opt.step();
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Device;
    use crate::train::adam::AdamConfig;

    #[test]
    fn parts_cover_the_batch_in_order() {
        let p = |len, micro| -> Vec<(usize, usize, bool)> {
            parts(len, micro)
                .iter()
                .map(|p| (p.start, p.end, p.whole))
                .collect()
        };
        assert_eq!(p(5, 2), vec![(0, 2, false), (2, 4, false), (4, 5, false)]);
        assert_eq!(p(4, 8), vec![(0, 4, true)]);
        assert_eq!(p(4, 4), vec![(0, 4, true)]);
        assert_eq!(p(3, 0), vec![(0, 1, false), (1, 2, false), (2, 3, false)]);
        assert!(parts(0, 2).is_empty());
        // At least 2 samples a part: a last part of 1 joins the one before; micro 1 counts as 2.
        let q = |len, micro| -> Vec<(usize, usize)> {
            parts_at_least(len, micro, 2)
                .iter()
                .map(|p| (p.start, p.end))
                .collect()
        };
        assert_eq!(q(7, 3), vec![(0, 3), (3, 7)]);
        assert_eq!(q(8, 3), vec![(0, 3), (3, 6), (6, 8)]);
        assert_eq!(q(5, 1), vec![(0, 2), (2, 5)]);
        assert_eq!(q(3, 2), vec![(0, 3)]);
        assert_eq!(q(2, 8), vec![(0, 2)]);
        for (len, micro) in [(5, 2), (4, 8), (3, 0), (9, 4)] {
            assert_eq!(
                parts_at_least(len, micro, 1)
                    .iter()
                    .map(|p| (p.start, p.end, p.whole))
                    .collect::<Vec<_>>(),
                parts(len, micro)
                    .iter()
                    .map(|p| (p.start, p.end, p.whole))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// A batch's loss as parts weighted by their shares gives the whole batch's gradient and loss (up to the
    /// order of float additions), and one Adam step; a part with share 0 adds nothing.
    #[test]
    fn parts_add_up_to_the_batch() {
        let d = Device::Cpu;
        let w = Tensor::rand_uniform(&[3], -1.0, 1.0, 7, d).requires_grad_();
        let x = Tensor::rand_uniform(&[6, 3], -1.0, 1.0, 8, d);
        let xs = x.to_vec();
        // Mean over samples of (x_i · w)²; share of a part = its samples / 6.
        let loss_of = |rows: &[f32], n: usize| -> Tensor {
            let xr = Tensor::from_vec(rows.to_vec(), &[n, 3], d);
            let y = xr.matmul(&w.reshape(&[3, 1]));
            &(&y * &y).sum_all() * (1.0 / n as f32)
        };
        let run = |micro: usize| {
            let mut opt = Adam::new(vec![w.clone()], AdamConfig::default());
            let before = w.to_vec();
            let loss = train_batch(&mut opt, 6, micro, |p| {
                let n = p.end - p.start;
                let l = loss_of(&xs[3 * p.start..3 * p.end], n);
                Ok((l, n as f64 / 6.0))
            })
            .unwrap();
            let grad = w.grad().unwrap().to_vec();
            w.storage().write(&before);
            (loss, grad)
        };
        let (whole, whole_grad) = run(6);
        let (micro, micro_grad) = run(2);
        assert!((whole - micro).abs() < 1e-6 * whole.abs().max(1.0));
        for (a, b) in whole_grad.iter().zip(&micro_grad) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // A part with share 0 is not back-propagated and not counted.
        w.zero_grad();
        let loss = accumulate(6, 3, |p| {
            let l = loss_of(&xs[3 * p.start..3 * p.end], 3);
            Ok((l, if p.start == 0 { 0.0 } else { 0.5 }))
        })
        .unwrap();
        w.zero_grad();
        let second = accumulate(3, 3, |_| Ok((loss_of(&xs[9..], 3), 1.0))).unwrap();
        assert!((loss - 0.5 * second).abs() < 1e-6);
    }
}
