//! Semantic segmentation training and evaluation on PASTIS: the workflow of utae-paps' `train_semantic.py`
//! and `test_semantic.py` (spec §1.9, §7.1, §8.1), with the same flags, outputs and file layout:
//!
//! ```text
//! res_dir/conf.json                       the configuration (original keys + N_params)
//! res_dir/Fold_k/trainlog.json            {epoch: {train_loss, train_accuracy, train_IoU, val_*}}
//! res_dir/Fold_k/model.npz                best checkpoint (validation mIoU >=), state_dict names
//! res_dir/Fold_k/best.npz                while the fold trains: the best weights so far (then model.npz)
//! res_dir/Fold_k/last.npz                the end of the last finished epoch: weights, Adam state, progress, log
//! res_dir/Fold_k/test_metrics.json        test_accuracy, test_loss, test_IoU, test_epoch_time
//! res_dir/Fold_k/conf_mat.pkl/.npy/.json the K × K test confusion matrix (.pkl: a pickled numpy array)
//! res_dir/Fold_k/curves.png               training curves
//! res_dir/Fold_k/normalisation.json       the training split's per-band mean / std (read by `sitsgpu map`)
//! res_dir/overall.json                    5-fold summary (when every fold ran)
//! ```
//! Rotation k trains on three folds, validates on one and tests on the last (§1.9); each split is normalised
//! with its own folds' statistics, as the original datasets are. Loss: cross-entropy with class weights 1 and
//! 0 for the ignored class (`--ignore_index -1` indexes the last class, Python style). Batches are shuffled
//! with a seed derived from (`rdm_seed`, fold, epoch) and incomplete batches are dropped (`drop_last`), so a
//! resumed run replays exactly the batches and dropout masks an uninterrupted run would have.
//!
//! `drop_last` is kept for parity, but never silently empties a result: a split too small to give one batch is
//! an error before anything runs (with `--keep_last_batch`, validation and test passes keep their last
//! incomplete batch instead), and the patches a test pass leaves out are named in a warning. Every input is
//! checked before anything is written; a fold's `model.npz` (kept as `best.npz` while it trains) and test files
//! appear when it has been tested, and `evaluate` writes its files once every fold has run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::data::json::{read_json, write_json};
use crate::data::pastis::{Batch, Date, MonoDate, PastisDataset, PastisOptions};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::state::load_state_dict;
use crate::layers::{Ctx, Module};
use crate::models::registry::read_weights;
use crate::models::semantic::{SemanticConfig, SemanticModel};
use crate::models::utae::{padding_mode_name, PadInfo};
use crate::train::adam::{Adam, AdamConfig};
use crate::train::drop_last::{check_split, eval_order};
use crate::train::metrics::ConfusionMatrix;
use crate::train::plot;
use crate::train::state::{
    check_resumable, checkpoint_of, device_of, epoch_order, load_best, mix, pastis_folds,
    publish_best, resume_fold, save_best, save_fold_results, save_overall, save_test_results,
    save_training_state, FoldResult, Progress,
};

/// The five rotations (train folds, validation fold, test fold), run k = 1..5 (spec §1.9).
pub const ROTATIONS: [([usize; 3], usize, usize); 5] = [
    ([1, 2, 3], 4, 5),
    ([2, 3, 4], 5, 1),
    ([3, 4, 5], 1, 2),
    ([4, 5, 1], 2, 3),
    ([5, 1, 2], 3, 4),
];

