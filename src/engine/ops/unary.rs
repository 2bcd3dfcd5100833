//! The elementwise one-input ops: leaky_relu, sigmoid, tanh, exp, log, sqrt, softplus, and the scalar ops
//! add_scalar, mul_scalar (and neg = mul_scalar(-1)).
//!
//! Math and derivatives (and the tensor the backward saves):
//! - leaky_relu(a): `y = x > 0 ? x : a x`, `dy/dx = x > 0 ? 1 : a` (saves x)
//! - sigmoid: `y = 1 / (1 + e^-x)`, `dy/dx = y (1 - y)` (saves y)
//! - tanh: `dy/dx = 1 - y²` (saves y);  exp: `dy/dx = y` (saves y);  log: `dy/dx = 1/x` (saves x);  sqrt: `dy/dx = 1/(2y)` (saves y)
//! - softplus (beta 1, threshold 20, as PyTorch): `y = x > 20 ? x : ln(1 + e^x)`,
//!   `dy/dx = x > 20 ? 1 : z/(z+1)`, `z = e^x` (saves x)
//! - add_scalar(a): `y = x + a`, `dy/dx = 1` (backward returns dy: no kernel);
//!   mul_scalar(a): `y = a x`, `dy/dx = a` (backward is mul_scalar(dy, a): a composition).
//!
//! Shapes: any; y, dy, dx have x's shape. Kernels: `unary.wgsl` (one entry point per op, `<op>_forward`) and
//! `unary_backward.wgsl` (`<op>_backward`); the family shares one file pair because each op is one line.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{groups, launch};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Threads per workgroup (= `WG` in unary.wgsl and unary_backward.wgsl).
pub const WG: u32 = 256;

/// One op of the family, with its scalar parameter where it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    /// `x > 0 ? x : a x`.
    LeakyRelu(f32),
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// e^x.
    Exp,
    /// ln x.
    Log,
    /// √x.
    Sqrt,
    /// ln(1 + e^x), linear above 20.
    Softplus,
    /// x + a.
    AddScalar(f32),
    /// a x.
    MulScalar(f32),
}

/// Shader `Params` of unary.wgsl / unary_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    a: f32,
    _pad: [u32; 2],
}

/// Softplus threshold (PyTorch default): above it softplus is the identity.
const SOFTPLUS_THRESHOLD: f64 = 20.0;

impl Unary {
    /// Every op of the family with a representative parameter (tests iterate over it).
    pub const ALL: [Unary; 9] = [
        Unary::LeakyRelu(0.01),
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Softplus,
        Unary::AddScalar(1.5),
        Unary::MulScalar(-0.75),
    ];

