//! U-TAE + PaPs and U-ConvLSTM + PaPs (Parcels-as-Points, Garnot & Landrieu 2021; `PaPs` of utae-paps,
//! spec §6): panoptic segmentation of agricultural parcels. A backbone in encoder mode ([`Backbone`]: U-TAE,
//! or RecUNet as train_panoptic.py's `--backbone uconvlstm` builds it) gives a full-resolution feature map F
//! and the decoder maps [O, D1, D2, D3]; PaPs predicts a centerness heatmap and a saliency map from F, finds
//! parcel centers (one per ground-truth zone in training, the local maxima of the heatmap otherwise), reads a
//! multi-level feature vector at every center and predicts the parcel's size, class and S × S shape, then
//! assembles each parcel's mask from its resized shape and the saliency under its box, and resolves overlaps
//! by a pseudo non-maximum suppression into an instance map and a semantic map.
//!
//! ```text
//! x ─ backbone(encoder) ─ F (B, 32, H, W) ─┬─ heatmap_conv → σ → heatmap (B, 1, H, W) ─ centers (M)
//!                                      └─ saliency_conv → saliency (B, 1, H, W)
//!   maps [O, D1, D2, D3] ─ gather at centers → stack (M, 256) ─┬ size_mlp → (M, 2)   ─ boxes
//!                                                              ├ class_mlp → (M, K)
//!                                                              └ shape_mlp → (M, S, S) ─ resize/crop ┐
//!   masks = σ(shape + saliency crop) ⊙ σ(mask_cnn(shape + saliency crop)) (packed, ragged) ←─────────┘
//! ```
//! Files: [`centers`] (center extraction, boxes, the ragged mask layout), [`nms`] (pseudo-NMS and the output
//! maps), [`loss`] (`PaPsLoss`). Parameter names are the original state_dict keys (Appendix A.2), the
//! `min_confidence` buffer included. Kept quirks are listed where they happen; deliberate differences from
//! the original (which would crash): B = 1 works, a sample with one candidate is a one-element list, boxes
//! are clamped to W along x (the original uses H for both axes; the same on square patches), and in
//! training a batch with fewer than two centers skips the center heads (BatchNorm1d cannot normalise one row).

pub mod centers;
pub mod loss;
pub mod nms;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::{prefixed, Conv2d, Ctx, GroupNorm, Linear, Mlp, Module, NormKind};
use crate::models::kwargs::Kwargs;
use crate::models::recunet::{RecUNet, RecUNetConfig};
use crate::models::utae::{ConvLayer, PadInfo, UTae, UTaeConfig, UTaeOutput};

pub use centers::{Center, InstanceLayout};
pub use nms::Panoptic;

/// PaPs' constructor parameters (spec §6.1), defaults as the original.
#[derive(Debug, Clone, PartialEq)]
pub struct PapsConfig {
    /// Number of classes (background and void included).
    pub num_classes: usize,
    /// S, the side of the predicted shapes.
    pub shape_size: usize,
    /// Whether the residual mask CNN is used (`--no_mask_conv` turns it off).
    pub mask_conv: bool,
    /// Initial confidence cut-off of the pseudo-NMS (then the `min_confidence` buffer).
    pub min_confidence: f32,
    /// Fraction of a candidate mask that must be new to be kept.
    pub min_remain: f32,
    /// Binary threshold of the instance masks.
    pub mask_threshold: f32,
}

impl Default for PapsConfig {
    fn default() -> Self {
        PapsConfig {
            num_classes: 20,
            shape_size: 16,
            mask_conv: true,
            min_confidence: 0.2,
            min_remain: 0.5,
            mask_threshold: 0.4,
        }
    }
}

