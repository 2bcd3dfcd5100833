//! Layers: PyTorch-like modules over [`Tensor`], whose named parameters and buffers carry PyTorch
//! `state_dict` names so that weights load from and save to the original checkpoints one to one.
//!
//! A layer holds its parameters as leaf tensors that require a gradient and its buffers (BatchNorm running
//! statistics) as plain tensors updated in place; `named_parameters` / `named_buffers` list them with their
//! `state_dict` key (prefix + local name). Forward passes take a [`Ctx`]: training or evaluation mode and
//! the source of dropout seeds.

pub mod attention;
pub mod conv;
pub mod conv3d;
pub mod conv_rnn;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod positional_encoding;
pub mod state;

use std::cell::Cell;

pub use conv::{Conv2d, ConvTranspose2d};
pub use conv3d::{Conv3d, ConvTranspose3d};
pub use conv_rnn::{BConvLstm, ConvGru, ConvLstm};
pub use linear::Linear;
pub use mlp::Mlp;
pub use norm::{Act, BatchNorm, GroupNorm, Norm, NormKind};

use crate::engine::Tensor;

/// A module with named parameters and buffers.
pub trait Module {
    /// `(state_dict key, parameter)` pairs, keys prefixed with `prefix` (e.g. "mlp.0.").
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)>;

    /// `(state_dict key, buffer)` pairs (running statistics, `num_batches_tracked` as a one-element f32
    /// tensor). Default: none.
    fn named_buffers(&self, _prefix: &str) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The parameters, in `named_parameters` order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters("")
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Number of trainable scalars (PyTorch's `sum(p.numel() for p in parameters() if p.requires_grad)`).
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }
}

/// The mode of a forward pass: training (batch statistics, dropout on) or evaluation, and the dropout seeds.
pub struct Ctx {
    /// Training mode.
    pub training: bool,
    /// Whether dropout is active (training mode only). Off reproduces PyTorch runs with every `nn.Dropout`
    /// at p = 0 (the fixtures' train steps).
    pub dropout: bool,
    /// Evaluation without autograd runs a batch whose input is larger than this (bytes; [`EVAL_SPLIT_BYTES`]
    /// by default, `usize::MAX` never, 0 one sample at a time) in parts whose input is within it: the
    /// semantic models' peak memory is then a part's feature maps (`models::semantic::SemanticModel::forward`).
    pub split_input_bytes: usize,
    seed: Cell<u64>,
}

/// The default [`Ctx::split_input_bytes`]: 64 MiB of input (a batch of 4 patches of 26 dates or more at
/// 128 × 128).
pub const EVAL_SPLIT_BYTES: usize = 64 << 20;

impl Ctx {
    /// Evaluation mode (running statistics, no dropout).
    pub fn eval() -> Self {
        Ctx {
            training: false,
            dropout: false,
            split_input_bytes: EVAL_SPLIT_BYTES,
            seed: Cell::new(0),
        }
    }

    /// The same mode with another [`Ctx::split_input_bytes`].
    pub fn split_above(mut self, bytes: usize) -> Self {
        self.split_input_bytes = bytes;
        self
    }

    /// Training mode; dropout masks are drawn from `seed` onwards (one seed per dropout call).
    pub fn train(seed: u64) -> Self {
        Ctx {
            training: true,
            dropout: true,
            split_input_bytes: EVAL_SPLIT_BYTES,
            seed: Cell::new(seed),
        }
    }

    /// Training mode with every dropout disabled (BatchNorm still uses batch statistics).
    pub fn train_without_dropout() -> Self {
        Ctx {
            training: true,
            dropout: false,
            split_input_bytes: EVAL_SPLIT_BYTES,
            seed: Cell::new(0),
        }
    }

    /// Dropout probability `p` in this mode (0 when dropout is off).
    pub fn dropout_p(&self, p: f32) -> f32 {
        if self.training && self.dropout {
            p
        } else {
            0.0
        }
    }

    /// A fresh 32-bit seed for the next dropout mask.
    pub fn next_seed(&self) -> u32 {
        let s = self.seed.get();
        self.seed.set(s.wrapping_add(1));
        crate::engine::rng::Rng::new(s).next_u64() as u32
    }
}

/// Collects `(name, tensor)` of sub-modules under `prefix.<child>.`.
pub fn prefixed(prefix: &str, child: &str) -> String {
    format!("{prefix}{child}.")
}
