//! What each `sitsgpu` subcommand does once its flags are parsed: the choice between the semantic workflow
//! ([`crate::train::semantic`], [`crate::train::semantic::predict`]), the pixel-set one ([`crate::train::pixelset`]) and
//! the panoptic one ([`crate::train::panoptic`]),
//! made from `--task` or from the [`Task`] the weight folder's conf.json describes, and the flags of
//! `evaluate`, `predict` and `synth` (those of `train` are in [`crate::train::flags`]).

use std::path::PathBuf;

use crate::data::json::read_json;
use crate::data::synthetic::pixelset::{write_pixelset, PixelSetSynthOptions};
use crate::data::synthetic::{write_pastis, SynthOptions};
use crate::engine::{with_precision, Error, Precision, Result};
use crate::models::registry::{self, Task};
use crate::train::flags::TrainArgs;
use crate::train::panoptic;
use crate::train::pixelset::{self, predict::PixelSetPredictOptions, PixelSetEvaluateOptions};
use crate::train::semantic::predict::PredictOptions;
use crate::train::semantic::{self, dates_from_conf, EvaluateOptions};
use crate::train::state::device_of;

/// `sitsgpu train`: `train_semantic.py`, or with `--task pixelset` the L-TAE repository's `train.py`.
pub fn train(a: &TrainArgs) -> Result<()> {
    let task = Task::parse(&a.task)?;
    if task != Task::Panoptic && a.panoptic.any_given() {
        return Err(Error::Invalid(format!(
            "a [panoptic] flag was given to the {} task: add --task panoptic",
            task.name()
        )));
    }
    if task == Task::PixelSet && a.gradient_checkpointing {
        return Err(Error::Invalid(
            "--gradient_checkpointing recomputes the recurrent convolutional baselines' gates; the pixel-set \
             models have none (their norms are recomputed already)"
                .into(),
        ));
    }
    match task {
        Task::Semantic => semantic::train(&a.semantic_options()?).map(drop),
        Task::PixelSet => pixelset::train(&a.pixelset.options(&a.shared())?).map(drop),
        Task::Panoptic => panoptic::train(&a.panoptic_options()?).map(drop),
    }
}

/// `test_semantic.py`'s flags: those with no meaning here are accepted and ignored, so the original command
/// lines run unchanged.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// PASTIS folder, or Sentinel-Agri pixel-set folder.
    #[arg(long = "dataset_folder")]
    pub dataset_folder: PathBuf,
    /// Weight folder (conf.json + Fold_k/).
    #[arg(long = "weight_folder")]
    pub weight_folder: PathBuf,
    /// Output folder.
    #[arg(long = "res_dir", default_value = "./inference_utae")]
    pub res_dir: PathBuf,
    /// Only rotation k.
    #[arg(long)]
    pub fold: Option<usize>,
    /// Batch size (default: conf.json's).
    #[arg(long = "batch_size", value_parser = crate::train::flags::at_least_one)]
    pub batch_size: Option<usize>,
    /// Run on the CPU reference path.
    #[arg(long)]
    pub cpu: bool,
    /// semantic, pixelset or panoptic (default: from the weight folder's conf.json).
    #[arg(long)]
    pub task: Option<String>,
    /// Pixel sets: draw pixels and jitter as the original's test loop does (seeded by the conf's rdm_seed)
    /// instead of the deterministic evaluation (no jitter, a fixed pixel draw per parcel).
    #[arg(long = "original_sampling")]
    pub original_sampling: bool,
    /// Accepted for compatibility with test_semantic.py: "cpu" selects the CPU reference path, anything else
    /// (cuda, ...) the GPU.
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// Accepted for compatibility (no-op); loading already runs on a background reader.
    #[arg(long = "num_workers", default_value_t = 8)]
    pub num_workers: usize,
    /// Accepted for compatibility (no-op); progress bars replace the periodic prints.
    #[arg(long = "display_step", default_value_t = 50, value_parser = crate::train::flags::at_least_one)]
    pub display_step: usize,
    /// Semantic task: keep the last incomplete batch of each test fold. By default it is dropped, as
    /// test_semantic.py's drop_last=True (up to batch_size - 1 patches per fold not evaluated, named in a
    /// warning; a fold smaller than a batch is an error). Pixel sets never drop a batch.
    #[arg(long = "keep_last_batch")]
    pub keep_last_batch: bool,
    /// Matrix products on half-precision operands with float32 sums (cooperative matrices or f16 where
    /// the adapter has them), as in a `--precision mixed` training run; fp32 (the default) computes the
    /// original's numbers.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// GPU memory budget (2GB, 1.5GiB, 800MB, bytes) for semantic models: a batch whose forward pass would
    /// need more runs in parts of fewer patches (the same outputs), said once. Default: the adapter's memory
    /// where it is known (VRAM through nvidia-smi, a Mac's unified memory, host memory for lavapipe).
    #[arg(long = "max_memory", visible_alias = "max-memory", value_parser = crate::train::flags::max_memory)]
    pub max_memory: Option<u64>,
}

