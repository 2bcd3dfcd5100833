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
//! res_dir/Fold_k/conf_mat.pkl/.npy/.json the K × K test confusion matrix (.pkl: a pickled numpy array), void
//!                                         row and column zeroed as the original's; conf_mat_with_void.npy/.json
//!                                         every count; conf_mat.png its picture (rows normalised)
//! res_dir/Fold_k/curves.png               loss (left) and mIoU (right), training dashed, validation solid
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

pub mod evaluate;
pub mod predict;

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::data::pastis::{Batch, Date, MonoDate, PastisDataset, PastisOptions};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::semantic::{SemanticConfig, SemanticModel};
use crate::models::utae::{padding_mode_name, PadInfo};
use crate::train::adam::Adam;
use crate::train::drop_last::eval_order;
use crate::train::fold_loop::{run_folds, EpochReport, Fold, FoldTask, RunOptions};
use crate::train::metrics::ConfusionMatrix;
use crate::train::plot::matrix::TestPictures;
use crate::train::plot::CurveKind;
use crate::train::rotations::{open_rotations, pastis_folds, Batching, Rotation};
use crate::train::state::{epoch_order, mix, save_overall, save_test_results};
use crate::train::step::{self, Part};

pub use evaluate::{evaluate, EvaluateOptions};

/// `train_semantic.py`'s options (same names and defaults): the shared ones ([`RunOptions`]: dataset and
/// results folders, seed, epochs, batch size, lr, fold, `init_weights`, `max_steps`, `resume`, device,
/// progress) and the semantic task's own.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The options every task shares.
    pub run: RunOptions,
    /// The model (`--model`) and its hyper-parameters (U-TAE: `--encoder_widths`, …, `--padding_mode`; a
    /// baseline: get_model's arguments and `--model_kwargs`).
    pub model: SemanticConfig,
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
            "dataset_folder": self.run.dataset_folder.display().to_string(), "res_dir": self.run.res_dir.display().to_string(),
            "num_workers": 1, "rdm_seed": self.run.rdm_seed, "device": if self.run.cpu { "cpu" } else { "gpu" },
            "display_step": 50, "cache": false, "epochs": self.run.epochs, "batch_size": self.run.batch_size, "lr": self.run.lr,
            "mono_date": self.mono_date.map(|d| d.to_string()), "ref_date": self.ref_date.to_string(),
            "fold": self.run.fold, "num_classes": self.num_classes,
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
pub(crate) fn to_device(b: &Batch, device: Device) -> (Tensor, Tensor, PadInfo) {
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

/// The forward pass and weighted cross-entropy of one batch (or part of one): (loss, logits).
fn part_loss(
    model: &SemanticModel,
    part: &Batch,
    device: Device,
    weights: &Tensor,
    ctx: &Ctx,
) -> (Tensor, Tensor) {
    let (x, t, pad) = to_device(part, device);
    let logits = model.forward(&x, &part.dates, &pad, ctx).logits;
    (logits.cross_entropy(&t, Some(weights), -100), logits)
}

/// One pass over `indices` of `ds`: training when `opt` is given (with `step` counting optimiser steps up to
/// `max_steps`), evaluation otherwise; each batch in parts of `micro` samples when it is smaller than the
/// batch (the training plan's micro-batches, or evaluation's: `memory::inference_parts`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_epoch(
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
    micro: usize,
) -> Result<(EpochMetrics, ConfusionMatrix)> {
    let training = opt.is_some();
    let mut cm = ConfusionMatrix::new(opts.num_classes);
    let class_weights = weights.to_vec();
    // Σ of the class weights of the labelled pixels (ignore_index -100 left out).
    let weight_sum = |targets: &[i64]| -> f64 {
        targets
            .iter()
            .filter(|&&t| t >= 0 && (t as usize) < class_weights.len())
            .map(|&t| class_weights[t as usize] as f64)
            .sum()
    };
    let (mut loss_sum, mut batches, mut patches) = (0.0, 0usize, 0usize);
    let start = Instant::now();
    let n_batches = indices.len().div_ceil(opts.run.batch_size.max(1));
    let bar = crate::train::progress::bar(opts.run.progress, n_batches as u64, label);
    for (bi, batch) in ds
        .batches_with_pad(indices, opts.run.batch_size, opts.pad_value)
        .enumerate()
    {
        if training && opts.run.max_steps.is_some_and(|m| *step >= m) {
            break;
        }
        let batch = batch?;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        // One part, or parts of at most `micro` samples (train::step): each part's loss weighted by its
        // share of the batch's class weights (the cross-entropy's denominator), so that the parts' losses —
        // and in training their gradients — add up to the batch's.
        let all = if batch.ids.len() > micro {
            weight_sum(&batch.targets)
        } else {
            1.0 // a whole batch's share is 1 (train::step), whatever its weights
        };
        let mut run_part = |p: Part, ctx: &Ctx| -> Result<(Tensor, f64)> {
            p.of(&batch, Batch::slice, |part| {
                let (l, logits) = part_loss(model, part, device, weights, ctx);
                accumulate(&mut cm, &logits.detach(), &part.targets);
                Ok((l, weight_sum(&part.targets) / all))
            })
        };
        let loss = if let Some(opt) = opt.as_deref_mut() {
            let ctx = Ctx::train(seed.wrapping_add(bi as u64 * 1000));
            let loss = step::train_batch(opt, batch.ids.len(), micro, |p| run_part(p, &ctx))?;
            *step += 1;
            loss
        } else {
            no_grad(|| step::forward_parts(batch.ids.len(), micro, |p| run_part(p, &Ctx::eval())))?
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

pub(crate) fn open_split(opts: &TrainOptions, folds: &[usize]) -> Result<PastisDataset> {
    PastisDataset::open(
        &opts.run.dataset_folder,
        PastisOptions {
            folds: Some(folds.to_vec()),
            ref_date: opts.ref_date,
            mono_date: opts.mono_date,
            ..PastisOptions::default()
        },
    )
}

pub(crate) fn class_weights(opts: &TrainOptions, device: Device) -> Tensor {
    let mut w = vec![1.0f32; opts.num_classes];
    if let Some(i) = opts.ignored_class() {
        w[i] = 0.0;
    }
    Tensor::from_vec(w, &[opts.num_classes], device)
}

/// Whether validation runs after `epoch`.
fn validates_at(opts: &TrainOptions, epoch: usize) -> bool {
    epoch.is_multiple_of(opts.val_every.max(1)) && epoch > opts.val_after
}

/// The whole training run (every rotation, or `opts.run.fold`): the shared fold loop
/// ([`crate::train::fold_loop`]) over `SemanticTask`. Returns the test metrics per fold run.
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
    let task = SemanticTask {
        opts,
        weights: std::cell::OnceCell::new(),
    };
    let results = run_folds(&task)?;
    Ok(results.into_iter().map(|(k, (m, _))| (k, m)).collect())
}

/// The semantic task in the shared fold loop: PASTIS rotations, cross-entropy without the ignored class,
/// validation mIoU (ties replace the best), the confusion matrices summed in `overall.json`.
struct SemanticTask<'a> {
    opts: &'a TrainOptions,
    /// The class weights on the run's device (made on first use).
    weights: std::cell::OnceCell<Tensor>,
}

impl SemanticTask<'_> {
    fn weights(&self, device: Device) -> &Tensor {
        self.weights
            .get_or_init(|| class_weights(self.opts, device))
    }
}

