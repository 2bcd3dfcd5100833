//! Panoptic segmentation of parcels with U-TAE + PaPs: the workflow of utae-paps' `train_panoptic.py` and
//! `test_panoptic.py` (spec §6, §8.2, §8.4), with the same flags, outputs and file layout as the semantic one
//! ([`crate::train::semantic`], whose checkpoint / resume machinery, [`crate::train::state`], it shares):
//!
//! ```text
//! res_dir/conf.json                 train_panoptic.py's configuration (original keys + N_params)
//! res_dir/Fold_k/trainlog.json      {epoch: {train_loss, train_center_loss, …, train_SQ/RQ/PQ, val_*}}
//! res_dir/Fold_k/model.npz          best checkpoint (validation PQ, strictly greater; min_confidence inside)
//! res_dir/Fold_k/best.npz, last.npz as the semantic workflow (resume bit-identical)
//! res_dir/Fold_k/test_metrics.json  test_loss, test_{center,size,shape,class}_loss, test_epoch_time,
//!                                   test_SQ, test_RQ, test_PQ (fractions)
//! res_dir/Fold_k/test_tables.npy    18 × 4 float32: TP, FP, FN, sum of IoUs per class 1..18
//! res_dir/Fold_k/curves.png         loss (left) and SQ / RQ / PQ (right), training dashed, validation solid
//! ```
//! The recipe (spec §8.2): Adam (lr 0.01) with MultiStepLR (× 0.3 after epochs 60 and 80, [`schedule`]);
//! the first `warmup` epochs train the heatmap only (center loss, no panoptic metrics); afterwards the loss is
//! PaPsLoss with one center per ground-truth zone ("supmax"; `--no_supmax`: every local maximum) and the
//! panoptic metrics are computed on the training batches too (unless `--val_metrics_only`). Validation runs
//! when epoch > warmup, epoch % val_every == 0 and epoch > val_after (epochs 70, 75, …, 100 by default), in
//! eval mode without zones; after it the pseudo-NMS threshold (`min_confidence`, a state-dict buffer) is tuned
//! on the last validation batch ([`schedule::tune_threshold`], unless `--no_autotune`), then the weights are
//! saved when the validation PQ beats the best so far (strictly; the best starts at −1). The test uses the best
//! checkpoint with its tuned threshold. Batches are shuffled and incomplete ones dropped as the semantic
//! workflow does (`--keep_last_batch` keeps the last incomplete validation / test batch).
//!
//! Files: [`flags`] (train_panoptic.py's flags), [`schedule`] (learning rate, threshold tuning),
//! [`evaluate`] (test_panoptic.py, and `predict`), [`meter`] (`PanopticMeter`), [`picture`] (Fig. 5 PNGs).

pub mod evaluate;
pub mod flags;
pub mod meter;
pub mod picture;
pub mod schedule;

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::data::json::write_json;
use crate::data::pastis::{Batch, Date, MonoDate, PastisDataset, PastisOptions, Target};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::paps::loss::{paps_loss, PapsLossConfig, PapsLossValue, TARGET_CHANNELS};
use crate::models::paps::{BackboneConfig, Paps, PapsConfig, PapsOutput};
use crate::models::utae::{padding_mode_name, PadInfo, UTaeConfig};
use crate::train::adam::Adam;
use crate::train::drop_last::eval_order;
use crate::train::fold_loop::{run_folds, EpochReport, Fold, FoldTask, RunOptions};
use crate::train::plot::CurveKind;
use crate::train::rotations::{open_rotations, pastis_folds, Batching, Rotation};
use crate::train::state::{epoch_order, mix};
use crate::train::step::{self, Part};

use meter::{PanopticMeter, PanopticValue};