/// `train_semantic.py`'s options (same names and defaults) plus `init_weights`, `max_steps`, `resume`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The model (`--model`) and its hyper-parameters (U-TAE: `--encoder_widths`, …, `--padding_mode`; a
    /// baseline: get_model's arguments and `--model_kwargs`).
    pub model: SemanticConfig,
    /// PASTIS folder.
    pub dataset_folder: PathBuf,
    /// Output folder.
    pub res_dir: PathBuf,
    /// Seed of initialisation, shuffling and dropout.
    pub rdm_seed: u64,
    /// Epochs per fold.
    pub epochs: usize,
    /// Patches per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Run only rotation k (1..5).
    pub fold: Option<usize>,
    /// Number of classes (must equal out_conv's last width).
    pub num_classes: usize,
    /// Class weighted 0 in the loss and left out of the metrics (Python index: -1 = last class).
    pub ignore_index: i64,
    /// Temporal pad value.
    pub pad_value: f32,
    /// Validate every this many epochs.
    pub val_every: usize,
    /// Validate only after this epoch.
    pub val_after: usize,
    /// Start from these weights (.npz or official model.pth.tar) instead of a fresh initialisation.
    pub init_weights: Option<PathBuf>,
    /// Stop each fold after this many optimiser steps (smoke tests, benchmarks).
    pub max_steps: Option<usize>,
    /// Continue an interrupted run from `Fold_k/last.npz`.
    pub resume: bool,
    /// Run on the CPU reference path.
    pub cpu: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Reference date of the day offsets (`--ref_date`, default 2018-09-01).
    pub ref_date: Date,
    /// Mono-date ablation (`--mono_date`: a date YYYY-MM-DD or an index).
    pub mono_date: Option<MonoDate>,
    /// Keep the last incomplete batch of validation and test passes (`--keep_last_batch`); by default it is
    /// dropped, as the original's `drop_last=True` does. Training batches are always whole.
    pub keep_last_batch: bool,
}

impl TrainOptions {
    /// The ignored class as an index (Python negative indexing), if it is one.
    pub fn ignored_class(&self) -> Option<usize> {
        let k = self.num_classes as i64;
        let i = if self.ignore_index < 0 {
            k + self.ignore_index
        } else {
            self.ignore_index
        };
        (0..k).contains(&i).then_some(i as usize)
    }

    /// conf.json: the original keys (`vars(config)`) + N_params; a baseline's constructor arguments in
    /// `model_kwargs`.
    pub fn to_conf_json(&self, n_params: usize) -> Value {
        let mut conf = json!({
            "model": self.model.name(),
            "dataset_folder": self.dataset_folder.display().to_string(), "res_dir": self.res_dir.display().to_string(),
            "num_workers": 1, "rdm_seed": self.rdm_seed, "device": if self.cpu { "cpu" } else { "gpu" },
            "display_step": 50, "cache": false, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "mono_date": self.mono_date.map(|d| d.to_string()), "ref_date": self.ref_date.to_string(),
            "fold": self.fold, "num_classes": self.num_classes,
            "ignore_index": self.ignore_index, "pad_value": self.pad_value,
            "val_every": self.val_every, "val_after": self.val_after, "N_params": n_params,
        });
        let o = conf.as_object_mut().expect("an object");
        match &self.model {
            SemanticConfig::UTae(m) => {
                let keys = json!({
                    "encoder_widths": m.encoder_widths, "decoder_widths": m.decoder_widths, "out_conv": m.out_conv,
                    "str_conv_k": m.str_conv_k, "str_conv_s": m.str_conv_s, "str_conv_p": m.str_conv_p,
                    "agg_mode": m.agg_mode.name(), "encoder_norm": m.encoder_norm.name(),
                    "n_head": m.n_head, "d_model": m.d_model, "d_k": m.d_k,
                    "padding_mode": padding_mode_name(m.padding_mode),
                });
                o.extend(keys.as_object().expect("an object").clone());
            }
            baseline => {
                o.insert(
                    "model_kwargs".into(),
                    baseline.kwargs().unwrap_or(Value::Null),
                );
            }
        }
        conf
    }
}

/// Losses and metrics of one pass over a split.
#[derive(Debug, Clone, Default)]
pub struct EpochMetrics {
    /// Mean of the per-batch losses.
    pub loss: f64,
    /// Overall accuracy, percent.
    pub accuracy: f64,
    /// mIoU, percent.
    pub miou: f64,
    /// Patches per second.
    pub patches_per_s: f64,
    /// Seconds.
    pub seconds: f64,
}

