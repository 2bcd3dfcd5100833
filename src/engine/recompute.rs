//! Recomputation: trading a little arithmetic for a lot of memory.
//!
//! A training step keeps, until the backward pass, every tensor some op's backward saved. In a U-Net most of
//! them are the outputs of cheap elementwise layers after each convolution (norm, ReLU): the next
//! convolution saves its input to compute its weight gradient, the norm saves its input, and the ReLU its
//! output — three full activations per layer. Recomputing the cheap part keeps one:
//!
//! - [`Tensor::recomputed`] runs a cheap function `f` of some inputs (say `relu(group_norm(x))`) *without*
//!   recording, and records one node whose backward runs `f` again with recording on and back-propagates
//!   through that small graph. Only `f`'s inputs are kept (`x`, which the next layer's backward does not
//!   need, and the norm's parameters); `f`'s intermediates live only inside the backward.
//! - Its output carries a *recipe* (`f` and its inputs). An op whose backward needs one of its inputs saves
//!   it as a [`Saved`]: the tensor itself, or, when it has a recipe, only the recipe — the convolution after
//!   a recomputed norm + ReLU then keeps nothing of its input, and its backward makes the input again. The
//!   recipe survives reshapes, permutations and the time unfold of a 3-D convolution
//!   (`Tensor::pass_recipe`).
//!
//! The numbers do not change at all: the recomputation runs the same kernels on the same inputs, so it
//! gives the same bits, and the gradients go through the same backward kernels in the same order as without
//! recomputation. What it costs is one more evaluation of `f` in the backward pass for the node and one for
//! each op that saved the recipe (elementwise passes, a few percent of a step whose time is in the
//! convolutions). PyTorch offers the coarse version as `torch.utils.checkpoint`; this is its fine-grained
//! form, applied where it pays: `layers::norm::Norm::forward_relu` (every conv → norm → ReLU of U-TAE and
//! PaPs) and `layers::norm::BatchNorm::forward_relu` (every Linear → BatchNorm1d → ReLU of the pixel-set
//! models, U-TAE's up-convolutions).
//!
//! Inside `f` the ReLU writes over the norm's output (`Tensor::relu_owned`: nothing else holds that
//! temporary), and the backward hands its incoming gradient and `f`'s output to the inner walk
//! (`Backward::backward_owned`), so each is freed as soon as the op that reads it has run: at the
//! recomputation's peak a layer holds its input, one activation and two gradients.
//!
//! **Gradient checkpointing** (`--gradient_checkpointing`, [`with_gradient_checkpointing`]) goes further
//! where the cheap part is not enough: the recurrent ops (`ops::recurrent::conv_lstm`, `conv_gru`) then keep
//! only each date's convolution input (and ConvLSTM its cell state) and run their gate convolutions again
//! in the backward pass, on the same kernels and the same values: the same bits, about a third more
//! convolution work for those models. It is off by default (the speed of a step comes first); the mode is
//! per thread and scoped, like `engine::precision`, and read when an op records its forward.
//!
//! Rules for `f`: deterministic (no dropout, no random draws), no side effects beyond the first evaluation (a
//! batch norm in training mode updates its running statistics: in `BatchNorm::forward_act` only the first
//! evaluation computes the batch statistics and updates them, the later ones normalise with the same
//! statistics), and it must not read anything but its inputs.

use std::cell::Cell;
use std::sync::Arc;

use crate::engine::autograd::{no_grad, records, with_grad, Backward};
use crate::engine::ops::elementwise::half::Half;
use crate::engine::precision::{count_half, precision, Precision, HALF_MIN_NUMEL};
use crate::engine::tensor::{Recipe, Tensor};

/// A function that can be evaluated again: inputs in, one tensor out.
pub type RecomputeFn = Arc<dyn Fn(&[Tensor]) -> Tensor + Send + Sync>;

impl Tensor {
    /// `f(inputs)`, computed now without recording and again in the backward pass (see the module doc).
    /// When no gradient is recorded this is just `f(inputs)`.
    pub fn recomputed(inputs: &[&Tensor], f: RecomputeFn) -> Tensor {
        let kept: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        if !records(inputs) {
            return f(&kept);
        }
        // What the backward and the recipe keep of each input (detached: the graph behind the inputs is
        // reached through the node's edges): the input itself, or, under --precision mixed, a large
        // activation rounded to half precision — and then `f` reads the rounded values in this first
        // evaluation too, so that every evaluation sees the same numbers (engine::precision).
        // A half and its rounded values come from one launch (`Saved::value_and_values`).
        let (saved, first): (Vec<Saved>, Vec<Tensor>) =
            kept.iter().map(Saved::value_and_values).unzip();
        let saved = Arc::new(saved);
        let wants: Vec<bool> = kept.iter().map(Tensor::requires_grad).collect();
        drop(kept);
        let y = no_grad(|| f(&first));
        drop(first);
        let recipe: Recipe = {
            let (f, saved) = (f.clone(), saved.clone());
            Arc::new(move || no_grad(|| f(&values(&saved))))
        };
        let out = y.attach_op(inputs, RecomputeBackward { saved, wants, f });
        out.set_recipe(recipe);
        out
    }
}