impl FoldTask for SemanticTask<'_> {
    type Model = SemanticModel;
    type Data = Rotation;
    type Test = (EpochMetrics, ConfusionMatrix);

    fn run_options(&self) -> &RunOptions {
        &self.opts.run
    }

    fn folds(&self) -> Result<Vec<usize>> {
        pastis_folds(self.opts.run.fold)
    }

    fn prepare(&self, folds: &[usize]) -> Result<Vec<Rotation>> {
        let o = self.opts;
        let batching = Batching {
            batch_size: o.run.batch_size,
            keep_last_batch: o.keep_last_batch,
            validates: (1..=o.run.epochs).any(|e| validates_at(o, e)),
        };
        open_rotations(folds, batching, o.num_classes, &|f| open_split(o, f))
    }

    fn build(&self, seed: u64, device: Device) -> SemanticModel {
        self.opts.model.build(seed, device)
    }

    fn conf_json(&self, n_params: usize) -> Value {
        self.opts.to_conf_json(n_params)
    }

    /// The training split's normalisation travels with the weights (`sitsgpu map` reads it).
    fn start_fold(&self, fold: Fold<'_>, data: &Rotation) -> Result<()> {
        if let (Some((mean, std)), Some(train_folds)) =
            (data.train.norm(), &data.train.options().folds)
        {
            crate::train::map::scene::write_norm_record(fold.dir, mean, std, train_folds)?;
        }
        Ok(())
    }

    fn probe(
        &self,
        fold: Fold<'_>,
        model: &SemanticModel,
        data: &Rotation,
        n: usize,
    ) -> Result<()> {
        let o = self.opts;
        let n = n.min(data.train.len()).max(1);
        let batch = data
            .train
            .batches_with_pad((0..n).collect(), n, o.pad_value)
            .next()
            .ok_or_else(|| Error::Invalid("memory probe: the training split is empty".into()))??;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        let weights = self.weights(fold.device);
        step::accumulate(n, n, |_| {
            Ok((
                part_loss(model, &batch, fold.device, weights, &Ctx::train(0)).0,
                1.0,
            ))
        })?;
        Ok(())
    }

    fn better(&self, score: f64, best: f64) -> bool {
        score >= best || best.is_nan()
    }

    fn curve_kind(&self) -> CurveKind {
        CurveKind::Semantic
    }

    fn epoch(
        &self,
        fold: Fold<'_>,
        model: &SemanticModel,
        opt: &mut Adam,
        data: &Rotation,
        epoch: usize,
        step: &mut usize,
    ) -> Result<EpochReport> {
        let (o, k, device) = (self.opts, fold.k, fold.device);
        let weights = self.weights(device);
        let seed = mix(o.run.rdm_seed, k, epoch);
        let order = epoch_order(data.train.len(), o.run.batch_size, seed, true);
        let label = format!("Fold {k} epoch {epoch}/{} train", o.run.epochs);
        let (tm, _) = run_epoch(
            model,
            &data.train,
            order,
            o,
            device,
            weights,
            Some(opt),
            seed,
            step,
            &label,
            fold.micro,
        )?;
        let mut entry = metrics_json("train", &tm);
        if !validates_at(o, epoch) {
            let line = format!(
                "Fold {k} epoch {epoch}: train loss {:.4} OA {:.2} mIoU {:.2}",
                tm.loss, tm.accuracy, tm.miou
            );
            return Ok(EpochReport {
                entry,
                line,
                score: None,
            });
        }
        let order = eval_order(
            &data.val,
            o.run.batch_size,
            seed ^ 1,
            o.keep_last_batch,
            None,
        );
        let label = format!("Fold {k} epoch {epoch} val");
        let (vm, _) = run_epoch(
            model, &data.val, order, o, device, weights, None, seed, step, &label, fold.micro,
        )?;
        entry.extend(metrics_json("val", &vm));
        let line = format!(
            "Fold {k} epoch {epoch}: train loss {:.4} mIoU {:.2} | val loss {:.4} OA {:.2} mIoU {:.2}",
            tm.loss, tm.miou, vm.loss, vm.accuracy, vm.miou
        );
        Ok(EpochReport {
            entry,
            line,
            score: Some(vm.miou),
        })
    }

    fn test(
        &self,
        fold: Fold<'_>,
        model: &SemanticModel,
        data: &Rotation,
        step: &mut usize,
    ) -> Result<(EpochMetrics, ConfusionMatrix)> {
        let (o, k) = (self.opts, fold.k);
        let label = format!("Fold {k} test");
        let order = eval_order(
            &data.test,
            o.run.batch_size,
            mix(o.run.rdm_seed, k, 0),
            o.keep_last_batch,
            Some(&label),
        );
        let weights = self.weights(fold.device);
        let (test, cm) = run_epoch(
            model,
            &data.test,
            order,
            o,
            fold.device,
            weights,
            None,
            0,
            step,
            &label,
            fold.micro,
        )?;
        println!(
            "Fold {k} test: loss {:.4} OA {:.2} mIoU {:.2}",
            test.loss, test.accuracy, test.miou
        );
        save_test_results(
            fold.dir,
            &test_metrics_json(&test),
            &cm,
            o.ignored_class(),
            TestPictures::Semantic,
        )?;
        Ok((test, cm))
    }

    fn finish(&self, folds: &[usize], results: &[(usize, Self::Test)]) -> Result<()> {
        if folds.len() == 5 {
            let matrices = results.iter().map(|(_, (_, cm))| cm);
            save_overall(&self.opts.run.res_dir, matrices, self.opts.ignored_class())?;
        }
        Ok(())
    }
}

