//! Dense linear algebra: the batched, tiled matrix product (the kernel every linear layer and the attention
//! projections run on), and its half-precision form for `--precision mixed` (f16 tiles or cooperative
//! matrices where the adapter has them).

pub mod half_matmul;
pub mod matmul;