/// Device tensors of a batch: (x, targets as f32 class ids).
fn to_device(b: &Batch, device: Device) -> (Tensor, Tensor, PadInfo) {
    let [bs, _, _, h, w] = b.shape;
    let x = Tensor::from_vec(b.x.clone(), &b.shape, device);
    let t = Tensor::from_vec(
        b.targets.iter().map(|&v| v as f32).collect(),
        &[bs, h, w],
        device,
    );
    (
        x,
        t,
        PadInfo {
            mask: b.pad_mask.clone(),
        },
    )
}

/// Adds the batch's predictions to `cm`.
fn accumulate(cm: &mut ConfusionMatrix, logits: &Tensor, targets: &[i64]) {
    // argmax over the class axis on the device: only (B, H, W) indices are read back each step.
    cm.add(&logits.argmax(1), targets);
}

/// One pass over `indices` of `ds`: training when `opt` is given (with `step` counting optimiser steps up to
/// `max_steps`), evaluation otherwise.
#[allow(clippy::too_many_arguments)]
fn run_epoch(
    model: &SemanticModel,
    ds: &PastisDataset,
    indices: Vec<usize>,
    opts: &TrainOptions,
    device: Device,
    weights: &Tensor,
    mut opt: Option<&mut Adam>,
    seed: u64,
    step: &mut usize,
    label: &str,
) -> Result<(EpochMetrics, ConfusionMatrix)> {
    let training = opt.is_some();
    let mut cm = ConfusionMatrix::new(opts.num_classes);
    let (mut loss_sum, mut batches, mut patches) = (0.0, 0usize, 0usize);
    let start = Instant::now();
    let n_batches = indices.len().div_ceil(opts.batch_size.max(1));
    let bar = crate::train::progress::bar(opts.progress, n_batches as u64, label);
    for (bi, batch) in ds
        .batches_with_pad(indices, opts.batch_size, opts.pad_value)
        .enumerate()
    {
        if training && opts.max_steps.is_some_and(|m| *step >= m) {
            break;
        }
        let batch = batch?;
        let (x, t, pad) = to_device(&batch, device);
        let loss = if let Some(opt) = opt.as_deref_mut() {
            opt.zero_grad();
            let ctx = Ctx::train(seed.wrapping_add(bi as u64 * 1000));
            let out = model.forward(&x, &batch.dates, &pad, &ctx).logits;
            let loss = out.cross_entropy(&t, Some(weights), -100);
            loss.backward();
            opt.step();
            *step += 1;
            accumulate(&mut cm, &out.detach(), &batch.targets);
            loss.item() as f64
        } else {
            no_grad(|| {
                let out = model.forward(&x, &batch.dates, &pad, &Ctx::eval()).logits;
                accumulate(&mut cm, &out, &batch.targets);
                out.cross_entropy(&t, Some(weights), -100).item() as f64
            })
        };
        loss_sum += loss;
        batches += 1;
        patches += batch.ids.len();
        let (miou, _) = cm.miou_acc(opts.ignored_class());
        bar.set_message(format!(
            "loss {:.4} mIoU {:.1} {:.2} patches/s",
            loss_sum / batches as f64,
            miou,
            patches as f64 / start.elapsed().as_secs_f64()
        ));
        bar.inc(1);
    }
    bar.finish();
    if batches == 0 && !training {
        // The callers check the splits first; this guards against metrics of nothing (NaN).
        return Err(Error::Invalid(format!("{label}: no patch was evaluated")));
    }
    let (miou, accuracy) = cm.miou_acc(opts.ignored_class());
    let seconds = start.elapsed().as_secs_f64();
    let m = EpochMetrics {
        loss: loss_sum / batches.max(1) as f64,
        accuracy,
        miou,
        patches_per_s: patches as f64 / seconds.max(1e-9),
        seconds,
    };
    Ok((m, cm))
}

fn metrics_json(prefix: &str, m: &EpochMetrics) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(format!("{prefix}_loss"), json!(m.loss));
    o.insert(format!("{prefix}_accuracy"), json!(m.accuracy));
    o.insert(format!("{prefix}_IoU"), json!(m.miou));
    o
}

fn open_split(opts: &TrainOptions, folds: &[usize]) -> Result<PastisDataset> {
    PastisDataset::open(
        &opts.dataset_folder,
        PastisOptions {
            folds: Some(folds.to_vec()),
            ref_date: opts.ref_date,
            mono_date: opts.mono_date,
            ..PastisOptions::default()
        },
    )
}

