//! RecUNet (`RecUNet` of utae-paps' utae.py, spec §5.4): U-TAE's encoder and decoder around a ConvLSTM
//! bottleneck — the paper's "U-ConvLSTM" (`--model uconvlstm`) and its `buconvlstm` variant.
//!
//! ```text
//! x (B, T, 10, H, W) ─ in_conv ─ F0 ─ down0 ─ F1 ─ down1 ─ F2 ─ down2 ─ F3 (B, T, 128, H/8, W/8)
//!                                            ConvLSTM over all T ─┴→ c_T ─ out_convlstm → O (B, 128, H/8, W/8)
//! O ─ up0(mean(F2)) ─ up1(mean(F1)) ─ up2(mean(F0)) ─ out_conv → logits (B, 20, H, W)
//! ```
//! Reproduced quirks: `in_conv` is built without the padding_mode argument, so it pads by **reflection**
//! while the down blocks, up blocks and out_conv use `padding_mode` (get_model: "zeros"); the embedding is
//! the ConvLSTM's last **cell** state c_T, taken after every step, padded frames included (the pad mask
//! given to the ConvLSTM has no effect on it); skips are the masked temporal mean over the real dates; the
//! up blocks' conv1/conv2 use `encoder_norm` (GroupNorm) while skip_conv and the transposed conv keep
//! BatchNorm; out_conv is conv → BatchNorm → ReLU twice (class scores after a ReLU, as U-TAE's). Padded
//! frames are skipped by the encoder blocks (exact zeros), and with `encoder_norm = batch` in training mode
//! the encoder blocks first run on an all-zero input (the dummy-pass quirk of spec §3.2).
//! `buconvlstm` is, as in get_model, unidirectional with hidden_dim 30; `temporal = "blstm"` (the class's
//! option, `--bidirectional`) runs a second ConvLSTM on the reversed sequence and concatenates the two c_T.
//!
//! Encoder mode (`encoder = True`, the U-ConvLSTM backbone of PaPs, [`RecUNet::forward_maps`]): the last
//! up-block output (before out_conv, which is still built and counted) and the maps [O, D1, D2, D3] (the
//! bottleneck after out_convlstm, then every up block's output); `enc_dim = decoder_widths[0]`,
//! `stack_dim = sum(decoder_widths)`. train_panoptic.py hard-codes its arguments ([`RecUNetConfig::paps`]).

use serde_json::{json, Value};

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{Device, Result, Tensor};
use crate::layers::{prefixed, BConvLstm, Conv2d, ConvLstm, Ctx, Module, NormKind};
use crate::models::kwargs::Kwargs;
use crate::models::utae::{
    padding_mode_name, temporally_shared, ConvLayer, DownConvBlock, PadInfo, UpConvBlock,
};

/// RecUNet's temporal encoder (`temporal`): "lstm" or "blstm".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporal {
    /// One ConvLSTM; embedding c_T.
    Lstm,
    /// Forward and backward ConvLSTMs; embedding [c_T forward, c_T backward].
    Blstm,
}

/// RecUNet's constructor arguments (the original's names).
#[derive(Debug, Clone, PartialEq)]
pub struct RecUNetConfig {
    /// Input channels.
    pub input_dim: usize,
    /// Channels per encoder level.
    pub encoder_widths: Vec<usize>,
    /// Channels per decoder level.
    pub decoder_widths: Vec<usize>,
    /// Output head widths (last = number of classes).
    pub out_conv: Vec<usize>,
    /// Strided conv kernel, stride, padding.
    pub str_conv: [usize; 3],
    /// lstm or blstm.
    pub temporal: Temporal,
    /// Patch side the original sized its initial states with (recorded only; states take x's size).
    pub input_size: usize,
    /// Encoder (and up-block conv) norm.
    pub encoder_norm: NormKind,
    /// ConvLSTM hidden channels.
    pub hidden_dim: usize,
    /// Padding of the down blocks, up blocks and out_conv (in_conv always reflects).
    pub padding_mode: PaddingMode,
    /// Temporal pad value.
    pub pad_value: f32,
    /// Encoder mode (PaPs' backbone): the forward pass stops before out_conv and returns the decoder maps.
    pub encoder: bool,
}

