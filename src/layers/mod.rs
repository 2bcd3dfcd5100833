//! Layers: PyTorch-like modules over [`Tensor`], whose named parameters carry PyTorch `state_dict` names so
//! that weights load from and save to the original checkpoints one to one.
//!
//! A layer holds its parameters as leaf tensors that require a gradient; `named_parameters` lists them with
//! their `state_dict` key (prefix + local name).

pub mod linear;

pub use linear::Linear;

use crate::engine::Tensor;

/// A module with named parameters.
pub trait Module {
    /// `(state_dict key, parameter)` pairs, keys prefixed with `prefix` (e.g. "mlp.0.").
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)>;

    /// The parameters, in `named_parameters` order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters("")
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }
}
