//! U-TAE (Garnot & Landrieu, ICCV 2021; `UTAE` of utae-paps, spec §3): a U-Net whose encoder runs on every
//! date separately (temporally shared), an L-TAE at the lowest resolution that collapses time with
//! attention, and a decoder whose skip connections are collapsed over time with the same attention maps.
//!
//! ```text
//! x (B, T, 10, H, W) ─ in_conv ─ F0 ─ down0 ─ F1 ─ down1 ─ F2 ─ down2 ─ F3 (B, T, 128, H/8, W/8)
//!                                                            L-TAE ─┴→ O (B, 128, H/8, W/8), A (16, B, T, H/8, W/8)
//! O ─ up0(agg(F2, A)) ─ D1 ─ up1(agg(F1, A)) ─ D2 ─ up2(agg(F0, A)) ─ D3 ─ out_conv → logits (B, 20, H, W)
//! ```
//! Reproduced quirks (spec §3.2, §3.3): padded frames are skipped by the encoder blocks (their outputs are
//! exact zeros); with `encoder_norm = batch` in training mode each encoder block first runs once on an
//! all-zero input of the full shape, which updates its BatchNorm running statistics; the class scores are
//! BatchNorm + ReLU outputs; L-TAE's in_norm sees the padded dates. Parameter names are the original
//! state_dict keys (Appendix A.1).

//!
//! Files: [`config`] (the constructor parameters), [`blocks`] (ConvLayer, the down and up blocks),
//! [`geometry`] (which input sides the U-Net takes), this one (the model: encoder, L-TAE, decoder with the
//! temporal aggregation of the skips).

pub mod blocks;
pub mod config;
pub mod geometry;

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{prefixed, Ctx, Module, NormKind};
use crate::models::ltae::Ltae2d;

pub use blocks::{temporally_shared, ConvLayer, DownConvBlock, UpConvBlock};
pub use config::{padding_mode_name, parse_padding_mode, AggMode, UTaeConfig, N_GROUPS};
pub use geometry::UNetGeometry;

/// The input checks of a U-Net model of U-TAE's blocks (U-TAE, U-ConvLSTM): x (B, T, C, H, W) with C =
/// `input_dim` and sides the U-Net takes.
pub fn check_unet_input(
    model: &str,
    shape: &[usize],
    input_dim: usize,
    geometry: &UNetGeometry,
) -> std::result::Result<(), String> {
    let [_, _, c, h, w] = shape else {
        return Err(format!(
            "{model} takes inputs (B, T, C, H, W), got {shape:?}"
        ));
    };
    if *c != input_dim {
        return Err(format!(
            "{model} takes {input_dim} channels (input_dim), got inputs of {c}"
        ));
    }
    geometry.check(model, *h, *w)
}

/// The U-TAE model.
pub struct UTae {
    /// Its configuration.
    pub config: UTaeConfig,
    in_conv: ConvLayer,
    down_blocks: Vec<DownConvBlock>,
    up_blocks: Vec<UpConvBlock>,
    /// The temporal encoder.
    pub temporal_encoder: Ltae2d,
    out_conv: ConvLayer,
}

/// What a forward pass returns.
pub struct UTaeOutput {
    /// Class scores (B, num_classes, H, W) — or, in encoder mode, the last decoder map D3.
    pub out: Tensor,
    /// L-TAE attention (n_head, B, T, H/8, W/8).
    pub attn: Tensor,
    /// Decoder feature maps [O, D1, D2, D3] (PaPs needs them).
    pub maps: Vec<Tensor>,
}

/// The batch's pad information: `pad_mask[b·T + t]` is true for padded dates (derived from the data by the
/// collate function, spec §1.11: a frame entirely equal to the pad value).
#[derive(Debug, Clone)]
pub struct PadInfo {
    /// (B, T) flags.
    pub mask: Vec<bool>,
}

