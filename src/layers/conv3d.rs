//! `Conv3d` and `ConvTranspose3d` layers (torch.nn names and weight layouts): Conv3d weight
//! (C_out, C_in, k, k, k), ConvTranspose3d weight **(C_in, C_out, k, k, k)**, bias (C_out); cubic kernels,
//! zero padding. U-TAE's `weight_init` (spec §3.9): Xavier-normal weights, N(0, 1) biases.

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::conv::normal;
use crate::layers::Module;

fn params(w_shape: [usize; 5], c_out: usize, rng: &mut Rng, device: Device) -> (Tensor, Tensor) {
    let k3 = w_shape[2] * w_shape[3] * w_shape[4];
    // fan_in = dim 1 × k³, fan_out = dim 0 × k³ (PyTorch's rule, also for the transposed weight).
    let std = (2.0 / ((w_shape[0] + w_shape[1]) * k3) as f64).sqrt();
    let n = w_shape.iter().product();
    let weight = Tensor::from_vec(normal(rng, n, std), &w_shape, device).requires_grad_();
    let bias = Tensor::from_vec(normal(rng, c_out, 1.0), &[c_out], device).requires_grad_();
    (weight, bias)
}

/// A 3-D convolution, stride 1.
pub struct Conv3d {
    /// Weight (C_out, C_in, k, k, k).
    pub weight: Tensor,
    /// Bias (C_out).
    pub bias: Tensor,
    /// Zero padding on every axis.
    pub padding: usize,
}

impl Conv3d {
    /// `nn.Conv3d(c_in, c_out, k, stride=1, padding)`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        padding: usize,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let (weight, bias) = params([c_out, c_in, k, k, k], c_out, rng, device);
        Conv3d {
            weight,
            bias,
            padding,
        }
    }

    /// x (N, C_in, D, H, W) → (N, C_out, D', H', W').
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv3d(&self.weight, Some(&self.bias), self.padding)
    }
}

/// A 3-D transposed convolution.
pub struct ConvTranspose3d {
    /// Weight (C_in, C_out, k, k, k).
    pub weight: Tensor,
    /// Bias (C_out).
    pub bias: Tensor,
    /// Stride, padding, output_padding (every axis).
    pub geometry: [usize; 3],
}

impl ConvTranspose3d {
    /// `nn.ConvTranspose3d(c_in, c_out, k, stride, padding, output_padding)`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        geometry: [usize; 3],
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let (weight, bias) = params([c_in, c_out, k, k, k], c_out, rng, device);
        ConvTranspose3d {
            weight,
            bias,
            geometry,
        }
    }

    /// x (N, C_in, D, H, W) → (N, C_out, (D - 1)·s - 2p + k + output_padding, ...).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let [s, p, a] = self.geometry;
        x.conv_transpose3d(&self.weight, Some(&self.bias), s, p, a)
    }
}

macro_rules! weight_and_bias {
    ($t:ty) => {
        impl Module for $t {
            fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
                vec![
                    (format!("{prefix}weight"), self.weight.clone()),
                    (format!("{prefix}bias"), self.bias.clone()),
                ]
            }
        }
    };
}
weight_and_bias!(Conv3d);
weight_and_bias!(ConvTranspose3d);
