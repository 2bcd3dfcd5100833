//! Elementwise ops: ReLU, the unary family (leaky ReLU, sigmoid, tanh, exp, log, sqrt, softplus, scalars), the
//! broadcasting binary family, seeded inverted dropout and masked fill — one thread per element; and the half
//! precision storage of tensors saved under `--precision mixed` ([`half`]).

pub mod binary;
pub mod dropout;
pub mod half;
pub mod masked_fill;
pub mod relu;
pub mod unary;
