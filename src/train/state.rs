//! What every training workflow ([`crate::train::semantic`], [`crate::train::pixelset`]) shares: seeded batch
//! orders, the per-fold training state (`last.npz`: weights, Adam moments, progress and the training log in one
//! file, so a run killed at any moment resumes from a consistent end of epoch), the best weights so far
//! (`best.npz` while the fold trains, published as `model.npz` once it is tested), and the test-result files
//! (`test_metrics.json`, `conf_mat.pkl/.npy/.json` with the ignored class's row and column zeroed as the
//! original's meter leaves them, `conf_mat_with_void.npy/.json` with every count, the pictures `conf_mat.png`
//! and, for pixel sets, `per_class_f1.png`; `overall.json`, `per_class.json`).
//!
//! No result file is written for a fold that did not finish: `model.npz` and the test files appear together at
//! the end of a fold, so a run that fails or is killed never leaves a `model.npz` that `evaluate` or `predict`
//! would take for a finished fold. Every file is written atomically (a temporary file renamed into place).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::data::json::{read_json, write_json};
use crate::data::state_dict::{read_npz, write_npz, Entry};
use crate::engine::ops::optim::loss_scale::ScaleState;
use crate::engine::rng::Rng;
use crate::engine::{Device, Error, Result};
use crate::layers::state::{load_state_dict, state_dict};
use crate::layers::Module;
use crate::train::adam::Adam;
use crate::train::metrics::{overall, ConfusionMatrix};
use crate::train::plot::matrix::{confusion_png, f1_bars_png, TestPictures};

/// A seeded Fisher–Yates shuffle of 0..n; with `drop_last`, the incomplete last batch is dropped.
pub fn epoch_order(n: usize, batch_size: usize, seed: u64, drop_last: bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        idx.swap(i, rng.below(i as u64 + 1) as usize);
    }
    if drop_last {
        idx.truncate(n / batch_size.max(1) * batch_size.max(1));
    }
    idx
}

/// The seed of (run seed, fold, epoch): every epoch's shuffles, dropout masks and draws derive from it, so a
/// resumed run replays exactly what an uninterrupted one would have.
pub fn mix(seed: u64, fold: usize, epoch: usize) -> u64 {
    Rng::new(seed ^ ((fold as u64) << 40) ^ ((epoch as u64) << 20)).next_u64()
}

/// Where a fold stands: the last finished epoch, optimiser steps taken, best validation score so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Last finished epoch.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Best validation score (mIoU) so far.
    pub best: f64,
}

/// Key of the training log (UTF-8 bytes of its JSON text, one per int64) in `last.npz`.
const TRAINLOG_KEY: &str = "progress.trainlog_json";

/// Model weights, Adam state and progress (including the training log up to that epoch) in one `.npz`,
/// written atomically.
pub fn save_training_state(
    path: &Path,
    model: &dyn Module,
    opt: &Adam,
    p: Progress,
    trainlog: &Map<String, Value>,
) -> Result<()> {
    let mut sd = state_dict(model);
    let log = serde_json::to_vec(trainlog).map_err(|e| Error::io(path, e))?;
    sd.insert(
        TRAINLOG_KEY,
        Entry::i64(vec![log.len()], log.into_iter().map(i64::from).collect()),
    );
    sd.insert("progress.epoch", Entry::i64(vec![], vec![p.epoch as i64]));
    sd.insert("progress.step", Entry::i64(vec![], vec![p.step as i64]));
    sd.insert(
        "progress.best_IoU_bits",
        Entry::i64(vec![], vec![p.best.to_bits() as i64]),
    );
    for (i, (name, p)) in model.named_parameters("").iter().enumerate() {
        let (m, v) = opt.moments(i);
        sd.insert(
            format!("optimizer.exp_avg.{name}"),
            Entry::f32(p.shape().to_vec(), m),
        );
        sd.insert(
            format!("optimizer.exp_avg_sq.{name}"),
            Entry::f32(p.shape().to_vec(), v),
        );
    }
    sd.insert(
        "optimizer.step",
        Entry::i64(vec![], vec![opt.steps() as i64]),
    );
    // The loss scaler of --precision mixed, as GradScaler.state_dict() keeps it: scale and growth tracker.
    if let Some(s) = opt.loss_scale() {
        sd.insert("scaler.scale", Entry::f32(vec![], vec![s.scale()]));
        sd.insert(
            "scaler._growth_tracker",
            Entry::i64(vec![], vec![s.tracker as i64]),
        );
    }
    write_npz(path, &sd)
}

