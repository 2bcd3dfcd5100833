//! `test_panoptic.py` ([`evaluate`]: each fold's checkpoint on its test fold, `Fold_k/test_metrics.json` and
//! `Fold_k/test_tables.npy`, plus `overall.json` when the five folds ran) and the panoptic `predict` ([`predict`]:
//! instance and class maps per patch, as `.npy` and as a Fig. 5-style PNG).
//!
//! The model comes from the weight folder's conf.json (train_panoptic.py's keys, [`Paps::from_conf`]) and each
//! fold's `model.npz` or official `model.pth.tar`; the pseudo-NMS threshold in force is the checkpoint's
//! `min_confidence` buffer (the conf.json's `min_confidence` is only the initial value of a training).
//! `overall.json` holds SQ / RQ / PQ of the five folds' tables summed (test_panoptic.py writes no aggregate,
//! and how the README's figures aggregate the folds is not in the code — spec §8.2 — so this is the natural
//! dataset-level aggregate, labelled as such).

use std::path::Path;

use serde_json::{json, Value};

use crate::data::json::{read_json, write_json};
use crate::data::npy;
use crate::data::pastis::{PastisDataset, PastisOptions, Target};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::state::load_state_dict;
use crate::layers::Ctx;
use crate::models::paps::loss::{PapsLossConfig, TARGET_CHANNELS};
use crate::models::paps::Paps;
use crate::models::registry::read_weights;
use crate::models::utae::PadInfo;
use crate::train::drop_last::{check_split, eval_order};
use crate::train::fold_loop::RunOptions;
use crate::train::panoptic::picture::{panoptic_png, Parcels};
use crate::train::panoptic::{open_split, run_pass, test_metrics_json, Mode, PanopticOptions};
use crate::train::rotations::{pastis_folds, ROTATIONS};
use crate::train::semantic::predict::{middle_date, middle_date_rgb, PredictOptions};
use crate::train::semantic::{dates_from_conf, EvaluateOptions};
use crate::train::state::{checkpoint_of, device_of, mix};

/// The options of a run from its conf.json (for evaluation: no training keys needed).
pub fn options_from_conf(
    conf: &Value,
    conf_path: &Path,
    e: &EvaluateOptions,
) -> Result<PanopticOptions> {
    let (backbone, paps) = Paps::configs(conf, conf_path)?;
    let f = |k: &str, d: f32| conf.get(k).and_then(Value::as_f64).map_or(d, |v| v as f32);
    let l = PapsLossConfig::default();
    let loss = PapsLossConfig {
        l_center: f("l_center", l.l_center),
        l_size: f("l_size", l.l_size),
        l_shape: f("l_shape", l.l_shape),
        l_class: f("l_class", l.l_class),
        beta: f("beta", l.beta),
        void_label: conf
            .get("void_label")
            .and_then(Value::as_i64)
            .unwrap_or(l.void_label),
        ..l
    };
    let (ref_date, mono_date) = dates_from_conf(conf, conf_path)?;
    let batch_size = e
        .batch_size
        .or(conf
            .get("batch_size")
            .and_then(Value::as_u64)
            .map(|v| v as usize))
        .unwrap_or(4);
    Ok(PanopticOptions {
        backbone,
        paps,
        loss,
        background_label: conf
            .get("background_label")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        run: RunOptions {
            rdm_seed: conf.get("rdm_seed").and_then(Value::as_u64).unwrap_or(1),
            epochs: 0,
            batch_size,
            lr: 0.0,
            fold: e.fold,
            cpu: e.cpu,
            progress: e.progress,
            ..RunOptions::new(&e.dataset_folder, &e.res_dir)
        },
        pad_value: conf.get("pad_value").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        val_every: 1,
        val_after: 0,
        warmup: 0,
        autotune: false,
        supmax: true,
        val_metrics_only: false,
        ref_date,
        mono_date,
        keep_last_batch: e.keep_last_batch,
    })
}

