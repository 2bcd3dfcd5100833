//! The flags of `sitsgpu train`: utae-paps' `train_semantic.py` flags with their names (underscores), ours
//! (`--init_weights`, `--max_steps`, `--resume`, `--cpu`), with `--task pixelset` those of the L-TAE
//! repository's `train.py` ([`PixelSetFlags`]; the flags both scripts have arrive there as [`SharedFlags`]), and
//! with `--task panoptic` those `train_panoptic.py` adds ([`PanopticFlags`], made into the panoptic workflow's
//! options by [`TrainArgs::panoptic_options`]; `--lr`, `--val_every` and `--val_after` default to that
//! script's values there).
//!
//! The U-TAE flags are typed by their value parsers (a [`Widths`] list, an [`AggMode`], a [`Date`], ...) and
//! their defaults are the model's own ([`UTaeConfig::default`]) and the dataset's ([`PastisOptions::default`]),
//! written nowhere else.

use std::path::PathBuf;

use crate::data::pastis::{Date, MonoDate, PastisOptions};
use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::{Error, Precision, Result};
use crate::layers::NormKind;
use crate::models::paps::loss::PapsLossConfig;
use crate::models::paps::{BackboneConfig, PapsConfig, BACKBONES};
use crate::models::recunet::RecUNetConfig;
use crate::models::semantic::{SemanticConfig, MODELS};
use crate::models::utae::{padding_mode_name, parse_padding_mode, AggMode, UTaeConfig};
use crate::train::fold_loop::RunOptions;
use crate::train::panoptic::flags::PanopticFlags;
use crate::train::panoptic::PanopticOptions;
use crate::train::pixelset::flags::{PixelSetFlags, SharedFlags};
use crate::train::semantic::TrainOptions;
pub use crate::train::widths::Widths;

fn agg_mode(s: &str) -> std::result::Result<AggMode, String> {
    AggMode::parse(s).ok_or_else(|| "expected att_group, att_mean or mean".into())
}

fn encoder_norm(s: &str) -> std::result::Result<NormKind, String> {
    Ok(NormKind::parse(s)) // as the original: anything but group / batch / instance is no norm
}

fn padding_mode(s: &str) -> std::result::Result<PaddingMode, String> {
    parse_padding_mode(s).ok_or_else(|| "expected reflect or zeros".into())
}

fn date(s: &str) -> std::result::Result<Date, String> {
    Date::parse(s).map_err(|e| e.to_string())
}

fn mono_date(s: &str) -> std::result::Result<MonoDate, String> {
    MonoDate::parse(s).map_err(|e| e.to_string())
}

