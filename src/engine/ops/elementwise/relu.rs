//! ReLU, the tutorial op: read this file first to see how every op is built.
//!
//! Math: `y = max(x, 0)`. Derivative: `dy/dx = 1` where `x > 0`, `0` where `x < 0`; at the kink `x = 0` we
//! use 0, as PyTorch does. Saved for backward: the output `y` (`y > 0` exactly where `x > 0`, and the
//! next op usually saves `y` anyway, so the input can be freed). Shapes: any; `y`, `dy`, `dx` have `x`'s shape.
//!
//! The four pieces of every op, in order:
//! 1. **CPU reference**: plain loops, generic over f32/f64 ([`Real`]) so the gradient check runs in f64.
//!    It is the truth the GPU is checked against.
//! 2. **GPU**: `relu.wgsl` (forward) and `relu_backward.wgsl` (backward), declared as [`Kernel`]s (file,
//!    entry point, bindings, `Params` type) and launched through [`Kernel::dispatch`], the one dispatch path,
//!    with a `#[repr(C)]` `Params` that mirrors the shader's `struct Params`.
//! 3. **Autograd**: `Tensor::relu` runs the forward on the tensor's device and records a [`Backward`] that
//!    saved `y` (the output, through [`Tensor::attach_op`]); its `backward` runs the backward on the same device.
//! 4. **Tests**: an exact-value case, an f64 gradcheck (below), and a row in `tests/gpu_parity.rs`.

use crate::engine::autograd::{is_grad_enabled, Backward};
use crate::engine::decisions;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::ParamsN;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// relu.wgsl: x (n) → y (n). Three bindings: x, y, params.
pub const RELU: Kernel = Kernel::new::<ParamsN>(&shaders::RELU, "relu", 3);
/// relu_backward.wgsl: x (n), dy (n) → dx (n).
pub const RELU_BACKWARD: Kernel =
    Kernel::new::<ParamsN>(&shaders::RELU_BACKWARD, "relu_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[RELU, RELU_BACKWARD];

// ---- CPU reference ----

/// `y[i] = max(x[i], 0)`. x: (n) → y: (n).
pub fn cpu_forward<T: Real>(x: &[T]) -> Vec<T> {
    x.iter()
        .map(|&v| if v > T::zero() { v } else { T::zero() })
        .collect()
}

/// `dx[i] = dy[i]` where `x[i] > 0`, else 0. x, dy: (n) → dx: (n).
pub fn cpu_backward<T: Real>(x: &[T], dy: &[T]) -> Vec<T> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > T::zero() { g } else { T::zero() })
        .collect()
}

// ---- GPU ----

/// Launches relu.wgsl: x (n) → y (n).
pub fn gpu_forward(x: &GpuStorage, n: usize) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, n, "relu");
    let bufs = [x.buffer(), y.buffer()];
    RELU.dispatch(x.gpu, &bufs, &ParamsN::new(n), Grid::threads(n));
    y
}

/// Launches relu_backward.wgsl: x (n), dy (n) → dx (n).
pub fn gpu_backward(x: &GpuStorage, dy: &GpuStorage, n: usize) -> GpuStorage {
    let dx = GpuStorage::alloc(x.gpu, n, "relu_backward");
    let bufs = [x.buffer(), dy.buffer(), dx.buffer()];
    RELU_BACKWARD.dispatch(x.gpu, &bufs, &ParamsN::new(n), Grid::threads(n));
    dx
}

// ---- Autograd ----

impl Tensor {
    /// `max(self, 0)` elementwise.
    pub fn relu(&self) -> Tensor {
        // Diagnostics only (engine::decisions): while a recorder runs, the site is recorded and the backward
        // may be handed an input with chosen decisions flipped; otherwise this is one thread-local read.
        let hook = decisions::on_relu(self);
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data("relu"))),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage("relu"), self.numel())),
        };
        let y = Tensor::from_storage(self.shape(), storage);
        if !(is_grad_enabled() && self.requires_grad()) {
            return y;
        }
        // The backward needs only the sign: `y > 0` exactly where `x > 0`, so it saves the output (which the
        // next op usually saves too) and the input can be freed (PyTorch's ReLU also saves its result).
        let back = ReluBackward {
            x: hook.backward_input.unwrap_or_else(|| y.clone()),
            site: hook.site,
        };
        y.attach_op(&[self], back)
    }
}

struct ReluBackward {
    /// The output (or, under the decision recorder, an input with chosen decisions flipped): only its sign
    /// is used.
    x: Tensor,
    /// The decision recorder's site (diagnostics only, `engine::decisions`).
    site: Option<usize>,
}

impl Backward for ReluBackward {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        decisions::on_backward(self.site, dy);
        let x = &self.x;
        let storage = match Tensor::same_device("relu_backward", &[x, dy]) {
            Device::Cpu => {
                Tensor::cpu_storage(cpu_backward(&x.cpu_data("relu"), &dy.cpu_data("relu")))
            }
            Device::Gpu => Storage::Gpu(gpu_backward(
                x.gpu_storage("relu"),
                dy.gpu_storage("relu"),
                x.numel(),
            )),
        };
        vec![Some(Tensor::from_storage(x.shape(), storage))]
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // relu(-1.5, 0, 2.25) = (0, 0, 2.25); with dy = (1, 1, 1): dx = (0, 0 [kink], 1).
        assert_eq!(cpu_forward(&[-1.5f32, 0.0, 2.25]), vec![0.0, 0.0, 2.25]);
        assert_eq!(
            cpu_backward(&[-1.5f32, 0.0, 2.25], &[1.0, 1.0, 1.0]),
            vec![0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn gradcheck_f64() {
        // Nudge inputs away from the kink at 0, where the derivative is undefined.
        let x: Vec<f64> = random_vec(17, -1.0, 1.0, 1)
            .into_iter()
            .map(|v| if v.abs() < 0.05 { 0.3 } else { v })
            .collect();
        gradcheck(
            "relu",
            &[x],
            &[],
            |i| cpu_forward(&i[0]),
            |i, g| vec![cpu_backward(&i[0], g)],
        );
    }

    #[test]
    fn autograd_on_cpu_tensors() {
        let x = Tensor::from_vec(vec![-1.0, 2.0, 3.0], &[3], Device::Cpu).requires_grad_();
        let y = x.relu().sum_all();
        y.backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 1.0, 1.0]);
    }
}