impl PapsConfig {
    /// From a conf.json object (train_panoptic.py's `vars(config)`, or a fixture's constructor kwargs);
    /// absent keys keep the defaults. `path` names the file in errors.
    pub fn from_json(v: &Value, path: &std::path::Path) -> Result<PapsConfig> {
        let mut c = PapsConfig::default();
        let bad = |k: &str, why: &str| Error::format(path, format!("conf.json key {k:?}: {why}"));
        let num = |k: &str| -> Result<Option<f64>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(k, "expected a number")),
            }
        };
        if let Some(x) = num("num_classes")? {
            c.num_classes = x as usize;
        }
        if let Some(x) = num("shape_size")? {
            if x < 1.0 || x.fract() != 0.0 {
                return Err(bad("shape_size", "expected a positive integer"));
            }
            c.shape_size = x as usize;
        }
        if let Some(x) = v.get("mask_conv") {
            c.mask_conv = x
                .as_bool()
                .ok_or_else(|| bad("mask_conv", "expected true or false"))?;
        }
        for (k, slot) in [
            ("min_confidence", &mut c.min_confidence),
            ("min_remain", &mut c.min_remain),
            ("mask_threshold", &mut c.mask_threshold),
        ] {
            if let Some(x) = num(k)? {
                *slot = x as f32;
            }
        }
        Ok(c)
    }
}

/// The backbones train_panoptic.py's `--backbone` names.
pub const BACKBONES: [&str; 2] = ["utae", "uconvlstm"];

/// PaPs' backbone, in encoder mode (train_panoptic.py's `--backbone`).
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneConfig {
    /// `utae`: U-TAE from the width flags.
    UTae(UTaeConfig),
    /// `uconvlstm`: RecUNet (hard-coded by get_model, [`RecUNetConfig::paps`]; smaller ones from kwargs).
    RecUNet(RecUNetConfig),
}

impl From<UTaeConfig> for BackboneConfig {
    fn from(c: UTaeConfig) -> Self {
        BackboneConfig::UTae(c)
    }
}

impl From<RecUNetConfig> for BackboneConfig {
    fn from(c: RecUNetConfig) -> Self {
        BackboneConfig::RecUNet(c)
    }
}

impl BackboneConfig {
    /// conf.json's `backbone`.
    pub fn name(&self) -> &'static str {
        match self {
            BackboneConfig::UTae(_) => "utae",
            BackboneConfig::RecUNet(_) => "uconvlstm",
        }
    }

    /// The feature map width (`enc_dim`, `decoder_widths[0]`) and the center heads' input width (`stack_dim`,
    /// the sum of the decoder widths).
    pub fn dims(&self) -> (usize, usize) {
        let w = match self {
            BackboneConfig::UTae(u) => &u.decoder_widths,
            BackboneConfig::RecUNet(r) => &r.decoder_widths,
        };
        (w[0], w.iter().sum())
    }

    /// Whether the backbone takes inputs of `shape` (B, T, C, H, W) (`UTaeConfig::check_input`,
    /// `RecUNetConfig::check_input`).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        match self {
            BackboneConfig::UTae(c) => c.check_input(shape),
            BackboneConfig::RecUNet(c) => c.check_input(shape),
        }
    }

    /// The `uconvlstm` backbone: train_panoptic.py's hard-coded RecUNet with `kwargs` (RecUNet's keyword
    /// names, from `path`; a fixture's smaller model) applied. Encoder mode is required.
    pub fn recunet(kwargs: &Value, path: &std::path::Path) -> Result<BackboneConfig> {
        let kw = Kwargs::new(kwargs, path);
        let c = RecUNetConfig::paps().with_kwargs(&kw)?;
        if !c.encoder {
            return Err(kw.bad("encoder", "PaPs takes its backbone in encoder mode (true)"));
        }
        Ok(BackboneConfig::RecUNet(c))
    }
}

/// A PaPs backbone (state_dict prefix `encoder.`).
pub enum Backbone {
    /// U-TAE in encoder mode.
    UTae(UTae),
    /// RecUNet (U-ConvLSTM) in encoder mode.
    RecUNet(RecUNet),
}

