//! Parcel classification from pixel sets: the workflow of lightweight-temporal-attention-pytorch `train.py`
//! (spec §2.5, §7.3, §8.3) for PSE + L-TAE and its competitors (TAE, GRU, TempCNN), with the same flags,
//! outputs and file layout:
//!
//! ```text
//! res_dir/conf.json                      the configuration (train.py's keys + N_params)
//! res_dir/Fold_k/trainlog.json           {epoch: {train_loss, train_accuracy, train_IoU, val_accuracy, val_loss, val_IoU}}
//! res_dir/Fold_k/model.npz               best checkpoint (validation mIoU >=), state_dict names
//! res_dir/Fold_k/best.npz                while the fold trains: the best weights so far (then model.npz)
//! res_dir/Fold_k/last.npz                end of the last finished epoch: weights, Adam state, progress, log
//! res_dir/Fold_k/test_metrics.json       test_accuracy, test_loss, test_IoU
//! res_dir/Fold_k/conf_mat.pkl/.npy/.json the 20 × 20 test confusion matrix (.pkl: a pickled numpy array);
//!                                        conf_mat.png its picture, per_class_f1.png the test F1 per class
//! res_dir/Fold_k/per_class.json          the fold's per-class test IoU, precision, recall, F1
//! res_dir/Fold_k/curves.png              loss (left), OA and mIoU (right), training dashed, validation solid
//! res_dir/overall.json, per_class.json   summed test matrices of every fold (no class deleted)
//! ```
//!
//! As the original: the k-fold split of §2.5 ([`kfold_splits`], numpy's shuffle with `--rdm_seed`), focal loss
//! (γ = `--gamma`), Adam (lr 1e-3 by default), accuracy in percent and mIoU as a fraction (one-vs-all IoU, classes
//! with an empty union skipped), no `drop_last`. Training batches are reshuffled every epoch with a seed derived
//! from (`rdm_seed`, fold, epoch); pixel draws and jitter come from numpy's legacy stream seeded the same way,
//! so a run is reproducible and a resumed run replays exactly what an uninterrupted one would have. Validation
//! and test samples are drawn and jittered as in training (the original's QUIRK, §10.4 item 22) unless
//! `deterministic_eval` is set ([`Draw::Fixed`]: no jitter, a fixed pixel draw per parcel). Departures, all
//! documented in the README: `--lr` is honoured (the original parses it but never passes it to Adam; the default
//! is the same), and GRU / TempCNN with `--positions bespoke` (which crash in the original, §4.5) are refused
//! with an explanation.

use std::path::{Path, PathBuf};

/// The fewest parcels a training pass takes: the decoders' train-mode BatchNorm1d normalises over the
/// parcels, and one has no statistics. Memory probes and micro-batches never go below it
/// (`FoldTask::min_micro`, `step::parts_at_least`).
const MIN_PARCELS: usize = 2;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::data::numpy_random::NumpyRandomState;
use crate::data::pixelset::{
    kfold_splits, Draw, PixelSetBatch, PixelSetDataset, PixelSetOptions, Split,
};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::pse::focal_loss;
use crate::models::stclassifier::{
    PixelSetClassifier, PixelSetModelConfig, TemporalConfig, TemporalKind,
};
use crate::train::adam::Adam;
use crate::train::fold_loop::{run_folds, EpochReport, Fold, FoldTask, RunOptions};
use crate::train::metrics::ConfusionMatrix;
use crate::train::plot::matrix::TestPictures;
use crate::train::plot::CurveKind;
use crate::train::state::{epoch_order, mix, save_overall, save_test_results};
use crate::train::step;

mod evaluate;
pub mod flags;
pub mod predict;

pub use evaluate::{evaluate, options_from_conf, PixelSetEvaluateOptions};
#[cfg(test)]
mod tests;

