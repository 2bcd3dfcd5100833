//! # sitsgpu
//!
//! Satellite image time series models (U-TAE, U-TAE + PaPs, PSE + L-TAE and their baselines), trained and run
//! on any GPU through wgpu, with hand-written WGSL kernels, each checked against a plain-Rust CPU reference.
//!
//! Layering (read in this order):
//! 1. [`engine`]: tensors on the GPU or CPU, the op quartet (WGSL forward, WGSL backward, CPU reference,
//!    tests), reverse-mode autograd. Start with `engine/tensor.rs`, `engine/autograd.rs`, then the tutorial
//!    op `engine/ops/elementwise/relu.rs` with `shaders/elementwise/relu.wgsl`, then `engine/gpu.rs` and `engine/ops/linalg/matmul.rs`.
//! 2. [`shaders`]: the WGSL files and their registry, validated by naga without a GPU.
//! 3. [`layers`]: PyTorch-like modules whose parameter names match PyTorch `state_dict` keys.
//! 4. [`models`]: the models of the papers. 5. [`train`]: the optimizer and training loops.
//! 6. [`data`]: file formats and datasets.
//!
//! Shape convention everywhere: row-major, outermost first, PyTorch order — (B, T, C, H, W).

pub mod data;
pub mod engine;
pub mod layers;
pub mod models;
pub mod shaders;
pub mod train;

pub use engine::{no_grad, Device, Error, Result, Tensor};