impl Backbone {
    /// A freshly initialised backbone (weights from `seed`).
    pub fn new(config: BackboneConfig, seed: u64, device: Device) -> Self {
        match config {
            BackboneConfig::UTae(c) => Backbone::UTae(UTae::new(c, seed, device)),
            BackboneConfig::RecUNet(c) => Backbone::RecUNet(RecUNet::new(c, seed, device)),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> BackboneConfig {
        match self {
            Backbone::UTae(m) => BackboneConfig::UTae(m.config.clone()),
            Backbone::RecUNet(m) => BackboneConfig::RecUNet(m.config.clone()),
        }
    }

    /// Whether it takes inputs of `shape` (B, T, C, H, W) ([`BackboneConfig::check_input`]).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        match self {
            Backbone::UTae(m) => m.config.check_input(shape),
            Backbone::RecUNet(m) => m.config.check_input(shape),
        }
    }

    /// Encoder mode: the last decoder map F (B, enc_dim, H, W), the maps [O, D1, …] and, for U-TAE, the
    /// L-TAE attention masks (RecUNet has none).
    pub fn forward(
        &self,
        x: &Tensor,
        days: &[f32],
        pad: &PadInfo,
        ctx: &Ctx,
    ) -> (Tensor, Vec<Tensor>, Option<Tensor>) {
        match self {
            Backbone::UTae(m) => {
                let UTaeOutput { out, maps, attn } = m.forward(x, days, pad, ctx, true);
                (out, maps, Some(attn))
            }
            Backbone::RecUNet(m) => {
                let (out, maps) = m.forward_maps(x, pad, ctx);
                (out, maps, None)
            }
        }
    }
}

impl Module for Backbone {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        match self {
            Backbone::UTae(m) => m.named_parameters(p),
            Backbone::RecUNet(m) => m.named_parameters(p),
        }
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        match self {
            Backbone::UTae(m) => m.named_buffers(p),
            Backbone::RecUNet(m) => m.named_buffers(p),
        }
    }
}

/// The PaPs model (U-TAE + PaPs or U-ConvLSTM + PaPs).
pub struct Paps {
    /// Its configuration.
    pub config: PapsConfig,
    /// The backbone (encoder mode).
    pub encoder: Backbone,
    /// The pseudo-NMS confidence cut-off (1,), a state_dict buffer (tuned on validation).
    pub min_confidence: Tensor,
    heatmap_conv: ConvLayer,
    saliency_conv: ConvLayer,
    shape_mlp: (Mlp, Linear),
    size_mlp: (Mlp, Linear),
    class_mlp: (Mlp, Linear, Linear),
    mask_cnn: Option<(Conv2d, GroupNorm, Conv2d, Conv2d)>,
}

/// What a forward pass returns (the original's prediction dict).
pub struct PapsOutput {
    /// Centerness heatmap (B, 1, H, W) in (0, 1).
    pub heatmap: Tensor,
    /// Saliency (B, 1, H, W) (raw scores); `None` with `heatmap_only`.
    pub saliency: Option<Tensor>,
    /// The center mask (B, H, W) (never squeezed).
    pub center_mask: Vec<bool>,
    /// The centers in row-major (b, y, x) order (`torch.where`), with their confidence.
    pub centers: Vec<Center>,
    /// Center predictions; `None` with `heatmap_only`, without any center, or (training) with one.
    pub heads: Option<Heads>,
    /// The panoptic maps, when the pseudo-NMS ran.
    pub panoptic: Option<Panoptic>,
    /// The L-TAE attention masks of a U-TAE encoder (n_head, B, T, H/8, W/8); `None` for RecUNet.
    pub attn: Option<Tensor>,
}

/// The per-center predictions.
pub struct Heads {
    /// Sizes (M, 2) (height, width), positive.
    pub size: Tensor,
    /// Class scores (M, K).
    pub semantic: Tensor,
    /// Raw shape logits (M, S, S).
    pub shape: Tensor,
    /// Boxes and where each mask lies in the packed masks.
    pub layout: InstanceLayout,
    /// Instance masks, packed (Σ h·w; see [`InstanceLayout`]), values in (0, 1).
    pub masks: Tensor,
}