/// `train_panoptic.py`'s options (same names and defaults): the shared ones ([`RunOptions`]) and the panoptic
/// task's own.
#[derive(Debug, Clone)]
pub struct PanopticOptions {
    /// The backbone (`--backbone`: U-TAE from the width flags, or RecUNet; encoder mode, its `out_conv`
    /// built and counted, unused).
    pub backbone: BackboneConfig,
    /// The PaPs heads.
    pub paps: PapsConfig,
    /// PaPsLoss' weights, β and the void label.
    pub loss: PapsLossConfig,
    /// Background class, left out of the metrics with the void class.
    pub background_label: i64,
    /// The options every task shares (`lr`: the initial learning rate, then MultiStepLR).
    pub run: RunOptions,
    /// Temporal pad value.
    pub pad_value: f32,
    /// Validate every this many epochs.
    pub val_every: usize,
    /// Validate only after this epoch.
    pub val_after: usize,
    /// Warm-up epochs (heatmap only).
    pub warmup: usize,
    /// Tune the confidence threshold after each validation.
    pub autotune: bool,
    /// One center per zone in training (else every local maximum).
    pub supmax: bool,
    /// Panoptic metrics on validation only.
    pub val_metrics_only: bool,
    /// Reference date of the day offsets.
    pub ref_date: Date,
    /// Mono-date ablation.
    pub mono_date: Option<MonoDate>,
    /// Keep the last incomplete batch of validation and test passes.
    pub keep_last_batch: bool,
}

impl PanopticOptions {
    /// conf.json: train_panoptic.py's keys (`vars(config)`, spec §9.4) + N_params. With the uconvlstm
    /// backbone the U-TAE keys hold the RecUNet's widths, norm and padding (the L-TAE ones U-TAE's defaults;
    /// none of them is read back) and `model_kwargs` its constructor arguments, so that a smaller RecUNet is
    /// rebuilt from the file.
    pub fn to_conf_json(&self, n_params: usize) -> Value {
        let (p, l) = (&self.paps, &self.loss);
        let recunet_widths;
        let (u, model_kwargs) = match &self.backbone {
            BackboneConfig::UTae(u) => (u, None),
            BackboneConfig::RecUNet(r) => {
                recunet_widths = UTaeConfig {
                    encoder_widths: r.encoder_widths.clone(),
                    decoder_widths: r.decoder_widths.clone(),
                    out_conv: r.out_conv.clone(),
                    str_conv_k: r.str_conv[0],
                    str_conv_s: r.str_conv[1],
                    str_conv_p: r.str_conv[2],
                    encoder_norm: r.encoder_norm,
                    padding_mode: r.padding_mode,
                    ..UTaeConfig::default()
                };
                (&recunet_widths, Some(r.kwargs()))
            }
        };
        let mut conf = json!({
            "shape_size": p.shape_size, "mask_conv": p.mask_conv, "backbone": self.backbone.name(),
            "l_center": l.l_center, "l_size": l.l_size, "l_shape": l.l_shape, "l_class": l.l_class,
            "beta": l.beta, "autotune": self.autotune, "supmax": self.supmax, "warmup": self.warmup,
            "val_metrics_only": self.val_metrics_only, "val_every": self.val_every, "val_after": self.val_after,
            "min_remain": p.min_remain, "mask_threshold": p.mask_threshold, "min_confidence": p.min_confidence,
            "encoder_widths": u.encoder_widths, "decoder_widths": u.decoder_widths, "out_conv": u.out_conv,
            "str_conv_k": u.str_conv_k, "str_conv_s": u.str_conv_s, "str_conv_p": u.str_conv_p,
            "agg_mode": u.agg_mode.name(), "encoder_norm": u.encoder_norm.name(),
            "n_head": u.n_head, "d_model": u.d_model, "d_k": u.d_k,
        });
        let rest = json!({
            "epochs": self.run.epochs, "batch_size": self.run.batch_size, "lr": self.run.lr,
            "mono_date": self.mono_date.map(|d| d.to_string()), "ref_date": self.ref_date.to_string(),
            "fold": self.run.fold, "void_label": l.void_label, "background_label": self.background_label,
            "num_classes": p.num_classes, "pad_value": self.pad_value,
            "padding_mode": padding_mode_name(u.padding_mode),
            "dataset_folder": self.run.dataset_folder.display().to_string(),
            "res_dir": self.run.res_dir.display().to_string(), "num_workers": 1, "rdm_seed": self.run.rdm_seed,
            "device": if self.run.cpu { "cpu" } else { "gpu" }, "display_step": 50, "cache": false,
            "N_params": n_params,
        });
        if let (Some(a), Some(b)) = (conf.as_object_mut(), rest.as_object()) {
            a.extend(b.clone());
            if let Some(kwargs) = model_kwargs {
                a.insert("model_kwargs".into(), kwargs);
            }
        }
        conf
    }