/// `train.py`'s options (same names and defaults): the shared ones ([`RunOptions`]), the pixel-set task's own
/// and the switches of the random parts.
#[derive(Debug, Clone)]
pub struct PixelSetTrainOptions {
    /// The model's hyper-parameters with train.py's key names (`input_dim`, `mlp1`, `pooling`, `mlp2`,
    /// `geomfeat`, `n_head`, `d_k`, `mlp3`, `T`, `positions`, `lms`, `dropout`, `d_model`, `mlp4`, `tae`,
    /// `gru`, `hidden_dim`, `tcnn`, `nker`, or `model`), read by [`PixelSetModelConfig::from_json`].
    pub model: Map<String, Value>,
    /// The options every task shares (`dataset_folder`: a Sentinel-Agri pixel-set folder; `rdm_seed` also
    /// seeds numpy's shuffle of the split, pixel draws and jitter, so it must fit numpy's 32 bits).
    pub run: RunOptions,
    /// Number of folds.
    pub kfold: usize,
    /// Focal-loss γ.
    pub gamma: f32,
    /// Pixels sampled per parcel.
    pub npixel: usize,
    /// Number of classes (mlp4's last width).
    pub num_classes: usize,
    /// Jitter (σ, clip) of every sample (None: off).
    pub jitter: Option<(f64, f64)>,
    /// Validation and test without jitter and with a fixed pixel draw per parcel.
    pub deterministic_eval: bool,
    /// Keep the raw parcel arrays in memory (`--preload`).
    pub preload: bool,
}

impl PixelSetTrainOptions {
    /// train.py's defaults (PSE + L-TAE, 5 folds, 100 epochs, batch 128, npixel 64, ...) for `dataset_folder`.
    pub fn new(dataset_folder: impl Into<PathBuf>, res_dir: impl Into<PathBuf>) -> Self {
        PixelSetTrainOptions {
            run: RunOptions {
                batch_size: 128,
                ..RunOptions::new(dataset_folder, res_dir)
            },
            model: Map::new(),
            kfold: 5,
            gamma: 1.0,
            npixel: 64,
            num_classes: 20,
            jitter: Some((0.01, 0.05)),
            deterministic_eval: false,
            preload: false,
        }
    }

    /// The seed of numpy's streams (the split, pixel draws, jitter): `rdm_seed`, which must fit 32 bits.
    pub fn numpy_seed(&self) -> Result<u32> {
        u32::try_from(self.run.rdm_seed).map_err(|_| {
            Error::Invalid(format!(
                "--rdm_seed {}: numpy seeds are 0..2^32-1",
                self.run.rdm_seed
            ))
        })
    }

    /// Whether the geometric features are used (`geomfeat` / `with_extra`, default yes).
    pub fn geomfeat(&self) -> bool {
        match self.model.get("geomfeat").or(self.model.get("with_extra")) {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => v.as_i64() != Some(0),
        }
    }

    /// conf.json: the workflow options and the model keys (train.py's `vars(config)`) + N_params.
    fn to_conf_json(&self, n_params: usize) -> Value {
        let mut c = json!({
            "dataset_folder": self.run.dataset_folder.display().to_string(),
            "res_dir": self.run.res_dir.display().to_string(),
            "num_workers": 1, "rdm_seed": self.run.rdm_seed, "device": if self.run.cpu { "cpu" } else { "gpu" },
            "display_step": 50, "preload": self.preload, "kfold": self.kfold, "epochs": self.run.epochs,
            "batch_size": self.run.batch_size, "lr": self.run.lr, "gamma": self.gamma, "npixel": self.npixel,
            "num_classes": self.num_classes,
        });
        let o = c.as_object_mut().expect("an object");
        o.extend(self.model.clone());
        o.insert(
            "jitter".into(),
            self.jitter.map_or(Value::Null, |(s, c)| json!([s, c])),
        );
        o.insert("deterministic_eval".into(), json!(self.deterministic_eval));
        o.insert("N_params".into(), json!(n_params));
        c
    }
}