/// test_panoptic.py: each fold's checkpoint on its test fold. Every checkpoint and test split is checked
/// before anything runs; the files are written once every fold has been evaluated. Returns (fold, SQ, RQ, PQ).
pub fn evaluate(e: &EvaluateOptions) -> Result<Vec<(usize, [f64; 3])>> {
    let conf_path = e.weight_folder.join("conf.json");
    let conf = read_json(&conf_path)?;
    let o = options_from_conf(&conf, &conf_path, e)?;
    let folds = pastis_folds(e.fold)?;
    let device = device_of(e.cpu)?;
    let model = Paps::new(o.backbone.clone(), o.paps.clone(), 0, device);
    let mut runs = Vec::new();
    for &k in &folds {
        let w = checkpoint_of(&e.weight_folder, k)?;
        let sd = read_weights(&w)?;
        load_state_dict(&model, &sd, &w)?;
        let dt = open_split(
            &o.run.dataset_folder,
            &[ROTATIONS[k - 1].2],
            o.ref_date,
            o.mono_date,
        )?;
        check_split(
            &dt,
            &format!("Fold {k}: test"),
            o.run.batch_size,
            o.keep_last_batch,
            false,
        )?;
        dt.check(Some(o.paps.num_classes))?;
        runs.push((k, w, sd, dt));
    }
    let mut results = Vec::new();
    let mut files = Vec::new();
    let mut total = o.meter();
    for (k, w, sd, dt) in runs {
        load_state_dict(&model, &sd, &w)?;
        let order = eval_order(
            &dt,
            o.run.batch_size,
            mix(o.run.rdm_seed, k, 0),
            o.keep_last_batch,
            Some(&format!("Fold {k} test")),
        );
        let label = format!("Fold {k} test");
        let m = run_pass(
            &model,
            &dt,
            order,
            &o,
            device,
            Mode::Eval,
            0,
            &mut 0,
            &label,
            o.run.batch_size,
        )?;
        let v = m.value();
        println!(
            "Fold {k}: loss {:.4} SQ {:.1} RQ {:.1} PQ {:.1} (min_confidence {:.2})",
            m.loss,
            100.0 * v.sq,
            100.0 * v.rq,
            100.0 * v.pq,
            model.min_confidence()
        );
        if let Some(meter) = &m.meter {
            total.merge(meter);
        }
        results.push((k, [v.sq, v.rq, v.pq]));
        files.push((k, test_metrics_json(&m), m.meter));
    }
    for (k, metrics, meter) in &files {
        let out = e.res_dir.join(format!("Fold_{k}"));
        std::fs::create_dir_all(&out).map_err(|err| Error::io(&out, err))?;
        write_json(&out.join("test_metrics.json"), metrics)?;
        if let Some(meter) = meter {
            meter.write_table(out.join("test_tables.npy"))?;
        }
    }
    if folds.len() == 5 {
        let v = total.value();
        println!(
            "Overall (the five test folds' tables summed): SQ {:.1} RQ {:.1} PQ {:.1}",
            100.0 * v.sq,
            100.0 * v.rq,
            100.0 * v.pq
        );
        write_json(
            &e.res_dir.join("overall.json"),
            &json!({"SQ": v.sq, "RQ": v.rq, "PQ": v.pq,
                    "aggregate": "the five folds' test_tables.npy summed, then SQ/RQ/PQ per class and their means"}),
        )?;
    }
    Ok(results)
}

/// Runs `model` over the patches of `opts.dataset_folder` in ID order and writes per patch
/// `instance_<ID>.npy` ((H, W) int64 instance ids, rank + 1 of the pseudo-NMS, 0 = none),
/// `semantic_<ID>.npy` ((H, W) int64 classes, argmax of `pano_semantic`) and `panoptic_<ID>.png` (RGB of the
/// middle date | ground-truth parcels when INSTANCE_ANNOTATIONS/ is there | predicted parcels, with the
/// patch's PQ in the title and a legend of the classes present). Returns the
/// number of patches written.
pub fn predict(model: &Paps, device: Device, opts: &PredictOptions) -> Result<usize> {
    if opts.save_attention {
        return Err(Error::Invalid(
            "--save_attention: not written by the panoptic predict (instance maps and pictures only)".into(),
        ));
    }
    let folder = &opts.dataset_folder;
    let target =
        if folder.join("INSTANCE_ANNOTATIONS").is_dir() && folder.join("ANNOTATIONS").is_dir() {
            Target::Instance
        } else {
            Target::Unlabeled
        };
    let ds = PastisDataset::open(
        folder,
        PastisOptions {
            folds: opts.folds.clone(),
            ref_date: opts.ref_date,
            mono_date: opts.mono_date,
            target,
            ..PastisOptions::default()
        },
    )?;
    ds.check(None)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let ctx = Ctx::eval();
    let mut written = 0;
    for batch in ds.batches((0..ds.len()).collect(), opts.batch_size.max(1)) {
        let batch = batch?;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        let x = Tensor::from_vec(batch.x.clone(), &batch.shape, device);
        let pad = PadInfo {
            mask: batch.pad_mask.clone(),
        };
        let out = no_grad(|| model.forward(&x, &batch.dates, &pad, &ctx, None, true, false));
        let pano = out.panoptic.as_ref().expect("pseudo-NMS ran");
        let [_, h, w] = pano.dims;
        let hw = h * w;
        let classes: Vec<i64> = pano.classes().into_iter().map(|c| c as i64).collect();
        for (i, id) in batch.ids.iter().enumerate() {
            let inst: Vec<i64> = pano.instance[i * hw..(i + 1) * hw]
                .iter()
                .map(|&v| v as i64)
                .collect();
            let cls = &classes[i * hw..(i + 1) * hw];
            let path = opts.out.join(format!("instance_{id}.npy"));
            npy::write_i64(&path, &[h, w], &inst)?;
            npy::write_i64(opts.out.join(format!("semantic_{id}.npy")), &[h, w], cls)?;
            let truth: Option<(Vec<i64>, Vec<i64>)> = batch.instance.as_ref().map(|t| {
                let ch = |c: usize| -> Vec<i64> {
                    (0..hw)
                        .map(|p| t[(i * hw + p) * TARGET_CHANNELS + c] as i64)
                        .collect()
                };
                (ch(1), ch(6))
            });
            let rgb = middle_date_rgb(&batch.x, &batch.pad_mask, batch.shape, i);
            panoptic_png(
                &opts.out.join(format!("panoptic_{id}.png")),
                *id,
                &rgb,
                middle_date(&batch, i, opts.ref_date),
                truth.as_ref().map(|(inst, sem)| Parcels {
                    instance: inst,
                    semantic: sem,
                }),
                Parcels {
                    instance: &inst,
                    semantic: cls,
                },
                (h, w),
            )?;
            written += 1;
        }
    }
    Ok(written)
}

/// The output folder of `predict` for a weight file (for messages).
pub fn describe(out: &Path, n: usize) -> String {
    format!(
        "wrote instance maps (instance_<ID>.npy, semantic_<ID>.npy) and pictures (panoptic_<ID>.png) for {n} patches to {}",
        out.display()
    )
}