/// `train_semantic.py`'s flags (original names, underscores) and ours; with `--task pixelset`, those of the
/// L-TAE repository's `train.py` (the `[pixelset]` flags, and the shared ones with that script's defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// semantic (U-TAE on PASTIS, train_semantic.py) or pixelset (PSE + L-TAE and competitors on
    /// Sentinel-Agri pixel sets, the L-TAE repository's train.py).
    #[arg(long, default_value = "semantic")]
    pub task: String,
    /// PASTIS folder (semantic) or Sentinel-Agri pixel-set folder (pixelset).
    #[arg(long = "dataset_folder")]
    pub dataset_folder: PathBuf,
    /// Output folder (conf.json, Fold_k/…).
    #[arg(long = "res_dir", default_value = "./results")]
    pub res_dir: PathBuf,
    /// Model name: utae (default), uconvlstm, buconvlstm, fpn, convlstm, convgru, unet3d (semantic);
    /// pse_ltae (default), pse_tae, pse_gru, pse_tempcnn (pixelset).
    #[arg(long)]
    pub model: Option<String>,
    /// Semantic baselines: constructor arguments over get_model's, as JSON (e.g. '{"hidden_dim": 16}');
    /// recorded in conf.json's model_kwargs.
    #[arg(long = "model_kwargs")]
    pub model_kwargs: Option<String>,
    /// uconvlstm / buconvlstm: the class's bidirectional ConvLSTM (temporal = "blstm").
    #[arg(long)]
    pub bidirectional: bool,
    /// Encoder widths, one per level (written 64,64,64,128 or as the original, in brackets).
    #[arg(long = "encoder_widths", default_value_t = Widths(UTaeConfig::default().encoder_widths))]
    pub encoder_widths: Widths,
    /// Decoder widths.
    #[arg(long = "decoder_widths", default_value_t = Widths(UTaeConfig::default().decoder_widths))]
    pub decoder_widths: Widths,
    /// Output head widths (last = num_classes).
    #[arg(long = "out_conv", default_value_t = Widths(UTaeConfig::default().out_conv))]
    pub out_conv: Widths,
    /// Strided conv kernel.
    #[arg(long = "str_conv_k", default_value_t = UTaeConfig::default().str_conv_k)]
    pub str_conv_k: usize,
    /// Strided conv stride.
    #[arg(long = "str_conv_s", default_value_t = UTaeConfig::default().str_conv_s)]
    pub str_conv_s: usize,
    /// Strided conv padding.
    #[arg(long = "str_conv_p", default_value_t = UTaeConfig::default().str_conv_p)]
    pub str_conv_p: usize,
    /// att_group, att_mean or mean.
    #[arg(long = "agg_mode", value_parser = agg_mode,
          default_value = UTaeConfig::default().agg_mode.name())]
    pub agg_mode: AggMode,
    /// group, batch or instance.
    #[arg(long = "encoder_norm", value_parser = encoder_norm,
          default_value = UTaeConfig::default().encoder_norm.name())]
    pub encoder_norm: NormKind,
    /// L-TAE heads (default 16).
    #[arg(long = "n_head")]
    pub n_head: Option<usize>,
    /// L-TAE width (default 256; pixelset: also "none").
    #[arg(long = "d_model")]
    pub d_model: Option<String>,
    /// L-TAE key width (default 4 semantic, 8 pixelset).
    #[arg(long = "d_k")]
    pub d_k: Option<usize>,
    /// Seed.
    #[arg(long = "rdm_seed", default_value_t = 1)]
    pub rdm_seed: u64,
    /// Epochs per fold.
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Batch size (default 4 semantic, 128 pixelset).
    #[arg(long = "batch_size", value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    /// Learning rate (default 0.001; panoptic 0.01).
    #[arg(long, value_parser = learning_rate)]
    pub lr: Option<f64>,
    /// Run only rotation k (1..5).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Number of classes.
    #[arg(long = "num_classes", default_value_t = 20)]
    pub num_classes: usize,
    /// Class weighted 0 in the loss (Python index: -1 = last).
    #[arg(long = "ignore_index", default_value_t = -1, allow_hyphen_values = true)]
    pub ignore_index: i64,
    /// Temporal pad value.
    #[arg(long = "pad_value", default_value_t = UTaeConfig::default().pad_value)]
    pub pad_value: f32,
    /// reflect or zeros.
    #[arg(long = "padding_mode", value_parser = padding_mode,
          default_value = padding_mode_name(UTaeConfig::default().padding_mode))]
    pub padding_mode: PaddingMode,
    /// Validate every N epochs (default 1; panoptic 5).
    #[arg(long = "val_every", value_parser = at_least_one)]
    pub val_every: Option<usize>,
    /// Validate only after epoch N (default 0; panoptic 65).
    #[arg(long = "val_after")]
    pub val_after: Option<usize>,
    /// Start from these weights (.npz or official model.pth.tar).
    #[arg(long = "init_weights")]
    pub init_weights: Option<PathBuf>,
    /// Stop each fold after N optimiser steps.
    #[arg(long = "max_steps")]
    pub max_steps: Option<usize>,
    /// Continue an interrupted run in res_dir.
    #[arg(long)]
    pub resume: bool,
    /// Semantic task: keep the last incomplete batch of validation and test passes. By default it is dropped,
    /// as train_semantic.py's drop_last=True (up to batch_size - 1 patches per split not evaluated, named in a
    /// warning). Training batches are always whole. Pixel sets never drop a batch (train.py).
    #[arg(long = "keep_last_batch")]
    pub keep_last_batch: bool,
    /// Run on the CPU reference path.
    #[arg(long)]
    pub cpu: bool,
    /// GPU memory budget (2GB, 1.5GiB, 800MB, bytes). A batch whose step would need more runs as
    /// micro-batches with gradient accumulation, said once. Default: the adapter's memory where it is known
    /// (VRAM through nvidia-smi, a Mac's unified memory, host memory for lavapipe), else no bound.
    #[arg(long = "max_memory", visible_alias = "max-memory", value_parser = max_memory)]
    pub max_memory: Option<u64>,
    /// fp32 (default: everything float32, the original's numbers) or mixed (autocast's: products and
    /// convolutions on half-precision operands with float32 sums, their backward passes on half-precision
    /// gradients with the loss scaled as GradScaler does, the activations saved for the backward pass kept
    /// in half precision; README § Mixed precision).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Recompute the recurrent baselines' gate convolutions (ConvLSTM, ConvGRU, and the ConvLSTM of
    /// FPN-ConvLSTM, U-ConvLSTM, BU-ConvLSTM) in the backward pass instead of keeping them: the same
    /// numbers; ConvLSTM and ConvGRU keep about a third of their memory per date (FPN-ConvLSTM 70 %), for
    /// about a third more of their convolution work (PyTorch's torch.utils.checkpoint, applied to the
    /// gates). Other models keep what they keep.
    #[arg(
        long = "gradient_checkpointing",
        visible_alias = "gradient-checkpointing"
    )]
    pub gradient_checkpointing: bool,
    /// Reference date of the day offsets (recorded in conf.json; evaluate and predict read it back).
    #[arg(long = "ref_date", value_parser = date, default_value_t = PastisOptions::default().ref_date)]
    pub ref_date: Date,
    /// Mono-date ablation: a date (YYYY-MM-DD) or an index into each series (recorded in conf.json; evaluate
    /// and predict use the same date).
    #[arg(long = "mono_date", value_parser = mono_date)]
    pub mono_date: Option<MonoDate>,
    /// Accepted for compatibility with train_semantic.py: "cpu" selects the CPU reference path, anything
    /// else (cuda, ...) the GPU.
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// Accepted for compatibility; loading already runs on a background reader.
    #[arg(long = "num_workers", default_value_t = 8)]
    pub num_workers: usize,
    /// Accepted for compatibility; progress bars replace the periodic prints.
    #[arg(long = "display_step", default_value_t = 50, value_parser = crate::train::flags::at_least_one)]
    pub display_step: usize,
    /// Accepted for compatibility (patches are read from disk each epoch).
    #[arg(long)]
    pub cache: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pixelset: PixelSetFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub panoptic: PanopticFlags,
}

