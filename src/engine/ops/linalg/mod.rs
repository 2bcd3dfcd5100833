//! Dense linear algebra: the batched, tiled matrix product (the kernel every linear layer and the attention
//! projections run on).

pub mod matmul;