fn class_weights(opts: &TrainOptions, device: Device) -> Tensor {
    let mut w = vec![1.0f32; opts.num_classes];
    if let Some(i) = opts.ignored_class() {
        w[i] = 0.0;
    }
    Tensor::from_vec(w, &[opts.num_classes], device)
}

/// Opens the three splits of rotation `k` (train, validation, test folds) and checks that each gives at least
/// one batch (see [`check_split`]).
fn open_rotation(
    opts: &TrainOptions,
    k: usize,
    validates: bool,
) -> Result<(PastisDataset, PastisDataset, PastisDataset)> {
    let (train_f, val_f, test_f) = ROTATIONS[k - 1];
    let (dt_train, dt_val, dt_test) = (
        open_split(opts, &train_f)?,
        open_split(opts, &[val_f])?,
        open_split(opts, &[test_f])?,
    );
    let b = opts.batch_size;
    check_split(&dt_train, &format!("Fold {k}: training"), b, false, true)?;
    if validates {
        check_split(
            &dt_val,
            &format!("Fold {k}: validation"),
            b,
            opts.keep_last_batch,
            false,
        )?;
    }
    check_split(
        &dt_test,
        &format!("Fold {k}: test"),
        b,
        opts.keep_last_batch,
        false,
    )?;
    Ok((dt_train, dt_val, dt_test))
}

/// Whether validation runs in some epoch of `1..=epochs`.
fn validates(opts: &TrainOptions) -> bool {
    (1..=opts.epochs).any(|e| e % opts.val_every.max(1) == 0 && e > opts.val_after)
}

