//! U-Net 3D (`UNet3D` of utae-paps' unet3d.py, after Rustowicz et al.; spec §5.6; `--model unet3d`): 3-D
//! convolutions over (time, height, width), pooling time with space, and a masked temporal mean at the end.
//!
//! ```text
//! x (B, T, 10, H, W) → (B, 10, T, H, W) ─ en3 (→32) ─ pool ─ en4 (→64) ─ pool ─ center_in (→128)
//!   ─ center_out (→128, ConvT3d →64) ─ cat[·, en4[:T2]] ─ dc4 (→64) ─ trans3 (ConvT3d →32) ─ cat[·, en3[:T4]]
//!   ─ dc3 (→16) ─ final (→classes) (B, classes, T'', H, W) ─ masked mean over T'' → logits (B, classes, H, W)
//! ```
//! Every Conv3d is 3 × 3 × 3, stride 1, zero padding 1; `conv_block(a, m, b)` = Conv3d a→m, BatchNorm3d,
//! LeakyReLU(0.01), Conv3d m→b, BatchNorm3d, LeakyReLU(0.01); MaxPool3d(2) pools time too (⌊T/2⌋, then
//! ⌊T/4⌋ = q); each ConvTranspose3d (k3, s2, p1, output_padding 1) doubles all three axes, so the decoder
//! works on 2q then T'' = 4q dates and crops the skips to their first 2q / 4q dates. Needs T >= 4 and H, W
//! multiples of 4. The temporal mean is over the first T'' dates, masked by the input pad mask when the batch
//! has padding (spec §5.6 step 9); padded frames are processed like the others (only zero_pad maps the pad
//! value to 0, a no-op for pad value 0). feats 8 gives 1,553,796 parameters.

use serde_json::{json, Value};

use crate::engine::rng::Rng;
use crate::engine::{Device, Result, Tensor};
use crate::layers::{prefixed, Act, BatchNorm, Conv3d, ConvTranspose3d, Ctx, Module};
use crate::models::kwargs::Kwargs;
use crate::models::utae::PadInfo;

/// UNet3D's constructor arguments (the original's names).
#[derive(Debug, Clone, PartialEq)]
pub struct UNet3dConfig {
    /// Input channels.
    pub in_channel: usize,
    /// Classes.
    pub n_classes: usize,
    /// Base width (the blocks are 4, 8, 16, 8, 4, 2 times it).
    pub feats: usize,
    /// Temporal pad value.
    pub pad_value: f32,
    /// Map values equal to the pad value to 0 first.
    pub zero_pad: bool,
}

impl UNet3dConfig {
    /// get_model's `unet3d`.
    pub fn get_model(num_classes: usize) -> UNet3dConfig {
        UNet3dConfig {
            in_channel: 10,
            n_classes: num_classes,
            feats: 8,
            pad_value: 0.0,
            zero_pad: true,
        }
    }

    /// Whether it takes inputs of `shape` (B, T, C, H, W): C = in_channel, T >= 4 (two poolings of time) and
    /// H, W multiples of 4 (two of space); if not, why (the original fails on others inside its poolings or
    /// its concatenations).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        let [_, t, c, h, w] = shape else {
            return Err(format!(
                "UNet3D takes inputs (B, T, C, H, W), got {shape:?}"
            ));
        };
        let ci = self.in_channel;
        if *c != ci {
            return Err(format!(
                "UNet3D takes {ci} channels (in_channel), got inputs of {c}"
            ));
        }
        if *t < 4 || !h.is_multiple_of(4) || !w.is_multiple_of(4) || *h == 0 || *w == 0 {
            return Err(format!(
                "UNet3D cannot take a batch of {t} dates of {h} × {w} pixels: it pools time twice and space \
                 twice, so it needs at least 4 dates (after padding to the batch's longest series) and sides \
                 that are multiples of 4"
            ));
        }
        Ok(())
    }

    /// `self` with the constructor arguments of `kw` applied.
    pub fn with_kwargs(mut self, kw: &Kwargs) -> Result<UNet3dConfig> {
        kw.check_known(&["in_channel", "n_classes", "feats", "pad_value", "zero_pad"])?;
        kw.size("in_channel", &mut self.in_channel)?;
        kw.size("n_classes", &mut self.n_classes)?;
        kw.size("feats", &mut self.feats)?;
        kw.f32("pad_value", &mut self.pad_value)?;
        if let Some(z) = kw.bool("zero_pad")? {
            self.zero_pad = z;
        }
        if self.feats == 0 || self.n_classes == 0 {
            return Err(kw.bad("feats", "expected feats > 0 and n_classes > 0"));
        }
        Ok(self)
    }

    /// The constructor arguments (conf.json's `model_kwargs`).
    pub fn kwargs(&self) -> Value {
        json!({"in_channel": self.in_channel, "n_classes": self.n_classes, "feats": self.feats,
               "pad_value": self.pad_value, "zero_pad": self.zero_pad})
    }
}