thread_local! {
    static CHECKPOINTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether gradient checkpointing is on for this thread (module doc): the recurrent ops then recompute
/// their gate convolutions in the backward pass instead of keeping their outputs.
pub fn gradient_checkpointing() -> bool {
    CHECKPOINTING.with(|c| c.get())
}

/// Runs `f` with gradient checkpointing `on` for this thread; restores the previous setting afterwards, also
/// on panic.
pub fn with_gradient_checkpointing<R>(on: bool, f: impl FnOnce() -> R) -> R {
    crate::engine::scoped::with_set(&CHECKPOINTING, on, f)
}

/// The values of saved inputs, detached.
fn values(saved: &[Saved]) -> Vec<Tensor> {
    saved.iter().map(|s| s.get().detach()).collect()
}

struct RecomputeBackward {
    /// The inputs' values (shared with the output's recipe).
    saved: Arc<Vec<Saved>>,
    /// Which inputs want a gradient.
    wants: Vec<bool>,
    f: RecomputeFn,
}

impl Backward for RecomputeBackward {
    fn name(&self) -> &'static str {
        "recomputed"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        self.backward_owned(dy.clone())
    }
    fn backward_owned(&self, dy: Tensor) -> Vec<Option<Tensor>> {
        // Fresh leaves over the inputs' values: the small graph of `f` ends at them, so its gradients can be
        // read off their `.grad()` without touching the real leaves.
        let leaves: Vec<Tensor> = values(&self.saved)
            .into_iter()
            .zip(&self.wants)
            .map(|(t, &wants)| if wants { t.requires_grad_() } else { t })
            .collect();
        let y = with_grad(|| (self.f)(&leaves));
        // The output and its gradient are handed to the inner walk: each is freed as soon as the op that
        // reads it has run its backward (the ReLU's saved output, the incoming gradient).
        if y.requires_grad() {
            y.backward_owned(dy);
        }
        leaves
            .iter()
            .zip(&self.wants)
            .map(|(l, &wants)| if wants { l.grad() } else { None })
            .collect()
    }
}

impl Tensor {
    /// Gives `out`, made from this tensor by `f` (a reshape, a permutation, an unfold: cheap and
    /// deterministic), a recipe when this tensor has one: `f` of its values made again. An op whose backward
    /// saves `out` then keeps only that recipe.
    pub(crate) fn pass_recipe(
        &self,
        out: &Tensor,
        f: impl Fn(&Tensor) -> Tensor + Send + Sync + 'static,
    ) {
        if let Some(recipe) = self.recipe() {
            let recipe = recipe.clone();
            out.set_recipe(Arc::new(move || no_grad(|| f(&recipe()))));
        }
    }
}

/// A tensor an op's backward needs: kept, or, when it has a recipe, made again on use (see the module doc),
/// or, under `--precision mixed`, kept in half precision (`engine::precision`).
pub enum Saved {
    /// The tensor itself.
    Kept(Tensor),
    /// Its recipe.
    Recipe(Recipe),
    /// Its values in half precision (made float32 on use).
    Half(Half),
}

impl Saved {
    /// What to keep of `t`: its recipe when it has one, else [`Saved::value`].
    pub fn new(t: &Tensor) -> Saved {
        match t.recipe() {
            Some(r) => Saved::Recipe(r.clone()),
            None => Saved::value(t),
        }
    }

    /// `t`'s values: `t` itself, or, under `--precision mixed`, its values in half precision when it is a
    /// large activation (made by a recorded op, at least `HALF_MIN_NUMEL` values; parameters and inputs,
    /// held anyway, stay as they are).
    pub fn value(t: &Tensor) -> Saved {
        if Saved::kept_as_half(t) {
            count_half();
            Saved::Half(t.to_half())
        } else {
            Saved::Kept(t.clone())
        }
    }

