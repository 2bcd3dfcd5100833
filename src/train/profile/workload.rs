//! The workloads `sitsgpu profile` and the benches run: a model of the asked shape with random weights and
//! random inputs ([`Workload`]), prepared on a device ([`Prepared`]) so that a training step or an evaluation
//! forward pass can be repeated, as training and `predict` do them.

use serde_json::{json, Value};

use crate::engine::precision::precision;
use crate::engine::{no_grad, Device, Error, Precision, Result, Tensor};
use crate::layers::{Ctx, Module, EVAL_SPLIT_BYTES};
use crate::models::paps::loss::{paps_loss, PapsLossConfig, TARGET_CHANNELS};
use crate::models::paps::{BackboneConfig, Paps, PapsConfig};
use crate::models::pse::focal_loss;
use crate::models::recunet::RecUNetConfig;
use crate::models::semantic::{SemanticConfig, SemanticModel, MODELS};
use crate::models::stclassifier::{PixelSetClassifier, PixelSetModelConfig, TemporalKind};
use crate::models::utae::{PadInfo, UTaeConfig};
use crate::train::{Adam, AdamConfig};

/// Which model a workload runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// A semantic model (U-TAE or a baseline) with this configuration, on (batch, dates, 10, size, size)
    /// patches.
    Semantic(SemanticConfig),
    /// A pixel-set classifier (PSE + L-TAE / TAE / GRU / TempCNN at its class defaults) on
    /// (batch, dates, 10, pixels) parcels with 4 extra features.
    PixelSet(TemporalKind),
    /// U-TAE + PaPs or U-ConvLSTM + PaPs (the backbone's and the heads' configurations) on patches as
    /// `Semantic`, with synthetic parcels ([`synthetic_parcels`]) as the instance target.
    Panoptic(BackboneConfig, PapsConfig),
}

/// A model and the shape of its synthetic batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The model.
    pub model: ModelSpec,
    /// Samples per batch (patches or parcels).
    pub batch: usize,
    /// Dates per sample (no padding).
    pub dates: usize,
    /// U-TAE: patch side in pixels.
    pub size: usize,
    /// Pixel sets: pixels per parcel.
    pub pixels: usize,
    /// U-TAE: the patch width when it differs from `size` (the height).
    pub width: Option<usize>,
    /// U-TAE: the real dates of each sample (at most `dates`; the others are padding, zero frames at the end
    /// as the collate function pads). Empty: every date real.
    pub lengths: Vec<usize>,
    /// Pixel sets: the real pixels of each parcel (at most `pixels`; fewer are followed by copies of pixel 0
    /// masked out, and 0 is an empty parcel — zero pixels, mask `[1, 0, …]` — as the loader pads). Empty: all.
    pub real_pixels: Vec<usize>,
    /// Seed of the weights (`seed`) and of the inputs (`seed + 1`, `seed + 2`).
    pub seed: u64,
    /// Semantic evaluation: a batch whose input is larger runs in parts within it (bytes;
    /// `Ctx::split_input_bytes`, 64 MiB by default).
    pub split_input_bytes: usize,
}

/// The small U-TAE of the fixtures (widths an eighth of the paper's): [`UTaeConfig::small`].
pub fn utae_small_config() -> UTaeConfig {
    UTaeConfig::small()
}

/// The `small` constructor arguments of a baseline (widths about an eighth of get_model's, as the fixtures'
/// U-TAE): RecUNet with U-TAE small's widths, FPN with 8 channels a level, ConvLSTM / ConvGRU with 20 / 22
/// hidden channels, U-Net 3D with feats 1.
pub fn small_kwargs(model: &str) -> Value {
    match model {
        "uconvlstm" | "buconvlstm" => json!({
            "encoder_widths": [8, 12, 16, 20], "decoder_widths": [4, 8, 12, 20], "out_conv": [8, 20],
            "hidden_dim": if model == "uconvlstm" { 8 } else { 4 },
        }),
        "fpn" => json!({"inconv": [4, 8], "n_channels": 8, "hidden_size": 11}),
        "convlstm" => json!({"hidden_dim": 20}),
        "convgru" => json!({"hidden_dim": 22}),
        "unet3d" => json!({"feats": 1}),
        _ => json!({}),
    }
}