impl PadInfo {
    /// The mask of frames of `x` (B, T, C, H, W, host data) entirely equal to `pad_value`.
    pub fn from_data(x: &[f32], shape: &[usize], pad_value: f32) -> PadInfo {
        let frame: usize = shape[2..].iter().product();
        PadInfo {
            mask: (0..shape[0] * shape[1])
                .map(|f| {
                    x[f * frame..(f + 1) * frame]
                        .iter()
                        .all(|&v| v == pad_value)
                })
                .collect(),
        }
    }
}

impl UTae {
    /// A freshly initialised U-TAE (weights from `seed`, U-TAE's weight_init distributions).
    pub fn new(config: UTaeConfig, seed: u64, device: Device) -> Self {
        config
            .validate()
            .unwrap_or_else(|e| panic!("UTae::new: {e}"));
        let mut rng = Rng::new(seed);
        let c = &config;
        let n = c.encoder_widths.len();
        let (k, s, p, mode) = (c.str_conv_k, c.str_conv_s, c.str_conv_p, c.padding_mode);
        let in_conv = ConvLayer::new(
            &[c.input_dim, c.encoder_widths[0], c.encoder_widths[0]],
            c.encoder_norm,
            3,
            1,
            1,
            true,
            mode,
            &mut rng,
            device,
        );
        let down_blocks = (0..n - 1)
            .map(|i| {
                let (din, dout) = (c.encoder_widths[i], c.encoder_widths[i + 1]);
                DownConvBlock::new(din, dout, [k, s, p], c.encoder_norm, mode, &mut rng, device)
            })
            .collect();
        let up_blocks = (1..n)
            .rev()
            .map(|i| {
                let widths = [
                    c.decoder_widths[i],
                    c.decoder_widths[i - 1],
                    c.encoder_widths[i - 1],
                ];
                UpConvBlock::new(widths, [k, s, p], NormKind::Batch, mode, &mut rng, device)
            })
            .collect();
        let last = c.encoder_widths[n - 1];
        let temporal_encoder =
            Ltae2d::new(last, c.d_model, c.n_head, c.d_k, last, &mut rng, device);
        let mut head = vec![c.decoder_widths[0]];
        head.extend(&c.out_conv);
        let out_conv = ConvLayer::new(
            &head,
            NormKind::Batch,
            3,
            1,
            1,
            true,
            mode,
            &mut rng,
            device,
        );
        UTae {
            config,
            in_conv,
            down_blocks,
            up_blocks,
            temporal_encoder,
            out_conv,
        }
    }

    /// Number of classes (last out_conv width).
    pub fn num_classes(&self) -> usize {
        *self.config.out_conv.last().expect("out_conv non-empty")
    }

