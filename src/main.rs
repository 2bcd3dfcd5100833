//! The `sitsgpu` command. Thin: parses flags and calls the library.
//!
//! - `sitsgpu info`: every adapter wgpu finds, the one chosen and why, its limits and features, and a tiny
//!   self-test kernel compared with the CPU reference. Run this first on a new machine.
//! - `sitsgpu predict`: a semantic model (weights .npz or official model.pth.tar + conf.json) over a PASTIS
//!   folder, writing logits, class maps and optionally attention masks per patch; or a pixel-set classifier
//!   (one checkpoint or a weight folder's k-fold ensemble) over a Sentinel-Agri folder.
//! - `sitsgpu train` / `evaluate`: utae-paps' train_semantic.py / test_semantic.py (same flags and outputs);
//!   with `--task pixelset`, the L-TAE repository's train.py (PSE + L-TAE, TAE, GRU, TempCNN).
//! - `sitsgpu demo`: synthetic PASTIS-format data, a small U-TAE trained and evaluated, curves plotted.
//! - `sitsgpu convert-weights`: an official `model.pth.tar` (zip or legacy torch format) to `.npz`, or (with
//!   `--to-torch`) an `.npz` or checkpoint to an official `model.pth.tar`, checked against the model its conf.json
//!   describes.
//! - `sitsgpu synth`: a synthetic dataset in the PASTIS layout (learnable crop phenologies, clouds, all the
//!   annotation files) or, with `--format pixelset`, in the Sentinel-Agri pixel-set layout, for demos, tests
//!   and benchmarks without the real data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sitsgpu::data::checkpoint::{read_torch_checkpoint, TorchCheckpoint};
use sitsgpu::data::pastis::{Date, MonoDate};
use sitsgpu::data::state_dict::{read_npz, write_npz};
use sitsgpu::data::synthetic::pixelset::{write_pixelset, PixelSetSynthOptions};
use sitsgpu::data::synthetic::{write_pastis, SynthOptions};
use sitsgpu::data::torch_writer::{write_torch_checkpoint, write_torch_checkpoint_legacy};
use sitsgpu::engine::gpu::{enumerate_adapters, Gpu};
use sitsgpu::layers::state::load_state_dict;
use sitsgpu::models::registry;
use sitsgpu::models::utae::UTaeConfig;
use sitsgpu::train::pixelset::flags::{PixelSetFlags, SharedFlags};
use sitsgpu::train::pixelset::{self, predict::PixelSetPredictOptions, PixelSetEvaluateOptions};
use sitsgpu::train::predict::{predict, PredictOptions};
use sitsgpu::train::semantic::{evaluate, train, EvaluateOptions, TrainOptions};
use sitsgpu::{Device, Tensor};

#[derive(Parser)]
#[command(
    name = "sitsgpu",
    version,
    about = "Satellite image time series models on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `train_semantic.py`'s flags (original names, underscores) and ours; with `--task pixelset`, those of the
