//! Elementwise binary ops with NumPy/PyTorch broadcasting: add, sub, mul, div (and the operators
//! `&a + &b`, `&a - &b`, `&a * &b`, `&a / &b`, `-&a`, `&a * 2.0`, ...).
//!
//! Math: `y[c] = a[c'] ∘ b[c'']` where `c'`, `c''` are the output coordinate read through each operand's
//! broadcast (size-1 axes repeat). Derivatives: `d(a+b) = (1, 1)`, `d(a-b) = (1, -1)`, `d(ab) = (b, a)`,
//! `d(a/b) = (1/b, -a/b²)`. Because an operand may have been broadcast, its gradient is the elementwise
//! gradient **summed over the broadcast axes** (`sum_to`). Saved for backward: both operands for mul and
//! div; only the shapes for add and sub (their derivatives read no value).
//!
//! Kernels: `binary.wgsl` (entry points add, sub, mul, div; strides in `Params`). The backward is a
//! composition of these ops and `reduce_sum` (`Tensor::sum_to`), no kernel of its own.
//! Shapes: a, b broadcastable → y (broadcast shape); da: a's shape, db: b's shape.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{pack8, Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// binary.wgsl `add`: a, b (broadcast through strides) → y.
pub const ADD: Kernel = Kernel::new::<Params>(&shaders::BINARY, "add", 4);
/// binary.wgsl `sub`.
pub const SUB: Kernel = Kernel::new::<Params>(&shaders::BINARY, "sub", 4);
/// binary.wgsl `mul`.
pub const MUL: Kernel = Kernel::new::<Params>(&shaders::BINARY, "mul", 4);
/// binary.wgsl `div`.
pub const DIV: Kernel = Kernel::new::<Params>(&shaders::BINARY, "div", 4);
/// This op's kernels.
pub const KERNELS: &[Kernel] = &[ADD, SUB, MUL, DIV];

/// Which op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
}

impl BinaryOp {
    /// Its entry point of binary.wgsl.
    pub fn kernel(self) -> Kernel {
        match self {
            BinaryOp::Add => ADD,
            BinaryOp::Sub => SUB,
            BinaryOp::Mul => MUL,
            BinaryOp::Div => DIV,
        }
    }

    /// Name and WGSL entry point.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    fn apply<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Shader `Params` of binary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    rank: u32,
    _pad: [u32; 2],
    shape: [[u32; 4]; 2],
    a_strides: [[u32; 4]; 2],
    b_strides: [[u32; 4]; 2],
}

/// The broadcast output shape, or a panic naming the op and both shapes.
pub fn out_shape(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    shape::broadcast(a, b)
        .unwrap_or_else(|| panic!("{op}: expected broadcastable shapes, got {a:?} and {b:?}"))
}

// ---- CPU reference ----

/// y = a ∘ b with broadcasting. a: `a_shape`, b: `b_shape` → y: broadcast shape (returned too).
pub fn cpu_forward<T: Real>(
    op: BinaryOp,
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
) -> (Vec<T>, Vec<usize>) {
    let out = out_shape(op.name(), a_shape, b_shape);
    let (sa, sb) = (
        shape::broadcast_strides(a_shape, &out),
        shape::broadcast_strides(b_shape, &out),
    );
    let y = (0..shape::numel(&out))
        .map(|i| {
            let c = shape::unravel(i, &out);
            let ia: usize = c.iter().zip(&sa).map(|(x, s)| x * s).sum();
            let ib: usize = c.iter().zip(&sb).map(|(x, s)| x * s).sum();
            op.apply(a[ia], b[ib])
        })
        .collect();
    (y, out)
}

/// (da, db) from dy (broadcast shape): elementwise derivative times dy, summed over broadcast axes.
pub fn cpu_backward<T: Real>(
    op: BinaryOp,
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    dy: &[T],
) -> (Vec<T>, Vec<T>) {
    let out = out_shape(op.name(), a_shape, b_shape);
    let (sa, sb) = (
        shape::broadcast_strides(a_shape, &out),
        shape::broadcast_strides(b_shape, &out),
    );
    // Broadcast axes are summed in f64 (a bias gradient sums thousands of rows; PyTorch's CPU sums are
    // pairwise); a position that receives a single term keeps its f32 value exactly.
    let mut da = vec![0f64; a.len()];
    let mut db = vec![0f64; b.len()];
    for (i, &g) in dy.iter().enumerate() {
        let c = shape::unravel(i, &out);
        let ia: usize = c.iter().zip(&sa).map(|(x, s)| x * s).sum();
        let ib: usize = c.iter().zip(&sb).map(|(x, s)| x * s).sum();
        let (x, y) = (a[ia], b[ib]);
        let (ga, gb) = match op {
            BinaryOp::Add => (g, g),
            BinaryOp::Sub => (g, -g),
            BinaryOp::Mul => (g * y, g * x),
            BinaryOp::Div => (g / y, -(g * x) / (y * y)),
        };
        da[ia] += ga.to_f64();
        db[ib] += gb.to_f64();
    }
    (
        da.into_iter().map(T::from_f64).collect(),
        db.into_iter().map(T::from_f64).collect(),
    )
}