/// Losses and metrics of one pass over a subset.
#[derive(Debug, Clone, Default)]
pub struct PixelSetMetrics {
    /// Mean of the per-batch focal losses.
    pub loss: f64,
    /// Overall accuracy, percent.
    pub accuracy: f64,
    /// mIoU, a fraction (as the original's `mIou`).
    pub miou: f64,
    /// Parcels per second.
    pub parcels_per_s: f64,
    /// Seconds.
    pub seconds: f64,
}

impl PixelSetMetrics {
    fn to_json(&self, prefix: &str) -> Map<String, Value> {
        // The original's key order: train_epoch returns loss, accuracy, IoU; evaluation accuracy, loss, IoU.
        let mut o = Map::new();
        if prefix == "train" {
            o.insert(format!("{prefix}_loss"), json!(self.loss));
            o.insert(format!("{prefix}_accuracy"), json!(self.accuracy));
        } else {
            o.insert(format!("{prefix}_accuracy"), json!(self.accuracy));
            o.insert(format!("{prefix}_loss"), json!(self.loss));
        }
        o.insert(format!("{prefix}_IoU"), json!(self.miou));
        o
    }
}

/// Opens the dataset with the options' sampling settings.
pub fn open_dataset(
    folder: &Path,
    npixel: usize,
    geomfeat: bool,
    jitter: Option<(f64, f64)>,
    preload: bool,
) -> Result<PixelSetDataset> {
    let mut ds = PixelSetDataset::open(
        folder,
        PixelSetOptions {
            npixel,
            extra_feature: geomfeat.then(|| "geomfeat".to_string()),
            jitter,
            ..PixelSetOptions::default()
        },
    )?;
    if ds.norm_file().is_none() {
        return Err(Error::format(
            folder,
            format!(
                "no normalisation statistics: neither {} nor {} is in this folder (train.py normalises every \
                 sample with the .pkl's (mean, std))",
                crate::data::pixelset::norm::NORM_PICKLE,
                crate::data::pixelset::norm::NORM_JSON
            ),
        ));
    }
    if preload {
        ds.preload()?;
    }
    Ok(ds)
}

/// train.py's k-fold split of `ds` (errors name the dataset folder).
fn splits_of(ds: &PixelSetDataset, folder: &Path, kfold: usize, seed: u32) -> Result<Vec<Split>> {
    kfold_splits(ds.len(), kfold, seed).map_err(|e| {
        Error::format(
            folder,
            format!("{e} (the parcels of the 20 classes kept, --kfold {kfold})"),
        )
    })
}