impl RecUNetConfig {
    /// get_model's `uconvlstm` (hidden 64, 1,520,540 parameters) or, with `hidden_dim` 30, `buconvlstm`.
    pub fn get_model(hidden_dim: usize, num_classes: usize) -> RecUNetConfig {
        RecUNetConfig {
            input_dim: 10,
            encoder_widths: vec![64, 64, 64, 128],
            decoder_widths: vec![32, 32, 64, 128],
            out_conv: vec![32, num_classes],
            str_conv: [4, 2, 1],
            temporal: Temporal::Lstm,
            input_size: 128,
            encoder_norm: NormKind::Group,
            hidden_dim,
            padding_mode: PaddingMode::Zeros,
            pad_value: 0.0,
            encoder: false,
        }
    }

    /// get_model's panoptic `uconvlstm` backbone (train_panoptic.py hard-codes it; the width flags do not
    /// apply): get_model's `uconvlstm` in encoder mode, 20 classes in its unused out_conv.
    pub fn paps() -> RecUNetConfig {
        RecUNetConfig {
            encoder: true,
            ..RecUNetConfig::get_model(64, 20)
        }
    }

    /// The width of the full-resolution feature map (the original's `enc_dim`, `decoder_widths[0]`).
    pub fn enc_dim(&self) -> usize {
        self.decoder_widths[0]
    }

    /// The width of the stacked decoder maps (the original's `stack_dim`, `sum(decoder_widths)`).
    pub fn stack_dim(&self) -> usize {
        self.decoder_widths.iter().sum()
    }

    /// Whether U-ConvLSTM takes inputs of `shape` (B, T, C, H, W): C = input_dim and sides its U-Net takes
    /// (`models::utae::UNetGeometry`); if not, why.
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        let geometry = crate::models::utae::UNetGeometry {
            levels: self.encoder_widths.len(),
            ksp: self.str_conv,
            mode: self.padding_mode,
        };
        crate::models::utae::check_unet_input("U-ConvLSTM", shape, self.input_dim, &geometry)
    }

    /// `self` with the constructor arguments of `kw` (RecUNet's keyword names) applied.
    pub fn with_kwargs(mut self, kw: &Kwargs) -> Result<RecUNetConfig> {
        kw.check_known(&[
            "input_dim",
            "encoder_widths",
            "decoder_widths",
            "out_conv",
            "str_conv_k",
            "str_conv_s",
            "str_conv_p",
            "temporal",
            "input_size",
            "encoder_norm",
            "hidden_dim",
            "encoder",
            "padding_mode",
            "pad_value",
        ])?;
        kw.size("input_dim", &mut self.input_dim)?;
        kw.list("encoder_widths", &mut self.encoder_widths)?;
        kw.list("decoder_widths", &mut self.decoder_widths)?;
        kw.list("out_conv", &mut self.out_conv)?;
        for (k, i) in [("str_conv_k", 0), ("str_conv_s", 1), ("str_conv_p", 2)] {
            if i == 2 {
                kw.usize(k, &mut self.str_conv[i])?; // padding: 0 is a padding
            } else {
                kw.size(k, &mut self.str_conv[i])?;
            }
        }
        kw.size("input_size", &mut self.input_size)?;
        kw.size("hidden_dim", &mut self.hidden_dim)?;
        kw.f32("pad_value", &mut self.pad_value)?;
        if let Some(s) = kw.string("temporal")? {
            self.temporal = match s.as_str() {
                "lstm" => Temporal::Lstm,
                "blstm" => Temporal::Blstm,
                _ => return Err(kw.bad("temporal", "expected lstm or blstm")),
            };
        }
        if let Some(s) = kw.string("encoder_norm")? {
            self.encoder_norm = NormKind::parse(&s);
        }
        if let Some(s) = kw.string("padding_mode")? {
            self.padding_mode = crate::models::utae::parse_padding_mode(&s)
                .ok_or_else(|| kw.bad("padding_mode", "expected reflect or zeros"))?;
        }
        if let Some(e) = kw.bool("encoder")? {
            self.encoder = e;
        }
        let n = self.encoder_widths.len();
        if n < 2
            || self.decoder_widths.len() != n
            || self.decoder_widths[n - 1] != self.encoder_widths[n - 1]
            || self.out_conv.is_empty()
            || self.hidden_dim == 0
        {
            return Err(kw.bad("encoder_widths", "encoder and decoder widths of the same length >= 2 ending alike, a non-empty out_conv and hidden_dim > 0"));
        }
        crate::models::utae::config::check_group_norm(self.encoder_norm, &self.encoder_widths)
            .map_err(|e| kw.bad("encoder_widths", &e))?;
        Ok(self)
    }

    /// The constructor arguments (conf.json's `model_kwargs`).
    pub fn kwargs(&self) -> Value {
        json!({
            "input_dim": self.input_dim, "encoder_widths": self.encoder_widths,
            "decoder_widths": self.decoder_widths, "out_conv": self.out_conv,
            "str_conv_k": self.str_conv[0], "str_conv_s": self.str_conv[1], "str_conv_p": self.str_conv[2],
            "temporal": match self.temporal { Temporal::Lstm => "lstm", Temporal::Blstm => "blstm" },
            "input_size": self.input_size, "encoder_norm": self.encoder_norm.name(), "hidden_dim": self.hidden_dim,
            "encoder": self.encoder, "padding_mode": padding_mode_name(self.padding_mode), "pad_value": self.pad_value,
        })
    }
}