/// Restores model and optimizer from `last.npz`; returns the progress and the training log it holds
/// (`None` for a file written before the log was stored there).
pub fn load_training_state(
    path: &Path,
    model: &dyn Module,
    opt: &mut Adam,
) -> Result<(Progress, Option<Map<String, Value>>)> {
    let mut sd = read_npz(path)?;
    let trainlog = match sd.remove(TRAINLOG_KEY) {
        None => None,
        Some(e) => {
            let bytes: Option<Vec<u8>> = e
                .as_i64()
                .and_then(|v| v.iter().map(|&b| u8::try_from(b).ok()).collect());
            let log = bytes
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.as_object().cloned())
                .ok_or_else(|| Error::format(path, format!("{TRAINLOG_KEY}: not a JSON object")))?;
            Some(log)
        }
    };
    let mut int = |k: &str| {
        sd.remove(k)
            .and_then(|e| e.as_i64().map(|v| v[0]))
            .ok_or_else(|| Error::format(path, format!("no {k}: not a sitsgpu training state")))
    };
    let p = Progress {
        epoch: int("progress.epoch")? as usize,
        step: int("progress.step")? as usize,
        best: f64::from_bits(int("progress.best_IoU_bits")? as u64),
    };
    let step = sd
        .remove("optimizer.step")
        .and_then(|e| e.as_i64().and_then(|v| v.first().copied()))
        .ok_or_else(|| Error::format(path, "no optimizer.step"))?;
    // (The loss scaler counts steps in a 32-bit word on the device.)
    if u32::try_from(step).is_err() {
        return Err(Error::format(
            path,
            format!("optimizer.step {step}: not a step count"),
        ));
    }
    let (mut ms, mut vs) = (Vec::new(), Vec::new());
    for (name, t) in model.named_parameters("") {
        let m = sd
            .remove(&format!("optimizer.exp_avg.{name}"))
            .ok_or_else(|| Error::format(path, format!("no optimizer.exp_avg.{name}")))?;
        let v = sd
            .remove(&format!("optimizer.exp_avg_sq.{name}"))
            .ok_or_else(|| Error::format(path, format!("no optimizer.exp_avg_sq.{name}")))?;
        for (e, what) in [(&m, "exp_avg"), (&v, "exp_avg_sq")] {
            if e.shape != t.shape() || e.as_f32().is_none() {
                return Err(Error::format(
                    path,
                    format!(
                        "optimizer.{what}.{name}: float32 {:?} expected, found {:?}",
                        t.shape(),
                        e.shape
                    ),
                ));
            }
        }
        ms.push(m.as_f32().unwrap_or_default().to_vec());
        vs.push(v.as_f32().unwrap_or_default().to_vec());
    }
    // The loss scaler's state when the file has one and the run scales (a run that did not scale, or fp32
    // resuming a mixed run, starts or keeps none).
    let scaler = match (
        sd.remove("scaler.scale"),
        sd.remove("scaler._growth_tracker"),
    ) {
        (Some(s), Some(k)) => {
            let scale = s.as_f32().and_then(|v| v.first().copied());
            let tracker = k.as_i64().and_then(|v| v.first().copied());
            let (Some(scale), Some(tracker)) = (scale, tracker) else {
                return Err(Error::format(
                    path,
                    "scaler.scale / scaler._growth_tracker: not scalars",
                ));
            };
            let tracker = u32::try_from(tracker)
                .map_err(|_| Error::format(path, format!("scaler._growth_tracker {tracker}")))?;
            Some(
                ScaleState::restored(step as u64, scale as f64, tracker)
                    .map_err(|e| Error::format(path, format!("scaler.scale: {e}")))?,
            )
        }
        _ => None,
    };
    load_state_dict(model, &sd, path)?;
    opt.set_state(step as u64, ms, vs);
    if let Some(s) = scaler {
        opt.set_loss_scale(s);
    }
    Ok((p, trainlog))
}

/// Where `--resume` restarts a fold: the training log, the best score, the first epoch to run and the
/// optimiser steps taken. A fresh start when there is nothing to resume.
pub struct Resumed {
    /// The log of the finished epochs.
    pub trainlog: Map<String, Value>,
    /// Best validation score so far.
    pub best: f64,
    /// First epoch to run.
    pub first_epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Whether `last.npz` was restored (false: a fresh start).
    pub resumed: bool,
}