/// The classifier configuration of `conf` for the dataset `ds`, with the original's constraints checked
/// (`path` names the configuration in errors).
pub fn model_config(
    conf: &Value,
    ds: &PixelSetDataset,
    num_classes: usize,
    path: &Path,
) -> Result<PixelSetModelConfig> {
    let c = PixelSetModelConfig::from_json(conf, Some(ds.date_positions()), path)?;
    if c.input_dim != ds.bands() {
        return Err(Error::format(
            path,
            format!(
                "the model takes {} bands (input_dim, mlp1 {:?}) but the parcels of {} have {}",
                c.input_dim,
                c.mlp1,
                ds.folder().display(),
                ds.bands()
            ),
        ));
    }
    if c.extra_size.unwrap_or(0) != ds.extra_size() {
        return Err(Error::format(
            path,
            format!(
                "the model takes {} extra features per date but META/geomfeat.json of {} has {}",
                c.extra_size.unwrap_or(0),
                ds.folder().display(),
                ds.extra_size()
            ),
        ));
    }
    if c.num_classes() != num_classes {
        return Err(Error::format(
            path,
            format!(
                "mlp4 ends with {} classes but num_classes is {num_classes}",
                c.num_classes()
            ),
        ));
    }
    let kind = c.temporal.kind();
    let t = ds.date_positions().len();
    let attention = match &c.temporal {
        TemporalConfig::Ltae(l) => Some((l.d_model, l.len_max_seq, l.positions.is_none())),
        TemporalConfig::Tae(l) => Some((l.d_model, l.len_max_seq, l.positions.is_none())),
        _ => None,
    };
    if let Some((d_model, lms, by_order)) = attention {
        // With d_model the input convolution's LayerNorm((d_model, len_max_seq)) takes exactly lms dates;
        // positions by date order index a table of lms + 1 rows with 1..=T.
        let why = if d_model.is_some() && lms != t {
            Some("its input LayerNorm((d_model, lms)) takes exactly lms dates")
        } else if by_order && t > lms {
            Some("its positional table (positions \"order\") has rows for lms dates")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::format(
                path,
                format!(
                    "{}: lms (len_max_seq) is {lms} but the parcels of {} have {t} dates, and {why}; \
                     give --lms {t}",
                    kind.name(),
                    ds.folder().display()
                ),
            ));
        }
    }
    if let TemporalConfig::TempCnn(tc) = &c.temporal {
        if tc.seq_len != t {
            return Err(Error::format(
                path,
                format!(
                    "tempcnn: the sequence length (lms) is {} but the parcels of {} have {t} dates; TempCNN \
                     flattens a fixed number of dates: give --lms {t}",
                    tc.seq_len,
                    ds.folder().display()
                ),
            ));
        }
    }
    if matches!(kind, TemporalKind::Gru | TemporalKind::TempCnn) {
        if let Some(p) = c.temporal.positions() {
            let t = ds.date_positions().len();
            if p.len() < t + 1 {
                return Err(Error::format(
                    path,
                    format!(
                        "{}: with positions ({} rows) the original adds rows 1..={t} of the positional table and \
                         crashes (index out of range, spec §4.5); use positions \"order\" (no positional \
                         encoding, `--positions order`)",
                        kind.name(),
                        p.len()
                    ),
                ));
            }
        }
    }
    Ok(c)
}

/// A batch on `device`: (pixels (B, T, C, S), extra (B, T, E) if any).
pub(crate) fn to_device(b: &PixelSetBatch, device: Device) -> (Tensor, Option<Tensor>) {
    let [bs, t, _, _] = b.shape;
    let extra = (b.extra_size > 0)
        .then(|| Tensor::from_vec(b.extra.clone(), &[bs, t, b.extra_size], device));
    (Tensor::from_vec(b.pixels.clone(), &b.shape, device), extra)
}

/// How a pass draws its samples: a numpy stream seeded with this value, or [`Draw::Fixed`] (None).
type DrawSeed = Option<u32>;

/// Calls `f` on every batch of `indices` (in order), read on a background thread one batch ahead; the random
/// draws are made in batch order, so the result does not depend on timing.
pub(crate) fn for_each_batch(
    ds: &PixelSetDataset,
    indices: &[usize],
    batch_size: usize,
    draw: DrawSeed,
    mut f: impl FnMut(usize, PixelSetBatch) -> Result<bool>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<PixelSetBatch>>(2);
        scope.spawn(move || {
            let mut rng = draw.map(NumpyRandomState::new);
            for chunk in indices.chunks(batch_size.max(1)) {
                let d = match rng.as_mut() {
                    Some(r) => Draw::Random(r),
                    None => Draw::Fixed,
                };
                let stop = tx.send(ds.load_batch(chunk, d)).is_err();
                if stop {
                    break;
                }
            }
        });
        for (bi, b) in rx.iter().enumerate() {
            if !f(bi, b?)? {
                break;
            }
        }
        Ok(())
    })
}

/// The forward pass and focal loss of one batch (or part of one): (loss, logits).
fn part_loss(
    model: &PixelSetClassifier,
    part: &PixelSetBatch,
    device: Device,
    gamma: f32,
    ctx: &Ctx,
) -> (Tensor, Tensor) {
    let (x, extra) = to_device(part, device);
    let (logits, _) = model.forward(&x, &part.mask, extra.as_ref(), ctx);
    (focal_loss(&logits, &part.targets, gamma), logits)
}