/// L-TAE repository's `train.py` (the `[pixelset]` flags, and the shared ones with that script's defaults).
#[derive(clap::Args)]
struct TrainArgs {
    /// semantic (U-TAE on PASTIS, train_semantic.py) or pixelset (PSE + L-TAE and competitors on
    /// Sentinel-Agri pixel sets, the L-TAE repository's train.py).
    #[arg(long, default_value = "semantic")]
    task: String,
    /// PASTIS folder (semantic) or Sentinel-Agri pixel-set folder (pixelset).
    #[arg(long = "dataset_folder")]
    dataset_folder: PathBuf,
    /// Output folder (conf.json, Fold_k/…).
    #[arg(long = "res_dir", default_value = "./results")]
    res_dir: PathBuf,
    /// Model name: utae (semantic); pse_ltae (default), pse_tae, pse_gru, pse_tempcnn (pixelset).
    #[arg(long)]
    model: Option<String>,
    /// Encoder widths, e.g. "[64,64,64,128]".
    #[arg(long = "encoder_widths", default_value = "[64,64,64,128]")]
    encoder_widths: String,
    /// Decoder widths.
    #[arg(long = "decoder_widths", default_value = "[32,32,64,128]")]
    decoder_widths: String,
    /// Output head widths (last = num_classes).
    #[arg(long = "out_conv", default_value = "[32, 20]")]
    out_conv: String,
    /// Strided conv kernel.
    #[arg(long = "str_conv_k", default_value_t = 4)]
    str_conv_k: usize,
    /// Strided conv stride.
    #[arg(long = "str_conv_s", default_value_t = 2)]
    str_conv_s: usize,
    /// Strided conv padding.
    #[arg(long = "str_conv_p", default_value_t = 1)]
    str_conv_p: usize,
    /// att_group, att_mean or mean.
    #[arg(long = "agg_mode", default_value = "att_group")]
    agg_mode: String,
    /// group, batch or instance.
    #[arg(long = "encoder_norm", default_value = "group")]
    encoder_norm: String,
    /// L-TAE heads (default 16).
    #[arg(long = "n_head")]
    n_head: Option<usize>,
    /// L-TAE width (default 256; pixelset: also "none").
    #[arg(long = "d_model")]
    d_model: Option<String>,
    /// L-TAE key width (default 4 semantic, 8 pixelset).
    #[arg(long = "d_k")]
    d_k: Option<usize>,
    /// Seed.
    #[arg(long = "rdm_seed", default_value_t = 1)]
    rdm_seed: u64,
    /// Epochs per fold.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Batch size (default 4 semantic, 128 pixelset).
    #[arg(long = "batch_size")]
    batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long, default_value_t = 0.001)]
    lr: f64,
    /// Run only rotation k (1..5).
    #[arg(long)]
    fold: Option<usize>,
    /// Number of classes.
    #[arg(long = "num_classes", default_value_t = 20)]
    num_classes: usize,
    /// Class weighted 0 in the loss (Python index: -1 = last).
    #[arg(long = "ignore_index", default_value_t = -1, allow_hyphen_values = true)]
    ignore_index: i64,
    /// Temporal pad value.
    #[arg(long = "pad_value", default_value_t = 0.0)]
    pad_value: f32,
    /// reflect or zeros.
    #[arg(long = "padding_mode", default_value = "reflect")]
    padding_mode: String,
    /// Validate every N epochs.
    #[arg(long = "val_every", default_value_t = 1)]
    val_every: usize,
    /// Validate only after epoch N.
    #[arg(long = "val_after", default_value_t = 0)]
    val_after: usize,
    /// Start from these weights (.npz or official model.pth.tar).
    #[arg(long = "init_weights")]
    init_weights: Option<PathBuf>,
    /// Stop each fold after N optimiser steps.
    #[arg(long = "max_steps")]
    max_steps: Option<usize>,
    /// Continue an interrupted run in res_dir.
    #[arg(long)]
    resume: bool,
    /// Run on the CPU reference path.
    #[arg(long)]
    cpu: bool,
    /// Reference date of the day offsets.
    #[arg(long = "ref_date", default_value = "2018-09-01")]
    ref_date: String,
    /// Mono-date ablation: a date (YYYY-MM-DD) or an index into each series.
    #[arg(long = "mono_date")]
    mono_date: Option<String>,
    /// Accepted for compatibility with train_semantic.py: "cpu" selects the CPU reference path, anything
    /// else (cuda, ...) the GPU.
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Accepted for compatibility; loading already runs on a background reader.
    #[arg(long = "num_workers", default_value_t = 8)]
    num_workers: usize,
    /// Accepted for compatibility; progress bars replace the periodic prints.
    #[arg(long = "display_step", default_value_t = 50)]
    display_step: usize,
    /// Accepted for compatibility (patches are read from disk each epoch).
    #[arg(long)]
    cache: bool,
    #[command(flatten)]
    pixelset: PixelSetFlags,
}

