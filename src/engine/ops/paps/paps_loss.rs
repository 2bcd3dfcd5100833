//! The per-element terms of PaPs' losses (spec §6.4, `PaPsLoss` of utae-paps); each loss is the sum of its
//! terms ([`Tensor::sum_all`]) times a host scale, so the reductions are the crate's deterministic sums.
//!
//! | term | x | a (constant) | t | dt/dx |
//! | --- | --- | --- | --- | --- |
//! | [`Term::Center`] | heatmap p | −1 on a positive (target exactly 1.0), else (1 − g)^β (0 where g > 1) | log(p + ε), or a·log(1 − p + ε) | 1/(p + ε), or −a/(1 − p + ε) |
//! | [`Term::Size`] | predicted size ŝ | target size s | \|s − ŝ\| / (s + ε) | sign(ŝ − s)/(s + ε), sign(0) = 0 |
//! | [`Term::Shape`] | mask probability p | 2y − 1 for a collected pixel of true mask y, 0 otherwise | softplus((1 − 2p)·a), 0 where a = 0 | −2a·σ((1 − 2p)·a) |
//!
//! The centerness loss is CornerNet's with α = 0 (the original's, not exposed on its command line), so the
//! factors (1 − p)^α and p^α are 1 and carry no gradient (PyTorch's pow backward returns zeros for a zero
//! exponent). The shape term is the closed form of the original's focal loss (γ = 0) on the logits
//! \[1 − p, p\]: −log_softmax(\[1 − p, p\])\[y\] = log(1 + exp((1 − 2p)(2y − 1))), bounded in [0.3133, 1.3133].
//! Saved for backward: x and a. Kernels: the family files `paps_loss.wgsl` (`<term>_loss_terms`) and
//! `paps_loss_backward.wgsl` (`<term>_loss_backward`).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of both family files.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// `center_loss_terms` of paps_loss.wgsl.
pub const CENTER_LOSS_TERMS: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS, "center_loss_terms", 4);
/// `size_loss_terms` of paps_loss.wgsl.
pub const SIZE_LOSS_TERMS: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS, "size_loss_terms", 4);
/// `shape_loss_terms` of paps_loss.wgsl.
pub const SHAPE_LOSS_TERMS: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS, "shape_loss_terms", 4);
/// `center_loss_backward` of paps_loss_backward.wgsl.
pub const CENTER_LOSS_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS_BACKWARD, "center_loss_backward", 5);
/// `size_loss_backward` of paps_loss_backward.wgsl.
pub const SIZE_LOSS_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS_BACKWARD, "size_loss_backward", 5);
/// `shape_loss_backward` of paps_loss_backward.wgsl.
pub const SHAPE_LOSS_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::PAPS_LOSS_BACKWARD, "shape_loss_backward", 5);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    CENTER_LOSS_TERMS,
    SIZE_LOSS_TERMS,
    SHAPE_LOSS_TERMS,
    CENTER_LOSS_BACKWARD,
    SIZE_LOSS_BACKWARD,
    SHAPE_LOSS_BACKWARD,
];

/// Which loss term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    /// CornerNet centerness (α = 0).
    Center,
    /// Relative L1 of the sizes.
    Size,
    /// The shape loss's closed form.
    Shape,
}

impl Term {
    fn kernels(self) -> (Kernel, Kernel) {
        match self {
            Term::Center => (CENTER_LOSS_TERMS, CENTER_LOSS_BACKWARD),
            Term::Size => (SIZE_LOSS_TERMS, SIZE_LOSS_BACKWARD),
            Term::Shape => (SHAPE_LOSS_TERMS, SHAPE_LOSS_BACKWARD),
        }
    }

    fn name(self) -> &'static str {
        self.kernels().0.entry
    }

    // ---- CPU reference ----

    /// x, a (n) → t (n).
    pub fn cpu_forward<T: Real>(self, x: &[T], a: &[T], eps: T) -> Vec<T> {
        let (one, two) = (T::one(), T::from_f64(2.0));
        x.iter()
            .zip(a)
            .map(|(&v, &a)| match self {
                Term::Center if a < T::zero() => (v + eps).ln(),
                Term::Center => a * (one - v + eps).ln(),
                Term::Size => {
                    let d = a - v;
                    (if d < T::zero() { -d } else { d }) / (a + eps)
                }
                Term::Shape if a == T::zero() => T::zero(),
                Term::Shape => (one + ((one - two * v) * a).exp()).ln(),
            })
            .collect()
    }

    /// x, a, dt (n) → dx (n).
    pub fn cpu_backward<T: Real>(self, x: &[T], a: &[T], dt: &[T], eps: T) -> Vec<T> {
        let (one, two) = (T::one(), T::from_f64(2.0));
        x.iter()
            .zip(a)
            .zip(dt)
            .map(|((&v, &a), &g)| match self {
                Term::Center if a < T::zero() => g / (v + eps),
                Term::Center => -a * g / (one - v + eps),
                Term::Size => {
                    let s = if v > a {
                        one
                    } else if v < a {
                        -one
                    } else {
                        T::zero()
                    };
                    s * g / (a + eps)
                }
                Term::Shape => {
                    let z = (one - two * v) * a;
                    -two * a * g / (one + (-z).exp())
                }
            })
            .collect()
    }

    // ---- GPU ----

    fn gpu_forward(self, x: &GpuStorage, a: &GpuStorage, n: usize, eps: f32) -> GpuStorage {
        let t = GpuStorage::alloc(x.gpu, n, self.name());
        let p = params(n, eps);
        let bufs = [x.buffer(), a.buffer(), t.buffer()];
        self.kernels()
            .0
            .dispatch(x.gpu, &bufs, &p, Grid::threads(n));
        t
    }

    fn gpu_backward(
        self,
        x: &GpuStorage,
        a: &GpuStorage,
        dt: &GpuStorage,
        n: usize,
        eps: f32,
    ) -> GpuStorage {
        let dx = GpuStorage::alloc(x.gpu, n, self.kernels().1.entry);
        let p = params(n, eps);
        let bufs = [x.buffer(), a.buffer(), dt.buffer(), dx.buffer()];
        self.kernels()
            .1
            .dispatch(x.gpu, &bufs, &p, Grid::threads(n));
        dx
    }
}