/// One pass: training when `opt` is given (optimiser steps counted in `step`, stopping at `max_steps`; each
/// batch whole or in micro-batches, `train::step`), evaluation otherwise.
#[allow(clippy::too_many_arguments)]
fn run_epoch(
    model: &PixelSetClassifier,
    ds: &PixelSetDataset,
    indices: &[usize],
    opts: &PixelSetTrainOptions,
    device: Device,
    mut opt: Option<&mut Adam>,
    draw: DrawSeed,
    dropout_seed: u64,
    step: &mut usize,
    label: &str,
    micro: usize,
) -> Result<(PixelSetMetrics, ConfusionMatrix)> {
    let mut cm = ConfusionMatrix::new(opts.num_classes);
    let (mut loss_sum, mut batches, mut parcels) = (0.0, 0usize, 0usize);
    let start = Instant::now();
    let bar = crate::train::progress::bar(
        opts.run.progress,
        indices.len().div_ceil(opts.run.batch_size.max(1)) as u64,
        label,
    );
    for_each_batch(ds, indices, opts.run.batch_size, draw, |bi, batch| {
        if opt.is_some() && opts.run.max_steps.is_some_and(|m| *step >= m) {
            return Ok(false);
        }
        let truth: Vec<i64> = batch.targets.iter().map(|&t| t as i64).collect();
        let loss = if let Some(opt) = opt.as_deref_mut() {
            let ctx = Ctx::train(dropout_seed.wrapping_add(bi as u64 * 1000));
            // One part, or micro-batches (train::step): the focal loss is a mean over parcels, so each
            // part's loss is weighted by its share of the batch's parcels.
            let len = batch.ids.len();
            let loss = step::train_batch_at_least(opt, len, micro, MIN_PARCELS, |p| {
                p.of(&batch, PixelSetBatch::slice, |part| {
                    let (loss, logits) = part_loss(model, part, device, opts.gamma, &ctx);
                    cm.add(&logits.detach().argmax(1), &truth[p.start..p.end]);
                    Ok((loss, (p.end - p.start) as f64 / len as f64))
                })
            })?;
            *step += 1;
            loss
        } else {
            no_grad(|| {
                let (loss, logits) = part_loss(model, &batch, device, opts.gamma, &Ctx::eval());
                cm.add(&logits.argmax(1), &truth);
                loss.item() as f64
            })
        };
        loss_sum += loss;
        batches += 1;
        parcels += batch.ids.len();
        let (miou, acc) = cm.miou_acc(None);
        bar.set_message(format!(
            "loss {:.4} OA {acc:.1} mIoU {:.3} {:.0} parcels/s",
            loss_sum / batches as f64,
            miou / 100.0,
            parcels as f64 / start.elapsed().as_secs_f64()
        ));
        bar.inc(1);
        Ok(true)
    })?;
    bar.finish();
    let (miou, accuracy) = cm.miou_acc(None);
    let seconds = start.elapsed().as_secs_f64();
    Ok((
        PixelSetMetrics {
            loss: loss_sum / batches.max(1) as f64,
            accuracy,
            miou: miou / 100.0,
            parcels_per_s: parcels as f64 / seconds.max(1e-9),
            seconds,
        },
        cm,
    ))
}

/// The folds to run: `fold` (1..=kfold) or all.
fn folds_to_run(fold: Option<usize>, kfold: usize) -> Result<Vec<usize>> {
    match fold {
        Some(k) if (1..=kfold).contains(&k) => Ok(vec![k]),
        Some(k) => Err(Error::Invalid(format!("--fold {k}: expected 1..={kfold}"))),
        None => Ok((1..=kfold).collect()),
    }
}