impl Paps {
    /// A freshly initialised model (weights from `seed`, the original's `weight_init` distributions).
    pub fn new(backbone: BackboneConfig, config: PapsConfig, seed: u64, device: Device) -> Self {
        let (enc, stack) = backbone.dims();
        let encoder = Backbone::new(backbone, seed, device);
        let mut rng = Rng::new(seed ^ 0x9A95);
        let mode = PaddingMode::Reflect;
        let conv = |rng: &mut Rng| {
            ConvLayer::new(
                &[enc, 32, 1],
                NormKind::Batch,
                3,
                1,
                1,
                false,
                mode,
                rng,
                device,
            )
        };
        let heatmap_conv = conv(&mut rng);
        let saliency_conv = conv(&mut rng);
        let (d, s) = (stack, config.shape_size);
        let shape_mlp = (
            Mlp::new(&[d, d / 2], true, &mut rng, device),
            Linear::xavier(d / 2, s * s, &mut rng, device),
        );
        let size_mlp = (
            Mlp::new(&[d, d / 2, d / 4], true, &mut rng, device),
            Linear::xavier(d / 4, 2, &mut rng, device),
        );
        let class_mlp = (
            Mlp::new(&[d, d / 2], true, &mut rng, device),
            Linear::xavier(d / 2, d / 4, &mut rng, device),
            Linear::xavier(d / 4, config.num_classes, &mut rng, device),
        );
        let zeros = PaddingMode::Zeros;
        let mask_cnn = config.mask_conv.then(|| {
            (
                Conv2d::new(1, 16, 3, 1, 1, zeros, &mut rng, device),
                GroupNorm::new(1, 16, device),
                Conv2d::new(16, 16, 3, 1, 1, zeros, &mut rng, device),
                Conv2d::new(16, 1, 3, 1, 1, zeros, &mut rng, device),
            )
        });
        Paps {
            min_confidence: Tensor::from_vec(vec![config.min_confidence], &[1], Device::Cpu),
            config,
            encoder,
            heatmap_conv,
            saliency_conv,
            shape_mlp,
            size_mlp,
            class_mlp,
            mask_cnn,
        }
    }

    /// A model from a conf.json object (see [`Paps::configs`]).
    pub fn from_conf(
        conf: &Value,
        path: &std::path::Path,
        seed: u64,
        device: Device,
    ) -> Result<Paps> {
        let (utae, paps) = Paps::configs(conf, path)?;
        Ok(Paps::new(utae, paps, seed, device))
    }

    /// The backbone's and the heads' configurations of a conf.json object: a fixture's constructor kwargs
    /// (`{"UTAE": {…}, "PaPs": {…}}` or `{"RecUNet": {…}, "PaPs": {…}}`), or train_panoptic.py's keys side
    /// by side: `backbone` utae (the default) takes U-TAE from the width keys; `uconvlstm` is get_model's
    /// hard-coded RecUNet ([`RecUNetConfig::paps`]; the width keys do not apply), with the RecUNet arguments
    /// of `model_kwargs` or `reference.constructor_kwargs.RecUNet` (a smaller model) applied when present.
    pub fn configs(conf: &Value, path: &std::path::Path) -> Result<(BackboneConfig, PapsConfig)> {
        let paps = PapsConfig::from_json(conf.get("PaPs").unwrap_or(conf), path)?;
        let backbone = if let Some(k) = conf.get("RecUNet") {
            BackboneConfig::recunet(k, path)?
        } else if let Some(u) = conf.get("UTAE") {
            BackboneConfig::UTae(UTaeConfig::from_json(u, path)?)
        } else {
            match conf.get("backbone") {
                None | Some(Value::Null) => BackboneConfig::UTae(UTaeConfig::from_json(conf, path)?),
                Some(Value::String(b)) if b == "utae" => {
                    BackboneConfig::UTae(UTaeConfig::from_json(conf, path)?)
                }
                Some(Value::String(b)) if b == "uconvlstm" => {
                    let empty = Value::Object(serde_json::Map::new());
                    let kw = conf
                        .get("model_kwargs")
                        .filter(|v| !v.is_null())
                        .or_else(|| conf.pointer("/reference/constructor_kwargs/RecUNet"))
                        .unwrap_or(&empty);
                    BackboneConfig::recunet(kw, path)?
                }
                Some(b) => {
                    return Err(Error::format(
                        path,
                        format!(
                            "conf.json key \"backbone\": {b} is not a PaPs backbone (expected one of {})",
                            BACKBONES.join(", ")
                        ),
                    ))
                }
            }
        };
        Ok((backbone, paps))
    }