/// U-TAE `paper` (the default configuration) or small (the fixtures' widths).
fn utae_config(paper: bool) -> UTaeConfig {
    if paper {
        UTaeConfig::default()
    } else {
        utae_small_config()
    }
}

impl Workload {
    /// U-TAE `small` (the fixtures' widths) or `paper` (the default configuration).
    pub fn utae(config: &str, batch: usize, dates: usize, size: usize) -> Result<Workload> {
        Workload::semantic("utae", config, batch, dates, size)
    }

    /// U-TAE + PaPs: `small` (U-TAE small and shapes of 8 × 8, as the fixture `utae_paps_small`) or `paper`
    /// (train_panoptic.py's defaults).
    pub fn panoptic(config: &str, batch: usize, dates: usize, size: usize) -> Result<Workload> {
        Workload::paps("utae", config, batch, dates, size)
    }

    /// PaPs on the backbone `backbone` (`utae` or `uconvlstm`): `small` (U-TAE small, or RecUNet with
    /// [`small_kwargs`] in encoder mode; shapes of 8 × 8) or `paper` (train_panoptic.py's defaults; for
    /// uconvlstm get_model's hard-coded RecUNet).
    pub fn paps(
        backbone: &str,
        config: &str,
        batch: usize,
        dates: usize,
        size: usize,
    ) -> Result<Workload> {
        let mut w = Workload::semantic("utae", config, batch, dates, size)?;
        let backbone = match backbone {
            "utae" => BackboneConfig::UTae(utae_config(config == "paper")),
            "uconvlstm" if config == "small" => {
                let mut kw = small_kwargs("uconvlstm");
                kw["encoder"] = json!(true);
                BackboneConfig::recunet(&kw, std::path::Path::new("profile"))?
            }
            "uconvlstm" => BackboneConfig::RecUNet(RecUNetConfig::paps()),
            other => {
                return Err(Error::Invalid(format!(
                    "PaPs backbone {other:?}: expected utae or uconvlstm"
                )))
            }
        };
        let paps = if config == "small" {
            PapsConfig {
                shape_size: 8,
                ..PapsConfig::default()
            }
        } else {
            PapsConfig::default()
        };
        w.model = ModelSpec::Panoptic(backbone, paps);
        Ok(w)
    }