pub(crate) fn test_metrics_json(test: &EpochMetrics) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch run as micro-batches (train::memory) leaves the batch's gradient in the parameters: a model
    /// with no batch-coupled layer (the ConvLSTM baseline: no batch norm, no dropout), a batch of 3 whose
    /// samples have different numbers of labelled pixels (the cross-entropy's share), on the CPU reference.
    #[test]
    fn micro_batches_accumulate_the_batch_gradient() {
        use crate::layers::Module;
        let dir = std::env::temp_dir().join(format!("sitsgpu-micro-{}", std::process::id()));
        let synth = crate::data::synthetic::SynthOptions {
            patches: 8,
            size: 8,
            min_dates: 3,
            max_dates: 5,
            ..Default::default()
        };
        crate::data::synthetic::write_pastis(&dir, &synth).unwrap();
        let model = SemanticConfig::baseline(
            "convlstm",
            20,
            0.0,
            &json!({"hidden_dim": 4}),
            Path::new("kwargs"),
        )
        .unwrap()
        .expect("a baseline");
        let opts = TrainOptions {
            run: RunOptions {
                batch_size: 3,
                max_steps: Some(1),
                cpu: true,
                progress: false,
                ..RunOptions::new(&dir, dir.join("res"))
            },
            model,
            num_classes: 20,
            ignore_index: 19,
            pad_value: 0.0,
            val_every: 1,
            val_after: 0,
            ref_date: PastisOptions::default().ref_date,
            mono_date: None,
            keep_last_batch: false,
        };
        let ds = open_split(&opts, &[1, 2, 3, 4, 5]).unwrap();
        let weights = class_weights(&opts, Device::Cpu);
        let grads = |micro: usize| {
            let m = opts.model.build(7, Device::Cpu);
            let mut adam = Adam::new(m.parameters(), Default::default());
            let mut step = 0;
            let indices = vec![0, 1, 2];
            run_epoch(
                &m,
                &ds,
                indices,
                &opts,
                Device::Cpu,
                &weights,
                Some(&mut adam),
                3,
                &mut step,
                "t",
                micro,
            )
            .unwrap();
            m.parameters()
                .iter()
                .flat_map(|p| p.grad().expect("a gradient").to_vec())
                .collect::<Vec<f32>>()
        };
        let (whole, micro) = (grads(3), grads(1));
        let scale = whole.iter().fold(0f32, |a, &g| a.max(g.abs()));
        assert!(scale > 0.0);
        for (i, (a, b)) in whole.iter().zip(&micro).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "gradient {i}: batch {a}, micro-batches {b} (scale {scale})"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// `--precision mixed` reaches the training steps through the fold loop (and only them: fp32 saves no
    /// half, and the run's evaluation passes save nothing).
    #[test]
    fn the_fold_loop_trains_in_the_precision_asked() {
        use crate::engine::precision::{halves_saved, Precision};
        let dir = std::env::temp_dir().join(format!("sitsgpu-precision-{}", std::process::id()));
        let synth = crate::data::synthetic::SynthOptions {
            patches: 10,
            size: 16,
            min_dates: 3,
            max_dates: 4,
            ..Default::default()
        };
        crate::data::synthetic::write_pastis(&dir.join("data"), &synth).unwrap();
        let halves = |precision: Precision| {
            let opts = TrainOptions {
                run: RunOptions {
                    epochs: 1,
                    batch_size: 2,
                    max_steps: Some(1),
                    fold: Some(1),
                    cpu: true,
                    progress: false,
                    precision,
                    ..RunOptions::new(dir.join("data"), dir.join(precision.to_string()))
                },
                model: crate::train::demo::demo_config().into(),
                num_classes: 20,
                ignore_index: -1,
                pad_value: 0.0,
                val_every: 1,
                val_after: 0,
                ref_date: PastisOptions::default().ref_date,
                mono_date: None,
                keep_last_batch: true,
            };
            let before = halves_saved();
            train(&opts).unwrap();
            halves_saved() - before
        };
        assert_eq!(halves(Precision::Fp32), 0);
        assert!(halves(Precision::Mixed) > 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_conf_json_keeps_the_dates_and_evaluation_reads_them_back() {
        let opts = TrainOptions {
            run: RunOptions {
                epochs: 1,
                cpu: true,
                progress: false,
                ..RunOptions::new("D", "R")
            },
            model: crate::models::utae::UTaeConfig::default().into(),
            num_classes: 20,
            ignore_index: -1,
            pad_value: 0.0,
            val_every: 1,
            val_after: 0,
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
}