    /// The cut-off in force (the buffer's value).
    pub fn min_confidence(&self) -> f32 {
        self.min_confidence.item()
    }

    /// Whether it takes inputs of `shape` (B, T, C, H, W): its backbone's check (`Backbone::check_input`).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        self.encoder.check_input(shape)
    }

    /// Sets the `min_confidence` buffer (after tuning).
    pub fn set_min_confidence(&self, v: f32) {
        self.min_confidence.storage().write(&[v]);
    }

    /// The forward pass. x (B, T, C, H, W), `days` (B, T), `pad` the batch's pad mask; `zones` (B·H·W zone
    /// ids, training with supmax) selects one center per zone, else centers are local maxima;
    /// `pseudo_nms` builds the panoptic maps; `heatmap_only` stops after the centers (warm-up).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        days: &[f32],
        pad: &PadInfo,
        ctx: &Ctx,
        zones: Option<&[i64]>,
        pseudo_nms: bool,
        heatmap_only: bool,
    ) -> PapsOutput {
        let (out, maps, attn) = self.encoder.forward(x, days, pad, ctx);
        let heatmap = self.heatmap_conv.forward(&out, ctx).sigmoid();
        let (center_mask, centers) = no_grad(|| centers::extract(&heatmap, zones));
        if heatmap_only {
            return PapsOutput {
                heatmap,
                saliency: None,
                center_mask,
                centers,
                heads: None,
                panoptic: None,
                attn,
            };
        }
        let saliency = self.saliency_conv.forward(&out, ctx);
        let enough = if ctx.training {
            centers.len() >= 2
        } else {
            !centers.is_empty()
        };
        let heads = enough.then(|| self.heads(&maps, &saliency, &centers, ctx));
        let panoptic = pseudo_nms.then(|| {
            let (b, h, w) = (x.shape()[0], x.shape()[3], x.shape()[4]);
            nms::pseudo_nms(
                heads.as_ref(),
                &centers,
                [b, h, w],
                self.config.num_classes,
                self.min_confidence(),
                self.config.min_remain,
                self.config.mask_threshold,
            )
        });
        PapsOutput {
            heatmap,
            saliency: Some(saliency),
            center_mask,
            centers,
            heads,
            panoptic,
            attn,
        }
    }

    /// Size, class and shape at every center, boxes, and the instance masks.
    fn heads(&self, maps: &[Tensor], saliency: &Tensor, centers: &[Center], ctx: &Ctx) -> Heads {
        let levels = maps.len();
        let stack: Vec<Tensor> = maps
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let sh = levels - 1 - i; // resolution halves at each level (as the original assumes)
                let pix: Vec<(usize, usize, usize)> = centers
                    .iter()
                    .map(|c| (c.b, c.y >> sh, c.x >> sh))
                    .collect();
                m.gather_pixels(&pix)
            })
            .collect();
        let stack = Tensor::cat(&stack.iter().collect::<Vec<_>>(), 1);
        let size = self
            .size_mlp
            .1
            .forward(&self.size_mlp.0.forward(&stack, ctx))
            .softplus();
        let (c0, c1, c2) = &self.class_mlp;
        let semantic = c2.forward(&c1.forward(&c0.forward(&stack, ctx)));
        let s = self.config.shape_size;
        let m = centers.len();
        let shape = self
            .shape_mlp
            .1
            .forward(&self.shape_mlp.0.forward(&stack, ctx))
            .reshape(&[m, s, s]);
        let sh = saliency.shape();
        let layout = InstanceLayout::new(centers, &size.to_vec(), sh[2], sh[3]);
        let masks = self.masks(&shape, saliency, &layout);
        Heads {
            size,
            semantic,
            shape,
            layout,
            masks,
        }
    }

    /// The packed instance masks (spec §6.3 step 9).
    fn masks(&self, shape: &Tensor, saliency: &Tensor, layout: &InstanceLayout) -> Tensor {
        let shapes = shape.index_select(0, &layout.order);
        let shape_crop = shapes.resize_crop(&layout.shape_crops());
        let sal_crop = saliency.crop_ragged(&layout.saliency_crops());
        let Some((conv0, norm, conv1, conv2)) = &self.mask_cnn else {
            return &shape_crop.sigmoid() * &sal_crop.sigmoid();
        };
        let z = &shape_crop + &sal_crop;
        // The mask CNN runs on each crop alone (zero padding at the crop's border, GroupNorm over the crop):
        // crops of one size are contiguous in the packed layout and run as one batch.
        let refined: Vec<Tensor> = layout
            .groups()
            .iter()
            .map(|g| {
                let zg = z
                    .narrow(0, g.offset, g.count * g.h * g.w)
                    .reshape(&[g.count, 1, g.h, g.w]);
                let a = norm.forward(&conv0.forward(&zg)).relu();
                let a = conv1.forward(&a).relu();
                conv2.forward(&a).reshape(&[g.count * g.h * g.w])
            })
            .collect();
        let refined = if refined.len() == 1 {
            refined[0].clone()
        } else {
            Tensor::cat(&refined.iter().collect::<Vec<_>>(), 0)
        };
        &z.sigmoid() * &refined.sigmoid()
    }
}

