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
//!
//! Size: over the 400-line budget because the nine ops are one family on one kernel pair, with one CPU
//! reference `match` each way; a file per op would repeat the launcher and the autograd nine times.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

// One kernel per entry point: x (n) → y (n) in unary.wgsl (3 bindings), s (n), dy (n) → dx (n) in
// unary_backward.wgsl (4 bindings).
/// unary.wgsl `leaky_relu_forward`.
pub const LEAKY_RELU_FORWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY, "leaky_relu_forward", 3);
/// unary.wgsl `sigmoid_forward`.
pub const SIGMOID_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "sigmoid_forward", 3);
/// unary.wgsl `tanh_forward`.
pub const TANH_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "tanh_forward", 3);
/// unary.wgsl `exp_forward`.
pub const EXP_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "exp_forward", 3);
/// unary.wgsl `log_forward`.
pub const LOG_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "log_forward", 3);
/// unary.wgsl `sqrt_forward`.
pub const SQRT_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "sqrt_forward", 3);
/// unary.wgsl `softplus_forward`.
pub const SOFTPLUS_FORWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY, "softplus_forward", 3);
/// unary.wgsl `add_scalar`.
pub const ADD_SCALAR: Kernel = Kernel::new::<Params>(&shaders::UNARY, "add_scalar", 3);
/// unary.wgsl `mul_scalar`.
pub const MUL_SCALAR: Kernel = Kernel::new::<Params>(&shaders::UNARY, "mul_scalar", 3);
/// unary_backward.wgsl `leaky_relu_backward`.
pub const LEAKY_RELU_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "leaky_relu_backward", 4);
/// unary_backward.wgsl `sigmoid_backward`.
pub const SIGMOID_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "sigmoid_backward", 4);
/// unary_backward.wgsl `tanh_backward`.
pub const TANH_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "tanh_backward", 4);
/// unary_backward.wgsl `exp_backward`.
pub const EXP_BACKWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "exp_backward", 4);
/// unary_backward.wgsl `log_backward`.
pub const LOG_BACKWARD: Kernel = Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "log_backward", 4);
/// unary_backward.wgsl `sqrt_backward`.
pub const SQRT_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "sqrt_backward", 4);
/// unary_backward.wgsl `softplus_backward`.
pub const SOFTPLUS_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::UNARY_BACKWARD, "softplus_backward", 4);
/// This family's kernels.
pub const KERNELS: &[Kernel] = &[
    LEAKY_RELU_FORWARD,
    SIGMOID_FORWARD,
    TANH_FORWARD,
    EXP_FORWARD,
    LOG_FORWARD,
    SQRT_FORWARD,
    SOFTPLUS_FORWARD,
    ADD_SCALAR,
    MUL_SCALAR,
    LEAKY_RELU_BACKWARD,
    SIGMOID_BACKWARD,
    TANH_BACKWARD,
    EXP_BACKWARD,
    LOG_BACKWARD,
    SQRT_BACKWARD,
    SOFTPLUS_BACKWARD,
];

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

    /// Its entry point of unary.wgsl.
    pub fn forward_kernel(self) -> Kernel {
        match self {
            Unary::LeakyRelu(_) => LEAKY_RELU_FORWARD,
            Unary::Sigmoid => SIGMOID_FORWARD,
            Unary::Tanh => TANH_FORWARD,
            Unary::Exp => EXP_FORWARD,
            Unary::Log => LOG_FORWARD,
            Unary::Sqrt => SQRT_FORWARD,
            Unary::Softplus => SOFTPLUS_FORWARD,
            Unary::AddScalar(_) => ADD_SCALAR,
            Unary::MulScalar(_) => MUL_SCALAR,
        }
    }

    /// Its entry point of unary_backward.wgsl; `None` for the scalar ops, whose backwards are compositions.
    pub fn backward_kernel(self) -> Option<Kernel> {
        match self {
            Unary::LeakyRelu(_) => Some(LEAKY_RELU_BACKWARD),
            Unary::Sigmoid => Some(SIGMOID_BACKWARD),
            Unary::Tanh => Some(TANH_BACKWARD),
            Unary::Exp => Some(EXP_BACKWARD),
            Unary::Log => Some(LOG_BACKWARD),
            Unary::Sqrt => Some(SQRT_BACKWARD),
            Unary::Softplus => Some(SOFTPLUS_BACKWARD),
            Unary::AddScalar(_) | Unary::MulScalar(_) => None,
        }
    }

    fn params(self, n: usize) -> Params {
        Params {
            n: u32::try_from(n).expect("element count overflows u32"),
            a: self.param(),
            _pad: [0; 2],
        }
    }

    /// Launches the op's entry point of unary.wgsl. x (n) → y (n).
    pub fn gpu_forward(self, x: &GpuStorage, n: usize) -> GpuStorage {
        let k = self.forward_kernel();
        let y = GpuStorage::alloc(x.gpu, n, k.entry);
        let bufs = [x.buffer(), y.buffer()];
        k.dispatch(x.gpu, &bufs, &self.params(n), Grid::threads(n));
        y
    }

    /// Launches `<op>_backward` of unary_backward.wgsl (the ops that have one). s, dy (n) → dx (n).
    pub fn gpu_backward(self, s: &GpuStorage, dy: &GpuStorage, n: usize) -> GpuStorage {
        let k = self
            .backward_kernel()
            .expect("scalar ops have composed backwards (see the module doc)");
        let dx = GpuStorage::alloc(s.gpu, n, k.entry);
        let bufs = [s.buffer(), dy.buffer(), dx.buffer()];
        k.dispatch(s.gpu, &bufs, &self.params(n), Grid::threads(n));
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

impl Tensor {
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        apply(Unary::MulScalar(-1.0), self)
    }
    /// `self + a`.
    pub fn add_scalar(&self, a: f32) -> Tensor {
        apply(Unary::AddScalar(a), self)
    }
    /// `self * a`.
    pub fn mul_scalar(&self, a: f32) -> Tensor {
        apply(Unary::MulScalar(a), self)
    }
    /// `x > 0 ? x : slope * x`.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        apply(Unary::LeakyRelu(slope), self)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        apply(Unary::Sigmoid, self)
    }
    /// tanh.
    pub fn tanh(&self) -> Tensor {
        apply(Unary::Tanh, self)
    }
    /// e^x.
    pub fn exp(&self) -> Tensor {
        apply(Unary::Exp, self)
    }
    /// ln x.
    pub fn log(&self) -> Tensor {
        apply(Unary::Log, self)
    }
    /// √x.
    pub fn sqrt(&self) -> Tensor {
        apply(Unary::Sqrt, self)
    }
    /// ln(1 + e^x) (PyTorch Softplus, beta 1, threshold 20).
    pub fn softplus(&self) -> Tensor {
        apply(Unary::Softplus, self)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // sigmoid(0) = 1/2, tanh(0) = 0, exp(0) = 1, log(1) = 0, sqrt(4) = 2, softplus(0) = ln 2,
        // leaky_relu(-2; 0.5) = -1, add_scalar(3; 1.5) = 4.5, mul_scalar(3; -0.75) = -2.25.
        let one = |op: Unary, x: f64| op.cpu_forward(&[x])[0];
        assert_eq!(one(Unary::Sigmoid, 0.0), 0.5);
        assert_eq!(one(Unary::Tanh, 0.0), 0.0);
        assert_eq!(one(Unary::Exp, 0.0), 1.0);
        assert_eq!(one(Unary::Log, 1.0), 0.0);
        assert_eq!(one(Unary::Sqrt, 4.0), 2.0);
        assert!((one(Unary::Softplus, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(one(Unary::Softplus, 30.0), 30.0); // above the threshold: the identity
        assert_eq!(one(Unary::LeakyRelu(0.5), -2.0), -1.0);
        assert_eq!(one(Unary::AddScalar(1.5), 3.0), 4.5);
        assert_eq!(one(Unary::MulScalar(-0.75), 3.0), -2.25);
        // Derivatives: sigmoid'(0) = y (1 - y) = 1/4 (from y = 1/2); log'(2) = 1/2; leaky_relu'(-2) = 0.5.
        assert_eq!(Unary::Sigmoid.cpu_backward(&[0.5], &[1.0])[0], 0.25);
        assert_eq!(Unary::Log.cpu_backward(&[2.0], &[1.0])[0], 0.5);
        assert_eq!(Unary::LeakyRelu(0.5).cpu_backward(&[-2.0], &[1.0])[0], 0.5);
    }

    #[test]
    fn gradcheck_f64_unary_family() {
        for op in Unary::ALL {
            // Positive inputs for log/sqrt; away from leaky_relu's kink; one value above softplus' threshold.
            let mut x = random_vec(13, 0.2, 3.0, 5);
            if matches!(op, Unary::LeakyRelu(_) | Unary::Tanh | Unary::Sigmoid) {
                x.iter_mut().enumerate().for_each(|(i, v)| {
                    if i % 2 == 0 {
                        *v = -*v
                    }
                });
            }
            if op == Unary::Softplus {
                x[0] = 25.0;
            }
            gradcheck(
                op.name(),
                &[x],
                &[],
                |i| op.cpu_forward(&i[0]),
                |i, g| {
                    let y = op.cpu_forward(&i[0]);
                    let s = if op.saves_output() { &y } else { &i[0] };
                    vec![op.cpu_backward(s, g)]
                },
            );
        }
    }

    #[test]
    fn autograd_on_cpu_tensors() {
        // d/dx Σ exp(x) = exp(x); d/dx Σ (2x + 1) = 2 (the scalar ops' composed backwards).
        let x = Tensor::from_vec(vec![0.0, 1.0], &[2], Device::Cpu).requires_grad_();
        x.exp().sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![1.0, 1f32.exp()]);
        let y = Tensor::from_vec(vec![3.0, -1.0], &[2], Device::Cpu).requires_grad_();
        y.mul_scalar(2.0).add_scalar(1.0).sum_all().backward();
        assert_eq!(y.grad().unwrap().to_vec(), vec![2.0, 2.0]);
    }
}
