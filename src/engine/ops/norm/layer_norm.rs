//! Layer normalisation `nn.LayerNorm(normalized_shape, eps)` (needed by the pixel-set L-TAE), as a documented
//! composition of existing ops: no kernel of its own.
//!
//! Math: x (*, D1..Dk) with `normalized_shape` = (D1..Dk), D = Π Di; each of the R = numel / D rows is
//! normalised with its mean and biased variance over its D values, then `y = γ ⊙ x̂ + β` with γ, β of shape
//! `normalized_shape`.
//!
//! Why the composition is exact: viewing x as (R, 1, D), a group norm with one group and no affine computes, per
//! row, the very same μ, σ² (biased, over the D values) and `x̂ = (x − μ)·rstd` (its implicit `·1 + 0` is exact).
//! The elementwise affine `x̂ ⊙ γ + β` is then a broadcasting `mul` and `add` (γ, β broadcast over the leading
//! axes), which round exactly like the fused `x̂·γ + β`. The derivative follows from the chain rule through the
//! three ops: group norm's backward for x (with γ = 1 there), and the broadcasting backward of mul/add
//! (`sum_to`) for `dγ = Σ dy·x̂`, `dβ = Σ dy` over the leading axes.
//! Kernels: those of group_norm (`group_norm*.wgsl`) and binary (`binary.wgsl`, `reduce_sum.wgsl`).

use crate::engine::tensor::Tensor;

impl Tensor {
    /// `F.layer_norm(x, normalized_shape, weight, bias, eps)`: normalises over the trailing axes
    /// `normalized_shape` of x; `weight` and `bias` (of shape `normalized_shape`) default to 1 and 0.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        let sh = self.shape();
        let k = normalized_shape.len();
        assert!(
            k >= 1 && sh.len() >= k && &sh[sh.len() - k..] == normalized_shape,
            "layer_norm: expected x (*, {normalized_shape:?}) with a non-empty normalized shape, got {sh:?}"
        );
        for (what, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t {
                assert_eq!(
                    t.shape(),
                    normalized_shape,
                    "layer_norm: expected {what} {normalized_shape:?}, got {:?}",
                    t.shape()
                );
            }
        }
        let d: usize = normalized_shape.iter().product();
        let rows = self.numel() / d.max(1);
        let y = self
            .reshape(&[rows, 1, d])
            .group_norm(1, None, None, eps)
            .reshape(sh);
        let y = match weight {
            Some(w) => &y * w,
            None => y,
        };
        match bias {
            Some(b) => &y + b,
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::storage::Device;
    use crate::engine::tensor::Tensor;

    #[test]
    fn exact_values() {
        // x (2, 2, 2) normalised over [2, 2], eps = 0.5, γ = 2 everywhere, β = (1, 0, 0, 0).
        // Row 1 = (1, 2, 3, 6): μ = 3, σ² = (4 + 1 + 0 + 9)/4 = 3.5, rstd = 1/√4 = 1/2,
        //   x̂ = (−1, −1/2, 0, 3/2), y = 2x̂ + β = (−1, −1, 0, 3).
        // Row 2 = (0, 0, 2, 2): μ = 1, σ² = 1, rstd = 1/√1.5, y = 2x̂ + β = (1 − r, −r, r, r), r = 2/√1.5.
        let x = Tensor::from_vec(
            vec![1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 2.0, 2.0],
            &[2, 2, 2],
            Device::Cpu,
        );
        let w = Tensor::full(&[2, 2], 2.0, Device::Cpu);
        let b = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0], &[2, 2], Device::Cpu);
        let y = x.layer_norm(&[2, 2], Some(&w), Some(&b), 0.5).to_vec();
        assert_eq!(&y[..4], &[-1.0, -1.0, 0.0, 3.0]);
        let r = 2.0 / 1.5f32.sqrt(); // row 2: x̂ = ∓1/√1.5, times γ = 2
        for (a, e) in y[4..].iter().zip([1.0 - r, -r, r, r]) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
    }

    #[test]
    fn gradients_match_the_group_norm_formula() {
        // dβ = Σ dy over the rows, and Σ over each row of dx = 0.
        let x = Tensor::rand_uniform(&[3, 5], -1.0, 1.0, 3, Device::Cpu).requires_grad_();
        let w = Tensor::rand_uniform(&[5], 0.5, 1.5, 4, Device::Cpu).requires_grad_();
        let b = Tensor::zeros(&[5], Device::Cpu).requires_grad_();
        x.layer_norm(&[5], Some(&w), Some(&b), 1e-5)
            .sum_all()
            .backward();
        assert_eq!(b.grad().unwrap().to_vec(), vec![3.0; 5]);
        let gx = x.grad().unwrap().to_vec();
        assert!(
            gx.chunks(5).all(|r| r.iter().sum::<f32>().abs() < 1e-5),
            "{gx:?}"
        );
    }
}