impl EvaluateArgs {
    /// `--cpu`, or `--device cpu` as test_semantic.py spells it.
    pub fn cpu(&self) -> bool {
        self.cpu || self.device == "cpu"
    }
}

/// `sitsgpu evaluate`: each fold's checkpoint on its test split, semantic or pixel-set after the conf.json,
/// in the precision asked.
pub fn evaluate(a: &EvaluateArgs) -> Result<()> {
    with_precision(a.precision, || evaluate_folds(a))
}

fn evaluate_folds(a: &EvaluateArgs) -> Result<()> {
    let cpu = a.cpu();
    let task = Task::resolve(a.task.as_deref(), &a.weight_folder.join("conf.json"))?;
    whole_batches_only(task, a.max_memory)?;
    match task {
        Task::PixelSet => pixelset::evaluate(&PixelSetEvaluateOptions {
            dataset_folder: a.dataset_folder.clone(),
            weight_folder: a.weight_folder.clone(),
            res_dir: a.res_dir.clone(),
            fold: a.fold,
            batch_size: a.batch_size,
            original_sampling: a.original_sampling,
            cpu,
            progress: true,
        })
        .map(drop),
        Task::Semantic | Task::Panoptic => {
            let e = EvaluateOptions {
                dataset_folder: a.dataset_folder.clone(),
                weight_folder: a.weight_folder.clone(),
                res_dir: a.res_dir.clone(),
                fold: a.fold,
                batch_size: a.batch_size,
                cpu,
                progress: true,
                keep_last_batch: a.keep_last_batch,
                max_memory: a.max_memory,
            };
            if task == Task::Panoptic {
                panoptic::evaluate::evaluate(&e).map(drop)
            } else {
                semantic::evaluate(&e).map(drop)
            }
        }
    }
}

/// `--max_memory` splits semantic batches only: PaPs' centers depend on the whole batch (the heatmap's batch
/// mean, as the original), and a pixel-set batch is a few MB.
fn whole_batches_only(task: Task, max_memory: Option<u64>) -> Result<()> {
    if max_memory.is_some() && task != Task::Semantic {
        return Err(Error::Invalid(format!(
            "--max_memory applies to semantic models; {} evaluation and prediction run whole batches \
             (lower --batch_size if they do not fit)",
            task.name()
        )));
    }
    Ok(())
}

/// `sitsgpu predict`'s flags; they also take the original scripts' spelling (`--dataset_folder`, ...).
#[derive(clap::Args, Debug, Clone)]
pub struct PredictArgs {
    /// PASTIS folder (metadata.geojson, DATA_S2/, NORM_S2_patch.json; ANNOTATIONS/ is optional) or pixel-set
    /// folder.
    #[arg(long, visible_alias = "dataset_folder")]
    pub dataset_folder: PathBuf,
    /// Weights: our .npz or an official model.pth.tar.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Pixel sets: a weight folder (conf.json + Fold_k/model.*) whose folds are averaged.
    #[arg(long, visible_alias = "weight_folder")]
    pub weight_folder: Option<PathBuf>,
    /// semantic, pixelset or panoptic (default: from the conf.json).
    #[arg(long)]
    pub task: Option<String>,
    /// conf.json of the model (default: beside the weights or in their parent folder).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Patches per batch (batch-max temporal padding, as the original collate).
    #[arg(long, visible_alias = "batch_size", default_value_t = 4, value_parser = crate::train::flags::at_least_one)]
    pub batch_size: usize,
    /// Folds to predict and normalise with (default: all five).
    #[arg(long, num_args = 1..)]
    pub folds: Option<Vec<usize>>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the L-TAE attention masks (n_head x T x h x w).
    #[arg(long, visible_alias = "save_attention")]
    pub save_attention: bool,
    /// Run on the CPU reference path instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
    /// Matrix products on half-precision operands with float32 sums (cooperative matrices or f16 where
    /// the adapter has them), as in a `--precision mixed` training run; fp32 (the default) computes the
    /// original's numbers.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// GPU memory budget (2GB, 1.5GiB, 800MB, bytes) for semantic models: a batch whose forward pass would
    /// need more runs in parts of fewer patches (the same outputs), said once. Default: the adapter's memory
    /// where it is known (VRAM through nvidia-smi, a Mac's unified memory, host memory for lavapipe).
    #[arg(long = "max_memory", visible_alias = "max-memory", value_parser = crate::train::flags::max_memory)]
    pub max_memory: Option<u64>,
}