    /// The op's name (and the stem of its entry points).
    pub fn name(self) -> &'static str {
        match self {
            Unary::LeakyRelu(_) => "leaky_relu",
            Unary::Sigmoid => "sigmoid",
            Unary::Tanh => "tanh",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sqrt => "sqrt",
            Unary::Softplus => "softplus",
            Unary::AddScalar(_) => "add_scalar",
            Unary::MulScalar(_) => "mul_scalar",
        }
    }

    fn param(self) -> f32 {
        match self {
            Unary::LeakyRelu(a) | Unary::AddScalar(a) | Unary::MulScalar(a) => a,
            _ => 0.0,
        }
    }

    /// Whether the backward reads the output y (else the input x).
    pub fn saves_output(self) -> bool {
        matches!(
            self,
            Unary::Sigmoid | Unary::Tanh | Unary::Exp | Unary::Sqrt
        )
    }

    // ---- CPU reference ----

    /// y = f(x) elementwise. x: (n) → y: (n).
    pub fn cpu_forward<T: Real>(self, x: &[T]) -> Vec<T> {
        let a = T::from_f64(self.param() as f64);
        let one = T::one();
        x.iter()
            .map(|&v| match self {
                Unary::LeakyRelu(_) => {
                    if v > T::zero() {
                        v
                    } else {
                        a * v
                    }
                }
                Unary::Sigmoid => one / (one + (-v).exp()),
                Unary::Tanh => v.tanh(),
                Unary::Exp => v.exp(),
                Unary::Log => v.ln(),
                Unary::Sqrt => v.sqrt(),
                Unary::Softplus => {
                    if v.to_f64() > SOFTPLUS_THRESHOLD {
                        v
                    } else {
                        v.exp().ln_1p()
                    }
                }
                Unary::AddScalar(_) => v + a,
                Unary::MulScalar(_) => v * a,
            })
            .collect()
    }

    /// dx from the saved tensor s (x, or y when [`Unary::saves_output`]) and dy. All (n).
    pub fn cpu_backward<T: Real>(self, s: &[T], dy: &[T]) -> Vec<T> {
        let a = T::from_f64(self.param() as f64);
        let one = T::one();
        s.iter()
            .zip(dy)
            .map(|(&v, &g)| match self {
                Unary::LeakyRelu(_) => {
                    if v > T::zero() {
                        g
                    } else {
                        g * a
                    }
                }
                Unary::Sigmoid => g * v * (one - v),
                Unary::Tanh => g * (one - v * v),
                Unary::Exp => g * v,
                Unary::Log => g / v,
                Unary::Sqrt => g * T::from_f64(0.5) / v,
                Unary::Softplus => {
                    if v.to_f64() > SOFTPLUS_THRESHOLD {
                        g
                    } else {
                        let z = v.exp();
                        g * z / (z + one)
                    }
                }
                Unary::AddScalar(_) => g,
                Unary::MulScalar(_) => g * a,
            })
            .collect()
    }

    // ---- GPU ----

    /// Launches `<op>_forward` (or add_scalar / mul_scalar) of unary.wgsl. x (n) → y (n).
    pub fn gpu_forward(self, x: &GpuStorage, n: usize) -> GpuStorage {
        let entry = match self {
            Unary::LeakyRelu(_) => "leaky_relu_forward",
            Unary::Sigmoid => "sigmoid_forward",
            Unary::Tanh => "tanh_forward",
            Unary::Exp => "exp_forward",
            Unary::Log => "log_forward",
            Unary::Sqrt => "sqrt_forward",
            Unary::Softplus => "softplus_forward",
            Unary::AddScalar(_) => "add_scalar",
            Unary::MulScalar(_) => "mul_scalar",
        };
        let y = GpuStorage::alloc(x.gpu, n, entry);
        let p = Params {
            n: n as u32,
            a: self.param(),
            _pad: [0; 2],
        };
        launch(
            x.gpu,
            &shaders::UNARY,
            entry,
            &[x.buffer(), y.buffer()],
            &p,
            groups(n, WG),
        );
        y
    }

    /// Launches `<op>_backward` of unary_backward.wgsl (the ops that have one). s, dy (n) → dx (n).
    pub fn gpu_backward(self, s: &GpuStorage, dy: &GpuStorage, n: usize) -> GpuStorage {
        let entry = match self {
            Unary::LeakyRelu(_) => "leaky_relu_backward",
            Unary::Sigmoid => "sigmoid_backward",
            Unary::Tanh => "tanh_backward",
            Unary::Exp => "exp_backward",
            Unary::Log => "log_backward",
            Unary::Sqrt => "sqrt_backward",
            Unary::Softplus => "softplus_backward",
            Unary::AddScalar(_) | Unary::MulScalar(_) => {
                unreachable!("scalar ops have composed backwards (see the module doc)")
            }
        };
        let dx = GpuStorage::alloc(s.gpu, n, entry);
        let p = Params {
            n: n as u32,
            a: self.param(),
            _pad: [0; 2],
        };
        let bufs = [s.buffer(), dy.buffer(), dx.buffer()];
        launch(
            s.gpu,
            &shaders::UNARY_BACKWARD,
            entry,
            &bufs,
            &p,
            groups(n, WG),
        );
        dx
    }
}

// ---- Autograd ----

/// Applies `op` to `x` on its device and records the backward.
pub fn apply(op: Unary, x: &Tensor) -> Tensor {
    let storage = match x.device() {
        Device::Cpu => Tensor::cpu_storage(op.cpu_forward(&x.cpu_data(op.name()))),
        Device::Gpu => Storage::Gpu(op.gpu_forward(x.gpu_storage(op.name()), x.numel())),
    };
    let y = Tensor::from_storage(x.shape(), storage);
    // Saving y itself (a plain tensor sharing the output's storage) avoids a reference cycle.
    let saved = if op.saves_output() {
        y.clone()
    } else {
        x.clone()
    };
    y.attach_op(&[x], UnaryBackward { op, saved })
}

struct UnaryBackward {
    op: Unary,
    saved: Tensor,
}

impl Backward for UnaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let dx = match self.op {
            Unary::AddScalar(_) => dy.clone(),
            Unary::MulScalar(a) => apply(Unary::MulScalar(a), dy),
            op => {
                let s = &self.saved;
                let storage = match Tensor::same_device(op.name(), &[s, dy]) {
                    Device::Cpu => Tensor::cpu_storage(
                        op.cpu_backward(&s.cpu_data(op.name()), &dy.cpu_data(op.name())),
                    ),
                    Device::Gpu => Storage::Gpu(op.gpu_backward(
                        s.gpu_storage(op.name()),
                        dy.gpu_storage(op.name()),
                        s.numel(),
                    )),
                };
                Tensor::from_storage(s.shape(), storage)
            }
        };
        vec![Some(dx)]
    }
}