    /// A semantic model by its `--model` name, `small` ([`utae_small_config`], [`small_kwargs`]) or `paper`
    /// (get_model's configuration).
    pub fn semantic(
        model: &str,
        config: &str,
        batch: usize,
        dates: usize,
        size: usize,
    ) -> Result<Workload> {
        let paper = match config {
            "small" => false,
            "paper" => true,
            other => {
                return Err(Error::Invalid(format!(
                    "--config {other:?}: expected small or paper"
                )))
            }
        };
        let cfg = if model == "utae" {
            SemanticConfig::UTae(utae_config(paper))
        } else {
            let kw = if paper {
                json!({})
            } else {
                small_kwargs(model)
            };
            SemanticConfig::baseline(model, 20, 0.0, &kw, std::path::Path::new("profile"))?
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "--model {model:?}: expected one of {}",
                        MODELS.join(", ")
                    ))
                })?
        };
        Ok(Workload {
            model: ModelSpec::Semantic(cfg),
            batch,
            dates,
            size,
            pixels: 0,
            width: None,
            lengths: Vec::new(),
            split_input_bytes: EVAL_SPLIT_BYTES,
            real_pixels: Vec::new(),
            seed: 0,
        })
    }

    /// A pixel-set classifier by its train.py name (pse_ltae, pse_tae, pse_gru, pse_tempcnn).
    pub fn pixel_set(model: &str, batch: usize, dates: usize, pixels: usize) -> Result<Workload> {
        let kind = TemporalKind::parse(model).ok_or_else(|| {
            Error::Invalid(format!(
                "--model {model:?}: expected a semantic model ({}), utae_paps, uconvlstm_paps or pse_ltae, pse_tae, pse_gru, pse_tempcnn",
                MODELS.join(", ")
            ))
        })?;
        Ok(Workload {
            model: ModelSpec::PixelSet(kind),
            batch,
            dates,
            size: 0,
            pixels,
            width: None,
            lengths: Vec::new(),
            split_input_bytes: EVAL_SPLIT_BYTES,
            real_pixels: Vec::new(),
            seed: 0,
        })
    }

    /// A one-line description ("utae B2 T8 32x32", "pse_ltae B128 T24 S64").
    pub fn describe(&self) -> String {
        match &self.model {
            ModelSpec::Semantic(SemanticConfig::UTae(c)) => format!(
                "utae (encoder {:?}) B{} T{} {}x{}",
                c.encoder_widths, self.batch, self.dates, self.size, self.size
            ),
            ModelSpec::Semantic(c) => format!(
                "{} ({}) B{} T{} {}x{}",
                c.name(),
                c.kwargs().unwrap_or_default(),
                self.batch,
                self.dates,
                self.size,
                self.size
            ),
            ModelSpec::Panoptic(u, p) => format!(
                "{}_paps (encoder {:?}, shapes {}²) B{} T{} {}x{}",
                u.name(),
                match u {
                    BackboneConfig::UTae(c) => &c.encoder_widths,
                    BackboneConfig::RecUNet(c) => &c.encoder_widths,
                },
                p.shape_size,
                self.batch,
                self.dates,
                self.size,
                self.width.unwrap_or(self.size)
            ),
            ModelSpec::PixelSet(k) => format!(
                "{} B{} T{} S{}",
                k.name(),
                self.batch,
                self.dates,
                self.pixels
            ),
        }
    }

    /// Whether the model takes this workload's inputs (`SemanticConfig::check_input`,
    /// `BackboneConfig::check_input`): an error naming the model and what fails, before anything runs.
    pub fn check(&self) -> Result<()> {
        let shape = [
            self.batch,
            self.dates,
            10,
            self.size,
            self.width.unwrap_or(self.size),
        ];
        let checked = match &self.model {
            ModelSpec::Semantic(c) => c.check_input(&shape),
            ModelSpec::Panoptic(backbone, _) => backbone.check_input(&shape),
            ModelSpec::PixelSet(_) => Ok(()),
        };
        checked.map_err(|e| Error::Invalid(format!("{}: {e}", self.describe())))
    }

    /// The model (seeded random weights), its inputs and an Adam optimizer on `device`.
    pub fn prepare(&self, device: Device) -> Prepared {
        let (b, t, seed) = (self.batch, self.dates, self.seed);
        match &self.model {
            ModelSpec::Semantic(cfg) => {
                let model = cfg.build(seed, device);
                let (x, days, pad) = self.patch_inputs(device);
                let (h, w) = (self.size, self.width.unwrap_or(self.size));
                let classes = model.num_classes();
                let target: Vec<f32> = (0..b * h * w).map(|i| (i % classes) as f32).collect();
                let opt = Adam::new(model.parameters(), AdamConfig::default());
                Prepared::Semantic {
                    days,
                    pad,
                    split_input_bytes: self.split_input_bytes,
                    target: Tensor::from_vec(target, &[b, h, w], device),
                    model: Box::new(model),
                    x,
                    opt,
                }
            }
            ModelSpec::Panoptic(backbone, paps) => {
                let model = Paps::new(backbone.clone(), paps.clone(), seed, device);
                let (x, days, pad) = self.patch_inputs(device);
                let (h, w) = (self.size, self.width.unwrap_or(self.size));
                let (target, zones) = synthetic_parcels(b, h, w, seed + 3);
                let opt = Adam::new(model.parameters(), AdamConfig::default());
                Prepared::Panoptic {
                    model: Box::new(model),
                    x,
                    days,
                    pad,
                    target,
                    zones,
                    opt,
                }
            }
            ModelSpec::PixelSet(kind) => {
                // Bespoke positions every 14 days for the attention models (train.py's dates are days of
                // the year); the class defaults otherwise.
                let positions: Vec<i64> = (0..t as i64).map(|i| 14 * i).collect();
                let conf = match kind {
                    TemporalKind::Ltae | TemporalKind::Tae => {
                        json!({"positions": positions, "len_max_seq": t})
                    }
                    TemporalKind::Gru => json!({}),
                    // TempCNN flattens (T, nker) into its MLP: seq_len must be the batch's T.
                    TemporalKind::TempCnn => json!({ "seq_len": t }),
                };
                let c = PixelSetModelConfig::from_json_as(
                    *kind,
                    &conf,
                    None,
                    std::path::Path::new("profile"),
                )
                .expect("the class defaults are a valid configuration");
                let model = PixelSetClassifier::new(c, seed, device);
                let s = self.pixels;
                let mut x =
                    Tensor::rand_uniform(&[b, t, 10, s], -1.0, 1.0, seed + 1, Device::Cpu).to_vec();
                let mut mask = vec![1.0; b * t * s];
                for i in 0..b {
                    let n = self.real_pixels.get(i).copied().unwrap_or(s).min(s);
                    for f in i * t * 10..(i + 1) * t * 10 {
                        // Row f = (date, band): copies of pixel 0 past the real pixels; all zero for an
                        // empty parcel.
                        let row = &mut x[f * s..(f + 1) * s];
                        let first = if n == 0 { 0.0 } else { row[0] };
                        row[n..].fill(first);
                    }
                    for r in i * t..(i + 1) * t {
                        let m = &mut mask[r * s..(r + 1) * s];
                        m.fill(0.0);
                        m[..n.max(1)].fill(1.0);
                    }
                }
                let opt = Adam::new(model.parameters(), AdamConfig::default());
                Prepared::PixelSet {
                    x: Tensor::from_vec(x, &[b, t, 10, s], device),
                    mask,
                    extra: Tensor::rand_uniform(&[b, t, 4], -1.0, 1.0, seed + 2, device),
                    targets: (0..b).map(|i| (i + seed as usize) % 20).collect(),
                    model: Box::new(model),
                    opt,
                }
            }
        }
    }
}