/// The numpy seed of a pass (fold, epoch, subset: 0 train, 1 validation, 2 test).
fn draw_seed(seed: u32, fold: usize, epoch: usize, subset: u64) -> u32 {
    (mix(seed as u64, fold, epoch) ^ subset.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as u32
}

fn test_json(m: &PixelSetMetrics) -> Value {
    json!({"test_accuracy": m.accuracy, "test_loss": m.loss, "test_IoU": m.miou})
}

/// The whole training run (every fold, or `opts.run.fold`): the shared fold loop
/// ([`crate::train::fold_loop`]) over `PixelSetTask`. Returns the test metrics per fold run.
pub fn train(opts: &PixelSetTrainOptions) -> Result<Vec<(usize, PixelSetMetrics)>> {
    let seed = opts.numpy_seed()?;
    let ds = open_dataset(
        &opts.run.dataset_folder,
        opts.npixel,
        opts.geomfeat(),
        opts.jitter,
        opts.preload,
    )?;
    let conf = Value::Object(opts.model.clone());
    let config = model_config(&conf, &ds, opts.num_classes, Path::new("the model options"))?;
    let splits = splits_of(&ds, &opts.run.dataset_folder, opts.kfold, seed)?;
    let task = PixelSetTask {
        opts,
        seed,
        ds,
        config,
        splits,
    };
    let results = run_folds(&task)?;
    Ok(results.into_iter().map(|(k, (m, _))| (k, m)).collect())
}

/// The pixel-set task in the shared fold loop: train.py's k-fold split, focal loss, validation after every
/// epoch (mIoU, ties replace the best), the confusion matrices summed in `overall.json`.
struct PixelSetTask<'a> {
    opts: &'a PixelSetTrainOptions,
    /// numpy's seed (`rdm_seed`, 32 bits).
    seed: u32,
    ds: PixelSetDataset,
    config: PixelSetModelConfig,
    splits: Vec<Split>,
}

impl PixelSetTask<'_> {
    /// The pixel draw of a validation (1) or test (2) pass; `None` with `--deterministic_eval`.
    fn eval_draw(&self, k: usize, epoch: usize, subset: u64) -> Option<u32> {
        (!self.opts.deterministic_eval).then(|| draw_seed(self.seed, k, epoch, subset))
    }
}