/// Restores `Fold_k/last.npz` into `model` and `opt` when `resume` is set and the file exists, and puts
/// `trainlog.json` back in step with it (a run killed between the two writes leaves the log one epoch ahead).
pub fn resume_fold(
    resume: bool,
    fold_dir: &Path,
    model: &dyn Module,
    opt: &mut Adam,
    fold: usize,
) -> Result<Resumed> {
    let last_path = fold_dir.join("last.npz");
    let log_path = fold_dir.join("trainlog.json");
    if !(resume && last_path.exists()) {
        // A fresh start: the best weights of an earlier run killed in this folder are not ours.
        let stale = best_path(fold_dir);
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
        }
        return Ok(Resumed {
            trainlog: Map::new(),
            best: 0.0,
            first_epoch: 1,
            step: 0,
            resumed: false,
        });
    }
    let (p, log) = load_training_state(&last_path, model, opt)?;
    let mut trainlog = match log {
        Some(log) => log,
        // A last.npz without the log: trainlog.json's entries of finished epochs.
        None => match read_json(&log_path) {
            Ok(log) => log.as_object().cloned().unwrap_or_default(),
            Err(e) => {
                eprintln!(
                    "warning: {e}; the resumed training log starts at epoch {}",
                    p.epoch + 1
                );
                Map::new()
            }
        },
    };
    trainlog.retain(|e, _| e.parse::<usize>().is_ok_and(|e| e <= p.epoch));
    write_json(&log_path, &Value::Object(trainlog.clone()))?;
    println!("Fold {fold}: resuming after epoch {}", p.epoch);
    Ok(Resumed {
        trainlog,
        best: p.best,
        first_epoch: p.epoch + 1,
        step: p.step,
        resumed: true,
    })
}

/// Checks, before a `--resume` run writes anything, that every `Fold_k/last.npz` it would restore (folds
/// `folds` of `res_dir`) can be: a readable file holding this model's keys and shapes, the Adam moments and the
/// progress. `model` and `opt` are scratch copies (they are overwritten).
pub fn check_resumable(
    res_dir: &Path,
    folds: &[usize],
    model: &dyn Module,
    opt: &mut Adam,
) -> Result<()> {
    for k in folds {
        let last = res_dir.join(format!("Fold_{k}")).join("last.npz");
        if last.exists() {
            load_training_state(&last, model, opt)?;
        }
    }
    Ok(())
}

/// The device a run asked for: the CPU reference path (`--cpu`) or the GPU (an error when there is none).
pub fn device_of(cpu: bool) -> Result<Device> {
    if cpu {
        Ok(Device::Cpu)
    } else {
        crate::engine::Gpu::get().map(|_| Device::Gpu)
    }
}

/// `Fold_k/model.npz` (ours) or `Fold_k/model.pth.tar` (the original's) in a weight folder.
pub fn checkpoint_of(weight_folder: &Path, k: usize) -> Result<PathBuf> {
    let dir = weight_folder.join(format!("Fold_{k}"));
    [dir.join("model.npz"), dir.join("model.pth.tar")]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::io(
                dir.join("model.pth.tar"),
                "no checkpoint (model.npz or model.pth.tar)",
            )
        })
}

/// `Fold_k/best.npz`: the best weights so far while the fold trains (published as `model.npz` by
/// [`publish_best`] once the fold is tested).
pub fn best_path(fold_dir: &Path) -> PathBuf {
    fold_dir.join("best.npz")
}

/// Saves `model` as the fold's best weights so far.
pub fn save_best(fold_dir: &Path, model: &dyn Module) -> Result<()> {
    write_npz(best_path(fold_dir), &state_dict(model))
}

/// Loads the fold's best weights into `model` before the test: `best.npz`; else, for a resumed fold whose best
/// epoch came before the resumption and was already published, `model.npz`; else (no validation ran) the
/// current weights are the best and are saved as `best.npz`.
pub fn load_best(fold_dir: &Path, model: &dyn Module, resumed: bool) -> Result<()> {
    let best = best_path(fold_dir);
    let published = fold_dir.join("model.npz");
    if best.exists() {
        load_state_dict(model, &read_npz(&best)?, &best)
    } else if resumed && published.exists() {
        load_state_dict(model, &read_npz(&published)?, &published)
    } else {
        save_best(fold_dir, model)
    }
}

/// Publishes the fold's best weights: `best.npz` renamed `model.npz` (after the test files are written).
pub fn publish_best(fold_dir: &Path) -> Result<()> {
    let best = best_path(fold_dir);
    if best.exists() {
        let to = fold_dir.join("model.npz");
        std::fs::rename(&best, &to).map_err(|e| Error::io(&to, e))?;
    }
    Ok(())
}

