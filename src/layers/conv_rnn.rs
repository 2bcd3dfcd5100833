//! Convolutional recurrent layers: `ConvLSTM` and `ConvGRU` of utae-paps (`convlstm.py`, `convgru.py`; one
//! layer, 3 × 3 kernels, zero padding), with their state_dict names (`cell_list.0.conv.*`,
//! `cell_list.0.in_conv.*`, `cell_list.0.out_conv.*`) and `BConvLSTM` (`convlstm_forward.*`,
//! `convlstm_backward.*`). Each runs over all T steps of x (B, T, C, H, W), padded frames included, as the
//! original (spec §5.1-5.2), and returns the embedding the models use: c_T (ConvLSTM), h_T (ConvGRU).
//! The original's `input_size` only sized its zero initial states; here they take x's H, W.

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{prefixed, Conv2d, Module};

/// `ConvLSTM` (one layer): the gate convolution `cell_list.0.conv` (4·Hd, C + Hd, 3, 3).
pub struct ConvLstm {
    /// The gate convolution (its weight and bias; run inside the fused sequence op).
    pub conv: Conv2d,
}

impl ConvLstm {
    /// A ConvLSTM from `input_dim` to `hidden` channels (Xavier-normal weight, N(0, 1) bias, spec §3.9).
    pub fn new(input_dim: usize, hidden: usize, rng: &mut Rng, device: Device) -> Self {
        let conv = Conv2d::new(
            input_dim + hidden,
            4 * hidden,
            3,
            1,
            1,
            PaddingMode::Zeros,
            rng,
            device,
        );
        ConvLstm { conv }
    }

    /// x (B, T, C, H, W) → c_T (B, Hd, H, W).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_lstm(&self.conv.weight, self.conv.bias.as_ref().expect("bias"))
    }
}

impl Module for ConvLstm {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.conv
            .named_parameters(&prefixed(prefix, "cell_list.0.conv"))
    }
}

/// `BConvLSTM`: a ConvLSTM on the sequence and another on the time-reversed sequence; embedding
/// [c_T forward, c_T backward] (2·Hd channels). The original zero-fills the reversed sequence's now-leading
/// padded frames; they are already exact zeros here (the encoder outputs 0 on padded frames, pad value 0).
pub struct BConvLstm {
    forward: ConvLstm,
    backward: ConvLstm,
}

impl BConvLstm {
    /// Two ConvLSTMs `input_dim` → `hidden`.
    pub fn new(input_dim: usize, hidden: usize, rng: &mut Rng, device: Device) -> Self {
        BConvLstm {
            forward: ConvLstm::new(input_dim, hidden, rng, device),
            backward: ConvLstm::new(input_dim, hidden, rng, device),
        }
    }

    /// x (B, T, C, H, W) → (B, 2·Hd, H, W).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let t = x.shape()[1];
        let reversed: Vec<usize> = (0..t).rev().collect();
        let fwd = self.forward.forward(x);
        let bwd = self.backward.forward(&x.index_select(1, &reversed));
        Tensor::cat(&[&fwd, &bwd], 1)
    }
}

impl Module for BConvLstm {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .forward
            .named_parameters(&prefixed(p, "convlstm_forward"));
        v.extend(
            self.backward
                .named_parameters(&prefixed(p, "convlstm_backward")),
        );
        v
    }
}

/// `ConvGRU` (one layer): `cell_list.0.in_conv` (2·Hd, C + Hd, 3, 3) and `cell_list.0.out_conv`
/// (Hd, C + Hd, 3, 3).
pub struct ConvGru {
    /// The update / reset gates' convolution.
    pub in_conv: Conv2d,
    /// The candidate's convolution.
    pub out_conv: Conv2d,
}

impl ConvGru {
    /// A ConvGRU from `input_dim` to `hidden` channels.
    pub fn new(input_dim: usize, hidden: usize, rng: &mut Rng, device: Device) -> Self {
        let c = input_dim + hidden;
        ConvGru {
            in_conv: Conv2d::new(c, 2 * hidden, 3, 1, 1, PaddingMode::Zeros, rng, device),
            out_conv: Conv2d::new(c, hidden, 3, 1, 1, PaddingMode::Zeros, rng, device),
        }
    }

    /// x (B, T, C, H, W) → h_T (B, Hd, H, W).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (i, o) = (&self.in_conv, &self.out_conv);
        x.conv_gru(
            &i.weight,
            i.bias.as_ref().expect("bias"),
            &o.weight,
            o.bias.as_ref().expect("bias"),
        )
    }
}

impl Module for ConvGru {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .in_conv
            .named_parameters(&prefixed(p, "cell_list.0.in_conv"));
        v.extend(
            self.out_conv
                .named_parameters(&prefixed(p, "cell_list.0.out_conv")),
        );
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_and_counts_as_the_original() {
        let mut rng = Rng::new(0);
        // spec §5.3: ConvLSTM(10 → 160) 979,840; ConvGRU(10 → 180) 923,940.
        let l = ConvLstm::new(10, 160, &mut rng, Device::Cpu);
        assert_eq!(l.num_parameters(), 979_840);
        let names: Vec<String> = l
            .named_parameters("enc.")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["enc.cell_list.0.conv.weight", "enc.cell_list.0.conv.bias"]
        );
        let g = ConvGru::new(10, 180, &mut rng, Device::Cpu);
        assert_eq!(g.num_parameters(), 923_940);
        assert_eq!(g.named_parameters("")[2].0, "cell_list.0.out_conv.weight");
        let b = BConvLstm::new(4, 3, &mut rng, Device::Cpu);
        assert_eq!(
            b.named_parameters("t.")[2].0,
            "t.convlstm_backward.cell_list.0.conv.weight"
        );
    }
}
