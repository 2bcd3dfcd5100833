//! `sitsgpu evaluate` for the semantic models: `test_semantic.py` — each fold's checkpoint (ours or the
//! official `model.pth.tar`) on its rotation's test fold, the metric files written once every fold has run.

use std::path::PathBuf;

use serde_json::Value;

use crate::data::json::read_json;
use crate::engine::{Error, Result};
use crate::layers::state::load_state_dict;
use crate::layers::Ctx;
use crate::models::registry::read_weights;
use crate::models::semantic::SemanticConfig;
use crate::train::drop_last::{check_split, eval_order};
use crate::train::fold_loop::RunOptions;
use crate::train::memory;
use crate::train::plot::matrix::TestPictures;
use crate::train::rotations::{pastis_folds, ROTATIONS};
use crate::train::semantic::{
    class_weights, dates_from_conf, open_split, run_epoch, test_metrics_json, to_device,
    EpochMetrics, TrainOptions,
};
use crate::train::state::{checkpoint_of, device_of, mix, save_fold_results, FoldResult};

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
    /// GPU memory budget (`--max_memory`; `None`: the adapter's where it is known): batches whose forward
    /// pass would not fit run in parts (`train::memory::inference_parts`). Semantic models only.
    pub max_memory: Option<u64>,
}

/// test_semantic.py: evaluates each fold's checkpoint on its test fold and writes the metric files.
pub fn evaluate(e: &EvaluateOptions) -> Result<Vec<(usize, EpochMetrics)>> {
    let conf_path = e.weight_folder.join("conf.json");
    let conf = read_json(&conf_path)?;
    let model_conf = SemanticConfig::from_conf(&conf, &conf_path)?;
    let num_classes = model_conf.num_classes();
    let (ref_date, mono_date) = dates_from_conf(&conf, &conf_path)?;
    let opts = TrainOptions {
        run: RunOptions {
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
            cpu: e.cpu,
            progress: e.progress,
            ..RunOptions::new(&e.dataset_folder, &e.res_dir)
        },
        model: model_conf,
        num_classes,
        ignore_index: conf
            .get("ignore_index")
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        pad_value: conf.get("pad_value").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        val_every: 1,
        val_after: 0,
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
            opts.run.batch_size,
            opts.keep_last_batch,
            false,
        )?;
        dt_test.check(Some(num_classes))?;
        runs.push((k, w, sd, dt_test));
    }
    let weights = class_weights(&opts, device);
    // Parts of at most `micro` patches when a whole batch's forward pass would not fit the GPU's memory
    // (train::memory; the same metrics, the loss shared by class weights as in training).
    let micro = match runs.first() {
        Some((_, _, _, ds)) => {
            memory::inference_parts(opts.run.batch_size, e.max_memory, device, |n| {
                let n = n.min(ds.len()).max(1);
                let b = ds
                    .batches_with_pad((0..n).collect(), n, opts.pad_value)
                    .next()
                    .ok_or_else(|| Error::Invalid("memory probe: an empty test split".into()))??;
                model.check_input(&b.shape).map_err(Error::Invalid)?;
                let (x, _, pad) = to_device(&b, device);
                model.forward(&x, &b.dates, &pad, &Ctx::eval());
                Ok(())
            })?
        }
        None => opts.run.batch_size,
    };
    let mut results = Vec::new();
    let mut files = Vec::new();
    for (k, w, sd, dt_test) in runs {
        load_state_dict(&model, &sd, &w)?;
        let order = eval_order(
            &dt_test,
            opts.run.batch_size,
            mix(opts.run.rdm_seed, k, 0),
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
            micro,
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
    save_fold_results(
        &e.res_dir,
        &files,
        opts.ignored_class(),
        folds.len() == 5,
        TestPictures::Semantic,
    )?;
    Ok(results)
}