/// The whole training run (every rotation, or `opts.fold`). Returns the test metrics per fold run.
///
/// Everything that can be checked before training is checked before anything is written (an existing
/// `res_dir` is left untouched when the inputs are bad): the folds, every split's patches and files
/// ([`PastisDataset::check`]: headers, frames against dates, NaN / infinite values, classes), that every split
/// gives at least one batch, and `init_weights`.
pub fn train(opts: &TrainOptions) -> Result<Vec<(usize, EpochMetrics)>> {
    if opts.model.num_classes() != opts.num_classes {
        return Err(Error::Invalid(format!(
            "--num_classes {} differs from the {} model's {} classes (U-TAE: the last --out_conv width)",
            opts.num_classes,
            opts.model.name(),
            opts.model.num_classes()
        )));
    }
    let folds = pastis_folds(opts.fold)?;
    let device = device_of(opts.cpu)?;
    // Check every input before writing anything.
    let mut splits = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for &k in &folds {
        splits.push(open_rotation(opts, k, validates(opts))?);
        let (train_f, val_f, test_f) = ROTATIONS[k - 1];
        for f in train_f.into_iter().chain([val_f, test_f]) {
            if !used.contains(&f) {
                used.push(f);
            }
        }
    }
    open_split(opts, &used)?.check(Some(opts.num_classes))?;
    let scratch = opts.model.build(0, Device::Cpu);
    let init = match &opts.init_weights {
        Some(w) => {
            let sd = read_weights(w)?;
            load_state_dict(&scratch, &sd, w)?;
            Some((w, sd))
        }
        None => None,
    };
    if opts.resume {
        let mut opt = Adam::new(scratch.parameters(), AdamConfig::default());
        check_resumable(&opts.res_dir, &folds, &scratch, &mut opt)?;
    }
    std::fs::create_dir_all(&opts.res_dir).map_err(|e| Error::io(&opts.res_dir, e))?;
    let mut results = Vec::new();
    let mut total_cm = ConfusionMatrix::new(opts.num_classes);
    for (&k, (dt_train, dt_val, dt_test)) in folds.iter().zip(splits) {
        let fold_dir = opts.res_dir.join(format!("Fold_{k}"));
        std::fs::create_dir_all(&fold_dir).map_err(|e| Error::io(&fold_dir, e))?;
        // The training split's normalisation travels with the weights (`sitsgpu map` reads it).
        if let (Some((mean, std)), Some(train_folds)) = (dt_train.norm(), &dt_train.options().folds)
        {
            crate::train::map::scene::write_norm_record(&fold_dir, mean, std, train_folds)?;
        }
        let model = opts.model.build(opts.rdm_seed, device);
        if let Some((w, sd)) = &init {
            load_state_dict(&model, sd, w)?;
        }
        write_json(
            &opts.res_dir.join("conf.json"),
            &opts.to_conf_json(model.num_parameters()),
        )?;
        let mut opt = Adam::new(
            model.parameters(),
            AdamConfig {
                lr: opts.lr,
                ..AdamConfig::default()
            },
        );
        let weights = class_weights(opts, device);
        // Resume: the last finished epoch's weights, optimizer state, log and best score.
        let r = resume_fold(opts.resume, &fold_dir, &model, &mut opt, k)?;
        let (mut trainlog, mut best, first_epoch, mut step) =
            (r.trainlog, r.best, r.first_epoch, r.step);
        let last_path = fold_dir.join("last.npz");
        let log_path = fold_dir.join("trainlog.json");
        for epoch in first_epoch..=opts.epochs {
            if opts.max_steps.is_some_and(|m| step >= m) {
                break;
            }
            let seed = mix(opts.rdm_seed, k, epoch);
            let order = epoch_order(dt_train.len(), opts.batch_size, seed, true);
            let label = format!("Fold {k} epoch {epoch}/{} train", opts.epochs);
            let (tm, _) = run_epoch(
                &model,
                &dt_train,
                order,
                opts,
                device,
                &weights,
                Some(&mut opt),
                seed,
                &mut step,
                &label,
            )?;
            let mut entry = metrics_json("train", &tm);
            if epoch % opts.val_every.max(1) == 0 && epoch > opts.val_after {
                let order = eval_order(
                    &dt_val,
                    opts.batch_size,
                    seed ^ 1,
                    opts.keep_last_batch,
                    None,
                );
                let (vm, _) = run_epoch(
                    &model,
                    &dt_val,
                    order,
                    opts,
                    device,
                    &weights,
                    None,
                    seed,
                    &mut step,
                    &format!("Fold {k} epoch {epoch} val"),
                )?;
                entry.extend(metrics_json("val", &vm));
                if vm.miou >= best || best.is_nan() {
                    best = vm.miou;
                    save_best(&fold_dir, &model)?;
                }
                println!("Fold {k} epoch {epoch}: train loss {:.4} mIoU {:.2} | val loss {:.4} OA {:.2} mIoU {:.2}", tm.loss, tm.miou, vm.loss, vm.accuracy, vm.miou);
            } else {
                println!(
                    "Fold {k} epoch {epoch}: train loss {:.4} OA {:.2} mIoU {:.2}",
                    tm.loss, tm.accuracy, tm.miou
                );
            }
            trainlog.insert(epoch.to_string(), Value::Object(entry));
            write_json(&log_path, &Value::Object(trainlog.clone()))?;
            save_training_state(
                &last_path,
                &model,
                &opt,
                Progress { epoch, step, best },
                &trainlog,
            )?;
        }
        plot::training_curves(&fold_dir.join("curves.png"), &trainlog)?;
        // Test with the best checkpoint (the last weights when no validation ran).
        load_best(&fold_dir, &model, r.resumed)?;
        let order = eval_order(
            &dt_test,
            opts.batch_size,
            mix(opts.rdm_seed, k, 0),
            opts.keep_last_batch,
            Some(&format!("Fold {k} test")),
        );
        let (test, cm) = run_epoch(
            &model,
            &dt_test,
            order,
            opts,
            device,
            &weights,
            None,
            0,
            &mut step,
            &format!("Fold {k} test"),
        )?;
        println!(
            "Fold {k} test: loss {:.4} OA {:.2} mIoU {:.2}",
            test.loss, test.accuracy, test.miou
        );
        save_test_results(
            &fold_dir,
            &test_metrics_json(&test),
            &cm,
            opts.ignored_class(),
        )?;
        publish_best(&fold_dir)?;
        total_cm.merge(&cm);
        results.push((k, test));
    }
    if folds.len() == 5 {
        save_overall(&opts.res_dir, &total_cm, opts.ignored_class())?;
    }
    Ok(results)
}