    /// The panoptic meter of the run (its classes minus background and void).
    pub fn meter(&self) -> PanopticMeter {
        PanopticMeter::new(
            self.paps.num_classes,
            self.background_label,
            Some(self.loss.void_label),
            meter::IOU_THRESHOLD,
        )
    }
}

/// Losses and metrics of one pass over a split.
#[derive(Debug, Clone)]
pub struct PassMetrics {
    /// Mean of the per-batch losses.
    pub loss: f64,
    /// Means of the per-batch center, size, shape and class losses.
    pub parts: [f64; 4],
    /// The panoptic counts, when the metrics were computed.
    pub meter: Option<PanopticMeter>,
    /// Seconds.
    pub seconds: f64,
    /// Patches per second.
    pub patches_per_s: f64,
    /// (confidence, IoU) of the shape loss's centers in the last batch (threshold tuning).
    pub tuning: (Vec<f32>, Vec<f32>),
}

impl PassMetrics {
    /// SQ, RQ, PQ (NaN without metrics).
    pub fn value(&self) -> PanopticValue {
        self.meter.as_ref().map_or(
            PanopticValue {
                sq: f64::NAN,
                rq: f64::NAN,
                pq: f64::NAN,
            },
            PanopticMeter::value,
        )
    }

    /// `{prefix}_loss`, `{prefix}_{center,size,shape,class}_loss` and, with metrics, `{prefix}_SQ/RQ/PQ`.
    pub fn to_json(&self, prefix: &str) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert(format!("{prefix}_loss"), json!(self.loss));
        for (k, v) in ["center", "size", "shape", "class"].iter().zip(self.parts) {
            o.insert(format!("{prefix}_{k}_loss"), json!(v));
        }
        if self.meter.is_some() {
            let v = self.value();
            o.insert(format!("{prefix}_SQ"), json!(v.sq));
            o.insert(format!("{prefix}_RQ"), json!(v.rq));
            o.insert(format!("{prefix}_PQ"), json!(v.pq));
        }
        o
    }
}

/// How a pass runs.
pub enum Mode<'a> {
    /// Training steps; the heads are skipped with `heatmap_only`; panoptic maps and metrics with `metrics`.
    Train {
        /// The optimizer.
        opt: &'a mut Adam,
        /// Warm-up: center loss only.
        heatmap_only: bool,
        /// Compute the panoptic metrics on the training batches.
        metrics: bool,
    },
    /// Evaluation (no zones: centers are local maxima), metrics always.
    Eval,
}

/// What a training forward pass computes besides the heatmap.
#[derive(Debug, Clone, Copy)]
struct Heads {
    /// The panoptic maps (for metrics).
    metrics: bool,
    /// Warm-up: the heatmap head only.
    heatmap_only: bool,
}

/// The forward pass and PaPs loss of one batch (or part of one) against its instance `target`: training
/// with the supmax zones when `train` says which heads run, evaluation (every head, centers as local maxima)
/// when it is `None`.
fn part_loss(
    model: &Paps,
    o: &PanopticOptions,
    part: &Batch,
    target: &[f32],
    device: Device,
    ctx: &Ctx,
    train: Option<Heads>,
) -> (PapsLossValue, PapsOutput) {
    let x = Tensor::from_vec(part.x.clone(), &part.shape, device);
    let pad = PadInfo {
        mask: part.pad_mask.clone(),
    };
    let out = match train {
        Some(h) => {
            let zones = supmax_zones(o, target);
            model.forward(
                &x,
                &part.dates,
                &pad,
                ctx,
                zones.as_deref(),
                h.metrics,
                h.heatmap_only,
            )
        }
        None => model.forward(&x, &part.dates, &pad, ctx, None, true, false),
    };
    (paps_loss(&out, target, &o.loss), out)
}