// ---- GPU ----

/// Launches binary.wgsl's `op` entry point: a (a_shape), b (b_shape) → y (broadcast shape).
pub fn gpu_forward(
    op: BinaryOp,
    a: &GpuStorage,
    a_shape: &[usize],
    b: &GpuStorage,
    b_shape: &[usize],
) -> (GpuStorage, Vec<usize>) {
    let out = out_shape(op.name(), a_shape, b_shape);
    let n = shape::numel(&out);
    let stride_sets = [
        shape::broadcast_strides(a_shape, &out),
        shape::broadcast_strides(b_shape, &out),
        shape::strides(&out),
    ];
    let (dims, st) = shape::collapse(&out, &stride_sets);
    let p = Params {
        n: n as u32,
        rank: dims.len() as u32,
        _pad: [0; 2],
        shape: pack8(&dims),
        a_strides: pack8(&st[0]),
        b_strides: pack8(&st[1]),
    };
    let y = GpuStorage::alloc(a.gpu, n, op.name());
    let bufs = [a.buffer(), b.buffer(), y.buffer()];
    op.kernel().dispatch(a.gpu, &bufs, &p, Grid::threads(n));
    (y, out)
}

// ---- Autograd ----

/// `a ∘ b` on their (common) device, recorded for backward.
pub fn apply(op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    let (storage, out) = match Tensor::same_device(op.name(), &[a, b]) {
        Device::Cpu => {
            let (y, out) = cpu_forward(
                op,
                &a.cpu_data(op.name()),
                a.shape(),
                &b.cpu_data(op.name()),
                b.shape(),
            );
            (Tensor::cpu_storage(y), out)
        }
        Device::Gpu => {
            let (y, out) = gpu_forward(
                op,
                a.gpu_storage(op.name()),
                a.shape(),
                b.gpu_storage(op.name()),
                b.shape(),
            );
            (Storage::Gpu(y), out)
        }
    };
    let back = BinaryBackward {
        op,
        operands: matches!(op, BinaryOp::Mul | BinaryOp::Div).then(|| (a.clone(), b.clone())),
        shapes: [a.shape().to_vec(), b.shape().to_vec()],
        wants: [a.requires_grad(), b.requires_grad()],
    };
    Tensor::from_op(&out, storage, &[a, b], back)
}

struct BinaryBackward {
    op: BinaryOp,
    /// The operands, for mul and div; add's and sub's derivatives read no value, so nothing of theirs is
    /// kept (a residual sum or a bias add does not hold its inputs until the backward pass).
    operands: Option<(Tensor, Tensor)>,
    /// The operands' shapes.
    shapes: [Vec<usize>; 2],
    /// Whether each operand wants a gradient.
    wants: [bool; 2],
}

impl Backward for BinaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let [a_shape, b_shape] = &self.shapes;
        if dy.device() == Device::Cpu {
            let name = self.op.name();
            // Add and sub kept no operand: their derivatives do not read the values, zeros stand in.
            let (zeros, kept);
            let (a, b): (&[f32], &[f32]) = match &self.operands {
                Some((a, b)) => {
                    kept = (a.cpu_data(name), b.cpu_data(name));
                    (&kept.0, &kept.1)
                }
                None => {
                    zeros = (
                        vec![0.0; shape::numel(a_shape)],
                        vec![0.0; shape::numel(b_shape)],
                    );
                    (&zeros.0, &zeros.1)
                }
            };
            let (da, db) = cpu_backward(self.op, a, a_shape, b, b_shape, &dy.cpu_data(name));
            return vec![
                Some(dy.new_like(da, a_shape)),
                Some(dy.new_like(db, b_shape)),
            ];
        }
        // GPU: compositions of forward ops (recording is off during backward).
        let [need_a, need_b] = self.wants;
        let (da, db) = match (self.op, &self.operands) {
            (BinaryOp::Add, _) => (need_a.then(|| dy.clone()), need_b.then(|| dy.clone())),
            (BinaryOp::Sub, _) => (need_a.then(|| dy.clone()), need_b.then(|| dy.neg())),
            (BinaryOp::Mul, Some((a, b))) => (need_a.then(|| dy * b), need_b.then(|| dy * a)),
            (BinaryOp::Div, Some((a, b))) => (
                need_a.then(|| dy / b),
                need_b.then(|| (&(dy * a) / &(b * b)).neg()),
            ),
            (op, None) => unreachable!("{}: the operands are kept for mul and div", op.name()),
        };
        vec![da.map(|g| g.sum_to(a_shape)), db.map(|g| g.sum_to(b_shape))]
    }
}