fn test_metrics_json(test: &EpochMetrics) -> Value {
    json!({"test_accuracy": test.accuracy, "test_loss": test.loss, "test_IoU": test.miou, "test_epoch_time": test.seconds})
}

/// The dates a run was trained with, from its conf.json: `ref_date` (default 2018-09-01) and `mono_date`
/// (`null` or absent: the whole series; a `YYYY-MM-DD` date or a frame index, as a string or a number), so that
/// a mono-date model is evaluated and run on the date it was trained on.
pub fn dates_from_conf(conf: &Value, path: &Path) -> Result<(Date, Option<MonoDate>)> {
    let bad = |k: &str, why: String| Error::format(path, format!("conf.json key {k:?}: {why}"));
    let ref_date = match conf.get("ref_date") {
        None | Some(Value::Null) => PastisOptions::default().ref_date,
        Some(Value::String(s)) => Date::parse(s).map_err(|e| bad("ref_date", e.to_string()))?,
        Some(v) => {
            return Err(bad(
                "ref_date",
                format!("{v}: expected a YYYY-MM-DD string"),
            ))
        }
    };
    let mono_date = match conf.get("mono_date") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(MonoDate::parse(s).map_err(|e| bad("mono_date", e.to_string()))?)
        }
        Some(v) => match v.as_u64() {
            Some(k) => Some(MonoDate::Index(k as usize)),
            None => {
                return Err(bad(
                    "mono_date",
                    format!("{v}: expected a date or an index"),
                ))
            }
        },
    };
    Ok((ref_date, mono_date))
}

/// Options of `sitsgpu evaluate` (test_semantic.py).
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// PASTIS folder.
    pub dataset_folder: PathBuf,
    /// Weight folder: conf.json + Fold_k/model.npz or Fold_k/model.pth.tar.
    pub weight_folder: PathBuf,
    /// Output folder.
    pub res_dir: PathBuf,
    /// Only rotation k.
    pub fold: Option<usize>,
    /// Patches per batch (default: conf.json's batch_size).
    pub batch_size: Option<usize>,
    /// CPU reference path.
    pub cpu: bool,
    /// Progress bars.
    pub progress: bool,
    /// Keep the last incomplete batch (`--keep_last_batch`; default: dropped, as test_semantic.py's
    /// `drop_last=True`).
    pub keep_last_batch: bool,
}