/// One pass over `indices` of `ds` (opened with the instance target).
#[allow(clippy::too_many_arguments)]
pub fn run_pass(
    model: &Paps,
    ds: &PastisDataset,
    indices: Vec<usize>,
    o: &PanopticOptions,
    device: Device,
    mut mode: Mode,
    seed: u64,
    step: &mut usize,
    label: &str,
    micro: usize,
) -> Result<PassMetrics> {
    let training = matches!(mode, Mode::Train { .. });
    let with_metrics = match &mode {
        Mode::Train {
            heatmap_only,
            metrics,
            ..
        } => *metrics && !*heatmap_only,
        Mode::Eval => true,
    };
    let mut meter = with_metrics.then(|| o.meter());
    let (mut loss_sum, mut parts_sum, mut batches, mut patches) = (0.0, [0.0f64; 4], 0usize, 0);
    let mut tuning = (Vec::new(), Vec::new());
    let start = Instant::now();
    let n_batches = indices.len().div_ceil(o.run.batch_size.max(1));
    let bar = crate::train::progress::bar(o.run.progress, n_batches as u64, label);
    for (bi, batch) in ds
        .batches_with_pad(indices, o.run.batch_size, o.pad_value)
        .enumerate()
    {
        if training && o.run.max_steps.is_some_and(|m| *step >= m) {
            break;
        }
        let batch = batch?;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        // One part, or micro-batches whose gradients accumulate before one Adam step (train::step). The
        // PaPs terms are normalised over the batch (its centers, its pixels), so a micro-batch's loss is
        // weighted by its share of the batch's samples: the accumulated gradient approximates the batch's
        // (exactly when every sample has as many centers and labelled pixels).
        let len = batch.ids.len();
        let mut loss_parts = [0.0f64; 4];
        tuning = (Vec::new(), Vec::new());
        let mut run_part = |p: Part, ctx: &Ctx, train: Option<Heads>| -> Result<(Tensor, f64)> {
            p.of(&batch, Batch::slice, |part| {
                let target = part.instance.as_deref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{label}: the dataset was not opened with the instance target"
                    ))
                })?;
                let share = (p.end - p.start) as f64 / len as f64;
                let (loss, out) = part_loss(model, o, part, target, device, ctx, train);
                for (acc, x) in loss_parts.iter_mut().zip(loss.parts) {
                    *acc += x as f64 * share;
                }
                tuning.0.extend(loss.confidences);
                tuning.1.extend(loss.ious);
                if let (Some(m), Some(p)) = (meter.as_mut(), out.panoptic.as_ref()) {
                    m.add_outputs(p.dims, &p.instance, &p.semantic, target);
                }
                Ok((loss.total, share))
            })
        };
        let l = match &mut mode {
            Mode::Train {
                opt, heatmap_only, ..
            } => {
                let ctx = Ctx::train(seed.wrapping_add(bi as u64 * 1000));
                let heads = Heads {
                    metrics: with_metrics,
                    heatmap_only: *heatmap_only,
                };
                let l = step::train_batch(opt, len, micro, |p| run_part(p, &ctx, Some(heads)))?;
                *step += 1;
                l
            }
            Mode::Eval => {
                no_grad(|| step::forward_parts(len, len, |p| run_part(p, &Ctx::eval(), None)))?
            }
        };
        loss_sum += l;
        for (acc, p) in parts_sum.iter_mut().zip(loss_parts) {
            *acc += p;
        }
        batches += 1;
        patches += batch.ids.len();
        let pq = meter.as_ref().map_or(f64::NAN, |m| m.value().pq);
        bar.set_message(format!(
            "loss {:.4} PQ {:.1} {:.2} patches/s",
            loss_sum / batches as f64,
            100.0 * pq,
            patches as f64 / start.elapsed().as_secs_f64()
        ));
        bar.inc(1);
    }
    bar.finish();
    if batches == 0 && !training {
        return Err(Error::Invalid(format!("{label}: no patch was evaluated")));
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = batches.max(1) as f64;
    Ok(PassMetrics {
        loss: loss_sum / n,
        parts: parts_sum.map(|s| s / n),
        meter,
        seconds,
        patches_per_s: patches as f64 / seconds.max(1e-9),
        tuning,
    })
}

