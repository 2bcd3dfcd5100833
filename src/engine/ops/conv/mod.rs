//! Convolutions: conv2d as an implicit GEMM (with its input and weight gradients), the transposed 2-D
//! convolution built from conv2d's kernels, and the 3-D convolutions composed from both.

pub mod conv2d;
pub mod conv3d;
pub mod conv_transpose2d;