/// A Sequential of Conv3d / ConvTranspose3d, BatchNorm3d and LeakyReLU, with the original's indices.
struct Block {
    /// (Sequential index, layer).
    layers: Vec<(usize, Layer)>,
}

enum Layer {
    Conv(Conv3d),
    Up(ConvTranspose3d),
    Norm(BatchNorm),
}

impl Block {
    /// Conv3d a→m, BN, LReLU, Conv3d m→b, BN, LReLU (indices 0, 1, 3, 4).
    fn conv_block(a: usize, m: usize, b: usize, rng: &mut Rng, dev: Device) -> Block {
        Block {
            layers: vec![
                (0, Layer::Conv(Conv3d::new(a, m, 3, 1, rng, dev))),
                (1, Layer::Norm(BatchNorm::new(m, rng, dev))),
                (3, Layer::Conv(Conv3d::new(m, b, 3, 1, rng, dev))),
                (4, Layer::Norm(BatchNorm::new(b, rng, dev))),
            ],
        }
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut out = x.clone();
        for (_, l) in &self.layers {
            out = match l {
                Layer::Conv(c) => c.forward(&out),
                Layer::Up(u) => u.forward(&out),
                // BatchNorm3d + LeakyReLU recomputed in the backward pass; the next convolution's time
                // unfold keeps only their recipe (engine::recompute).
                Layer::Norm(n) => n.forward_act(&out, ctx, Act::LeakyRelu(0.01)),
            };
        }
        out
    }

    fn visit(&self, p: &str, f: &mut dyn FnMut(&str, &dyn Module)) {
        for (i, l) in &self.layers {
            let pre = prefixed(p, &i.to_string());
            match l {
                Layer::Conv(c) => f(&pre, c),
                Layer::Up(u) => f(&pre, u),
                Layer::Norm(n) => f(&pre, n),
            }
        }
    }
}

/// The U-Net 3D model.
pub struct UNet3d {
    /// Its configuration.
    pub config: UNet3dConfig,
    blocks: Vec<(&'static str, Block)>,
    final_conv: Conv3d,
}

impl UNet3d {
    /// A freshly initialised U-Net 3D (weights from `seed`).
    pub fn new(config: UNet3dConfig, seed: u64, device: Device) -> Self {
        let mut rng = Rng::new(seed);
        let (f, r, d) = (config.feats, &mut rng, device);
        let up = |a: usize, b: usize, r: &mut Rng| {
            Layer::Up(ConvTranspose3d::new(a, b, 3, [2, 1, 1], r, d))
        };
        let mut blocks = vec![
            (
                "en3",
                Block::conv_block(config.in_channel, 4 * f, 4 * f, r, d),
            ),
            ("en4", Block::conv_block(4 * f, 8 * f, 8 * f, r, d)),
        ];
        let center_in = vec![
            (0, Layer::Conv(Conv3d::new(8 * f, 16 * f, 3, 1, r, d))),
            (1, Layer::Norm(BatchNorm::new(16 * f, r, d))),
        ];
        blocks.push(("center_in", Block { layers: center_in }));
        let mut center_out = vec![
            (0, Layer::Conv(Conv3d::new(16 * f, 16 * f, 3, 1, r, d))),
            (1, Layer::Norm(BatchNorm::new(16 * f, r, d))),
        ];
        center_out.push((3, up(16 * f, 8 * f, r)));
        blocks.push(("center_out", Block { layers: center_out }));
        blocks.push(("dc4", Block::conv_block(16 * f, 8 * f, 8 * f, r, d)));
        let trans3 = vec![
            (0, up(8 * f, 4 * f, r)),
            (1, Layer::Norm(BatchNorm::new(4 * f, r, d))),
        ];
        blocks.push(("trans3", Block { layers: trans3 }));
        blocks.push(("dc3", Block::conv_block(8 * f, 4 * f, 2 * f, r, d)));
        let final_conv = Conv3d::new(2 * f, config.n_classes, 3, 1, r, d);
        UNet3d {
            config,
            blocks,
            final_conv,
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.n_classes
    }

    /// Whether it takes inputs of `shape` (B, T, C, H, W) ([`UNet3dConfig::check_input`]).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        self.config.check_input(shape)
    }