/// The results of one evaluated fold, kept until every fold has run (then written by [`save_fold_results`]),
/// so that a run that fails half-way leaves no result file behind.
pub struct FoldResult {
    /// The fold.
    pub fold: usize,
    /// `test_metrics.json`'s content.
    pub metrics: Value,
    /// The test confusion matrix.
    pub cm: ConfusionMatrix,
}

/// Writes every fold's test files into `res_dir/Fold_k/` (created) and, when `overall` is set, the summary of
/// the summed matrices (`overall.json`, `per_class.json`).
pub fn save_fold_results(
    res_dir: &Path,
    results: &[FoldResult],
    ignore: Option<usize>,
    overall: bool,
    pictures: TestPictures,
) -> Result<()> {
    for r in results {
        let out = res_dir.join(format!("Fold_{}", r.fold));
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        save_test_results(&out, &r.metrics, &r.cm, ignore, pictures)?;
    }
    if overall {
        save_overall(res_dir, results.iter().map(|r| &r.cm), ignore)?;
    }
    Ok(())
}

/// `Fold_k/test_metrics.json` (`metrics`, in the original's key order); the confusion matrix as
/// `conf_mat.pkl` (a pickled numpy int64 array, as the original writes it), `.npy` and `.json`, with the row
/// and column of the `ignore` class zeroed as the original's IoU meter zeroes them in place when it computes
/// the metrics (`miou.py`, `get_miou_acc`), and with every count as `conf_mat_with_void.npy` / `.json` (only
/// when a class is ignored); the pictures `conf_mat.png` and, for pixel sets, `per_class_f1.png`; and the
/// fold's per-class IoU, precision, recall and F1 (`per_class.json`, the `ignore` class deleted first).
pub fn save_test_results(
    fold_dir: &Path,
    metrics: &Value,
    cm: &ConfusionMatrix,
    ignore: Option<usize>,
    pictures: TestPictures,
) -> Result<()> {
    write_json(&fold_dir.join("test_metrics.json"), metrics)?;
    let (per_class, _) = overall(cm, ignore);
    write_json(&fold_dir.join("per_class.json"), &per_class)?;
    let write = |stem: &str, m: &ConfusionMatrix| -> Result<()> {
        write_json(&fold_dir.join(format!("{stem}.json")), &m.to_json())?;
        let counts: Vec<i64> = m.counts.iter().map(|&c| c as i64).collect();
        crate::data::npy::write_i64(fold_dir.join(format!("{stem}.npy")), &[m.k, m.k], &counts)
    };
    let zeroed = zero_class(cm, ignore);
    write("conf_mat", &zeroed)?;
    let counts: Vec<i64> = zeroed.counts.iter().map(|&c| c as i64).collect();
    crate::data::torch_writer::write_numpy_pickle_i64(
        fold_dir.join("conf_mat.pkl"),
        &[cm.k, cm.k],
        &counts,
    )?;
    if ignore.is_some_and(|i| i < cm.k) {
        write("conf_mat_with_void", cm)?;
    }
    let fold = fold_dir
        .file_name()
        .map_or(String::new(), |n| format!("{}: ", n.to_string_lossy()));
    confusion_png(
        &fold_dir.join("conf_mat.png"),
        &format!("{fold}test confusion matrix, rows normalised (% of each true class)"),
        &cm.counts,
        cm.k,
        ignore,
        pictures.names(),
    )?;
    if pictures == TestPictures::PixelSet {
        let f1: Vec<(i64, f64)> = (0..cm.k)
            .filter(|&c| Some(c) != ignore)
            .map(|c| {
                let v = per_class
                    .get(c.to_string())
                    .and_then(|r| r.get("F1-score"))
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN);
                (c as i64, v)
            })
            .collect();
        f1_bars_png(
            &fold_dir.join("per_class_f1.png"),
            &format!("{fold}test F1 score per class"),
            &f1,
            pictures.names(),
        )?;
    }
    Ok(())
}

/// The matrix with the row and column of class `ignore` set to 0 (`conf_matrix[:, i] = 0;
/// conf_matrix[i, :] = 0` in the original's `IoU.get_miou_acc`); unchanged without one.
pub fn zero_class(cm: &ConfusionMatrix, ignore: Option<usize>) -> ConfusionMatrix {
    let mut out = cm.clone();
    if let Some(i) = ignore.filter(|&i| i < cm.k) {
        for j in 0..cm.k {
            out.counts[i * cm.k + j] = 0;
            out.counts[j * cm.k + i] = 0;
        }
    }
    out
}

