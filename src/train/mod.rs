//! Training: the optimizer ([`adam`]) — the training loops, metrics and checkpoints build on it.

pub mod adam;

pub use adam::{Adam, AdamConfig};