impl Workload {
    /// Random patches (B, T, 10, H, W) in [-1, 1) with the padding of [`Workload::lengths`] (zero frames at
    /// the end, day 0), their day offsets (every 7 days, or random gaps of 1–20 days from day −3 when the
    /// lengths are given) and the pad mask.
    fn patch_inputs(&self, device: Device) -> (Tensor, Vec<f32>, PadInfo) {
        let (b, t, seed) = (self.batch, self.dates, self.seed);
        let c_in = 10; // as `check`
        let (h, w) = (self.size, self.width.unwrap_or(self.size));
        let frame = c_in * h * w;
        let mut x =
            Tensor::rand_uniform(&[b, t, c_in, h, w], -1.0, 1.0, seed + 1, Device::Cpu).to_vec();
        let len = |i: usize| self.lengths.get(i).copied().unwrap_or(t).min(t);
        let mut days = vec![0.0; b * t];
        let mut rng = crate::engine::rng::Rng::new(seed + 2);
        for i in 0..b {
            // Padded dates: zero frames and day 0; real ones: increasing offsets (one before the
            // reference date when there are several).
            x[(i * t + len(i)) * frame..(i + 1) * t * frame].fill(0.0);
            let mut day = if self.lengths.is_empty() { 0.0 } else { -3.0 };
            for j in 0..len(i) {
                days[i * t + j] = day;
                day += if self.lengths.is_empty() {
                    7.0
                } else {
                    1.0 + (rng.next_f32() * 20.0).floor()
                };
            }
        }
        let pad = PadInfo {
            mask: (0..b * t).map(|f| f % t >= len(f / t)).collect(),
        };
        (Tensor::from_vec(x, &[b, t, c_in, h, w], device), days, pad)
    }
}