/// A function of (state_dict prefix, sub-module) listing named tensors.
type Visitor<'a> = dyn FnMut(&str, &dyn Module) -> Vec<(String, Tensor)> + 'a;

enum Encoder {
    Lstm(ConvLstm),
    Blstm(BConvLstm),
}

/// The RecUNet model.
pub struct RecUNet {
    /// Its configuration.
    pub config: RecUNetConfig,
    in_conv: ConvLayer,
    down_blocks: Vec<DownConvBlock>,
    up_blocks: Vec<UpConvBlock>,
    temporal_encoder: Encoder,
    out_convlstm: Conv2d,
    out_conv: ConvLayer,
}

impl RecUNet {
    /// Whether it takes inputs of `shape` (B, T, C, H, W) ([`RecUNetConfig::check_input`]).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        self.config.check_input(shape)
    }

    /// A freshly initialised RecUNet (weights from `seed`).
    pub fn new(config: RecUNetConfig, seed: u64, device: Device) -> Self {
        let mut rng = Rng::new(seed);
        let (c, rng) = (&config, &mut rng);
        let (n, norm, mode) = (c.encoder_widths.len(), c.encoder_norm, c.padding_mode);
        let (ew, dw) = (&c.encoder_widths, &c.decoder_widths);
        let in_conv = ConvLayer::new(
            &[c.input_dim, ew[0], ew[0]],
            norm,
            3,
            1,
            1,
            true,
            PaddingMode::Reflect,
            rng,
            device,
        );
        let down_blocks = (0..n - 1)
            .map(|i| DownConvBlock::new(ew[i], ew[i + 1], c.str_conv, norm, mode, rng, device))
            .collect();
        let up_blocks = (1..n)
            .rev()
            .map(|i| {
                UpConvBlock::new(
                    [dw[i], dw[i - 1], ew[i - 1]],
                    c.str_conv,
                    norm,
                    mode,
                    rng,
                    device,
                )
            })
            .collect();
        let (last, hd) = (ew[n - 1], c.hidden_dim);
        let (temporal_encoder, emb) = match c.temporal {
            Temporal::Lstm => (Encoder::Lstm(ConvLstm::new(last, hd, rng, device)), hd),
            Temporal::Blstm => (
                Encoder::Blstm(BConvLstm::new(last, hd, rng, device)),
                2 * hd,
            ),
        };
        let out_convlstm = Conv2d::new(emb, last, 3, 1, 1, PaddingMode::Zeros, rng, device);
        let head: Vec<usize> = [dw[0]]
            .into_iter()
            .chain(c.out_conv.iter().copied())
            .collect();
        let out_conv = ConvLayer::new(&head, NormKind::Batch, 3, 1, 1, true, mode, rng, device);
        RecUNet {
            config,
            in_conv,
            down_blocks,
            up_blocks,
            temporal_encoder,
            out_convlstm,
            out_conv,
        }
    }

    /// Number of classes (last out_conv width).
    pub fn num_classes(&self) -> usize {
        *self.config.out_conv.last().expect("out_conv non-empty")
    }

    /// x (B, T, C, H, W), the batch's pad mask → class scores (B, num_classes, H, W) (out_conv applied
    /// whatever `encoder` says; PaPs calls [`RecUNet::forward_maps`]).
    pub fn forward(&self, x: &Tensor, pad: &PadInfo, ctx: &Ctx) -> Tensor {
        let (out, _) = self.decode(x, pad, ctx, false);
        self.out_conv.forward(&out, ctx)
    }

    /// Encoder mode (`RecUNet.forward` with `encoder = True`): the last up-block output (B, `decoder_widths[0]`,
    /// H, W), before out_conv, and the maps [bottleneck after out_convlstm (B, 128, H/8, W/8), up block 0's
    /// output, up block 1's, …] (the last one is the first output again).
    pub fn forward_maps(&self, x: &Tensor, pad: &PadInfo, ctx: &Ctx) -> (Tensor, Vec<Tensor>) {
        self.decode(x, pad, ctx, true)
    }

    /// Encoder, ConvLSTM and up blocks; the maps when `return_maps`.
    fn decode(
        &self,
        x: &Tensor,
        pad: &PadInfo,
        ctx: &Ctx,
        return_maps: bool,
    ) -> (Tensor, Vec<Tensor>) {
        let s = x.shape();
        assert!(
            s.len() == 5 && pad.mask.len() == s[0] * s[1],
            "RecUNet: expected x (B, T, C, H, W) and a (B, T) pad mask, got {s:?} and {} flags",
            pad.mask.len()
        );
        let (b, t) = (s[0], s[1]);
        let real: Vec<usize> = (0..b * t).filter(|&f| !pad.mask[f]).collect();
        let quirk = ctx.training && self.config.encoder_norm == NormKind::Batch;
        let mut maps = vec![temporally_shared(
            x,
            &real,
            quirk && self.in_conv.has_batch_norm(),
            |f| self.in_conv.forward(f, ctx),
        )];
        for block in &self.down_blocks {
            let prev = maps.last().expect("a map");
            maps.push(temporally_shared(
                prev,
                &real,
                quirk && block.has_batch_norm(),
                |f| block.forward(f, ctx),
            ));
        }
        let last = maps.last().expect("a map");
        let emb = match &self.temporal_encoder {
            Encoder::Lstm(l) => l.forward(last),
            Encoder::Blstm(l) => l.forward(last),
        };
        let mut out = self.out_convlstm.forward(&emb);
        let mut decoded = Vec::new();
        if return_maps {
            decoded.push(out.clone());
        }
        let keep = (real.len() < b * t).then(|| {
            Tensor::from_vec(
                pad.mask.iter().map(|&m| (!m) as u8 as f32).collect(),
                &[b, t],
                x.device(),
            )
        });
        for (i, up) in self.up_blocks.iter().enumerate() {
            let f = &maps[maps.len() - 2 - i];
            let skip = match &keep {
                Some(k) => f.masked_mean(1, k),
                None => f.mean(&[1], false),
            };
            out = up.forward(&out, &skip, ctx);
            if return_maps {
                decoded.push(out.clone());
            }
        }
        (out, decoded)
    }
}

