//! `Conv2d` and `ConvTranspose2d` layers (torch.nn names and weight layouts): Conv2d weight
//! (C_out, C_in, kH, kW), ConvTranspose2d weight **(C_in, C_out, kH, kW)**, bias (C_out).
//!
//! Initialisation follows U-TAE's `weight_init` (spec §3.9): Xavier-normal weights (std = √(2 / (fan_in +
//! fan_out)), fan = channels × kernel area; for the transposed conv PyTorch takes fan_in from weight dim 1
//! and fan_out from dim 0) and N(0, 1) biases. Parity runs load the original weights instead.

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::Module;

/// Normal(0, std) values from `rng`.
pub fn normal(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * std) as f32).collect()
}

/// A 2-D convolution.
pub struct Conv2d {
    /// Weight (C_out, C_in, kH, kW).
    pub weight: Tensor,
    /// Bias (C_out).
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: usize,
    /// Padding on each side.
    pub padding: usize,
    /// Zeros or reflect.
    pub mode: PaddingMode,
}

impl Conv2d {
    /// A convolution with Xavier-normal weights and N(0, 1) bias drawn from `rng`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        mode: PaddingMode,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let std = (2.0 / ((c_in + c_out) * k * k) as f64).sqrt();
        let weight = Tensor::from_vec(
            normal(rng, c_out * c_in * k * k, std),
            &[c_out, c_in, k, k],
            device,
        )
        .requires_grad_();
        let bias =
            Some(Tensor::from_vec(normal(rng, c_out, 1.0), &[c_out], device).requires_grad_());
        Conv2d {
            weight,
            bias,
            stride,
            padding,
            mode,
        }
    }

    /// x (N, C_in, H, W) → (N, C_out, H', W').
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
            self.mode,
        )
    }
}

impl Module for Conv2d {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(format!("{prefix}weight"), self.weight.clone())];
        v.extend(
            self.bias
                .iter()
                .map(|b| (format!("{prefix}bias"), b.clone())),
        );
        v
    }
}

/// A 2-D transposed convolution (zero padding).
pub struct ConvTranspose2d {
    /// Weight (C_in, C_out, kH, kW).
    pub weight: Tensor,
    /// Bias (C_out).
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub padding: usize,
}

impl ConvTranspose2d {
    /// A transposed convolution with Xavier-normal weights and N(0, 1) bias drawn from `rng`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let std = (2.0 / ((c_in + c_out) * k * k) as f64).sqrt();
        let weight = Tensor::from_vec(
            normal(rng, c_in * c_out * k * k, std),
            &[c_in, c_out, k, k],
            device,
        )
        .requires_grad_();
        let bias =
            Some(Tensor::from_vec(normal(rng, c_out, 1.0), &[c_out], device).requires_grad_());
        ConvTranspose2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// x (N, C_in, H, W) → (N, C_out, (H-1)s - 2p + k, …).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

impl Module for ConvTranspose2d {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(format!("{prefix}weight"), self.weight.clone())];
        v.extend(
            self.bias
                .iter()
                .map(|b| (format!("{prefix}bias"), b.clone())),
        );
        v
    }
}