/// A synthetic instance target (B·H·W·7, the loader's layout, `data::pastis` `instance_target`) and zone
/// ids (B·H·W): the patch cut into 8 × 8 blocks, three in four of them a parcel (its own instance and zone,
/// a Gaussian centerness peak of σ 2 at its middle, a class in 1..=18 drawn from `seed`), the rest
/// background (instance, zone and class 0).
pub fn synthetic_parcels(b: usize, h: usize, w: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = crate::engine::rng::Rng::new(seed);
    let (mut target, mut zones) = (Vec::with_capacity(b * h * w * TARGET_CHANNELS), Vec::new());
    for _ in 0..b {
        let (bh, bw) = (h.div_ceil(8), w.div_ceil(8));
        let mut parcel = vec![0i64; bh * bw];
        let mut class = vec![0.0f64; bh * bw];
        for k in 0..bh * bw {
            if k % 4 != 3 {
                parcel[k] = k as i64 + 1;
                class[k] = 1.0 + rng.below(18) as f64;
            }
        }
        let block = |y: usize, x: usize| (y / 8) * bw + x / 8;
        let (mut heat, mut inst, mut sem) = (vec![0.0; h * w], vec![0i64; h * w], vec![0.0; h * w]);
        for y in 0..h {
            for x in 0..w {
                let k = block(y, x);
                let p = y * w + x;
                inst[p] = parcel[k];
                sem[p] = class[k];
                if parcel[k] != 0 {
                    let (cy, cx) = ((y / 8 * 8 + 4).min(h - 1), (x / 8 * 8 + 4).min(w - 1));
                    let d2 = (y as f64 - cy as f64).powi(2) + (x as f64 - cx as f64).powi(2);
                    heat[p] = (-d2 / 8.0).exp();
                }
            }
        }
        target.extend(crate::data::pastis::instance_target(
            &heat, &inst, &inst, &sem, h, w,
        ));
        zones.extend(inst);
    }
    (target, zones)
}

/// A built workload, ready to step.
pub enum Prepared {
    /// A semantic model and its batch.
    Semantic {
        /// The model.
        model: Box<SemanticModel>,
        /// Input (B, T, C, H, W).
        x: Tensor,
        /// Day offsets (B, T).
        days: Vec<f32>,
        /// No padded dates.
        pad: PadInfo,
        /// The evaluation forward's `Ctx::split_input_bytes`.
        split_input_bytes: usize,
        /// Class targets (B, H, W).
        target: Tensor,
        /// The optimizer.
        opt: Adam,
    },
    /// U-TAE + PaPs and its batch.
    Panoptic {
        /// The model.
        model: Box<Paps>,
        /// Input (B, T, C, H, W).
        x: Tensor,
        /// Day offsets (B, T).
        days: Vec<f32>,
        /// Padded dates.
        pad: PadInfo,
        /// Instance target (B, H, W, 7).
        target: Vec<f32>,
        /// Zone ids (B, H, W): one center per zone in training.
        zones: Vec<i64>,
        /// The optimizer.
        opt: Adam,
    },
    /// A pixel-set classifier and its batch.
    PixelSet {
        /// The model.
        model: Box<PixelSetClassifier>,
        /// Pixels (B, T, 10, S).
        x: Tensor,
        /// All pixels present.
        mask: Vec<f32>,
        /// Extra features (B, T, 4).
        extra: Tensor,
        /// Class targets (B).
        targets: Vec<usize>,
        /// The optimizer.
        opt: Adam,
    },
}

impl Prepared {
    /// One evaluation forward pass (no gradients); the predicted classes are read back, as `predict`
    /// does.
    pub fn forward(&self) {
        let ctx = Ctx::eval();
        no_grad(|| match self {
            Prepared::Semantic {
                model,
                x,
                days,
                pad,
                split_input_bytes,
                ..
            } => {
                let ctx = Ctx::eval().split_above(*split_input_bytes);
                let out = model.forward(x, days, pad, &ctx).logits;
                let _ = out.argmax(1);
            }
            Prepared::Panoptic {
                model,
                x,
                days,
                pad,
                ..
            } => {
                // Centers, heads, masks and the pseudo-NMS's panoptic maps (read back by the NMS).
                let _ = model.forward(x, days, pad, &ctx, None, true, false);
            }
            Prepared::PixelSet {
                model,
                x,
                mask,
                extra,
                ..
            } => {
                let (logits, _) = model.forward(x, mask, Some(extra), &ctx);
                let _ = logits.argmax(1);
            }
        })
    }

