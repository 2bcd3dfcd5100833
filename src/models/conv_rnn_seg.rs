//! The plain recurrent segmenters of the U-TAE paper (spec §5.3): `ConvLSTM_Seg` (`--model convlstm`) and
//! `ConvGRU_Seg` (`--model convgru`) of utae-paps. A convolutional recurrence runs at full resolution over
//! every date of the normalised input (padded frames included) and a 3 × 3 convolution (zero padding) maps
//! its embedding to class scores — the last **cell** state c_T for the ConvLSTM, the last state h_T for the
//! ConvGRU. get_model: input 10, hidden 160 (ConvLSTM, 1,008,660 parameters) or 180 (ConvGRU, 956,360).

use serde_json::{json, Value};

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{Device, Result, Tensor};
use crate::layers::{prefixed, Conv2d, ConvGru, ConvLstm, Module};
use crate::models::kwargs::Kwargs;

/// The constructor arguments of ConvLSTM_Seg / ConvGRU_Seg (the original's names; kernel 3 × 3).
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentSegConfig {
    /// Classes.
    pub num_classes: usize,
    /// Patch side the original sized its initial states with (recorded only).
    pub input_size: usize,
    /// Input channels.
    pub input_dim: usize,
    /// Hidden channels.
    pub hidden_dim: usize,
    /// Temporal pad value (only recorded: the recurrence runs over padded frames too).
    pub pad_value: f32,
}

impl RecurrentSegConfig {
    /// get_model's: hidden 160 for convlstm, 180 for convgru.
    pub fn get_model(hidden_dim: usize, num_classes: usize) -> RecurrentSegConfig {
        RecurrentSegConfig {
            num_classes,
            input_size: 128,
            input_dim: 10,
            hidden_dim,
            pad_value: 0.0,
        }
    }

    /// `self` with the constructor arguments of `kw` applied.
    pub fn with_kwargs(mut self, kw: &Kwargs) -> Result<RecurrentSegConfig> {
        kw.check_known(&[
            "num_classes",
            "input_size",
            "input_dim",
            "hidden_dim",
            "kernel_size",
            "pad_value",
        ])?;
        kw.size("num_classes", &mut self.num_classes)?;
        kw.size("input_size", &mut self.input_size)?;
        kw.size("input_dim", &mut self.input_dim)?;
        kw.size("hidden_dim", &mut self.hidden_dim)?;
        kw.f32("pad_value", &mut self.pad_value)?;
        let mut k = 3;
        kw.size("kernel_size", &mut k)?;
        if k != 3 || self.hidden_dim == 0 || self.num_classes == 0 {
            return Err(kw.bad(
                "kernel_size",
                "expected kernel_size (3, 3), hidden_dim > 0 and num_classes > 0",
            ));
        }
        Ok(self)
    }

    /// The constructor arguments (conf.json's `model_kwargs`).
    pub fn kwargs(&self) -> Value {
        json!({
            "num_classes": self.num_classes, "input_size": [self.input_size, self.input_size],
            "input_dim": self.input_dim, "hidden_dim": self.hidden_dim, "kernel_size": [3, 3],
            "pad_value": self.pad_value,
        })
    }
}

enum Encoder {
    Lstm(ConvLstm),
    Gru(ConvGru),
}

/// ConvLSTM_Seg or ConvGRU_Seg.
pub struct RecurrentSeg {
    /// Its configuration.
    pub config: RecurrentSegConfig,
    encoder: Encoder,
    classification_layer: Conv2d,
}

impl RecurrentSeg {
    /// ConvLSTM_Seg (`gru` false) or ConvGRU_Seg, freshly initialised from `seed`.
    pub fn new(config: RecurrentSegConfig, gru: bool, seed: u64, device: Device) -> Self {
        let mut rng = Rng::new(seed);
        let (c, hd) = (&config, config.hidden_dim);
        let encoder = if gru {
            Encoder::Gru(ConvGru::new(c.input_dim, hd, &mut rng, device))
        } else {
            Encoder::Lstm(ConvLstm::new(c.input_dim, hd, &mut rng, device))
        };
        let classification_layer = Conv2d::new(
            hd,
            c.num_classes,
            3,
            1,
            1,
            PaddingMode::Zeros,
            &mut rng,
            device,
        );
        RecurrentSeg {
            config,
            encoder,
            classification_layer,
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    /// x (B, T, C, H, W) → class scores (B, num_classes, H, W).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let emb = match &self.encoder {
            Encoder::Lstm(l) => l.forward(x),
            Encoder::Gru(g) => g.forward(x),
        };
        self.classification_layer.forward(&emb)
    }
}

impl Module for RecurrentSeg {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = match &self.encoder {
            Encoder::Lstm(l) => l.named_parameters(&prefixed(p, "convlstm_encoder")),
            Encoder::Gru(g) => g.named_parameters(&prefixed(p, "convgru_encoder")),
        };
        v.extend(
            self.classification_layer
                .named_parameters(&prefixed(p, "classification_layer")),
        );
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_model_parameter_counts() {
        // spec §5.3: 979,840 + 28,820 = 1,008,660; 923,940 + 32,420 = 956,360.
        let l = RecurrentSeg::new(
            RecurrentSegConfig::get_model(160, 20),
            false,
            0,
            Device::Cpu,
        );
        assert_eq!(l.num_parameters(), 1_008_660);
        assert_eq!(
            l.named_parameters("")[0].0,
            "convlstm_encoder.cell_list.0.conv.weight"
        );
        let g = RecurrentSeg::new(RecurrentSegConfig::get_model(180, 20), true, 0, Device::Cpu);
        assert_eq!(g.num_parameters(), 956_360);
        assert_eq!(g.named_parameters("")[4].0, "classification_layer.weight");
    }
}