/// `sitsgpu predict`: a semantic model over PASTIS patches (one checkpoint, `--weights`), or a pixel-set
/// classifier over parcels (one checkpoint, or a weight folder's k-fold ensemble), in the precision asked.
pub fn predict(a: &PredictArgs) -> Result<()> {
    with_precision(a.precision, || predict_with(a))
}

fn predict_with(a: &PredictArgs) -> Result<()> {
    let conf = match (&a.weights, &a.weight_folder) {
        (Some(w), None) => registry::find_config(w, a.config.as_deref())?,
        (None, Some(f)) => a.config.clone().unwrap_or(f.join("conf.json")),
        _ => {
            return Err(Error::Invalid(
                "predict: give --weights (one checkpoint) or --weight_folder".into(),
            ))
        }
    };
    // The conf.json is needed either way: a missing or broken one is reported first, naming it.
    read_json(&conf)?;
    let task = Task::resolve(a.task.as_deref(), &conf)?;
    whole_batches_only(task, a.max_memory)?;
    if task == Task::PixelSet {
        let n = pixelset::predict::predict(&PixelSetPredictOptions {
            dataset_folder: a.dataset_folder.clone(),
            weights: a.weights.clone(),
            weight_folder: a.weight_folder.clone(),
            config: Some(conf),
            batch_size: a.batch_size,
            out: a.out.clone(),
            save_attention: a.save_attention,
            cpu: a.cpu,
        })?;
        println!("wrote predictions for {n} parcels to {}", a.out.display());
        return Ok(());
    }
    let weights = a.weights.as_ref().ok_or_else(|| {
        Error::Invalid("predict: semantic models take --weights, not --weight_folder".into())
    })?;
    let device = device_of(a.cpu)?;
    let (ref_date, mono_date) = dates_from_conf(&read_json(&conf)?, &conf)?;
    let opts = PredictOptions {
        dataset_folder: a.dataset_folder.clone(),
        folds: a.folds.clone(),
        batch_size: a.batch_size,
        out: a.out.clone(),
        save_attention: a.save_attention,
        ref_date,
        mono_date,
        max_memory: a.max_memory,
    };
    if task == Task::Panoptic {
        let model = registry::load_panoptic(&conf, weights, device)?;
        let n = panoptic::evaluate::predict(&model, device, &opts)?;
        println!("{}", panoptic::evaluate::describe(&a.out, n));
        return Ok(());
    }
    let model = registry::load_semantic(&conf, weights, device)?;
    let n = crate::train::semantic::predict::predict(&model, device, &opts)?;
    println!("wrote predictions for {n} patches to {}", a.out.display());
    Ok(())
}

