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
//!     backward(share · loss)          (the loss itself when the part is the whole batch)
//! Adam step
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
    sum_parts(len, micro, true, part)
}

/// [`accumulate`] without the backward passes (evaluation: run it under `no_grad`).
pub fn forward_parts(
    len: usize,
    micro: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    sum_parts(len, micro, false, part)
}

fn sum_parts(
    len: usize,
    micro: usize,
    backward: bool,
    mut part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    let mut total = 0.0;
    for p in parts(len, micro) {
        let (loss, share) = part(p)?;
        let share = if p.whole { 1.0 } else { share };
        if backward {
            backward_share(&loss, share);
        }
        if share > 0.0 {
            total += loss.item() as f64 * share;
        }
    }
    Ok(total)
}

/// One optimiser step of a batch (module doc): the gradients zeroed, [`accumulate`], one Adam step.
/// Returns the batch's loss.
pub fn train_batch(
    opt: &mut Adam,
    len: usize,
    micro: usize,
    part: impl FnMut(Part) -> Result<(Tensor, f64)>,
) -> Result<f64> {
    opt.zero_grad();
    let loss = accumulate(len, micro, part)?;
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
