//! The engine: tensors on the GPU or the CPU, WGSL kernels with CPU references, reverse-mode autograd.
//!
//! Layering, bottom up:
//! - [`gpu`]: the wgpu context (adapter, device, queue), the pipeline cache and the pending command encoder;
//!   [`pool`]: the buffer pool; [`kernel`]: a kernel (one WGSL entry point) and the one dispatch path
//!   (`Kernel::dispatch`: bindings, `Params`, the 2-D fold); [`kernels`]: the list of every kernel and its
//!   naga tests; [`limits`]: the adapter's limits or WebGPU's defaults (`SITSGPU_LIMITS`); [`profile`]: the per-kernel profiler the dispatch path feeds; [`trusted`]: shader modules
//!   without naga's runtime checks (the crate's one `unsafe`); [`self_test`]: `sitsgpu info`.
//! - [`storage`] and [`tensor`]: a tensor is a shape plus storage on one [`Device`].
//! - [`ops`]: one file per op (forward + backward, CPU + GPU); [`autograd`]: the tape and `backward()`.
//! - [`precision`]: `--precision fp32|mixed` (saved activations in half precision under mixed);
//!   [`recompute`]: recomputing cheap layers in the backward pass instead of saving them; [`scoped`]: the
//!   per-thread settings they and autograd set for a scope.
//! - [`testing`]: tolerances, gradcheck, GPU skip (test support, public for `tests/` and benches);
//!   [`decisions`]: the recorder of ReLU / max decisions within float32 noise, and their flips (diagnostics
//!   of parity failures, off unless a test turns it on).
//!
//! Gradient accumulation convention: backward passes *return* gradients (`=`); only leaves accumulate into
//! their `.grad()` (`+=`), as llm.c's `+=` into `grads` and PyTorch's `.grad`.

pub mod autograd;
pub mod decisions;
pub mod error;
pub mod gpu;
pub mod kernel;
pub mod kernels;
pub mod limits;
pub mod ops;
pub mod pool;
pub mod precision;
pub mod profile;
pub mod real;
pub mod recompute;
pub mod rng;
pub mod scoped;
pub mod self_test;
pub mod shape;
pub mod storage;
pub mod tensor;
pub mod testing;
pub mod trusted;

pub use autograd::no_grad;
pub use error::{Error, Result};
pub use gpu::Gpu;
pub use precision::{with_precision, Precision};
pub use storage::Device;
pub use tensor::Tensor;