    /// Whether it takes inputs of `shape` (B, T, C, H, W) ([`UTaeConfig::check_input`]).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        self.config.check_input(shape)
    }

    /// The forward pass. x (B, T, C, H, W) on the model's device; `days` (B, T) day offsets (0 on padded
    /// dates); `pad` the batch's pad mask. `encoder`: return D3 instead of class scores (PaPs).
    pub fn forward(
        &self,
        x: &Tensor,
        days: &[f32],
        pad: &PadInfo,
        ctx: &Ctx,
        encoder: bool,
    ) -> UTaeOutput {
        let s = x.shape();
        assert_eq!(s.len(), 5, "UTae: expected x (B, T, C, H, W), got {s:?}");
        let (b, t) = (s[0], s[1]);
        assert_eq!(
            pad.mask.len(),
            b * t,
            "UTae: expected a ({b}, {t}) pad mask, got {} flags",
            pad.mask.len()
        );
        let real: Vec<usize> = (0..b * t).filter(|&f| !pad.mask[f]).collect();
        let any_pad = real.len() < b * t;
        let mask = any_pad.then(|| {
            Tensor::from_vec(
                pad.mask.iter().map(|&m| m as u8 as f32).collect(),
                &[b, t],
                x.device(),
            )
        });
        let quirk = ctx.training && self.config.encoder_norm == NormKind::Batch;

        // Encoder, temporally shared, skipping padded frames.
        let mut feature_maps = vec![temporally_shared(
            x,
            &real,
            quirk && self.in_conv.has_batch_norm(),
            |f| self.in_conv.forward(f, ctx),
        )];
        for block in &self.down_blocks {
            let prev = feature_maps.last().expect("at least one map");
            let q = quirk && block.has_batch_norm();
            feature_maps.push(temporally_shared(prev, &real, q, |f| block.forward(f, ctx)));
        }
        // Temporal encoding at the lowest resolution.
        let lt = self.temporal_encoder.forward(
            feature_maps.last().expect("maps"),
            days,
            mask.as_ref(),
            ctx,
        );
        let mut out = lt.out;
        let mut maps = vec![out.clone()];
        // Decoder with temporally aggregated skips, from the lowest resolution up; each level's maps are
        // dropped once aggregated (without autograd that frees them: evaluation's peak is one level lower).
        feature_maps.pop();
        for up in &self.up_blocks {
            let level = feature_maps.pop().expect("one feature map per up block");
            let skip = self.aggregate(&level, &lt.attn, mask.as_ref());
            drop(level);
            out = up.forward(&out, &skip, ctx);
            maps.push(out.clone());
        }
        if !encoder {
            out = self.out_conv.forward(&out, ctx);
        }
        UTaeOutput {
            out,
            attn: lt.attn,
            maps,
        }
    }

    /// `Temporal_Aggregator` (spec §3.5): x (B, T, C, H', W'), attention (G, B, T, h, w), mask (B, T) 1.0 on
    /// padded dates → (B, C, H', W').
    fn aggregate(&self, x: &Tensor, attn: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let xs = x.shape();
        let (b, t, hh, ww) = (xs[0], xs[1], xs[3], xs[4]);
        let a = attn.shape();
        let keep = mask.map(|m| m.neg().add_scalar(1.0)); // 1 on real dates
        match self.config.agg_mode {
            AggMode::AttGroup => {
                let (g, h) = (a[0], a[3]);
                let flat = attn.reshape(&[g * b, t, a[3], a[4]]);
                let resized = if hh > h {
                    flat.upsample_bilinear(hh, ww)
                } else {
                    flat.avg_pool2d(h / hh, h / hh)
                };
                let mut w = resized.reshape(&[g, b, t, hh, ww]);
                if let Some(k) = &keep {
                    w = &w * &k.reshape(&[1, b, t, 1, 1]);
                }
                x.temporal_aggregate(&w)
            }
            AggMode::AttMean => {
                let mean = attn.mean(&[0], false); // (B, T, h, w)
                let mut w = mean.upsample_bilinear(hh, ww).reshape(&[1, b, t, hh, ww]);
                if let Some(k) = &keep {
                    w = &w * &k.reshape(&[1, b, t, 1, 1]);
                }
                x.temporal_aggregate(&w)
            }
            AggMode::Mean => match &keep {
                None => x.mean(&[1], false),
                Some(k) => {
                    let sum = (x * &k.reshape(&[b, t, 1, 1, 1])).sum(&[1], false);
                    let count = k.sum(&[1], false).reshape(&[b, 1, 1, 1]);
                    &sum / &count
                }
            },
        }
    }
}

