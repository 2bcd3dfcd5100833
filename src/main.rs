//! The `sitsgpu` command: the clap declarations and one `match` that hands each subcommand to the library.
//!
//! - `sitsgpu info`: every adapter wgpu finds, the one chosen and why, its limits and features, and a tiny
//!   self-test kernel compared with the CPU reference ([`sitsgpu::engine::self_test`]). Run this first on a
//!   new machine.
//! - `sitsgpu train` / `evaluate`: utae-paps' train_semantic.py / test_semantic.py (same flags and outputs);
//!   with `--task pixelset`, the L-TAE repository's train.py (PSE + L-TAE, TAE, GRU, TempCNN); with `--task
//!   panoptic`, utae-paps' train_panoptic.py / test_panoptic.py (U-TAE + PaPs). Flags in
//!   [`sitsgpu::train::flags`], dispatch in [`sitsgpu::train::commands`].
//! - `sitsgpu predict`: a semantic model over a PASTIS-layout folder (annotations optional), or a pixel-set
//!   classifier (one checkpoint or a weight folder's k-fold ensemble) over a Sentinel-Agri folder.
//! - `sitsgpu demo`: synthetic PASTIS-format data, a small U-TAE (`--task panoptic`: U-TAE + PaPs) trained and
//!   evaluated, curves plotted.
//! - `sitsgpu convert-weights`: an official `model.pth.tar` to `.npz` or back, checked against the model its
//!   conf.json describes ([`sitsgpu::models::convert`]).
//! - `sitsgpu profile`: a model's training step or forward pass on synthetic inputs, timed kernel by kernel
//!   ([`sitsgpu::train::profile`]).
//! - `sitsgpu synth`: a synthetic dataset in the PASTIS layout or, with `--format pixelset`, in the
//!   Sentinel-Agri pixel-set layout, for demos, tests and benchmarks without the real data.
//! - `sitsgpu map` / `sitsgpu prepare`: your own area: a folder of GeoTIFFs to a georeferenced class map
//!   ([`sitsgpu::train::map`]), or with a label raster to a training set in the PASTIS layout
//!   ([`sitsgpu::train::prepare`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sitsgpu::models::convert::{convert_weights, OutFormat};
use sitsgpu::train::commands::{self, EvaluateArgs, PredictArgs, SynthArgs};
use sitsgpu::train::flags::TrainArgs;
use sitsgpu::train::profile::ProfileArgs;

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