    /// [`Saved::value`] (a kept tensor detached) and the values it stands for, detached — what
    /// [`Saved::get`] would give, without unpacking the halves again: they come from the packing's launch
    /// (`Tensor::to_half_and_rounded`).
    pub fn value_and_values(t: &Tensor) -> (Saved, Tensor) {
        if Saved::kept_as_half(t) {
            count_half();
            let (half, rounded) = t.to_half_and_rounded();
            (Saved::Half(half), rounded)
        } else {
            let t = t.detach();
            (Saved::Kept(t.clone()), t)
        }
    }

    /// Whether [`Saved::value`] keeps `t` in half precision (its doc).
    fn kept_as_half(t: &Tensor) -> bool {
        precision() == Precision::Mixed && t.node().is_some() && t.numel() >= HALF_MIN_NUMEL
    }

    /// The tensor (recomputed when only its recipe was kept, made float32 when kept in half precision).
    pub fn get(&self) -> Tensor {
        match self {
            Saved::Kept(t) => t.clone(),
            Saved::Recipe(r) => r(),
            Saved::Half(h) => h.to_f32(),
        }
    }

    /// [`Saved::get`], rounded to halves when `rounded`: what a product under `--precision mixed` read in
    /// its forward pass (a half kept is rounded already; a recipe or a kept tensor is rounded now, a
    /// recomputed one in place on the GPU, being this call's alone).
    pub fn get_as(&self, rounded: bool) -> Tensor {
        match self {
            Saved::Half(_) => self.get(),
            _ if rounded => self.get().rounded_to_half(),
            _ => self.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Device;

    fn norm_relu() -> RecomputeFn {
        Arc::new(|t: &[Tensor]| t[0].group_norm(2, Some(&t[1]), Some(&t[2]), 1e-5).relu())
    }

    /// The recomputed composition gives exactly the plain one's output and gradients, and the convolution
    /// after it (which saved only the recipe) exactly its gradients.
    #[test]
    fn recomputation_changes_no_bit() {
        let d = Device::Cpu;
        let x = Tensor::rand_uniform(&[2, 4, 5, 5], -1.0, 1.0, 1, d).requires_grad_();
        let g = Tensor::rand_uniform(&[4], 0.5, 1.5, 2, d).requires_grad_();
        let b = Tensor::rand_uniform(&[4], -0.5, 0.5, 3, d).requires_grad_();
        let w = Tensor::rand_uniform(&[3, 4, 3, 3], -0.3, 0.3, 4, d).requires_grad_();
        let run = |recompute: bool| {
            for t in [&x, &g, &b, &w] {
                t.zero_grad();
            }
            let y = if recompute {
                Tensor::recomputed(&[&x, &g, &b], norm_relu())
            } else {
                norm_relu()(&[x.clone(), g.clone(), b.clone()])
            };
            let z = y.reshape(&[2, 4, 5, 5]).conv2d(
                &w,
                None,
                1,
                1,
                crate::engine::ops::conv::conv2d::PaddingMode::Zeros,
            );
            let loss = (&z * &z).sum_all();
            loss.backward();
            let grads: Vec<Vec<f32>> = [&x, &g, &b, &w]
                .iter()
                .map(|t| t.grad().expect("grad").to_vec())
                .collect();
            (y.to_vec(), loss.item(), grads)
        };
        assert_eq!(run(false), run(true));
    }

    /// A recipe passes through a permutation (and the reshape after it) into a transposed convolution, and
    /// through a 3-D convolution's time unfold into its 2-D convolution: each saves only the recipe, and the
    /// output and every gradient are bit for bit those of the plain composition.
    #[test]
    fn recipes_pass_through_permutes_and_time_unfolds() {
        let d = Device::Cpu;
        let x = Tensor::rand_uniform(&[1, 4, 3, 5, 5], -1.0, 1.0, 11, d).requires_grad_();
        let g = Tensor::rand_uniform(&[4], 0.5, 1.5, 12, d).requires_grad_();
        let b = Tensor::rand_uniform(&[4], -0.5, 0.5, 13, d).requires_grad_();
        let w = Tensor::rand_uniform(&[2, 12, 3, 3], -0.3, 0.3, 14, d).requires_grad_();
        let wt = Tensor::rand_uniform(&[4, 2, 2, 2], -0.3, 0.3, 15, d).requires_grad_();
        let run = |recompute: bool| {
            for t in [&x, &g, &b, &w, &wt] {
                t.zero_grad();
            }
            let y = if recompute {
                Tensor::recomputed(&[&x, &g, &b], norm_relu())
            } else {
                norm_relu()(&[x.clone(), g.clone(), b.clone()])
            };
            let cols = y.unfold_time(3, 1, 1);
            let frames = y.permute(&[0, 2, 1, 3, 4]).reshape(&[3, 4, 5, 5]);
            assert_eq!(cols.recipe().is_some(), recompute);
            assert_eq!(frames.recipe().is_some(), recompute);
            let z = cols.conv2d(
                &w,
                None,
                1,
                1,
                crate::engine::ops::conv::conv2d::PaddingMode::Zeros,
            );
            let u = frames.conv_transpose2d(&wt, None, 2, 0);
            let loss = &(&z * &z).sum_all() + &(&u * &u).sum_all();
            loss.backward();
            let grads: Vec<Vec<f32>> = [&x, &g, &b, &w, &wt]
                .iter()
                .map(|t| t.grad().expect("grad").to_vec())
                .collect();
            (loss.item(), grads)
        };
        assert_eq!(run(false), run(true));
    }

    /// Under --precision mixed a recomputed layer and the convolution after it are exactly the plain
    /// layer on the input rounded to half precision (straight through: the input's gradient is the
    /// rounded input's) followed by the same mixed convolution: both evaluations of `f` see the same
    /// numbers, and the convolution's weight gradient reads its input's recipe (rounded, as the forward
    /// read it). In fp32 nothing is rounded.
    #[test]
    fn mixed_rounds_the_input_once_for_both_passes() {
        use crate::engine::precision::{with_precision, Precision};
        for d in [Device::Cpu, Device::Gpu] {
            if d == Device::Gpu && crate::engine::testing::gpu_or_skip("mixed recompute").is_none()
            {
                continue;
            }
            let w = Tensor::rand_uniform(&[3, 4, 3, 3], -0.3, 0.3, 4, d).requires_grad_();
            let g = Tensor::rand_uniform(&[4], 0.5, 1.5, 2, d).requires_grad_();
            let b = Tensor::rand_uniform(&[4], -0.5, 0.5, 3, d).requires_grad_();
            // An activation (made by a recorded op) of 2 · 4 · 24 · 24 = 4608 values, past HALF_MIN_NUMEL.
            let x0 = Tensor::rand_uniform(&[2, 4, 24, 24], -1.0, 1.0, 1, d).requires_grad_();
            let conv = |y: &Tensor| {
                let z = y.conv2d(
                    &w,
                    None,
                    1,
                    1,
                    crate::engine::ops::conv::conv2d::PaddingMode::Zeros,
                );
                (&z * &z).sum_all()
            };
            let grads = |ts: &[&Tensor]| -> Vec<Vec<f32>> {
                ts.iter()
                    .map(|t| t.grad().expect("grad").to_vec())
                    .collect()
            };
            let zero = || {
                for t in [&w, &g, &b, &x0] {
                    t.zero_grad();
                }
            };
            // Mixed: recorded inside the mode.
            zero();
            let loss = with_precision(Precision::Mixed, || {
                let x = &x0 * 1.0;
                conv(&Tensor::recomputed(&[&x, &g, &b], norm_relu()))
            });
            loss.backward();
            let mixed = (loss.item(), grads(&[&w, &g, &b, &x0]));
            // Plain, on the rounded input.
            zero();
            let x = &x0 * 1.0;
            let rounded = x.to_half().to_f32();
            let r = rounded.detach().requires_grad_();
            let y = norm_relu()(&[r.clone(), g.clone(), b.clone()]);
            let loss = with_precision(Precision::Mixed, || conv(&y));
            loss.backward();
            let plain = (loss.item(), grads(&[&w, &g, &b, &r]));
            assert_eq!(mixed, plain, "{d:?}");
            assert_ne!(rounded.to_vec(), x.to_vec(), "{d:?}: nothing was rounded");
        }
    }

    /// Without recording, `recomputed` is the plain function and leaves no recipe.
    #[test]
    fn without_recording_it_is_the_function() {
        let x = Tensor::rand_uniform(&[1, 2, 3, 3], -1.0, 1.0, 5, Device::Cpu);
        let one = Tensor::ones(&[2], Device::Cpu);
        let zero = Tensor::zeros(&[2], Device::Cpu);
        let y = Tensor::recomputed(&[&x, &one, &zero], norm_relu());
        assert!(y.recipe().is_none() && !y.requires_grad());
        assert_eq!(y.to_vec(), norm_relu()(&[x, one, zero]).to_vec());
    }
}