/// test_semantic.py: evaluates each fold's checkpoint on its test fold and writes the metric files.
pub fn evaluate(e: &EvaluateOptions) -> Result<Vec<(usize, EpochMetrics)>> {
    let conf_path = e.weight_folder.join("conf.json");
    let conf = read_json(&conf_path)?;
    let model_conf = SemanticConfig::from_conf(&conf, &conf_path)?;
    let num_classes = model_conf.num_classes();
    let (ref_date, mono_date) = dates_from_conf(&conf, &conf_path)?;
    let opts = TrainOptions {
        model: model_conf,
        dataset_folder: e.dataset_folder.clone(),
        res_dir: e.res_dir.clone(),
        rdm_seed: conf.get("rdm_seed").and_then(Value::as_u64).unwrap_or(1),
        epochs: 0,
        batch_size: e
            .batch_size
            .or(conf
                .get("batch_size")
                .and_then(Value::as_u64)
                .map(|v| v as usize))
            .unwrap_or(4),
        lr: 0.0,
        fold: e.fold,
        num_classes,
        ignore_index: conf
            .get("ignore_index")
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        pad_value: conf.get("pad_value").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        val_every: 1,
        val_after: 0,
        init_weights: None,
        max_steps: None,
        resume: false,
        cpu: e.cpu,
        progress: e.progress,
        ref_date,
        mono_date,
        keep_last_batch: e.keep_last_batch,
    };
    let folds = pastis_folds(e.fold)?;
    let device = device_of(e.cpu)?;
    let model = opts.model.build(0, device);
    // Every checkpoint and every test split is checked before anything runs or is written.
    let mut runs = Vec::new();
    for &k in &folds {
        let w = checkpoint_of(&e.weight_folder, k)?;
        let sd = read_weights(&w)?;
        load_state_dict(&model, &sd, &w)?;
        let dt_test = open_split(&opts, &[ROTATIONS[k - 1].2])?;
        check_split(
            &dt_test,
            &format!("Fold {k}: test"),
            opts.batch_size,
            opts.keep_last_batch,
            false,
        )?;
        dt_test.check(Some(num_classes))?;
        runs.push((k, w, sd, dt_test));
    }
    let weights = class_weights(&opts, device);
    let mut results = Vec::new();
    let mut files = Vec::new();
    for (k, w, sd, dt_test) in runs {
        load_state_dict(&model, &sd, &w)?;
        let order = eval_order(
            &dt_test,
            opts.batch_size,
            mix(opts.rdm_seed, k, 0),
            opts.keep_last_batch,
            Some(&format!("Fold {k} test")),
        );
        let mut step = 0;
        let (m, cm) = run_epoch(
            &model,
            &dt_test,
            order,
            &opts,
            device,
            &weights,
            None,
            0,
            &mut step,
            &format!("Fold {k} test"),
        )?;
        println!(
            "Fold {k}: loss {:.4} OA {:.2} mIoU {:.2}",
            m.loss, m.accuracy, m.miou
        );
        files.push(FoldResult {
            fold: k,
            metrics: test_metrics_json(&m),
            cm,
        });
        results.push((k, m));
    }
    // Written only now, once every fold has been evaluated.
    save_fold_results(&e.res_dir, &files, opts.ignored_class(), folds.len() == 5)?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conf_json_keeps_the_dates_and_evaluation_reads_them_back() {
        let opts = TrainOptions {
            model: crate::models::utae::UTaeConfig::default().into(),
            dataset_folder: "D".into(),
            res_dir: "R".into(),
            rdm_seed: 1,
            epochs: 1,
            batch_size: 4,
            lr: 1e-3,
            fold: None,
            num_classes: 20,
            ignore_index: -1,
            pad_value: 0.0,
            val_every: 1,
            val_after: 0,
            init_weights: None,
            max_steps: None,
            resume: false,
            cpu: true,
            progress: false,
            ref_date: Date::parse("2018-10-01").unwrap(),
            mono_date: Some(MonoDate::parse("2019-05-01").unwrap()),
            keep_last_batch: false,
        };
        let conf = opts.to_conf_json(0);
        assert_eq!(
            (&conf["ref_date"], &conf["mono_date"]),
            (&json!("2018-10-01"), &json!("2019-05-01"))
        );
        let path = Path::new("conf.json");
        assert_eq!(
            dates_from_conf(&conf, path).unwrap(),
            (opts.ref_date, opts.mono_date)
        );
        let index = TrainOptions {
            mono_date: Some(MonoDate::Index(3)),
            ..opts
        };
        let conf = index.to_conf_json(0);
        assert_eq!(conf["mono_date"], json!("3"));
        assert_eq!(
            dates_from_conf(&conf, path).unwrap().1,
            Some(MonoDate::Index(3))
        );
        // The official weight folders' conf.json (mono_date null) and older ones without the keys.
        let whole = (PastisOptions::default().ref_date, None);
        assert_eq!(
            dates_from_conf(&json!({"mono_date": null, "ref_date": "2018-09-01"}), path).unwrap(),
            whole
        );
        assert_eq!(dates_from_conf(&json!({}), path).unwrap(), whole);
        assert_eq!(
            dates_from_conf(&json!({"mono_date": 2}), path).unwrap().1,
            Some(MonoDate::Index(2))
        );
        let e = dates_from_conf(&json!({"ref_date": "2018-13-01"}), path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("conf.json") && e.contains("ref_date"), "{e}");
    }

    #[test]
    fn rotations_match_the_spec() {
        assert_eq!(ROTATIONS[0], ([1, 2, 3], 4, 5));
        assert_eq!(ROTATIONS[4], ([5, 1, 2], 3, 4));
    }
}