/// `sitsgpu synth`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Output folder (new, empty, or a previous `sitsgpu synth` output, which is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Layout: `pastis` (patches) or `pixelset` (Sentinel-Agri parcels).
    #[arg(long, default_value = "pastis")]
    pub format: String,
    /// Pixel sets: number of parcels.
    #[arg(long, default_value_t = PixelSetSynthOptions::default().parcels)]
    pub parcels: usize,
    /// Number of patches (at least 5: one per fold).
    #[arg(long, default_value_t = SynthOptions::default().patches)]
    pub patches: usize,
    /// Patch side in pixels (a multiple of 8).
    #[arg(long, default_value_t = SynthOptions::default().size)]
    pub size: usize,
    /// Random seed (same seed and options, same bytes).
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    pub seed: u64,
    /// Fewest acquisitions per patch.
    #[arg(long, visible_alias = "min_dates", default_value_t = SynthOptions::default().min_dates)]
    pub min_dates: usize,
    /// Most acquisitions per patch.
    #[arg(long, visible_alias = "max_dates", default_value_t = SynthOptions::default().max_dates)]
    pub max_dates: usize,
    /// Number of crop classes (1..=18; default 5 for pastis, 6 for pixelset).
    #[arg(long)]
    pub classes: Option<usize>,
}

/// `sitsgpu synth`: a synthetic dataset in the PASTIS or the pixel-set layout.
pub fn synth(a: &SynthArgs) -> Result<()> {
    let summary = match a.format.as_str() {
        "pastis" => write_pastis(
            &a.out,
            &SynthOptions {
                patches: a.patches,
                size: a.size,
                seed: a.seed,
                min_dates: a.min_dates,
                max_dates: a.max_dates,
                classes: a.classes.unwrap_or(SynthOptions::default().classes),
            },
        )?
        .to_string(),
        "pixelset" => write_pixelset(
            &a.out,
            &PixelSetSynthOptions {
                parcels: a.parcels,
                classes: a.classes.unwrap_or(PixelSetSynthOptions::default().classes),
                seed: a.seed,
            },
        )?
        .to_string(),
        other => {
            return Err(Error::Invalid(format!(
                "--format {other:?}: expected pastis or pixelset"
            )))
        }
    };
    println!("wrote {summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_memory_is_refused_where_batches_run_whole() {
        assert!(whole_batches_only(Task::Semantic, Some(1 << 30)).is_ok());
        assert!(whole_batches_only(Task::Panoptic, None).is_ok());
        for task in [Task::Panoptic, Task::PixelSet] {
            let err = whole_batches_only(task, Some(1 << 30))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--max_memory applies to semantic models")
                    && err.contains(task.name()),
                "{err}"
            );
        }
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EvaluateArgs,
    }

    #[test]
    fn evaluate_takes_test_semantic_py_s_command_line() {
        let argv = [
            "evaluate",
            "--dataset_folder",
            "D",
            "--weight_folder",
            "W",
            "--res_dir",
            "R",
            "--fold",
            "2",
            "--batch_size",
            "3",
            "--device",
            "cpu",
            "--num_workers",
            "0",
            "--display_step",
            "10",
        ];
        let a = Cli::try_parse_from(argv).unwrap().args;
        assert_eq!((a.fold, a.batch_size), (Some(2), Some(3)));
        assert!(a.cpu(), "--device cpu selects the CPU path");
        let a = Cli::try_parse_from([
            "evaluate",
            "--dataset_folder",
            "D",
            "--weight_folder",
            "W",
            "--device",
            "cuda",
        ])
        .unwrap()
        .args;
        assert!(!a.cpu());
        assert_eq!(a.res_dir, PathBuf::from("./inference_utae"));
        assert_eq!(a.precision, Precision::Fp32, "fp32 unless asked");
    }

    #[test]
    fn evaluate_and_predict_take_a_precision() {
        #[derive(Parser)]
        struct PredictCli {
            #[command(flatten)]
            args: PredictArgs,
        }
        let base = ["evaluate", "--dataset_folder", "D", "--weight_folder", "W"];
        let a = Cli::try_parse_from(base.iter().chain(&["--precision", "mixed"]))
            .unwrap()
            .args;
        assert_eq!(a.precision, Precision::Mixed);
        let p = PredictCli::try_parse_from(["predict", "--dataset_folder", "D", "--out", "O"])
            .unwrap()
            .args;
        assert_eq!(p.precision, Precision::Fp32);
        let p = PredictCli::try_parse_from([
            "predict",
            "--dataset_folder",
            "D",
            "--out",
            "O",
            "--precision",
            "mixed",
        ])
        .unwrap()
        .args;
        assert_eq!(p.precision, Precision::Mixed);
        let e = Cli::try_parse_from(base.iter().chain(&["--precision", "f16"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fp32 or mixed"), "{e}");
    }
}