fn mlp_params(m: &Mlp, p: &str, after: &[(usize, &Linear)]) -> Vec<(String, Tensor)> {
    let mut v = m.named_parameters(p);
    for (i, l) in after {
        v.extend(l.named_parameters(&format!("{p}{i}.")));
    }
    v
}

impl Module for Paps {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.encoder.named_parameters(&prefixed(p, "encoder"));
        v.extend(
            self.heatmap_conv
                .named_parameters(&prefixed(p, "heatmap_conv.0")),
        );
        v.extend(
            self.saliency_conv
                .named_parameters(&prefixed(p, "saliency_conv")),
        );
        let sub = |name: &str| prefixed(p, name);
        v.extend(mlp_params(
            &self.shape_mlp.0,
            &sub("shape_mlp"),
            &[(3, &self.shape_mlp.1)],
        ));
        v.extend(mlp_params(
            &self.size_mlp.0,
            &sub("size_mlp"),
            &[(6, &self.size_mlp.1)],
        ));
        let (c0, c1, c2) = &self.class_mlp;
        v.extend(mlp_params(c0, &sub("class_mlp"), &[(3, c1), (4, c2)]));
        if let Some((a, n, b, c)) = &self.mask_cnn {
            v.extend(a.named_parameters(&sub("mask_cnn.0")));
            v.extend(n.named_parameters(&sub("mask_cnn.1")));
            v.extend(b.named_parameters(&sub("mask_cnn.3")));
            v.extend(c.named_parameters(&sub("mask_cnn.5")));
        }
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.encoder.named_buffers(&prefixed(p, "encoder"));
        v.push((format!("{p}min_confidence"), self.min_confidence.clone()));
        v.extend(
            self.heatmap_conv
                .named_buffers(&prefixed(p, "heatmap_conv.0")),
        );
        v.extend(
            self.saliency_conv
                .named_buffers(&prefixed(p, "saliency_conv")),
        );
        v.extend(self.shape_mlp.0.named_buffers(&prefixed(p, "shape_mlp")));
        v.extend(self.size_mlp.0.named_buffers(&prefixed(p, "size_mlp")));
        v.extend(self.class_mlp.0.named_buffers(&prefixed(p, "class_mlp")));
        v
    }
}