/// A split (folds) of the dataset with the instance target.
pub fn open_split(
    folder: &std::path::Path,
    folds: &[usize],
    ref_date: Date,
    mono_date: Option<MonoDate>,
) -> Result<PastisDataset> {
    PastisDataset::open(
        folder,
        PastisOptions {
            folds: Some(folds.to_vec()),
            ref_date,
            mono_date,
            target: Target::Instance,
            ..PastisOptions::default()
        },
    )
}

/// `test_metrics.json` of test_panoptic.py.
pub fn test_metrics_json(m: &PassMetrics) -> Value {
    let v = m.value();
    json!({
        "test_loss": m.loss, "test_center_loss": m.parts[0], "test_size_loss": m.parts[1],
        "test_shape_loss": m.parts[2], "test_class_loss": m.parts[3], "test_epoch_time": m.seconds,
        "test_SQ": v.sq, "test_RQ": v.rq, "test_PQ": v.pq,
    })
}

/// Whether validation runs after `epoch`.
/// With `--supmax` (the default), each pixel's zone for the heatmap's supervised max: the instance target's
/// channel 2, per pixel.
fn supmax_zones(o: &PanopticOptions, target: &[f32]) -> Option<Vec<i64>> {
    o.supmax.then(|| {
        target
            .chunks(TARGET_CHANNELS)
            .map(|p| p[2] as i64)
            .collect()
    })
}

fn validates_at(o: &PanopticOptions, epoch: usize) -> bool {
    epoch > o.warmup && epoch.is_multiple_of(o.val_every.max(1)) && epoch > o.val_after
}

/// The whole training run (every rotation, or `o.run.fold`): the shared fold loop
/// ([`crate::train::fold_loop`]) over `PanopticTask`. Returns the test metrics per fold run. Every input is
/// checked before anything is written (folds, splits, every patch's files including HEATMAP / INSTANCES /
/// ZONES, `init_weights`, the `last.npz` files of `--resume`).
pub fn train(o: &PanopticOptions) -> Result<Vec<(usize, PassMetrics)>> {
    run_folds(&PanopticTask(o))
}

/// The panoptic task in the shared fold loop: PASTIS rotations with the instance target, MultiStepLR and the
/// heatmap-only warm-up, validation PQ (strictly better replaces the best, from −1 as the original), the
/// confidence threshold tuned after each validation (before the best weights are saved, so they carry it).
struct PanopticTask<'a>(&'a PanopticOptions);