impl TrainArgs {
    /// `--cpu`, or `--device cpu` as the original scripts spell it.
    pub fn cpu(&self) -> bool {
        self.cpu || self.device == "cpu"
    }

    /// The U-TAE of the flags: [`UTaeConfig::default`] with the flags given (checked to fit together).
    pub fn utae_config(&self) -> Result<UTaeConfig> {
        let default = UTaeConfig::default();
        let d_model = match &self.d_model {
            None => default.d_model,
            Some(v) => v
                .parse()
                .map_err(|_| Error::Invalid(format!("--d_model {v:?}: expected a width")))?,
        };
        let c = UTaeConfig {
            encoder_widths: self.encoder_widths.0.clone(),
            decoder_widths: self.decoder_widths.0.clone(),
            out_conv: self.out_conv.0.clone(),
            str_conv_k: self.str_conv_k,
            str_conv_s: self.str_conv_s,
            str_conv_p: self.str_conv_p,
            agg_mode: self.agg_mode,
            encoder_norm: self.encoder_norm,
            n_head: self.n_head.unwrap_or(default.n_head),
            d_model,
            d_k: self.d_k.unwrap_or(default.d_k),
            pad_value: self.pad_value,
            padding_mode: self.padding_mode,
            ..default
        };
        c.validate().map_err(Error::Invalid)?;
        Ok(c)
    }

