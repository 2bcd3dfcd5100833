//! The masked temporal mean: the average of a time series over its real (non-padded) dates — U-TAE's `mean`
//! skip aggregation (RecUNet's skips, spec §3.5) and U-Net 3D's final temporal reduction (spec §5.6).
//!
//! Math: x (N, ..., T, ...) with T at `axis`, keep (N, T) (1 on real dates, 0 on padded ones):
//! `y[n, ...] = Σ_t keep[n, t] · x[n, .., t, ..] / Σ_t keep[n, t]` (the axis removed). As the original, a
//! sample with no real date divides by 0.
//! Derivative: `dx[n, .., t, ..] = keep[n, t] · dy[n, ...] / Σ_t keep[n, t]`; keep gets no gradient.
//!
//! **A composition, no kernel of its own**: `(x · keep) .sum(axis) / keep.sum(1)` (binary mul with
//! broadcasting, reduce_sum, binary div), whose backward the autograd of those ops gives. The CPU reference
//! below is written directly from the definition; the tests check the composition against it.

use crate::engine::real::Real;
use crate::engine::tensor::Tensor;

// ---- CPU reference ----

/// x viewed as (N, T_outer, T, inner) with `outer` the size between N and T, `inner` after T → (N, outer, inner).
pub fn cpu_forward<T: Real>(
    x: &[T],
    keep: &[T],
    n: usize,
    outer: usize,
    t: usize,
    inner: usize,
) -> Vec<T> {
    let mut y = vec![T::zero(); n * outer * inner];
    for b in 0..n {
        let count = (0..t).fold(T::zero(), |a, s| a + keep[b * t + s]);
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = T::zero();
                for s in 0..t {
                    acc += keep[b * t + s] * x[((b * outer + o) * t + s) * inner + i];
                }
                y[(b * outer + o) * inner + i] = acc / count;
            }
        }
    }
    y
}

/// dx from keep and dy (N, outer, inner).
pub fn cpu_backward<T: Real>(
    keep: &[T],
    dy: &[T],
    n: usize,
    outer: usize,
    t: usize,
    inner: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); n * outer * t * inner];
    for b in 0..n {
        let count = (0..t).fold(T::zero(), |a, s| a + keep[b * t + s]);
        for o in 0..outer {
            for s in 0..t {
                for i in 0..inner {
                    dx[((b * outer + o) * t + s) * inner + i] =
                        keep[b * t + s] * dy[(b * outer + o) * inner + i] / count;
                }
            }
        }
    }
    dx
}

// ---- Autograd (composition) ----

impl Tensor {
    /// The mean over `axis` (> 0) of the dates `keep` (N, T) marks with 1: x (N, ..., T, ...) → x's shape
    /// without `axis`. See the module doc.
    pub fn masked_mean(&self, axis: usize, keep: &Tensor) -> Tensor {
        let s = self.shape();
        assert!(
            axis > 0 && axis < s.len() && keep.shape() == [s[0], s[axis]],
            "masked_mean: expected keep (N, T) = ({}, {}) for axis {axis} of x {s:?}, got {:?}",
            s[0],
            s.get(axis).copied().unwrap_or(0),
            keep.shape()
        );
        let mut kshape = vec![1; s.len()];
        (kshape[0], kshape[axis]) = (s[0], s[axis]);
        let sum = (self * &keep.reshape(&kshape)).sum(&[axis as isize], false);
        let mut cshape = vec![1; s.len() - 1];
        cshape[0] = s[0];
        &sum / &keep.sum(&[1], false).reshape(&cshape)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::Device;
    use crate::engine::testing::{assert_close, gradcheck, random_vec, Tol};

    #[test]
    fn exact_values() {
        // Two samples, T = 3, one value per date: sample 0 real on all three dates (mean of 1, 2, 6 = 3),
        // sample 1 on the first two (mean of 4, 8 = 6; the padded 100 is ignored).
        let x = [1.0f64, 2.0, 6.0, 4.0, 8.0, 100.0];
        let keep = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert_eq!(cpu_forward(&x, &keep, 2, 1, 3, 1), vec![3.0, 6.0]);
        assert_eq!(
            cpu_backward(&keep, &[3.0, 2.0], 2, 1, 3, 1),
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
        );
    }

    #[test]
    fn gradcheck_f64_and_the_composition() {
        let (n, outer, t, inner) = (2, 3, 4, 5);
        let keep = vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let x = random_vec(n * outer * t * inner, -1.0, 1.0, 3);
        gradcheck(
            "masked_mean",
            std::slice::from_ref(&x),
            &[],
            |v| cpu_forward(&v[0], &keep, n, outer, t, inner),
            |_, g| vec![cpu_backward(&keep, g, n, outer, t, inner)],
        );
        // The tensor composition (x (N, C, T, W) over axis 2) against the reference, forward and backward.
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let xt = Tensor::from_vec(f(&x), &[n, outer, t, inner], Device::Cpu).requires_grad_();
        let kt = Tensor::from_vec(f(&keep), &[n, t], Device::Cpu);
        let y = xt.masked_mean(2, &kt);
        assert_eq!(y.shape(), [n, outer, inner]);
        assert_close(
            &y.to_vec(),
            &f(&cpu_forward(&x, &keep, n, outer, t, inner)),
            Tol::KERNEL,
            "forward",
        );
        let g = random_vec(y.numel(), -1.0, 1.0, 4);
        y.backward_with(Tensor::from_vec(f(&g), y.shape(), Device::Cpu));
        let want = f(&cpu_backward(&keep, &g, n, outer, t, inner));
        assert_close(&xt.grad().unwrap().to_vec(), &want, Tol::KERNEL, "backward");
    }
}