impl FoldTask for PanopticTask<'_> {
    type Model = Paps;
    type Data = Rotation;
    type Test = PassMetrics;

    fn run_options(&self) -> &RunOptions {
        &self.0.run
    }

    fn folds(&self) -> Result<Vec<usize>> {
        pastis_folds(self.0.run.fold)
    }

    fn prepare(&self, folds: &[usize]) -> Result<Vec<Rotation>> {
        let o = self.0;
        let batching = Batching {
            batch_size: o.run.batch_size,
            keep_last_batch: o.keep_last_batch,
            validates: (1..=o.run.epochs).any(|e| validates_at(o, e)),
        };
        let open = |f: &[usize]| open_split(&o.run.dataset_folder, f, o.ref_date, o.mono_date);
        open_rotations(folds, batching, o.paps.num_classes, &open)
    }

    fn build(&self, seed: u64, device: Device) -> Paps {
        Paps::new(self.0.backbone.clone(), self.0.paps.clone(), seed, device)
    }

    fn probe(&self, fold: Fold<'_>, model: &Paps, data: &Rotation, n: usize) -> Result<()> {
        let o = self.0;
        let n = n.min(data.train.len()).max(1);
        let batch = data
            .train
            .batches_with_pad((0..n).collect(), n, o.pad_value)
            .next()
            .ok_or_else(|| Error::Invalid("memory probe: the training split is empty".into()))??;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        let target = batch.instance.as_deref().ok_or_else(|| {
            Error::Invalid(
                "memory probe: the dataset was not opened with the instance target".into(),
            )
        })?;
        let heads = Heads {
            metrics: true,
            heatmap_only: false,
        };
        step::accumulate(n, n, |_| {
            let ctx = Ctx::train(0);
            let (loss, _) = part_loss(model, o, &batch, target, fold.device, &ctx, Some(heads));
            Ok((loss.total, 1.0))
        })?;
        Ok(())
    }

    fn conf_json(&self, n_params: usize) -> Value {
        self.0.to_conf_json(n_params)
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

    fn fresh_best(&self) -> f64 {
        -1.0
    }

    fn better(&self, score: f64, best: f64) -> bool {
        score > best
    }

    fn epoch(
        &self,
        fold: Fold<'_>,
        model: &Paps,
        opt: &mut Adam,
        data: &Rotation,
        epoch: usize,
        step: &mut usize,
    ) -> Result<EpochReport> {
        let (o, k, device) = (self.0, fold.k, fold.device);
        opt.cfg.lr = schedule::lr_at(o.run.lr, epoch);
        let seed = mix(o.run.rdm_seed, k, epoch);
        let order = epoch_order(data.train.len(), o.run.batch_size, seed, true);
        let heatmap_only = epoch <= o.warmup;
        let mode = Mode::Train {
            opt,
            heatmap_only,
            metrics: !o.val_metrics_only,
        };
        let label = format!("Fold {k} epoch {epoch}/{} train", o.run.epochs);
        let tm = run_pass(
            model,
            &data.train,
            order,
            o,
            device,
            mode,
            seed,
            step,
            &label,
            fold.micro,
        )?;
        let mut entry = tm.to_json("train");
        let warm = if heatmap_only { " (warm-up)" } else { "" };
        let mut line = format!("Fold {k} epoch {epoch}{warm}: train loss {:.4}", tm.loss);
        if tm.meter.is_some() {
            let v = tm.value();
            line += &format!(
                " SQ {:.1} RQ {:.1} PQ {:.1}",
                100.0 * v.sq,
                100.0 * v.rq,
                100.0 * v.pq
            );
        }
        if !validates_at(o, epoch) {
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
        let vm = run_pass(
            model,
            &data.val,
            order,
            o,
            device,
            Mode::Eval,
            seed,
            step,
            &label,
            o.run.batch_size,
        )?;
        entry.extend(vm.to_json("val"));
        let v = vm.value();
        line += &format!(
            " | val loss {:.4} SQ {:.1} RQ {:.1} PQ {:.1}",
            vm.loss,
            100.0 * v.sq,
            100.0 * v.rq,
            100.0 * v.pq
        );
        if o.autotune {
            let ct = schedule::tune_threshold(&vm.tuning.0, &vm.tuning.1);
            model.set_min_confidence(ct);
            line += &format!(" (min_confidence → {ct:.2})");
        }
        Ok(EpochReport {
            entry,
            line,
            score: Some(v.pq),
        })
    }

    fn curve_kind(&self) -> CurveKind {
        CurveKind::Panoptic
    }

    fn test(
        &self,
        fold: Fold<'_>,
        model: &Paps,
        data: &Rotation,
        step: &mut usize,
    ) -> Result<PassMetrics> {
        let (o, k) = (self.0, fold.k);
        let label = format!("Fold {k} test");
        let order = eval_order(
            &data.test,
            o.run.batch_size,
            mix(o.run.rdm_seed, k, 0),
            o.keep_last_batch,
            Some(&label),
        );
        let test = run_pass(
            model,
            &data.test,
            order,
            o,
            fold.device,
            Mode::Eval,
            0,
            step,
            &label,
            o.run.batch_size,
        )?;
        let v = test.value();
        println!(
            "Fold {k} test: loss {:.4} SQ {:.1} RQ {:.1} PQ {:.1}",
            test.loss,
            100.0 * v.sq,
            100.0 * v.rq,
            100.0 * v.pq
        );
        write_json(
            &fold.dir.join("test_metrics.json"),
            &test_metrics_json(&test),
        )?;
        if let Some(m) = &test.meter {
            m.write_table(fold.dir.join("test_tables.npy"))?;
        }
        Ok(test)
    }
}