/// `overall.json` and `per_class.json` from the summed test confusion matrices (`ignore`: a class deleted
/// first, the semantic task's void class).
pub fn save_overall<'a>(
    res_dir: &Path,
    matrices: impl IntoIterator<Item = &'a ConfusionMatrix>,
    ignore: Option<usize>,
) -> Result<()> {
    let mut matrices = matrices.into_iter().peekable();
    let Some(first) = matrices.peek() else {
        return Ok(());
    };
    let mut total = ConfusionMatrix::new(first.k);
    for cm in matrices {
        total.merge(cm);
    }
    let (per_class, ov) = overall(&total, ignore);
    println!("Overall performance: {ov}");
    write_json(&res_dir.join("overall.json"), &ov)?;
    write_json(&res_dir.join("per_class.json"), &per_class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(10, 4, 7, true);
        assert_eq!(a.len(), 8);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 8);
        assert_eq!(a, epoch_order(10, 4, 7, true));
        assert_ne!(a, epoch_order(10, 4, 8, true));
        // Without drop_last every index stays, the first 8 in the same order.
        let all = epoch_order(10, 4, 7, false);
        assert_eq!(all.len(), 10);
        assert_eq!(&all[..8], &a[..]);
    }

    #[test]
    fn the_best_weights_are_published_only_when_the_fold_is_tested() {
        use crate::engine::Device;
        use crate::layers::linear::Linear;
        let dir = std::env::temp_dir().join(format!("sitsgpu-state-best-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let weights = |seed| state_dict(&Linear::new(3, 2, true, seed, Device::Cpu));
        let model = Linear::new(3, 2, true, 1, Device::Cpu);
        let mut opt = Adam::new(model.parameters(), Default::default());
        // A killed run left best.npz: a fresh start removes it, a resumed one keeps it.
        save_best(&dir, &Linear::new(3, 2, true, 2, Device::Cpu)).unwrap();
        let r = resume_fold(false, &dir, &model, &mut opt, 1).unwrap();
        assert!(!r.resumed && !best_path(&dir).exists());
        // No validation ran: the current weights are the best, published after the test.
        load_best(&dir, &model, false).unwrap();
        assert!(best_path(&dir).exists() && !dir.join("model.npz").exists());
        publish_best(&dir).unwrap();
        assert!(!best_path(&dir).exists());
        assert_eq!(read_npz(dir.join("model.npz")).unwrap(), weights(1));
        // best.npz wins over an earlier model.npz; without it a resumed fold takes model.npz.
        save_best(&dir, &Linear::new(3, 2, true, 3, Device::Cpu)).unwrap();
        load_best(&dir, &model, true).unwrap();
        assert_eq!(state_dict(&model), weights(3));
        std::fs::remove_file(best_path(&dir)).unwrap();
        load_best(&dir, &model, true).unwrap();
        assert_eq!(state_dict(&model), weights(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A mixed run's last.npz restores the loss scaler; a damaged step count or scale is an error naming
    /// the file, not a panic.
    #[test]
    fn the_loss_scaler_round_trips_and_bad_states_are_errors() {
        use crate::engine::Device;
        use crate::layers::linear::Linear;
        let dir = std::env::temp_dir().join(format!("sitsgpu-state-scaler-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("last.npz");
        let model = Linear::new(3, 2, true, 1, Device::Cpu);
        let mut opt = Adam::new(model.parameters(), Default::default()).with_loss_scaling();
        let mut s = opt.loss_scale().unwrap();
        (s.exponent, s.tracker, s.steps) = (13, 7, 9);
        opt.set_loss_scale(s);
        let p = Progress {
            epoch: 1,
            step: 9,
            best: 0.0,
        };
        save_training_state(&path, &model, &opt, p, &Map::new()).unwrap();
        let mut back = Adam::new(model.parameters(), Default::default()).with_loss_scaling();
        load_training_state(&path, &model, &mut back).unwrap();
        assert_eq!(back.loss_scale(), Some(s));
        for (key, entry, says) in [
            (
                "optimizer.step",
                Entry::i64(vec![], vec![-1]),
                "not a step count",
            ),
            (
                "scaler.scale",
                Entry::f32(vec![], vec![3.0]),
                "not a power of two",
            ),
        ] {
            let mut sd = read_npz(&path).unwrap();
            sd.insert(key, entry);
            let bad = dir.join("bad.npz");
            write_npz(&bad, &sd).unwrap();
            let err = load_training_state(&bad, &model, &mut back)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("bad.npz"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