impl FoldTask for PixelSetTask<'_> {
    type Model = PixelSetClassifier;
    type Data = Split;
    type Test = (PixelSetMetrics, ConfusionMatrix);

    fn run_options(&self) -> &RunOptions {
        &self.opts.run
    }

    fn folds(&self) -> Result<Vec<usize>> {
        folds_to_run(self.opts.run.fold, self.opts.kfold)
    }

    fn prepare(&self, folds: &[usize]) -> Result<Vec<Split>> {
        let batch = self.opts.run.batch_size.max(1);
        if batch < MIN_PARCELS {
            return Err(Error::Invalid(format!(
                "--batch_size {batch}: the pixel-set models train on at least {MIN_PARCELS} parcels a \
                 batch (their decoder's train-mode BatchNorm1d normalises over the parcels)"
            )));
        }
        let mut out = Vec::new();
        for &k in folds {
            let split = &self.splits[k - 1];
            if split.train.len() % batch == 1 {
                return Err(Error::format(
                    &self.opts.run.dataset_folder,
                    format!(
                        "fold {k}'s training split has {} parcels: with --batch_size {batch} the last batch of \
                         every epoch holds one parcel, which the decoder's train-mode BatchNorm1d cannot \
                         normalise (PyTorch raises \"Expected more than 1 value per channel when training\" \
                         there); use another --batch_size",
                        split.train.len()
                    ),
                ));
            }
            if split.train.is_empty() {
                return Err(Error::format(
                    &self.opts.run.dataset_folder,
                    format!(
                        "fold {k}'s training split is empty: of {} parcels, {} are tested and the {} left are all \
                         taken for validation (train.py's split: validation = the last n_test of the rest); there is \
                         nothing to train on: use more parcels or more folds (--kfold)",
                        self.ds.len(),
                        split.test.len(),
                        split.val.len()
                    ),
                ));
            }
            out.push(split.clone());
        }
        Ok(out)
    }

    fn build(&self, seed: u64, device: Device) -> PixelSetClassifier {
        PixelSetClassifier::new(self.config.clone(), seed, device)
    }

    fn conf_json(&self, n_params: usize) -> Value {
        self.opts.to_conf_json(n_params)
    }

    fn start_fold(&self, fold: Fold<'_>, split: &Split) -> Result<()> {
        println!(
            "Starting Fold {}: train {}, val {}, test {} parcels",
            fold.k,
            split.train.len(),
            split.val.len(),
            split.test.len()
        );
        Ok(())
    }

    /// The decoders' train-mode BatchNorm1d normalises over the parcels of a pass: one parcel has no
    /// statistics (PyTorch raises the same).
    fn min_micro(&self) -> usize {
        MIN_PARCELS
    }

    fn probe(
        &self,
        fold: Fold<'_>,
        model: &PixelSetClassifier,
        split: &Split,
        n: usize,
    ) -> Result<()> {
        let n = n.min(split.train.len()).max(1);
        let batch = self.ds.load_batch(&split.train[..n], Draw::Fixed)?;
        step::accumulate(n, n, |_| {
            Ok((
                part_loss(model, &batch, fold.device, self.opts.gamma, &Ctx::train(0)).0,
                1.0,
            ))
        })?;
        Ok(())
    }

    fn better(&self, score: f64, best: f64) -> bool {
        score >= best
    }

    fn curve_kind(&self) -> CurveKind {
        CurveKind::PixelSet
    }

    fn epoch(
        &self,
        fold: Fold<'_>,
        model: &PixelSetClassifier,
        opt: &mut Adam,
        split: &Split,
        epoch: usize,
        step: &mut usize,
    ) -> Result<EpochReport> {
        let (o, k, device) = (self.opts, fold.k, fold.device);
        let seed = mix(o.run.rdm_seed, k, epoch);
        let order: Vec<usize> = epoch_order(split.train.len(), o.run.batch_size, seed, false)
            .into_iter()
            .map(|i| split.train[i])
            .collect();
        let label = format!("Fold {k} epoch {epoch}/{} train", o.run.epochs);
        let draw = Some(draw_seed(self.seed, k, epoch, 0));
        let (tm, _) = run_epoch(
            model,
            &self.ds,
            &order,
            o,
            device,
            Some(opt),
            draw,
            seed,
            step,
            &label,
            fold.micro,
        )?;
        let label = format!("Fold {k} epoch {epoch} val");
        let (vm, _) = run_epoch(
            model,
            &self.ds,
            &split.val,
            o,
            device,
            None,
            self.eval_draw(k, epoch, 1),
            0,
            step,
            &label,
            o.run.batch_size,
        )?;
        let line = format!(
            "Fold {k} epoch {epoch}: train loss {:.4} OA {:.2} mIoU {:.4} | val loss {:.4} OA {:.2} mIoU {:.4}",
            tm.loss, tm.accuracy, tm.miou, vm.loss, vm.accuracy, vm.miou
        );
        let mut entry = tm.to_json("train");
        entry.extend(vm.to_json("val"));
        Ok(EpochReport {
            entry,
            line,
            score: Some(vm.miou),
        })
    }

    fn test(
        &self,
        fold: Fold<'_>,
        model: &PixelSetClassifier,
        split: &Split,
        step: &mut usize,
    ) -> Result<(PixelSetMetrics, ConfusionMatrix)> {
        let k = fold.k;
        let (test, cm) = run_epoch(
            model,
            &self.ds,
            &split.test,
            self.opts,
            fold.device,
            None,
            self.eval_draw(k, 0, 2),
            0,
            step,
            &format!("Fold {k} test"),
            self.opts.run.batch_size,
        )?;
        println!(
            "Fold {k} test: loss {:.4} OA {:.2} mIoU {:.4}",
            test.loss, test.accuracy, test.miou
        );
        save_test_results(
            fold.dir,
            &test_json(&test),
            &cm,
            None,
            TestPictures::PixelSet,
        )?;
        Ok((test, cm))
    }

    fn finish(&self, folds: &[usize], results: &[(usize, Self::Test)]) -> Result<()> {
        if folds.len() == self.opts.kfold {
            let matrices = results.iter().map(|(_, (_, cm))| cm);
            save_overall(&self.opts.run.res_dir, matrices, None)?;
        }
        Ok(())
    }
}

