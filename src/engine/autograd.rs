//! Reverse-mode automatic differentiation, define-by-run.
//!
//! While gradients are recorded (the default; see [`no_grad`]), every op whose inputs require a gradient
//! stores a [`Node`] on its output: the op's [`Backward`] (holding what it saved for the backward pass) and
//! its inputs. The nodes form the tape of the forward pass. [`Tensor::backward`] walks it in reverse
//! topological order from a scalar, asks each node for the gradients of its inputs, sums the gradients that
//! reach the same tensor, and finally adds each leaf's gradient into its `.grad()` slot.
//!
//! Memory: a node keeps edges to its inputs, not their data ([`crate::engine::tensor::Edge`]); what stays
//! alive until the backward pass is what each op's backward saved. The walk drops each op's backward as soon
//! as it has run, and each gradient as soon as it has been passed on, so activations and gradients are freed
//! progressively; walking the same graph twice is an error (PyTorch's `retain_graph=False`).
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

use crate::engine::precision::{with_precision, Precision};
use crate::engine::storage::Storage;
use crate::engine::tensor::Tensor;
pub use crate::engine::tensor::{Backward, Edge, Node};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record autograd nodes on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` with recording on (a recomputation inside a backward pass, `engine::recompute`). Restores the
/// previous state afterwards, also on panic.
pub fn with_grad<R>(f: impl FnOnce() -> R) -> R {
    crate::engine::scoped::with_set(&GRAD_ENABLED, true, f)
}

/// Runs `f` without recording (evaluation, optimizer steps). Restores the previous state afterwards, also on
/// panic.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    crate::engine::scoped::with_set(&GRAD_ENABLED, false, f)
}

/// Whether an op on `inputs` records an autograd node: gradients are being recorded on this thread and some
/// input requires one.
pub fn records(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
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
        if records(inputs) {
            let node = Node::new(Box::new(backward), inputs);
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
        if !records(inputs) {
            return self.clone();
        }
        let node = Node::new(Box::new(backward), inputs);
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
        let node = record.then(|| Arc::new(Node::new(Box::new(backward), &[self])));
        let view = Tensor::wrap(shape.to_vec(), self.shared_storage(), node, record);
        // A view of a recomputable tensor is recomputable: the same recipe, reshaped.
        let shape = shape.to_vec();
        self.pass_recipe(&view, move |t| t.reshape(&shape));
        view
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
        self.check_backward(&grad);
        walk(Edge::to(self), grad);
    }

    /// [`Tensor::backward_with`] that lets go of this tensor's handle before walking: when no one else
    /// holds it, its data is freed as soon as the op that saved it has run its backward (a recomputed
    /// node's inner walk, `engine::recompute`).
    pub(crate) fn backward_owned(self, grad: Tensor) {
        self.check_backward(&grad);
        let edge = Edge::to(&self);
        drop(self);
        walk(edge, grad);
    }

    fn check_backward(&self, grad: &Tensor) {
        assert_eq!(
            grad.shape(),
            self.shape(),
            "backward_with: gradient shape mismatch"
        );
        if !self.requires_grad() {
            panic!("backward: this tensor does not require a gradient (no parameter or input reached it)");
        }
    }
}

/// The backward walk from `root` with its gradient `grad`: each node's backward runs once, after every
/// node that feeds it a gradient, and the leaves' `.grad()` are filled at the end.
fn walk(root: Edge, grad: Tensor) {
    // What a backward pass computes is used at once: a recomputation inside it saves float32, whatever the
    // step's precision (engine::precision).
    with_precision(Precision::Fp32, || {
        no_grad(|| {
            let root_id = root.id;
            let mut order = topo_order(&root);
            drop(root);
            let mut grads: HashMap<u64, Tensor> = HashMap::new();
            grads.insert(root_id, grad);
            let mut leaves: Vec<Tensor> = Vec::new();
            while let Some(edge) = order.pop() {
                let Some(g) = grads.remove(&edge.id) else {
                    continue;
                };
                match &edge.node {
                    None => {
                        if let Some(leaf) = edge.leaf {
                            leaves.push(leaf);
                            grads.insert(edge.id, g);
                        }
                    }
                    Some(node) => {
                        let Some(backward) = node.take_backward() else {
                            panic!(
                                "backward: the graph through `{}` was already walked by an earlier backward \
                                 (its saved tensors are freed after one pass); run the forward pass again",
                                node.name()
                            )
                        };
                        let gs = backward.backward_owned(g);
                        drop(backward);
                        assert_eq!(
                            gs.len(),
                            node.inputs.len(),
                            "{}: backward returned a wrong count",
                            node.name()
                        );
                        for (input, gi) in node.inputs.iter().zip(gs) {
                            let Some(gi) = gi else { continue };
                            if !input.requires_grad {
                                continue;
                            }
                            assert_eq!(
                                gi.shape(),
                                &input.shape[..],
                                "{}: backward produced a gradient of shape {:?} for an input of shape {:?}",
                                node.name(),
                                gi.shape(),
                                input.shape
                            );
                            accumulate(&mut grads, input.id, gi);
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
    })
}

fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) {
    match grads.remove(&id) {
        Some(old) => grads.insert(id, &old + &g),
        None => grads.insert(id, g),
    };
}

/// Edges reachable from `root` through autograd nodes, each after all of its inputs.
fn topo_order(root: &Edge) -> Vec<Edge> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS (deep U-Nets would overflow a recursive one).
    let mut stack: Vec<(Edge, bool)> = vec![(root.clone(), false)];
    while let Some((e, expanded)) = stack.pop() {
        if expanded {
            order.push(e);
            continue;
        }
        if !seen.insert(e.id) {
            continue;
        }
        let inputs: Vec<Edge> = e
            .node
            .as_ref()
            .map(|n| {
                n.inputs
                    .iter()
                    .filter(|i| i.requires_grad && !seen.contains(&i.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        stack.push((e, true));
        stack.extend(inputs.into_iter().map(|i| (i, false)));
    }
    order
}