impl TrainArgs {
    fn run(&self) -> Result<(), String> {
        match self.task.as_str() {
            "semantic" => {
                if self.pixelset.any_given() {
                    return Err(
                        "a [pixelset] flag was given to the semantic task: add --task pixelset"
                            .into(),
                    );
                }
                train(&self.options()?)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            "pixelset" => {
                let shared = SharedFlags {
                    dataset_folder: self.dataset_folder.clone(),
                    res_dir: self.res_dir.clone(),
                    model: self.model.clone(),
                    n_head: self.n_head,
                    d_k: self.d_k,
                    d_model: self.d_model.clone(),
                    batch_size: self.batch_size,
                    rdm_seed: self.rdm_seed,
                    epochs: self.epochs,
                    lr: self.lr,
                    fold: self.fold,
                    num_classes: self.num_classes,
                    init_weights: self.init_weights.clone(),
                    max_steps: self.max_steps,
                    resume: self.resume,
                    cpu: self.cpu || self.device == "cpu",
                };
                let opts = self.pixelset.options(&shared).map_err(|e| e.to_string())?;
                pixelset::train(&opts)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("--task {other:?}: expected semantic or pixelset")),
        }
    }

    fn options(&self) -> Result<TrainOptions, String> {
        let model = self.model.as_deref().unwrap_or("utae");
        if model != "utae" {
            return Err(format!(
                "--model {model}: only utae is implemented for the semantic task (pixel-set models: --task pixelset)"
            ));
        }
        let d_model: usize = match &self.d_model {
            None => 256,
            Some(v) => v
                .parse()
                .map_err(|_| format!("--d_model {v:?}: expected a width"))?,
        };
        let conf = serde_json::json!({
            "encoder_widths": self.encoder_widths, "decoder_widths": self.decoder_widths, "out_conv": self.out_conv,
            "str_conv_k": self.str_conv_k, "str_conv_s": self.str_conv_s, "str_conv_p": self.str_conv_p,
            "agg_mode": self.agg_mode, "encoder_norm": self.encoder_norm, "n_head": self.n_head.unwrap_or(16),
            "d_model": d_model, "d_k": self.d_k.unwrap_or(4), "pad_value": self.pad_value, "padding_mode": self.padding_mode,
            "num_classes": self.num_classes,
        });
        let model = UTaeConfig::from_json(&conf, std::path::Path::new("command line"))
            .map_err(|e| e.to_string())?;
        Ok(TrainOptions {
            model,
            dataset_folder: self.dataset_folder.clone(),
            res_dir: self.res_dir.clone(),
            rdm_seed: self.rdm_seed,
            epochs: self.epochs,
            batch_size: self.batch_size.unwrap_or(4),
            lr: self.lr,
            fold: self.fold,
            num_classes: self.num_classes,
            ignore_index: self.ignore_index,
            pad_value: self.pad_value,
            val_every: self.val_every,
            val_after: self.val_after,
            init_weights: self.init_weights.clone(),
            max_steps: self.max_steps,
            resume: self.resume,
            cpu: self.cpu || self.device == "cpu",
            progress: true,
            ref_date: Date::parse(&self.ref_date).map_err(|e| e.to_string())?,
            mono_date: self
                .mono_date
                .as_deref()
                .map(MonoDate::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train U-TAE on PASTIS (train_semantic.py): 5-fold rotation, Adam, weighted cross-entropy, validation,
    /// best checkpoint, test metrics, training curves.
    Train(Box<TrainArgs>),
    /// Evaluate trained weights on each fold's test split (test_semantic.py): ours (Fold_k/model.npz) or the
    /// official folder (conf.json + Fold_k/model.pth.tar). Pixel-set weight folders (the L-TAE repository's
    /// train.py layout) are recognised from their conf.json: each fold's test parcels of the k-fold split.
    Evaluate {
        /// PASTIS folder, or Sentinel-Agri pixel-set folder.
        #[arg(long = "dataset_folder")]
        dataset_folder: PathBuf,
        /// Weight folder (conf.json + Fold_k/).
        #[arg(long = "weight_folder")]
        weight_folder: PathBuf,
        /// Output folder.
        #[arg(long = "res_dir", default_value = "./inference_utae")]
        res_dir: PathBuf,
        /// Only rotation k.
        #[arg(long)]
        fold: Option<usize>,
        /// Batch size (default: conf.json's).
        #[arg(long = "batch_size")]
        batch_size: Option<usize>,
        /// Run on the CPU reference path.
        #[arg(long)]
        cpu: bool,
        /// semantic or pixelset (default: from the weight folder's conf.json).
        #[arg(long)]
        task: Option<String>,
        /// Pixel sets: draw pixels and jitter as the original's test loop does (seeded by the conf's rdm_seed)
        /// instead of the deterministic evaluation (no jitter, a fixed pixel draw per parcel).
        #[arg(long = "original_sampling")]
        original_sampling: bool,
    },
    /// The whole workflow on synthetic PASTIS-format data: make it (if absent), train a small U-TAE on one
    /// rotation, evaluate it, plot the curves. A few minutes on a CPU-only machine with lavapipe.
    Demo {
        /// Working folder (data/ and results/ inside).
        #[arg(long, default_value = "sitsgpu-demo")]
        dir: PathBuf,
        /// Epochs.
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        /// Run on the CPU reference path.
        #[arg(long)]
        cpu: bool,
    },
    /// List GPU adapters, show the chosen one with its limits, and run a self-test kernel.
    Info,
    /// Run a semantic model over PASTIS patches and write logits_<ID>.npy, pred_<ID>.npy (and attn_<ID>.npy);
    /// or a pixel-set classifier over a Sentinel-Agri folder (recognised from the conf.json), writing
    /// predictions.json, ids.npy, pred.npy, logits.npy (and attention.npy), from one checkpoint (--weights) or
    /// the k-fold ensemble of a weight folder (--weight_folder, as the original's PseLTae_pretrained).
    ///
    /// Flags also accept the original scripts' spelling (--dataset_folder, --batch_size, --save_attention).
    Predict {
        /// PASTIS folder (metadata.geojson, DATA_S2/, NORM_S2_patch.json, ...) or pixel-set folder.
        #[arg(long, visible_alias = "dataset_folder")]
        dataset_folder: PathBuf,
        /// Weights: our .npz or an official model.pth.tar.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Pixel sets: a weight folder (conf.json + Fold_k/model.*) whose folds are averaged.
        #[arg(long, visible_alias = "weight_folder")]
        weight_folder: Option<PathBuf>,
        /// semantic or pixelset (default: from the conf.json).
        #[arg(long)]
        task: Option<String>,
        /// conf.json of the model (default: beside the weights or in their parent folder).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Patches per batch (batch-max temporal padding, as the original collate).
        #[arg(long, visible_alias = "batch_size", default_value_t = 4)]
        batch_size: usize,
        /// Folds to predict and normalise with (default: all five).
        #[arg(long, num_args = 1..)]
        folds: Option<Vec<usize>>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Also write the L-TAE attention masks (n_head x T x h x w).
        #[arg(long, visible_alias = "save_attention")]
        save_attention: bool,
        /// Run on the CPU reference path instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// Convert an official checkpoint (model.pth.tar) to .npz with the same state_dict names, or back.
    ///
    /// By default reads a torch checkpoint and writes an .npz. With --to-torch, reads an .npz (or a checkpoint)
    /// and writes the official format that torch.load and the original scripts read: torch.save of
    /// {"epoch", "state_dict"} in the zip format of torch >= 1.6, or with --legacy the format of torch <= 1.5.
    /// The state dict is checked against the model of conf.json when one is found; the output's folder is
    /// created.
    ConvertWeights {
        /// The input: a checkpoint (torch.save of {"epoch", "state_dict", "optimizer"}; zip or legacy format), or
        /// with --to-torch also an .npz.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The file to write: an .npz, or with --to-torch a model.pth.tar.
        #[arg(long)]
        out: PathBuf,
        /// conf.json to check the keys and shapes against (default: beside the input or in its parent folder).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write an official torch checkpoint instead of an .npz (the input's epoch is kept, if it has one).
        #[arg(long)]
        to_torch: bool,
        /// With --to-torch: the legacy format of torch <= 1.5 instead of the zip format.
        #[arg(long, requires = "to_torch")]
        legacy: bool,
    },
    /// Write a synthetic dataset in the PASTIS layout, or with --format pixelset in the Sentinel-Agri pixel-set
    /// layout (refuses a non-empty folder it did not write).
    Synth {
        /// Output folder (new, empty, or a previous `sitsgpu synth` output, which is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Layout: `pastis` (patches) or `pixelset` (Sentinel-Agri parcels).
        #[arg(long, default_value = "pastis")]
        format: String,
        /// Pixel sets: number of parcels.
        #[arg(long, default_value_t = PixelSetSynthOptions::default().parcels)]
        parcels: usize,
        /// Number of patches (at least 5: one per fold).
        #[arg(long, default_value_t = SynthOptions::default().patches)]
        patches: usize,
        /// Patch side in pixels (a multiple of 8).
        #[arg(long, default_value_t = SynthOptions::default().size)]
        size: usize,
        /// Random seed (same seed and options, same bytes).
        #[arg(long, default_value_t = SynthOptions::default().seed)]
        seed: u64,
        /// Fewest acquisitions per patch.
        #[arg(long, visible_alias = "min_dates", default_value_t = SynthOptions::default().min_dates)]
        min_dates: usize,
        /// Most acquisitions per patch.
        #[arg(long, visible_alias = "max_dates", default_value_t = SynthOptions::default().max_dates)]
        max_dates: usize,
        /// Number of crop classes (1..=18; default 5 for pastis, 6 for pixelset).
        #[arg(long)]
        classes: Option<usize>,
    },
}

fn info() -> Result<(), String> {
    let adapters = enumerate_adapters();
    println!("adapters found: {}", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let gpu = Gpu::get().map_err(|e| e.to_string())?;
    println!(
        "chosen: {} ({}, {}) because {}",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type, gpu.reason
    );
    let l = &gpu.limits;
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size     {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "  max_buffer_size                     {} bytes",
        l.max_buffer_size
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_workgroup_storage_size  {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!("features: {:?}", gpu.features);
    // Self-test: relu and a small matmul on the GPU against the CPU reference.
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 7.0).collect();
    let cpu = Tensor::from_vec(x.clone(), &[10, 100], Device::Cpu);
    let gpu_t = Tensor::from_vec(x, &[10, 100], Device::Gpu);
    let relu_ok = cpu.relu().to_vec() == gpu_t.relu().to_vec();
    let a = cpu.matmul(&cpu.transpose(0, 1)).to_vec();
    let b = gpu_t.matmul(&gpu_t.transpose(0, 1)).to_vec();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| ((p - q) / p.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    let mm_ok = worst < 1e-4;
    println!(
        "self-test: relu {} | matmul {} (worst relative error {worst:.2e})",
        ok(relu_ok),
        ok(mm_ok)
    );
    if relu_ok && mm_ok {
        Ok(())
    } else {
        Err(
            "self-test failed: this adapter computes different results from the CPU reference"
                .into(),
        )
    }
}

/// What `convert-weights` writes.
#[derive(Clone, Copy, PartialEq)]
enum OutFormat {
    Npz,
    Torch,
    TorchLegacy,
}

fn convert_weights(
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    config: Option<&std::path::Path>,
    format: OutFormat,
) -> Result<(), String> {
    let ck = if format != OutFormat::Npz
        && checkpoint.extension().and_then(|e| e.to_str()) == Some("npz")
    {
        TorchCheckpoint {
            epoch: None,
            state_dict: read_npz(checkpoint).map_err(|e| e.to_string())?,
        }
    } else {
        read_torch_checkpoint(checkpoint).map_err(|e| e.to_string())?
    };
    match registry::find_config(checkpoint, config) {
        Ok(conf_path) => {
            let conf = registry::read_json(&conf_path).map_err(|e| e.to_string())?;
            let model =
                registry::model_for_checking(&conf, &conf_path).map_err(|e| e.to_string())?;
            load_state_dict(model.as_ref(), &ck.state_dict, checkpoint)
                .map_err(|e| e.to_string())?;
            println!(
                "checked {} entries against the model of {}",
                ck.state_dict.len(),
                conf_path.display()
            );
        }
        Err(e) if config.is_some() => return Err(e.to_string()),
        Err(_) => println!("no conf.json found: writing the state_dict unchecked"),
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    match format {
        OutFormat::Npz => write_npz(out, &ck.state_dict),
        OutFormat::Torch => write_torch_checkpoint(out, &ck.state_dict, ck.epoch),
        OutFormat::TorchLegacy => write_torch_checkpoint_legacy(out, &ck.state_dict, ck.epoch),
    }
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} entries, epoch {:?})",
        out.display(),
        ck.state_dict.len(),
        ck.epoch
    );
    Ok(())
}

/// Whether a command works on pixel sets: `--task` if given, else what the conf.json describes.
fn is_pixelset(task: Option<&str>, conf: &std::path::Path) -> Result<bool, String> {
    match task {
        Some("pixelset") => Ok(true),
        Some("semantic") => Ok(false),
        Some(other) => Err(format!("--task {other:?}: expected semantic or pixelset")),
        None => Ok(pixelset::predict::conf_is_pixelset(conf)),
    }
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Train(args) => args.run(),
        Command::Evaluate {
            dataset_folder,
            weight_folder,
            res_dir,
            fold,
            batch_size,
            cpu,
            task,
            original_sampling,
        } => (|| {
            if is_pixelset(task.as_deref(), &weight_folder.join("conf.json"))? {
                let e = PixelSetEvaluateOptions {
                    dataset_folder,
                    weight_folder,
                    res_dir,
                    fold,
                    batch_size,
                    original_sampling,
                    cpu,
                    progress: true,
                };
                return pixelset::evaluate(&e)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            let e = EvaluateOptions {
                dataset_folder,
                weight_folder,
                res_dir,
                fold,
                batch_size,
                cpu,
                progress: true,
            };
            evaluate(&e).map(|_| ()).map_err(|e| e.to_string())
        })(),
        Command::Demo { dir, epochs, cpu } => {
            sitsgpu::train::demo::run(&dir, epochs, cpu).map_err(|e| e.to_string())
        }
        Command::Predict {
            dataset_folder,
            weights,
            weight_folder,
            task,
            config,
            batch_size,
            folds,
            out,
            save_attention,
            cpu,
        } => (|| {
            let conf = match (&weights, &weight_folder) {
                (Some(w), None) => {
                    registry::find_config(w, config.as_deref()).map_err(|e| e.to_string())?
                }
                (None, Some(f)) => config.clone().unwrap_or(f.join("conf.json")),
                _ => {
                    return Err(
                        "predict: give --weights (one checkpoint) or --weight_folder".into(),
                    )
                }
            };
            if is_pixelset(task.as_deref(), &conf)? {
                let p = PixelSetPredictOptions {
                    dataset_folder,
                    weights,
                    weight_folder,
                    config: Some(conf),
                    batch_size,
                    out: out.clone(),
                    save_attention,
                    cpu,
                };
                let n = pixelset::predict::predict(&p).map_err(|e| e.to_string())?;
                println!("wrote predictions for {n} parcels to {}", out.display());
                return Ok(());
            }
            let weights =
                weights.ok_or("predict: semantic models take --weights, not --weight_folder")?;
            let device = if cpu { Device::Cpu } else { Device::Gpu };
            if !cpu {
                Gpu::get().map_err(|e| e.to_string())?;
            }
            let model =
                registry::load_semantic(&conf, &weights, device).map_err(|e| e.to_string())?;
            let opts = PredictOptions {
                dataset_folder,
                folds,
                batch_size,
                out: out.clone(),
                save_attention,
            };
            let n = predict(&model, device, &opts).map_err(|e| e.to_string())?;
            println!("wrote predictions for {n} patches to {}", out.display());
            Ok(())
        })(),
        Command::ConvertWeights {
            checkpoint,
            out,
            config,
            to_torch,
            legacy,
        } => {
            let format = match (to_torch, legacy) {
                (false, _) => OutFormat::Npz,
                (true, false) => OutFormat::Torch,
                (true, true) => OutFormat::TorchLegacy,
            };
            convert_weights(&checkpoint, &out, config.as_deref(), format)
        }
        Command::Synth {
            out,
            format,
            parcels,
            patches,
            size,
            seed,
            min_dates,
            max_dates,
            classes,
        } => (|| {
            let summary = match format.as_str() {
                "pastis" => write_pastis(
                    &out,
                    &SynthOptions {
                        patches,
                        size,
                        seed,
                        min_dates,
                        max_dates,
                        classes: classes.unwrap_or(SynthOptions::default().classes),
                    },
                )
                .map(|s| s.to_string()),
                "pixelset" => write_pixelset(
                    &out,
                    &PixelSetSynthOptions {
                        parcels,
                        classes: classes.unwrap_or(PixelSetSynthOptions::default().classes),
                        seed,
                    },
                )
                .map(|s| s.to_string()),
                other => return Err(format!("--format {other:?}: expected pastis or pixelset")),
            };
            println!("wrote {}", summary.map_err(|e| e.to_string())?);
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