impl Module for RecUNet {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        self.visit(p, &mut |prefix, m| m.named_parameters(prefix))
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        self.visit(p, &mut |prefix, m| m.named_buffers(prefix))
    }
}

impl RecUNet {
    /// Every sub-module with its state_dict prefix, in the original's registration order.
    fn visit(&self, p: &str, f: &mut Visitor) -> Vec<(String, Tensor)> {
        let mut v = f(&prefixed(p, "in_conv.conv"), &self.in_conv);
        for (i, d) in self.down_blocks.iter().enumerate() {
            v.extend(f(&prefixed(p, &format!("down_blocks.{i}")), d));
        }
        for (i, u) in self.up_blocks.iter().enumerate() {
            v.extend(f(&prefixed(p, &format!("up_blocks.{i}")), u));
        }
        let te = prefixed(p, "temporal_encoder");
        v.extend(match &self.temporal_encoder {
            Encoder::Lstm(l) => f(&te, l),
            Encoder::Blstm(l) => f(&te, l),
        });
        v.extend(f(&prefixed(p, "out_convlstm"), &self.out_convlstm));
        v.extend(f(&prefixed(p, "out_conv.conv"), &self.out_conv));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_model_parameter_counts_and_names() {
        // spec §5.7: uconvlstm 1,520,540; buconvlstm (hidden 30) 1,209,508.
        let m = RecUNet::new(RecUNetConfig::get_model(64, 20), 0, Device::Cpu);
        assert_eq!(m.num_parameters(), 1_520_540);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"temporal_encoder.cell_list.0.conv.weight".to_string()));
        assert!(names.contains(&"out_convlstm.weight".to_string()));
        assert!(names.contains(&"up_blocks.2.conv2.conv.1.weight".to_string()));
        let b = RecUNet::new(RecUNetConfig::get_model(30, 20), 0, Device::Cpu);
        assert_eq!(b.num_parameters(), 1_209_508);
        // The class's bidirectional option: a second cell (442,624 → 2 × (158·120·9 + 120)) and a wider
        // out_convlstm.
        let mut c = RecUNetConfig::get_model(30, 20);
        c.temporal = Temporal::Blstm;
        let bi = RecUNet::new(c, 0, Device::Cpu);
        assert_eq!(
            bi.num_parameters(),
            1_209_508 + (158 * 120 * 9 + 120) + 128 * 30 * 9
        );
    }
}