impl Tensor {
    /// `self + other` (broadcasting).
    pub fn add(&self, other: &Tensor) -> Tensor {
        apply(BinaryOp::Add, self, other)
    }
    /// `self - other` (broadcasting).
    pub fn sub(&self, other: &Tensor) -> Tensor {
        apply(BinaryOp::Sub, self, other)
    }
    /// `self * other` elementwise (broadcasting).
    pub fn mul(&self, other: &Tensor) -> Tensor {
        apply(BinaryOp::Mul, self, other)
    }
    /// `self / other` elementwise (broadcasting).
    pub fn div(&self, other: &Tensor) -> Tensor {
        apply(BinaryOp::Div, self, other)
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $op:expr) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                apply($op, self, rhs)
            }
        }
    };
}
operator!(Add, add, BinaryOp::Add);
operator!(Sub, sub, BinaryOp::Sub);
operator!(Mul, mul, BinaryOp::Mul);
operator!(Div, div, BinaryOp::Div);

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl std::ops::Add<f32> for &Tensor {
    type Output = Tensor;
    fn add(self, a: f32) -> Tensor {
        self.add_scalar(a)
    }
}

impl std::ops::Mul<f32> for &Tensor {
    type Output = Tensor;
    fn mul(self, a: f32) -> Tensor {
        self.mul_scalar(a)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    /// A recorded sum or difference keeps no handle to its operands (their memory goes when the caller
    /// lets go); a product keeps both. The gradients are the same either way.
    #[test]
    fn add_and_sub_keep_no_operand_mul_keeps_both() {
        let d = Device::Cpu;
        let x = Tensor::rand_uniform(&[3, 4], -1.0, 1.0, 1, d).requires_grad_();
        let bias = Tensor::rand_uniform(&[4], -1.0, 1.0, 2, d).requires_grad_();
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
            x.zero_grad();
            bias.zero_grad();
            let t = &x * 2.0;
            let y = apply(op, &t, &bias);
            assert_eq!(t.is_sole_handle(), op != BinaryOp::Mul, "{}", op.name());
            drop(t);
            (&y * &y).sum_all().backward();
            let (gx, gb) = (x.grad().unwrap().to_vec(), bias.grad().unwrap().to_vec());
            // d/dx (2x ∘ b)² = 2 (2x ∘ b) · 2 · ∂(∘)/∂a; d/db: summed over the 3 rows.
            let (xv, bv) = (x.to_vec(), bias.to_vec());
            for i in 0..12 {
                let (a, b) = (2.0 * xv[i], bv[i % 4]);
                let (v, da) = match op {
                    BinaryOp::Add => (a + b, 1.0),
                    BinaryOp::Sub => (a - b, 1.0),
                    _ => (a * b, b),
                };
                assert!((gx[i] - 4.0 * v * da).abs() < 1e-5, "{}", op.name());
            }
            for j in 0..4 {
                let want: f32 = (0..3)
                    .map(|r| {
                        let (a, b) = (2.0 * xv[4 * r + j], bv[j]);
                        match op {
                            BinaryOp::Add => 2.0 * (a + b),
                            BinaryOp::Sub => -2.0 * (a - b),
                            _ => 2.0 * a * b * a,
                        }
                    })
                    .sum();
                assert!((gb[j] - want).abs() < 1e-4, "{}", op.name());
            }
        }
    }

    #[test]
    fn exact_broadcast_values() {
        // (2, 1) + (3,) → (2, 3): [[1+10, 1+20, 1+30], [2+10, 2+20, 2+30]]
        let (y, s) = cpu_forward(
            BinaryOp::Add,
            &[1.0f32, 2.0],
            &[2, 1],
            &[10.0, 20.0, 30.0],
            &[3],
        );
        assert_eq!(s, vec![2, 3]);
        assert_eq!(y, vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        // d/da of a*b with dy = 1: each a[i] sees b summed over the broadcast axis: 10+20+30 = 60.
        let (da, db) = cpu_backward(
            BinaryOp::Mul,
            &[1.0f32, 2.0],
            &[2, 1],
            &[10.0, 20.0, 30.0],
            &[3],
            &[1.0; 6],
        );
        assert_eq!(da, vec![60.0, 60.0]);
        assert_eq!(db, vec![3.0, 3.0, 3.0]);
    }

    #[test]
    fn gradcheck_f64_every_op_with_broadcasting() {
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            for (sa, sb) in [
                (vec![2, 3, 4], vec![2, 3, 4]),
                (vec![2, 1, 4], vec![3, 1]),
                (vec![5], vec![]),
            ] {
                let a = random_vec(shape::numel(&sa), 0.5, 2.0, 3);
                let b = random_vec(shape::numel(&sb), 0.5, 2.0, 4);
                let (sa2, sb2) = (sa.clone(), sb.clone());
                gradcheck(
                    &format!("{} {sa:?} {sb:?}", op.name()),
                    &[a, b],
                    &[],
                    |i| cpu_forward(op, &i[0], &sa, &i[1], &sb).0,
                    |i, g| {
                        let (da, db) = cpu_backward(op, &i[0], &sa2, &i[1], &sb2, g);
                        vec![da, db]
                    },
                );
            }
        }
    }
}