    /// The semantic model of `--model` (U-TAE from its flags; a baseline as get_model builds it, with
    /// `--model_kwargs` and `--bidirectional` applied).
    pub fn semantic_model(&self) -> Result<SemanticConfig> {
        let name = self.model.as_deref().unwrap_or("utae");
        if name == "utae" {
            if self.model_kwargs.is_some() || self.bidirectional {
                return Err(Error::Invalid(
                    "--model_kwargs and --bidirectional are for the baselines: U-TAE takes its own flags".into(),
                ));
            }
            return Ok(self.utae_config()?.into());
        }
        let kwargs: serde_json::Value = match &self.model_kwargs {
            None => serde_json::json!({}),
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::Invalid(format!("--model_kwargs {s:?}: not JSON ({e})")))?,
        };
        let where_ = std::path::Path::new("--model_kwargs");
        let c = SemanticConfig::baseline(name, self.num_classes, self.pad_value, &kwargs, where_)?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "--model {name}: expected one of {} (pixel-set models: --task pixelset)",
                    MODELS.join(", ")
                ))
            })?;
        if self.bidirectional {
            c.bidirectional().map_err(Error::Invalid)
        } else {
            Ok(c)
        }
    }

    /// The semantic task's options (`train_semantic.py`).
    pub fn semantic_options(&self) -> Result<TrainOptions> {
        if self.pixelset.any_given() {
            return Err(Error::Invalid(
                "a [pixelset] flag was given to the semantic task: add --task pixelset".into(),
            ));
        }
        if self.panoptic.any_given() {
            return Err(Error::Invalid(
                "a [panoptic] flag was given to the semantic task: add --task panoptic".into(),
            ));
        }
        Ok(TrainOptions {
            run: self.run_options(0.001),
            model: self.semantic_model()?,
            num_classes: self.num_classes,
            ignore_index: self.ignore_index,
            pad_value: self.pad_value,
            val_every: self.val_every.unwrap_or(1),
            val_after: self.val_after.unwrap_or(0),
            ref_date: self.ref_date,
            mono_date: self.mono_date,
            keep_last_batch: self.keep_last_batch,
        })
    }

    /// The options every task shares, with the task's default learning rate (train_semantic.py 0.001,
    /// train_panoptic.py 0.01).
    fn run_options(&self, default_lr: f64) -> RunOptions {
        RunOptions {
            dataset_folder: self.dataset_folder.clone(),
            res_dir: self.res_dir.clone(),
            rdm_seed: self.rdm_seed,
            epochs: self.epochs,
            batch_size: self.batch_size.unwrap_or(4),
            lr: self.lr.unwrap_or(default_lr),
            fold: self.fold,
            init_weights: self.init_weights.clone(),
            max_steps: self.max_steps,
            resume: self.resume,
            cpu: self.cpu(),
            progress: true,
            max_memory: self.max_memory,
            precision: self.precision,
            gradient_checkpointing: self.gradient_checkpointing,
        }
    }

    /// The flags the pixel-set task shares with the semantic one.
    pub fn shared(&self) -> SharedFlags {
        SharedFlags {
            dataset_folder: self.dataset_folder.clone(),
            res_dir: self.res_dir.clone(),
            model: self.model.clone(),
            n_head: self.n_head,
            d_k: self.d_k,
            d_model: self.d_model.clone(),
            batch_size: self.batch_size,
            rdm_seed: self.rdm_seed,
            epochs: self.epochs,
            lr: self.lr.unwrap_or(0.001),
            fold: self.fold,
            num_classes: self.num_classes,
            init_weights: self.init_weights.clone(),
            max_steps: self.max_steps,
            resume: self.resume,
            cpu: self.cpu(),
            max_memory: self.max_memory,
            precision: self.precision,
        }
    }
}