/// The model keys of a `train --task pixelset` run, from the flags given on the command line (`explicit`,
/// train.py's key names), in three layers: train.py's defaults for the chosen model, then the `config_fig2`
/// variant (`--variant 9k` …, [`crate::models::stclassifier::paper_variant`]), then the explicit flags.
/// Where train.py's L-TAE defaults cannot build the chosen model, the model class's own defaults are used
/// instead: TAE without `--n_head/--d_k/--mlp3/--d_model` is `PseTae`'s default (4 heads, d_k 32, mlp3
/// [512, 128, 128], no d_model), and an unset `--mlp4` starts with the temporal encoder's output width (so
/// `--gru --hidden_dim 156` gets [156, 64, 32, classes], where train.py would crash).
pub fn model_conf_from_flags(
    kind: TemporalKind,
    variant: Option<&str>,
    explicit: Map<String, Value>,
    num_classes: usize,
) -> Result<Map<String, Value>> {
    let mut m = json!({
        "input_dim": 10, "mlp1": [10, 32, 64], "pooling": "mean_std", "mlp2": [132, 128], "geomfeat": 1,
        "T": 1000, "positions": "bespoke", "lms": 24, "dropout": 0.2,
    });
    let o = m.as_object_mut().expect("an object");
    let extra = match kind {
        TemporalKind::Ltae => json!({"n_head": 16, "d_k": 8, "mlp3": [256, 128], "d_model": 256}),
        TemporalKind::Tae => {
            json!({"n_head": 4, "d_k": 32, "mlp3": [512, 128, 128], "d_model": null})
        }
        TemporalKind::Gru => json!({"hidden_dim": 156, "positions": "order"}),
        TemporalKind::TempCnn => {
            json!({"nker": [32, 32, 128], "mlp3": [256, 128], "positions": "order"})
        }
    };
    o.extend(extra.as_object().cloned().unwrap_or_default());
    if let Some(label) = variant {
        let v = crate::models::stclassifier::paper_variant(kind, label).ok_or_else(|| {
            Error::Invalid(format!(
                "--variant {label:?}: not a config_fig2 variant of {} (see `sitsgpu train --help`)",
                kind.name()
            ))
        })?;
        o.extend(v.as_object().cloned().unwrap_or_default());
    }
    o.extend(explicit);
    if kind == TemporalKind::TempCnn && !o.contains_key("seq_len") {
        let lms = o.get("lms").cloned().unwrap_or(json!(24));
        o.insert("seq_len".into(), lms);
    }
    o.insert("model".into(), json!(kind.name()));
    o.insert("tae".into(), json!(kind == TemporalKind::Tae));
    o.insert("gru".into(), json!(kind == TemporalKind::Gru));
    o.insert("tcnn".into(), json!(kind == TemporalKind::TempCnn));
    if !o.contains_key("mlp4") {
        let probe = Value::Object(o.clone());
        let width = PixelSetModelConfig::from_json_unchecked(
            kind,
            &probe,
            Some(&[]),
            Path::new("the command line"),
        )?
        .temporal
        .out_width();
        o.insert("mlp4".into(), json!([width, 64, 32, num_classes]));
    }
    Ok(m.as_object().cloned().unwrap_or_default())
}
