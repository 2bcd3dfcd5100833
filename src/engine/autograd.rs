//! Reverse-mode automatic differentiation, define-by-run.
//!
//! While gradients are recorded (the default; see [`no_grad`]), every op whose inputs require a gradient
//! stores a [`Node`] on its output: the op's [`Backward`] (holding what it saved for the backward pass) and
//! its inputs. The nodes form the tape of the forward pass. [`Tensor::backward`] walks it in reverse
//! topological order from a scalar, asks each node for the gradients of its inputs, sums the gradients that
//! reach the same tensor, and finally adds each leaf's gradient into its `.grad()` slot.
//!
//! Conventions:
//! - Leaf gradients **accumulate** (`grad += new`, as PyTorch), until [`Tensor::zero_grad`].
//! - Backward passes run with recording off: backward kernels are not differentiable themselves (no double
//!   backward).
//! - Backward kernels are gathers (each GPU invocation owns one output element), so results do not depend on
//!   scheduling: no float atomics, bit-identical gradients from run to run.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::engine::storage::Storage;
use crate::engine::tensor::Tensor;
pub use crate::engine::tensor::{Backward, Node};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record autograd nodes on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording (evaluation, optimizer steps). Restores the previous state afterwards, also on
/// panic.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

// ---- Recording ----

impl Tensor {
    /// The output of an op: records an autograd node when gradients are being recorded and some input
    /// requires a gradient; otherwise a plain tensor.
    pub fn from_op(
        shape: &[usize],
        storage: Storage,
        inputs: &[&Tensor],
        backward: impl Backward + 'static,
    ) -> Tensor {
        let record = is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        if record {
            let node = Node {
                backward: Box::new(backward),
                inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            };
            Tensor::wrap(
                shape.to_vec(),
                Arc::new(storage),
                Some(Arc::new(node)),
                true,
            )
        } else {
            Tensor::from_storage(shape, storage)
        }
    }

    /// `self` (a plain tensor just computed by an op) as the output of that op: shares the storage and
    /// records the node when gradients are being recorded. Lets a backward save the output itself (`self`)
    /// without a reference cycle.
    pub fn attach_op(&self, inputs: &[&Tensor], backward: impl Backward + 'static) -> Tensor {
        let record = is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        if !record {
            return self.clone();
        }
        let node = Node {
            backward: Box::new(backward),
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        };
        Tensor::wrap(
            self.shape().to_vec(),
            self.shared_storage(),
            Some(Arc::new(node)),
            true,
        )
    }

    /// A view with another shape and the same storage and autograd history (used by reshape).
    pub(crate) fn with_shape_sharing(
        &self,
        shape: &[usize],
        backward: impl Backward + 'static,
    ) -> Tensor {
        let record = is_grad_enabled() && self.requires_grad();
        let node = record.then(|| {
            Arc::new(Node {
                backward: Box::new(backward),
                inputs: vec![self.clone()],
            })
        });
        Tensor::wrap(shape.to_vec(), self.shared_storage(), node, record)
    }
}

// ---- The backward walk ----

impl Tensor {
    /// Back-propagates from this one-element tensor (d self / d self = 1) and accumulates the gradients of
    /// every leaf that requires one into its `.grad()`.
    pub fn backward(&self) {
        assert_eq!(
            self.numel(),
            1,
            "backward: expected a one-element tensor, got shape {:?}",
            self.shape()
        );
        let seed = Tensor::ones(self.shape(), self.device());
        self.backward_with(seed);
    }

    /// Back-propagates an explicit output gradient `grad` (same shape as `self`).
    pub fn backward_with(&self, grad: Tensor) {
        assert_eq!(
            grad.shape(),
            self.shape(),
            "backward_with: gradient shape mismatch"
        );
        if !self.requires_grad() {
            panic!("backward: this tensor does not require a gradient (no parameter or input reached it)");
        }
        no_grad(|| {
            let order = topo_order(self);
            let mut grads: HashMap<u64, Tensor> = HashMap::new();
            grads.insert(self.id(), grad);
            let mut leaves: Vec<Tensor> = Vec::new();
            for t in order.iter().rev() {
                let Some(g) = grads.remove(&t.id()) else {
                    continue;
                };
                match t.node() {
                    None => {
                        leaves.push(t.clone());
                        grads.insert(t.id(), g);
                    }
                    Some(node) => {
                        let gs = node.backward.backward(&g);
                        assert_eq!(
                            gs.len(),
                            node.inputs.len(),
                            "{}: backward returned a wrong count",
                            node.backward.name()
                        );
                        for (input, gi) in node.inputs.iter().zip(gs) {
                            let Some(gi) = gi else { continue };
                            if !input.requires_grad() {
                                continue;
                            }
                            assert_eq!(
                                gi.shape(),
                                input.shape(),
                                "{}: backward produced a gradient of shape {:?} for an input of shape {:?}",
                                node.backward.name(),
                                gi.shape(),
                                input.shape()
                            );
                            accumulate(&mut grads, input.id(), gi);
                        }
                    }
                }
            }
            for leaf in leaves {
                let g = grads.remove(&leaf.id()).expect("leaf gradient");
                let total = match leaf.grad() {
                    Some(old) => &old + &g,
                    None => g,
                };
                leaf.set_grad(Some(total));
            }
        })
    }
}

fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) {
    match grads.remove(&id) {
        Some(old) => grads.insert(id, &old + &g),
        None => grads.insert(id, g),
    };
}

/// Tensors reachable from `root` through autograd nodes, each after all of its inputs.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS (deep U-Nets would overflow a recursive one).
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for input in &node.inputs {
                if input.requires_grad() && !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}