fn params(n: usize, eps: f32) -> Params {
    Params {
        n: u32::try_from(n).expect("paps_loss: element count overflows u32"),
        eps,
        _pad: [0; 2],
    }
}

// ---- Autograd ----

struct TermBackward {
    term: Term,
    x: Tensor,
    a: Tensor,
    eps: f32,
}

impl Backward for TermBackward {
    fn name(&self) -> &'static str {
        self.term.name()
    }
    fn backward(&self, dt: &Tensor) -> Vec<Option<Tensor>> {
        let op = self.term.kernels().1.entry;
        let (x, a) = (&self.x, &self.a);
        let storage = match Tensor::same_device(op, &[x, a, dt]) {
            Device::Cpu => Tensor::cpu_storage(self.term.cpu_backward(
                &x.cpu_data(op),
                &a.cpu_data(op),
                &dt.cpu_data(op),
                self.eps,
            )),
            Device::Gpu => Storage::Gpu(self.term.gpu_backward(
                x.gpu_storage(op),
                a.gpu_storage(op),
                dt.gpu_storage(op),
                x.numel(),
                self.eps,
            )),
        };
        vec![Some(Tensor::from_storage(x.shape(), storage)), None]
    }
}

impl Tensor {
    /// The elementwise terms of loss `term` of x against the constant `a` (same shape); see the module doc.
    pub fn paps_loss_terms(&self, term: Term, a: &Tensor, eps: f32) -> Tensor {
        let op = term.name();
        assert_eq!(
            self.shape(),
            a.shape(),
            "{op}: expected a of x's shape {:?}, got {:?}",
            self.shape(),
            a.shape()
        );
        let storage = match Tensor::same_device(op, &[self, a]) {
            Device::Cpu => {
                Tensor::cpu_storage(term.cpu_forward(&self.cpu_data(op), &a.cpu_data(op), eps))
            }
            Device::Gpu => Storage::Gpu(term.gpu_forward(
                self.gpu_storage(op),
                a.gpu_storage(op),
                self.numel(),
                eps,
            )),
        };
        let back = TermBackward {
            term,
            x: self.clone(),
            a: a.clone(),
            eps,
        };
        Tensor::from_op(self.shape(), storage, &[self, a], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        let eps = 0.0f64;
        // Center: a positive at p = 1/2 → log(1/2); a negative with weight 1/16 at p = 1/2 → log(1/2)/16.
        let t = Term::Center.cpu_forward(&[0.5, 0.5], &[-1.0, 0.0625], eps);
        assert!((t[0] - 0.5f64.ln()).abs() < 1e-15 && (t[1] - 0.5f64.ln() / 16.0).abs() < 1e-15);
        // Size: |4 − 3| / 4 = 1/4; equal sizes give 0 with gradient 0.
        assert_eq!(
            Term::Size.cpu_forward(&[3.0, 2.0], &[4.0, 2.0], eps),
            vec![0.25, 0.0]
        );
        assert_eq!(
            Term::Size.cpu_backward(&[3.0, 2.0], &[4.0, 2.0], &[1.0, 1.0], eps),
            vec![-0.25, 0.0]
        );
        // Shape: p = 1/2 gives log 2 for either target; a = 0 (not collected) gives 0; p = 1, y = 1 gives
        // log(1 + e^−1) = 0.3133 (the lower bound), p = 0, y = 1 gives log(1 + e) = 1.3133 (the upper one).
        let t = Term::Shape.cpu_forward(&[0.5, 0.5, 1.0, 0.0], &[1.0, 0.0, 1.0, 1.0], eps);
        assert!((t[0] - 2f64.ln()).abs() < 1e-15 && t[1] == 0.0);
        assert!((t[2] - 0.31326168751822286).abs() < 1e-15);
        assert!((t[3] - 1.3132616875182228).abs() < 1e-15);
    }

    #[test]
    fn gradcheck_f64() {
        let p = random_vec(12, 0.05, 0.95, 1);
        let mut a = random_vec(12, 0.0, 1.0, 2);
        a[3] = -1.0;
        a[7] = -1.0;
        let sizes = random_vec(12, 1.0, 9.0, 3);
        let signs: Vec<f64> = (0..12).map(|i| [1.0, -1.0, 0.0][i % 3]).collect();
        for (term, x, a) in [
            (Term::Center, p.clone(), a),
            (Term::Size, random_vec(12, 1.0, 9.0, 4), sizes),
            (Term::Shape, p, signs),
        ] {
            gradcheck(
                term.name(),
                &[x, a],
                &[1],
                |i| term.cpu_forward(&i[0], &i[1], 1e-8),
                |i, g| vec![term.cpu_backward(&i[0], &i[1], g, 1e-8), vec![0.0; 12]],
            );
        }
    }
}