    /// x (B, T, C, H, W), the batch's pad mask → class scores (B, n_classes, H, W). Panics on inputs
    /// [`UNet3d::check_input`] refuses.
    pub fn forward(&self, x: &Tensor, pad: &PadInfo, ctx: &Ctx) -> Tensor {
        let s = x.shape().to_vec();
        if let Err(e) = self.check_input(&s) {
            panic!("{e}");
        }
        assert_eq!(
            pad.mask.len(),
            s[0] * s[1],
            "UNet3D: expected a (B, T) pad mask"
        );
        let (b, t) = (s[0], s[1]);
        let mut input = x.permute(&[0, 2, 1, 3, 4]);
        if self.config.zero_pad && self.config.pad_value != 0.0 {
            let pv = self.config.pad_value;
            let v: Vec<f32> = input
                .to_vec()
                .into_iter()
                .map(|a| if a == pv { 0.0 } else { a })
                .collect();
            input = Tensor::from_vec(v, input.shape(), x.device());
        }
        let block = |name: &str, v: &Tensor| {
            let (_, blk) = self.blocks.iter().find(|(n, _)| *n == name).expect("block");
            blk.forward(v, ctx)
        };
        let en3 = block("en3", &input);
        let en4 = block("en4", &en3.max_pool3d(2));
        let center = block("center_out", &block("center_in", &en4.max_pool3d(2)));
        let t2 = center.shape()[2];
        let dc4 = block("dc4", &Tensor::cat(&[&center, &en4.narrow(2, 0, t2)], 1));
        let trans3 = block("trans3", &dc4);
        let t4 = trans3.shape()[2];
        let dc3 = block("dc3", &Tensor::cat(&[&trans3, &en3.narrow(2, 0, t4)], 1));
        let fin = self.final_conv.forward(&dc3); // (B, classes, T'', H, W)
        if pad.mask.iter().any(|&m| m) {
            let keep: Vec<f32> = (0..b * t4)
                .map(|i| (!pad.mask[(i / t4) * t + i % t4]) as u8 as f32)
                .collect();
            fin.masked_mean(2, &Tensor::from_vec(keep, &[b, t4], x.device()))
        } else {
            fin.mean(&[2], false)
        }
    }
}

impl Module for UNet3d {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (name, blk) in &self.blocks {
            blk.visit(&prefixed(p, name), &mut |pre, m| {
                v.extend(m.named_parameters(pre))
            });
        }
        v.extend(self.final_conv.named_parameters(&prefixed(p, "final")));
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (name, blk) in &self.blocks {
            blk.visit(&prefixed(p, name), &mut |pre, m| {
                v.extend(m.named_buffers(pre))
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_model_parameter_count_and_names() {
        let m = UNet3d::new(UNet3dConfig::get_model(20), 0, Device::Cpu);
        assert_eq!(m.num_parameters(), 1_553_796);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        // Appendix A.4's order and names.
        assert_eq!(names[..3], ["en3.0.weight", "en3.0.bias", "en3.1.weight"]);
        for k in [
            "center_out.3.weight",
            "trans3.1.bias",
            "dc3.4.weight",
            "final.bias",
        ] {
            assert!(names.contains(&k.to_string()), "{k}");
        }
        assert_eq!(m.named_buffers("")[0].0, "en3.1.running_mean");
    }

    #[test]
    fn a_small_forward_has_the_right_shape() {
        let cfg = UNet3dConfig {
            in_channel: 3,
            n_classes: 5,
            feats: 1,
            pad_value: 0.0,
            zero_pad: true,
        };
        let m = UNet3d::new(cfg, 0, Device::Cpu);
        let x = Tensor::rand_uniform(&[2, 5, 3, 8, 8], -1.0, 1.0, 1, Device::Cpu);
        let pad = PadInfo {
            mask: vec![
                false, false, false, false, false, false, false, false, true, true,
            ],
        };
        assert_eq!(m.forward(&x, &pad, &Ctx::eval()).shape(), [2, 5, 8, 8]);
    }
}