#[derive(Subcommand)]
enum Command {
    /// Train U-TAE on PASTIS (train_semantic.py): 5-fold rotation, Adam, weighted cross-entropy, validation,
    /// best checkpoint, test metrics, training curves. With --task pixelset: PSE + L-TAE (or TAE, GRU,
    /// TempCNN) on Sentinel-Agri pixel sets (the L-TAE repository's train.py). With --task panoptic: U-TAE +
    /// PaPs on PASTIS's instance annotations (train_panoptic.py: warm-up, MultiStepLR, threshold tuning, PQ).
    Train(Box<TrainArgs>),
    /// Evaluate trained weights on each fold's test split (test_semantic.py): ours (Fold_k/model.npz) or the
    /// official folder (conf.json + Fold_k/model.pth.tar). Pixel-set weight folders (the L-TAE repository's
    /// train.py layout) are recognised from their conf.json: each fold's test parcels of the k-fold split; so
    /// are U-TAE + PaPs folders (train_panoptic.py's conf.json): test_panoptic.py's test_metrics.json (SQ, RQ,
    /// PQ, the loss terms) and test_tables.npy per fold.
    ///
    /// test_semantic.py's --device (cpu selects the CPU path), --num_workers and --display_step are accepted.
    Evaluate(EvaluateArgs),
    /// The whole workflow on synthetic PASTIS-format data: make it (if absent), train a small U-TAE (with
    /// --task panoptic a U-TAE + PaPs) on one rotation, evaluate it, plot the curves. A few minutes on a
    /// CPU-only machine with lavapipe.
    Demo {
        /// Working folder (data/ and results/ inside).
        #[arg(long, default_value = "sitsgpu-demo")]
        dir: PathBuf,
        /// Epochs (default 12; panoptic 20).
        #[arg(long)]
        epochs: Option<usize>,
        /// Run on the CPU reference path.
        #[arg(long)]
        cpu: bool,
        /// semantic (U-TAE) or panoptic (U-TAE + PaPs: SQ / RQ / PQ and Fig. 5-style pictures).
        #[arg(long, default_value = "semantic")]
        task: String,
        /// fp32, or mixed (products, convolutions and their gradients on half-precision operands, the loss
        /// scaled, activations saved for the backward pass in half precision: README § Mixed precision).
        #[arg(long, default_value_t = sitsgpu::engine::Precision::Fp32)]
        precision: sitsgpu::engine::Precision,
    },
    /// List GPU adapters, show the chosen one with its limits, and run a self-test kernel.
    Info,
    /// Run a semantic model over PASTIS patches and write logits_<ID>.npy, pred_<ID>.npy (and attn_<ID>.npy);
    /// or a pixel-set classifier over a Sentinel-Agri folder (recognised from the conf.json), writing
    /// predictions.json, ids.npy, pred.npy, logits.npy (and attention.npy), from one checkpoint (--weights) or
    /// the k-fold ensemble of a weight folder (--weight_folder, as the original's PseLTae_pretrained); or a
    /// U-TAE + PaPs over PASTIS patches, writing instance_<ID>.npy, semantic_<ID>.npy and panoptic_<ID>.png
    /// (RGB | true parcels | predicted parcels).
    ///
    /// The PASTIS folder needs no annotations (a user's own area: metadata.geojson, NORM_S2_patch.json and
    /// DATA_S2/ only). A mono-date model is run on the date it was trained on (its conf.json's mono_date).
    /// Flags also accept the original scripts' spelling (--dataset_folder, --batch_size, --save_attention).
    Predict(PredictArgs),
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
    /// Time a model's training step (--train) or evaluation forward kernel by kernel on synthetic inputs:
    /// calls, GPU time (timestamp queries where the adapter has them, else synchronised wall time), share,
    /// GFLOP/s or GB/s and dispatch size per kernel entry point, plus the step's wall and CPU recording time.
    Profile(ProfileArgs),
    /// Write a synthetic dataset in the PASTIS layout, or with --format pixelset in the Sentinel-Agri pixel-set
    /// layout (refuses a non-empty folder it did not write).
    Synth(SynthArgs),
    /// Run a trained semantic model over your own area: a folder of GeoTIFFs (one per date) to a
    /// georeferenced class map (GeoTIFF on the input's grid and CRS, 255 = nodata) and a PNG preview; sliding
    /// windows with blended overlaps, batched on the GPU; --part I/N for one band of a large scene.
    Map(Box<sitsgpu::train::map::MapArgs>),
    /// Cut your own imagery into a training set in the PASTIS layout: a folder of GeoTIFFs (one per date) and
    /// a label raster (and optionally a parcel-id raster, for the instance annotations) to P x P patches
    /// (DATA_S2, ANNOTATIONS, INSTANCE_ANNOTATIONS), metadata.geojson with dates and spatially spread folds,
    /// and NORM_S2_patch.json, so that train and evaluate run on it unchanged.
    Prepare(Box<sitsgpu::train::prepare::PrepareArgs>),
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // A tensor over the adapter's largest binding, raised deep in an op, ends here as an error.
    let result = sitsgpu::engine::error::catch_too_large(|| match command {
        Command::Info => sitsgpu::engine::self_test::adapter_report(&mut std::io::stdout()),
        Command::Train(args) => commands::train(&args),
        Command::Evaluate(args) => commands::evaluate(&args),
        Command::Demo {
            dir,
            epochs,
            cpu,
            task,
            precision,
        } => match task.as_str() {
            "semantic" => sitsgpu::train::demo::run(&dir, epochs.unwrap_or(12), cpu, precision),
            "panoptic" => {
                sitsgpu::train::demo::run_panoptic(&dir, epochs.unwrap_or(20), cpu, precision)
            }
            other => Err(sitsgpu::engine::Error::Invalid(format!(
                "demo --task {other:?}: expected semantic or panoptic"
            ))),
        },
        Command::Predict(args) => commands::predict(&args),
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
            convert_weights(&checkpoint, &out, config.as_deref(), format).map(|c| println!("{c}"))
        }
        Command::Synth(args) => commands::synth(&args),
        Command::Profile(args) => args.run(),
        Command::Map(args) => args.run(),
        Command::Prepare(args) => args.run(),
    });
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    // The error, then what caused it, one line each.
    eprintln!("error: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
    ExitCode::FAILURE
}