    /// The model.
    pub fn module(&self) -> &dyn Module {
        match self {
            Prepared::Semantic { model, .. } => model.as_ref(),
            Prepared::Panoptic { model, .. } => model.as_ref(),
            Prepared::PixelSet { model, .. } => model.as_ref(),
        }
    }

    /// The optimizer.
    pub fn optimizer(&mut self) -> &mut Adam {
        match self {
            Prepared::Semantic { opt, .. }
            | Prepared::Panoptic { opt, .. }
            | Prepared::PixelSet { opt, .. } => opt,
        }
    }

    /// The forward pass in `ctx`'s mode and its training loss: (class scores, loss). U-TAE: logits
    /// (B, K, H, W) and the cross-entropy; U-TAE + PaPs: the heatmap (B, 1, H, W) and PaPsLoss with one
    /// center per zone (train_panoptic.py's training step); pixel sets: logits (B, K) and the focal loss
    /// (γ = 1).
    pub fn forward_loss(&self, ctx: &Ctx) -> (Tensor, Tensor) {
        match self {
            Prepared::Semantic {
                model,
                x,
                days,
                pad,
                target,
                ..
            } => {
                let out = model.forward(x, days, pad, ctx).logits;
                let loss = out.cross_entropy(target, None, -100);
                (out, loss)
            }
            Prepared::Panoptic {
                model,
                x,
                days,
                pad,
                target,
                zones,
                ..
            } => {
                let out = model.forward(x, days, pad, ctx, Some(zones), false, false);
                let loss = paps_loss(&out, target, &PapsLossConfig::default()).total;
                (out.heatmap, loss)
            }
            Prepared::PixelSet {
                model,
                x,
                mask,
                extra,
                targets,
                ..
            } => {
                let (logits, _) = model.forward(x, mask, Some(extra), ctx);
                let loss = focal_loss(&logits, targets, 1.0);
                (logits, loss)
            }
        }
    }

    /// One training step: zero_grad, forward, loss, backward, Adam; returns the loss (read back). Under
    /// `--precision mixed` the optimizer scales the loss, as training does (`train::adam`).
    pub fn train_step(&mut self) -> f32 {
        if precision() == Precision::Mixed {
            self.optimizer().scale_losses();
        }
        self.optimizer().zero_grad();
        let (_, loss) = self.forward_loss(&Ctx::train(0));
        self.optimizer().scale_loss(&loss).backward();
        self.optimizer().step();
        loss.item()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload whose inputs its model cannot take is refused before anything is built (the semantic
    /// models, and PaPs through its backbone); the sizes each model takes pass.
    #[test]
    fn check_refuses_inputs_the_model_cannot_take() {
        let says = |w: Result<Workload>, what: &str| {
            let e = w.unwrap().check().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        says(
            Workload::utae("small", 2, 8, 30),
            "U-TAE cannot take inputs of 30 × 30",
        );
        says(Workload::utae("small", 2, 8, 8), "at least 2");
        says(
            Workload::semantic("uconvlstm", "small", 2, 8, 12),
            "U-ConvLSTM cannot take",
        );
        says(
            Workload::semantic("unet3d", "small", 2, 3, 16),
            "at least 4 dates",
        );
        says(
            Workload::semantic("unet3d", "small", 2, 4, 18),
            "multiples of 4",
        );
        says(
            Workload::paps("utae", "small", 2, 4, 12),
            "U-TAE cannot take",
        );
        for w in [
            Workload::utae("small", 2, 8, 32),
            Workload::semantic("uconvlstm", "small", 2, 8, 16),
            Workload::semantic("unet3d", "small", 2, 4, 16),
            Workload::semantic("convlstm", "small", 2, 4, 13),
            Workload::semantic("fpn", "small", 2, 4, 13),
            Workload::paps("utae", "small", 2, 4, 16),
            Workload::pixel_set("pse_ltae", 4, 6, 8),
        ] {
            w.unwrap().check().unwrap();
        }
    }
}