impl Module for UTae {
    fn named_parameters(&self, _prefix: &str) -> Vec<(String, Tensor)> {
        let p = _prefix;
        let mut v = self.in_conv.named_parameters(&prefixed(p, "in_conv.conv"));
        for (i, d) in self.down_blocks.iter().enumerate() {
            v.extend(d.named_parameters(&prefixed(p, &format!("down_blocks.{i}"))));
        }
        for (i, u) in self.up_blocks.iter().enumerate() {
            v.extend(u.named_parameters(&prefixed(p, &format!("up_blocks.{i}"))));
        }
        v.extend(
            self.temporal_encoder
                .named_parameters(&prefixed(p, "temporal_encoder")),
        );
        v.extend(
            self.out_conv
                .named_parameters(&prefixed(p, "out_conv.conv")),
        );
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.in_conv.named_buffers(&prefixed(p, "in_conv.conv"));
        for (i, d) in self.down_blocks.iter().enumerate() {
            v.extend(d.named_buffers(&prefixed(p, &format!("down_blocks.{i}"))));
        }
        for (i, u) in self.up_blocks.iter().enumerate() {
            v.extend(u.named_buffers(&prefixed(p, &format!("up_blocks.{i}"))));
        }
        v.extend(
            self.temporal_encoder
                .named_buffers(&prefixed(p, "temporal_encoder")),
        );
        v.extend(self.out_conv.named_buffers(&prefixed(p, "out_conv.conv")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::no_grad;
    use crate::engine::ops::conv::conv2d::PaddingMode;

    #[test]
    fn default_config_has_1087260_trainable_parameters() {
        let m = UTae::new(UTaeConfig::default(), 0, Device::Cpu);
        assert_eq!(m.num_parameters(), 1_087_260);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "in_conv.conv.conv.0.weight");
        assert!(names.contains(&"up_blocks.0.up.0.weight".to_string()));
        assert!(names.contains(&"temporal_encoder.attention_heads.Q".to_string()));
        assert!(names.contains(&"out_conv.conv.conv.4.bias".to_string()));
        // 158 state_dict entries with the buffers (Appendix A.1, num_batches_tracked included).
        assert_eq!(names.len() + m.named_buffers("").len(), 158);
    }

    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f`, quietly: a panic inside it prints nothing (a hook installed once skips the panics of a
    /// thread inside `quietly`; every other panic prints as before).
    fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !QUIET.with(|q| q.get()) {
                    previous(info);
                }
            }));
        });
        QUIET.with(|q| q.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        QUIET.with(|q| q.set(false));
        r
    }

    /// `check_input` (`UNetGeometry`) says yes exactly where the model runs: a small U-TAE on the CPU over
    /// sides 1..=36 for several strided convolutions and both padding modes.
    #[test]
    fn check_input_agrees_with_the_model() {
        for ksp in [[4, 2, 1], [3, 2, 1], [2, 2, 0], [3, 1, 1], [5, 3, 1]] {
            for mode in [PaddingMode::Reflect, PaddingMode::Zeros] {
                let config = UTaeConfig {
                    input_dim: 2,
                    encoder_widths: vec![4, 4, 8],
                    decoder_widths: vec![2, 2, 8],
                    out_conv: vec![3],
                    str_conv_k: ksp[0],
                    str_conv_s: ksp[1],
                    str_conv_p: ksp[2],
                    n_head: 2,
                    d_model: 4,
                    d_k: 2,
                    padding_mode: mode,
                    ..UTaeConfig::default()
                };
                let m = UTae::new(config, 0, Device::Cpu);
                let mut works = 0;
                for side in 1..=36 {
                    let shape = [1, 2, 2, side, side];
                    let x = Tensor::from_vec(vec![0.5; 4 * side * side], &shape, Device::Cpu);
                    let pad = PadInfo {
                        mask: vec![false; 2],
                    };
                    let ran = quietly(|| {
                        no_grad(|| {
                            m.forward(&x, &[0.0, 3.0], &pad, &Ctx::eval(), false)
                                .out
                                .to_vec()
                        })
                    })
                    .is_ok();
                    let said = m.check_input(&shape);
                    assert_eq!(ran, said.is_ok(), "{ksp:?} {mode:?} side {side}: {said:?}");
                    works += ran as usize;
                }
                assert!(works > 0, "{ksp:?} {mode:?}: no side ran");
            }
        }
    }
}
