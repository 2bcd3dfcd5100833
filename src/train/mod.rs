//! Training: the optimizer ([`adam`]) — the training loops, metrics and checkpoints build on it.

pub mod adam;
pub mod predict;

pub use adam::{Adam, AdamConfig};