impl TrainArgs {
    /// The panoptic task's options (`train_panoptic.py`'s flags and defaults).
    pub fn panoptic_options(&self) -> Result<PanopticOptions> {
        if self.pixelset.any_given() {
            return Err(Error::Invalid(
                "a [pixelset] flag was given to the panoptic task: add --task pixelset".into(),
            ));
        }
        if self.model.as_deref().is_some_and(|m| m != "utae") {
            return Err(Error::Invalid(format!(
                "--model {:?}: the panoptic task takes its backbone from --backbone ({})",
                self.model.as_deref().unwrap_or(""),
                BACKBONES.join(" or ")
            )));
        }
        let p = &self.panoptic;
        let d = PapsConfig::default();
        let paps = PapsConfig {
            num_classes: self.num_classes,
            shape_size: p.shape_size.unwrap_or(d.shape_size),
            mask_conv: !p.no_mask_conv,
            min_confidence: p.min_confidence.unwrap_or(d.min_confidence),
            min_remain: p.min_remain.unwrap_or(d.min_remain),
            mask_threshold: p.mask_threshold.unwrap_or(d.mask_threshold),
        };
        if paps.shape_size == 0 {
            return Err(Error::Invalid("--shape_size 0: expected at least 1".into()));
        }
        let backbone = match p.backbone.as_deref().unwrap_or("utae") {
            "utae" => {
                let utae = self.utae_config()?;
                if utae.out_conv.last() != Some(&self.num_classes) {
                    return Err(Error::Invalid(format!(
                        "--num_classes {} differs from the last --out_conv width {:?} (train_panoptic.py asserts it)",
                        self.num_classes, utae.out_conv
                    )));
                }
                BackboneConfig::UTae(utae)
            }
            // get_model hard-codes the RecUNet: the width flags do not apply (as in the original).
            "uconvlstm" => BackboneConfig::RecUNet(RecUNetConfig::paps()),
            other => {
                return Err(Error::Invalid(format!(
                    "--backbone {other:?}: expected {}",
                    BACKBONES.join(" or ")
                )))
            }
        };
        let l = PapsLossConfig::default();
        let loss = PapsLossConfig {
            l_center: p.l_center.unwrap_or(l.l_center),
            l_size: p.l_size.unwrap_or(l.l_size),
            l_shape: p.l_shape.unwrap_or(l.l_shape),
            l_class: p.l_class.unwrap_or(l.l_class),
            beta: p.beta.unwrap_or(l.beta),
            void_label: p.void_label.unwrap_or(l.void_label),
            ..l
        };
        Ok(PanopticOptions {
            backbone,
            paps,
            loss,
            background_label: p.background_label.unwrap_or(0),
            run: self.run_options(0.01),
            pad_value: self.pad_value,
            val_every: self.val_every.unwrap_or(5),
            val_after: self.val_after.unwrap_or(65),
            warmup: p.warmup.unwrap_or(5),
            autotune: !p.no_autotune,
            supmax: !p.no_supmax,
            val_metrics_only: p.val_metrics_only,
            ref_date: self.ref_date,
            mono_date: self.mono_date,
            keep_last_batch: self.keep_last_batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(flags: &[&str]) -> std::result::Result<TrainArgs, clap::Error> {
        let argv = ["train", "--dataset_folder", "D"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn widths_take_the_original_spellings() {
        for s in [
            "[64,64,64,128]",
            "[64, 64, 64, 128]",
            "64,64,64,128",
            " [64,64,64,128] ",
        ] {
            assert_eq!(
                s.parse::<Widths>(),
                Ok(Widths(vec![64, 64, 64, 128])),
                "{s}"
            );
        }
        assert_eq!("[32, 20]".parse::<Widths>(), Ok(Widths(vec![32, 20])));
        assert_eq!("[]".parse::<Widths>(), Ok(Widths(vec![])));
        assert!("[10,x]"
            .parse::<Widths>()
            .unwrap_err()
            .contains("list of integers"));
        assert!("[-1]".parse::<Widths>().is_err());
        assert_eq!(Widths(vec![8, 20]).to_string(), "[8,20]");
    }

    #[test]
    fn the_defaults_are_the_models() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.utae_config().unwrap(), UTaeConfig::default());
        let o = a.semantic_options().unwrap();
        assert_eq!(
            (o.run.batch_size, o.num_classes, o.ignore_index),
            (4, 20, -1)
        );
        assert_eq!(
            (o.ref_date, o.mono_date),
            (PastisOptions::default().ref_date, None)
        );
        assert!(!o.run.cpu);
    }

    #[test]
    fn flags_build_the_typed_config() {
        let a = parse(&[
            "--encoder_widths",
            "[8,8,8,16]",
            "--decoder_widths",
            "8,8,8,16",
            "--out_conv",
            "[8, 20]",
            "--n_head",
            "4",
            "--d_model",
            "16",
            "--agg_mode",
            "att_mean",
            "--encoder_norm",
            "batch",
            "--padding_mode",
            "zeros",
            "--mono_date",
            "2019-05-01",
            "--ref_date",
            "2018-10-01",
            "--device",
            "cpu",
        ])
        .unwrap();
        let c = a.utae_config().unwrap();
        assert_eq!(
            (c.encoder_widths, c.decoder_widths, c.out_conv),
            (vec![8, 8, 8, 16], vec![8, 8, 8, 16], vec![8, 20])
        );
        assert_eq!((c.n_head, c.d_model, c.d_k), (4, 16, 4));
        assert_eq!(
            (c.agg_mode, c.encoder_norm, c.padding_mode),
            (AggMode::AttMean, NormKind::Batch, PaddingMode::Zeros)
        );
        let o = a.semantic_options().unwrap();
        assert!(o.run.cpu && a.shared().cpu);
        assert_eq!(
            o.mono_date,
            Some(MonoDate::Date(Date::parse("2019-05-01").unwrap()))
        );
        assert_eq!(o.ref_date.to_string(), "2018-10-01");
        assert_eq!(
            parse(&["--mono_date", "3"]).unwrap().mono_date,
            Some(MonoDate::Index(3))
        );
    }

    /// `--precision` and `--max_memory` reach every task's run options (the pixel-set task's through the
    /// shared flags), `--gradient_checkpointing` the patch tasks'; an unknown precision is a clear error.
    #[test]
    fn precision_and_memory_reach_every_task() {
        let a = parse(&["--precision", "mixed", "--max_memory", "2GB"]).unwrap();
        let semantic = a.semantic_options().unwrap().run;
        let panoptic = a.panoptic_options().unwrap().run;
        let pixelset = crate::train::pixelset::flags::PixelSetFlags::default()
            .options(&a.shared())
            .unwrap()
            .run;
        for run in [semantic, panoptic, pixelset] {
            assert_eq!(
                (run.precision, run.max_memory),
                (Precision::Mixed, Some(2_000_000_000))
            );
        }
        assert_eq!(parse(&[]).unwrap().precision, Precision::Fp32);
        // --gradient_checkpointing reaches the patch tasks (off unless given); the pixel-set task has no
        // recurrent convolution and refuses it before reading anything.
        let a = parse(&["--gradient_checkpointing"]).unwrap();
        assert!(a.semantic_options().unwrap().run.gradient_checkpointing);
        assert!(a.panoptic_options().unwrap().run.gradient_checkpointing);
        assert!(
            !parse(&[])
                .unwrap()
                .semantic_options()
                .unwrap()
                .run
                .gradient_checkpointing
        );
        let mut p = parse(&["--gradient_checkpointing"]).unwrap();
        p.task = "pixelset".into();
        let e = crate::train::commands::train(&p).unwrap_err().to_string();
        assert!(
            e.contains("--gradient_checkpointing") && e.contains("pixel-set"),
            "{e}"
        );
        let e = parse(&["--precision", "bf16"]).err().unwrap().to_string();
        assert!(
            e.contains("--precision") && e.contains("fp32 or mixed"),
            "{e}"
        );
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let e = parse(&["--encoder_widths", "[64,x]"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--encoder_widths") && e.contains("list of integers"),
            "{e}"
        );
        let e = parse(&["--agg_mode", "max"]).err().unwrap().to_string();
        assert!(e.contains("att_group, att_mean or mean"), "{e}");
        let e = parse(&["--ref_date", "2018-13-01"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--ref_date"), "{e}");
        let e = parse(&["--d_model", "none"])
            .unwrap()
            .utae_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--d_model"), "{e}");
        let e = parse(&["--encoder_widths", "[64,64]"])
            .unwrap()
            .utae_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("same length"), "{e}");
        let e = parse(&["--model", "pse_ltae"])
            .unwrap()
            .semantic_options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--task pixelset"), "{e}");
        let e = parse(&["--npixel", "32"])
            .unwrap()
            .semantic_options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--task pixelset"), "{e}");
    }

    /// Sizes the original divides by, allocates or indexes with are refused with a sentence, not a panic
    /// deep in an op.
    #[test]
    fn zero_sizes_and_bad_rates_are_refused() {
        for (flag, value, says) in [
            ("--batch_size", "0", "at least 1"),
            ("--batch_size", "x", "not a whole number"),
            ("--lr", "nan", "finite learning rate"),
            ("--lr", "inf", "finite learning rate"),
            ("--val_every", "0", "at least 1"),
            ("--display_step", "0", "at least 1"),
        ] {
            let e = parse(&[flag, value]).err().unwrap().to_string();
            assert!(e.contains(flag) && e.contains(says), "{flag} {value}: {e}");
        }
        assert_eq!(parse(&["--lr", "0"]).unwrap().lr, Some(0.0));
        for (flags, says) in [
            (&["--d_model", "0"][..], "d_model must be at least 1"),
            (&["--d_k", "0"], "d_k must be at least 1"),
            (&["--n_head", "0"], "n_head must be at least 1"),
            (&["--str_conv_k", "0"], "str_conv_k must be at least 1"),
            (&["--str_conv_s", "0"], "str_conv_s must be at least 1"),
            (&["--out_conv", "[0]"], "every width must be at least 1"),
            (&["--n_head", "3"], "multiple of n_head 3"),
            (
                &[
                    "--encoder_widths",
                    "[6,6,6,12]",
                    "--decoder_widths",
                    "[6,6,6,12]",
                    "--n_head",
                    "2",
                ],
                "multiple of 4 (GroupNorm",
            ),
        ] {
            let e = parse(flags).unwrap().utae_config().unwrap_err().to_string();
            assert!(e.contains(says), "{flags:?}: {e}");
        }
    }
}

#[cfg(test)]
mod panoptic_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(flags: &[&str]) -> TrainArgs {
        let argv = ["train", "--dataset_folder", "D", "--task", "panoptic"]
            .iter()
            .chain(flags);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn the_defaults_are_train_panoptic_py_s() {
        let o = parse(&[]).panoptic_options().unwrap();
        assert_eq!(o.paps, PapsConfig::default());
        assert_eq!(o.loss, PapsLossConfig::default());
        assert_eq!(
            (o.run.lr, o.val_every, o.val_after, o.warmup),
            (0.01, 5, 65, 5)
        );
        assert!(o.autotune && o.supmax && !o.val_metrics_only);
        assert_eq!(
            (o.run.batch_size, o.background_label, o.run.epochs),
            (4, 0, 100)
        );
        // The semantic task keeps its own defaults for the shared flags.
        let s = parse(&[]).semantic_options().unwrap();
        assert_eq!((s.run.lr, s.val_every, s.val_after), (0.001, 1, 0));
    }

    #[test]
    fn flags_reach_the_options_and_stray_flags_are_errors() {
        let o = parse(&[
            "--shape_size",
            "24",
            "--no_mask_conv",
            "--no_supmax",
            "--no_autotune",
            "--warmup",
            "2",
            "--min_confidence",
            "0.3",
            "--min_remain",
            "0.6",
            "--mask_threshold",
            "0.5",
            "--lr",
            "0.1",
            "--val_every",
            "1",
            "--val_after",
            "0",
            "--l_shape",
            "0",
            "--beta",
            "2",
        ])
        .panoptic_options()
        .unwrap();
        assert_eq!((o.paps.shape_size, o.paps.mask_conv), (24, false));
        assert_eq!(
            (
                o.paps.min_confidence,
                o.paps.min_remain,
                o.paps.mask_threshold
            ),
            (0.3, 0.6, 0.5)
        );
        assert!(!o.supmax && !o.autotune);
        assert_eq!(
            (o.warmup, o.run.lr, o.val_every, o.val_after),
            (2, 0.1, 1, 0)
        );
        assert_eq!((o.loss.l_shape, o.loss.beta), (0.0, 2.0));
        // --backbone uconvlstm: get_model's hard-coded RecUNet, whatever the width flags say.
        let o = parse(&["--backbone", "uconvlstm", "--encoder_widths", "[8,8]"])
            .panoptic_options()
            .unwrap();
        assert_eq!(o.backbone, BackboneConfig::RecUNet(RecUNetConfig::paps()));
        let e = parse(&["--backbone", "unet3d"])
            .panoptic_options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--backbone") && e.contains("uconvlstm"), "{e}");
        let e = parse(&["--npixel", "32"])
            .panoptic_options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--task pixelset"), "{e}");
        let e = parse(&["--shape_size", "8"])
            .semantic_options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--task panoptic"), "{e}");
    }
}

/// `--batch_size` (and other counts of samples): a whole number of at least 1.
pub(crate) fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("expected at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `--lr`: a finite learning rate of at least 0 (what `torch.optim.Adam` accepts).
pub(crate) fn learning_rate(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!(
            "expected a finite learning rate of at least 0, got {v}"
        )),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// `--max_memory`: a size with a unit ([`crate::train::memory::parse_bytes`]).
pub(crate) fn max_memory(text: &str) -> std::result::Result<u64, String> {
    crate::train::memory::parse_bytes(text)
}
