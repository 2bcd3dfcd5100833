//! `sitsgpu evaluate` for pixel sets: each fold's checkpoint (ours or the original's `Fold_k/model.pth.tar`)
//! tested on that fold's test parcels of the k-fold split, with the training workflow's metrics and files
//! (see the parent module).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    draw_seed, folds_to_run, model_config, open_dataset, run_epoch, splits_of, test_json,
    PixelSetMetrics, PixelSetTrainOptions,
};
use crate::data::json::read_json;
use crate::engine::{Error, Result};
use crate::layers::state::load_state_dict;
use crate::models::registry::read_weights;
use crate::models::stclassifier::PixelSetClassifier;
use crate::train::plot::matrix::TestPictures;
use crate::train::state::{checkpoint_of, device_of, save_fold_results, FoldResult};

/// Options of `sitsgpu evaluate` for pixel sets.
#[derive(Debug, Clone)]
pub struct PixelSetEvaluateOptions {
    /// Sentinel-Agri pixel-set folder.
    pub dataset_folder: PathBuf,
    /// Weight folder: conf.json + Fold_k/model.npz or Fold_k/model.pth.tar (ours or the original's).
    pub weight_folder: PathBuf,
    /// Output folder.
    pub res_dir: PathBuf,
    /// Only fold k.
    pub fold: Option<usize>,
    /// Parcels per batch (default: conf.json's).
    pub batch_size: Option<usize>,
    /// Draw pixels and jitter as the original's test loop (seeded by the conf's rdm_seed) instead of the
    /// deterministic evaluation (no jitter, fixed draws).
    pub original_sampling: bool,
    /// CPU reference path.
    pub cpu: bool,
    /// Progress bars.
    pub progress: bool,
}

/// Reads `WEIGHT_FOLDER/conf.json` into training options (the workflow keys and the model keys).
pub fn options_from_conf(
    conf_path: &Path,
    dataset_folder: &Path,
    res_dir: &Path,
) -> Result<PixelSetTrainOptions> {
    let conf = read_json(conf_path)?;
    let obj = conf
        .as_object()
        .ok_or_else(|| Error::format(conf_path, "expected a JSON object"))?;
    let mut o = PixelSetTrainOptions::new(dataset_folder, res_dir);
    let int = |k: &str, d: usize| obj.get(k).and_then(Value::as_u64).map_or(d, |v| v as usize);
    o.run.rdm_seed = int("rdm_seed", 1) as u64;
    o.kfold = int("kfold", 5);
    o.run.batch_size = int("batch_size", 128);
    o.npixel = int("npixel", 64);
    o.num_classes = int("num_classes", 20);
    o.gamma = obj.get("gamma").and_then(Value::as_f64).unwrap_or(1.0) as f32;
    o.jitter = match obj.get("jitter") {
        Some(Value::Null) => None,
        Some(Value::Array(a)) if a.len() == 2 => {
            Some((a[0].as_f64().unwrap_or(0.01), a[1].as_f64().unwrap_or(0.05)))
        }
        _ => Some((0.01, 0.05)),
    };
    o.model = obj.clone();
    Ok(o)
}

/// Evaluates each fold's checkpoint on that fold's test parcels (the split recomputed from the conf's
/// `rdm_seed` and `kfold`) and writes the metric files; `overall.json` when every fold ran.
pub fn evaluate(e: &PixelSetEvaluateOptions) -> Result<Vec<(usize, PixelSetMetrics)>> {
    let conf_path = e.weight_folder.join("conf.json");
    let mut opts = options_from_conf(&conf_path, &e.dataset_folder, &e.res_dir)?;
    if let Some(b) = e.batch_size {
        opts.run.batch_size = b;
    }
    opts.run.progress = e.progress;
    let device = device_of(e.cpu)?;
    let ds = open_dataset(
        &e.dataset_folder,
        opts.npixel,
        opts.geomfeat(),
        opts.jitter,
        false,
    )?;
    let config = model_config(
        &Value::Object(opts.model.clone()),
        &ds,
        opts.num_classes,
        &conf_path,
    )?;
    let seed = opts.numpy_seed()?;
    let splits = splits_of(&ds, &e.dataset_folder, opts.kfold, seed)?;
    let model = PixelSetClassifier::new(config, 0, device);
    let folds = folds_to_run(e.fold, opts.kfold)?;
    // Every checkpoint is checked before anything runs or is written.
    let mut checkpoints = Vec::new();
    for &k in &folds {
        let w = checkpoint_of(&e.weight_folder, k)?;
        let sd = read_weights(&w)?;
        load_state_dict(&model, &sd, &w)?;
        checkpoints.push((k, w, sd));
    }
    let (mut files, mut results) = (Vec::new(), Vec::new());
    for (k, w, sd) in checkpoints {
        load_state_dict(&model, &sd, &w)?;
        let draw = e.original_sampling.then(|| draw_seed(seed, k, 0, 2));
        let mut step = 0;
        let (m, cm) = run_epoch(
            &model,
            &ds,
            &splits[k - 1].test,
            &opts,
            device,
            None,
            draw,
            0,
            &mut step,
            &format!("Fold {k} test"),
            opts.run.batch_size,
        )?;
        println!(
            "Fold {k}: loss {:.4} OA {:.2} mIoU {:.4}",
            m.loss, m.accuracy, m.miou
        );
        files.push(FoldResult {
            fold: k,
            metrics: test_json(&m),
            cm,
        });
        results.push((k, m));
    }
    // Written only now, once every fold has been evaluated.
    save_fold_results(
        &e.res_dir,
        &files,
        None,
        folds.len() == opts.kfold,
        TestPictures::PixelSet,
    )?;
    Ok(results)
}
