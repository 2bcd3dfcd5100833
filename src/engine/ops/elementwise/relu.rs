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
//! 4. **Tests**: an exact-value case, an f64 gradcheck (below), and a row in `tests/gpu_parity/main.rs`.
//!
//! One extra, for memory: [`Tensor::relu_owned`] takes its input by value and, when no one else holds it,
//! writes the result over it (`relu_inplace.wgsl`); its backward likewise writes dx over a gradient no one
//! else holds (`relu_backward_inplace.wgsl`, through [`Backward::backward_owned`]).

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
/// relu_inplace.wgsl: y (n) → max(y, 0) written over it. Two bindings: y, params.
pub const RELU_INPLACE: Kernel = Kernel::new::<ParamsN>(&shaders::RELU_INPLACE, "relu_inplace", 2);
/// relu_backward_inplace.wgsl: y (n), g (n) = dy → dx written over g.
pub const RELU_BACKWARD_INPLACE: Kernel =
    Kernel::new::<ParamsN>(&shaders::RELU_BACKWARD_INPLACE, "relu_backward_inplace", 3);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[RELU, RELU_BACKWARD, RELU_INPLACE, RELU_BACKWARD_INPLACE];

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

/// Launches relu_inplace.wgsl: y (n) ← max(y, 0).
pub fn gpu_forward_inplace(y: &GpuStorage, n: usize) {
    RELU_INPLACE.dispatch(y.gpu, &[y.buffer()], &ParamsN::new(n), Grid::threads(n));
}

/// Launches relu_backward_inplace.wgsl: g (n) ← dx from y (n) and g = dy.
pub fn gpu_backward_inplace(y: &GpuStorage, g: &GpuStorage, n: usize) {
    let bufs = [y.buffer(), g.buffer()];
    RELU_BACKWARD_INPLACE.dispatch(y.gpu, &bufs, &ParamsN::new(n), Grid::threads(n));
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

    /// [`Tensor::relu`] that may write its result over its input: on the GPU, when this handle is the only
    /// one to the tensor and its storage (no backward saved it, no view or caller shares it), `relu_inplace`
    /// overwrites it and the output takes over its storage — one activation less at the peak. Otherwise, and
    /// on the CPU, it is `relu()`. The same numbers either way; the backward may likewise write dx over the
    /// incoming gradient when nothing else holds that (`relu_backward_inplace`).
    pub fn relu_owned(self) -> Tensor {
        if self.device() != Device::Gpu || decisions::active() || !self.is_sole_handle() {
            return self.relu();
        }
        gpu_forward_inplace(self.gpu_storage("relu"), self.numel());
        let y = Tensor::wrap(self.shape().to_vec(), self.shared_storage(), None, false);
        if !(is_grad_enabled() && self.requires_grad()) {
            return y;
        }
        let back = ReluBackward {
            x: y.clone(),
            site: None,
        };
        y.attach_op(&[&self], back)
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
    fn backward_owned(&self, dy: Tensor) -> Vec<Option<Tensor>> {
        let x = &self.x;
        if dy.device() != Device::Gpu || self.site.is_some() || !dy.is_sole_handle() {
            return self.backward(&dy);
        }
        gpu_backward_inplace(x.gpu_storage("relu"), dy.gpu_storage("relu"), x.numel());
        vec![Some(dy)]
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
    fn relu_owned_writes_over_a_sole_input_on_the_gpu() {
        let Some(_) = crate::engine::testing::gpu_or_skip("relu_owned in place") else {
            return;
        };
        let x = Tensor::from_vec(vec![-1.0, 2.0, -3.0, 4.0], &[4], Device::Gpu).requires_grad_();
        let t = &x * 1.0;
        let at = std::sync::Arc::as_ptr(&t.shared_storage());
        let y = t.relu_owned();
        assert_eq!(
            at,
            std::sync::Arc::as_ptr(&y.shared_storage()),
            "not in place"
        );
        assert_eq!(y.to_vec(), vec![0.0, 2.0, 0.0, 4.0]);
        (&y * 3.0).sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 3.0, 0.0, 3.0]);
        // A tensor someone else holds is left alone.
        let kept = &x * 1.0;
        let y = kept.clone().relu_owned();
        assert_eq!(kept.to_vec(), vec![-1.0, 2.0, -3.0, 4.0]);
        assert_eq!(y.to_vec(), vec![0.0, 2.0, 0.0, 4.0]);
    }

    #[test]
    fn autograd_on_cpu_tensors() {
        let x = Tensor::from_vec(vec![-1.0, 2.0, 3.0], &[3], Device::Cpu).requires_grad_();
        let y = x.relu().sum_all();
        y.backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 1.0, 1.0]);
    }
}
