//! The one fold loop of every training workflow (semantic, pixel-set, panoptic): what `train_semantic.py`,
//! `train_panoptic.py` and the L-TAE repository's `train.py` share, written once. A task ([`FoldTask`])
//! supplies what differs — its data, its model, one epoch (a training pass, and a validation pass when the
//! task validates then), its score, its curves and its test — and [`run_folds`] does the rest:
//!
//! ```text
//! check everything (folds, data, --init_weights, the last.npz files of --resume)   nothing written yet
//! for each fold k:
//!     Fold_k/; the model from rdm_seed (or --init_weights); conf.json; Adam(lr)
//!     with a memory budget: probe 1 and 2 samples → micro-batch size (train::memory), said once
//!     (probes and epochs run under --precision: engine::precision, and --gradient_checkpointing:
//!     engine::recompute)
//!     (under --precision mixed Adam scales the loss, train::adam)
//!     resume from Fold_k/last.npz (--resume)
//!     for epoch in first..=epochs (until --max_steps):
//!         task.epoch → log entry, line, validation score   (each step: train::step)
//!         a better score → best.npz; trainlog.json; last.npz (weights, Adam, progress, log)
//!         (once per run: the peak GPU memory of the first epoch)
//!     curves.png; the best weights back; task.test (its files); best.npz → model.npz
//! task.finish (overall files)
//! ```
//! [`RunOptions`] are the flags all three scripts have (same names and defaults); each task's options embed
//! them as `run`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::data::json::write_json;
use crate::engine::error::catch_too_large;
use crate::engine::ops::linalg::half_matmul;
use crate::engine::recompute::with_gradient_checkpointing;
use crate::engine::{with_precision, Device, Error, Gpu, Precision, Result, Tensor};
use crate::layers::state::load_state_dict;
use crate::layers::Module;
use crate::models::registry::read_weights;
use crate::train::adam::{Adam, AdamConfig};
use crate::train::memory::{self, human, Budget};
use crate::train::plot::{self, CurveKind};
use crate::train::state::{
    check_resumable, device_of, load_best, publish_best, resume_fold, save_best,
    save_training_state, Progress,
};

/// The options every training workflow shares (the original scripts' common flags, same names).
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Dataset folder (`--dataset_folder`).
    pub dataset_folder: PathBuf,
    /// Output folder (`--res_dir`).
    pub res_dir: PathBuf,
    /// Seed of initialisation, shuffling, dropout and draws (`--rdm_seed`).
    pub rdm_seed: u64,
    /// Epochs per fold.
    pub epochs: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Run only fold k (1-based).
    pub fold: Option<usize>,
    /// Start from these weights (.npz or an official checkpoint) instead of a fresh initialisation.
    pub init_weights: Option<PathBuf>,
    /// Stop each fold after this many optimiser steps (smoke tests, benchmarks).
    pub max_steps: Option<usize>,
    /// Continue an interrupted run from `Fold_k/last.npz`.
    pub resume: bool,
    /// Run on the CPU reference path.
    pub cpu: bool,
    /// Show progress bars.
    pub progress: bool,
    /// GPU memory budget in bytes (`--max_memory`; `None`: the adapter's where it is known,
    /// `train::memory`): a batch that does not fit runs as micro-batches.
    pub max_memory: Option<u64>,
    /// What a training step keeps for its backward pass (`--precision`, `engine::precision`).
    pub precision: Precision,
    /// Recompute the recurrent ops' gate convolutions in the backward pass instead of keeping their outputs
    /// (`--gradient_checkpointing`, `engine::recompute`).
    pub gradient_checkpointing: bool,
}

impl RunOptions {
    /// The options with the scripts' defaults, reading `dataset_folder` and writing `res_dir`: seed 1,
    /// 100 epochs, batch 4, lr 0.001, every fold, progress bars.
    pub fn new(dataset_folder: impl Into<PathBuf>, res_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            dataset_folder: dataset_folder.into(),
            res_dir: res_dir.into(),
            rdm_seed: 1,
            epochs: 100,
            batch_size: 4,
            lr: 0.001,
            fold: None,
            init_weights: None,
            max_steps: None,
            resume: false,
            cpu: false,
            progress: true,
            max_memory: None,
            precision: Precision::Fp32,
            gradient_checkpointing: false,
        }
    }

    /// Runs `f` (a probe, an epoch) in these options' modes: `--precision` and `--gradient_checkpointing`.
    pub fn in_modes<R>(&self, f: impl FnOnce() -> R) -> R {
        with_precision(self.precision, || {
            with_gradient_checkpointing(self.gradient_checkpointing, f)
        })
    }

    /// Whether `--max_steps` is reached after `step` optimiser steps.
    pub fn steps_done(&self, step: usize) -> bool {
        self.max_steps.is_some_and(|m| step >= m)
    }
}

/// Where a fold runs: its number, its folder and the device.
#[derive(Debug, Clone, Copy)]
pub struct Fold<'a> {
    /// 1-based fold (rotation) number.
    pub k: usize,
    /// `res_dir/Fold_k`.
    pub dir: &'a Path,
    /// The device of the run.
    pub device: Device,
    /// Samples per micro-batch (`train::memory`; the batch size when a batch fits whole).
    pub micro: usize,
}

/// What one epoch reports to the loop.
pub struct EpochReport {
    /// The epoch's trainlog.json entry (`train_*`, and `val_*` when it validated).
    pub entry: Map<String, Value>,
    /// The line printed for it.
    pub line: String,
    /// The validation score, when it validated (higher is better; [`FoldTask::better`] decides ties).
    pub score: Option<f64>,
}

/// What a training workflow supplies to [`run_folds`].
pub trait FoldTask {
    /// The model trained.
    type Model: Module;
    /// One fold's data (its splits), opened and checked before anything is written.
    type Data;
    /// One fold's test result.
    type Test;

    /// The shared options.
    fn run_options(&self) -> &RunOptions;
    /// The folds this run covers.
    fn folds(&self) -> Result<Vec<usize>>;
    /// Every fold's data, checked (files, splits large enough for a batch): nothing is written before.
    fn prepare(&self, folds: &[usize]) -> Result<Vec<Self::Data>>;
    /// A freshly initialised model.
    fn build(&self, seed: u64, device: Device) -> Self::Model;
    /// res_dir/conf.json.
    fn conf_json(&self, n_params: usize) -> Value;
    /// When a fold starts, its folder made (nothing by default): what the task records or says first.
    fn start_fold(&self, _fold: Fold<'_>, _data: &Self::Data) -> Result<()> {
        Ok(())
    }
    /// The score a fresh fold must beat to save its first best weights (a resumed fold keeps its own).
    fn fresh_best(&self) -> f64 {
        0.0
    }
    /// The fewest samples a training forward pass takes: 1, or 2 for a model whose train-mode BatchNorm
    /// normalises over the samples (the pixel-set decoders: one sample has no statistics, as PyTorch says).
    /// Memory probes and micro-batches never go below it.
    fn min_micro(&self) -> usize {
        1
    }
    /// A forward and backward pass of the first `n` training samples (no optimiser step): the memory probe
    /// of `train::memory` (the fold loop zeroes the gradients and restores the buffers afterwards).
    fn probe(&self, fold: Fold<'_>, model: &Self::Model, data: &Self::Data, n: usize)
        -> Result<()>;
    /// Whether validation `score` replaces `best` (saving best.npz).
    fn better(&self, score: f64, best: f64) -> bool;
    /// One epoch: training with `opt` (advancing `step`), then validation when the task validates after it.
    fn epoch(
        &self,
        fold: Fold<'_>,
        model: &Self::Model,
        opt: &mut Adam,
        data: &Self::Data,
        epoch: usize,
        step: &mut usize,
    ) -> Result<EpochReport>;
    /// The curves of Fold_k/curves.png: loss and the task's metrics ([`plot::training_curves`]).
    fn curve_kind(&self) -> CurveKind;
    /// Tests the best weights and writes the fold's test files.
    fn test(
        &self,
        fold: Fold<'_>,
        model: &Self::Model,
        data: &Self::Data,
        step: &mut usize,
    ) -> Result<Self::Test>;
    /// After every fold: the run's overall files (nothing by default).
    fn finish(&self, _folds: &[usize], _results: &[(usize, Self::Test)]) -> Result<()> {
        Ok(())
    }
}

/// The micro-batch size of the run (`train::memory`): the batch size unless a budget is known and a batch
/// does not fit it. Planned on the first fold (two small probe steps), said once, kept for the others.
fn micro_batch<T: FoldTask>(
    task: &T,
    fold: Fold<'_>,
    model: &T::Model,
    data: &T::Data,
    planned: &mut Option<usize>,
) -> Result<usize> {
    if let Some(micro) = *planned {
        return Ok(micro);
    }
    let micro = plan_micro_batch(task, fold, model, data)?;
    *planned = Some(micro);
    Ok(micro)
}

fn plan_micro_batch<T: FoldTask>(
    task: &T,
    fold: Fold<'_>,
    model: &T::Model,
    data: &T::Data,
) -> Result<usize> {
    let o = task.run_options();
    if fold.device != Device::Gpu {
        return Ok(o.batch_size);
    }
    let Some(budget) = Budget::detect(o.max_memory, fold.device) else {
        return Ok(o.batch_size);
    };
    let gpu = Gpu::get()?;
    let buffers: Vec<(Tensor, Vec<f32>)> = model
        .named_buffers("")
        .into_iter()
        .map(|(_, t)| {
            let v = t.to_vec();
            (t, v)
        })
        .collect();
    let plan = memory::plan(
        o.batch_size,
        budget.clone(),
        memory::max_binding(gpu),
        task.min_micro(),
        &memory::training_hint(o.precision, o.gradient_checkpointing),
        |n| {
            gpu.synchronize();
            gpu.pool.reset_peak();
            let probed = catch_too_large(|| o.in_modes(|| task.probe(fold, model, data, n)));
            gpu.synchronize();
            for p in model.parameters() {
                p.zero_grad();
            }
            probed.map(|()| memory::Measured::of(gpu))
        },
    );
    for (t, v) in &buffers {
        t.storage().write(v);
    }
    let plan = plan?;
    gpu.pool.set_budget(Some(budget.bytes));
    gpu.pool.reset_peak();
    println!("{}", plan.line(o.batch_size));
    Ok(plan.micro)
}

/// Runs `task` over its folds (module doc). Returns each fold's test result.
pub fn run_folds<T: FoldTask>(task: &T) -> Result<Vec<(usize, T::Test)>> {
    let o = task.run_options();
    let folds = task.folds()?;
    let device = device_of(o.cpu)?;
    // Checked before anything is written: the data, the initial weights, what --resume would restore.
    let data = task.prepare(&folds)?;
    let scratch = task.build(0, Device::Cpu);
    let init = match &o.init_weights {
        Some(w) => {
            let sd = read_weights(w)?;
            load_state_dict(&scratch, &sd, w)?;
            Some((w, sd))
        }
        None => None,
    };
    if o.resume {
        let mut opt = Adam::new(scratch.parameters(), AdamConfig::default());
        check_resumable(&o.res_dir, &folds, &scratch, &mut opt)?;
    }
    std::fs::create_dir_all(&o.res_dir).map_err(|e| Error::io(&o.res_dir, e))?;
    if o.precision == Precision::Mixed {
        let (products, convolutions) = match device {
            Device::Gpu => {
                let gpu = Gpu::get()?;
                (
                    half_matmul::path(gpu).to_string(),
                    crate::engine::ops::conv::conv2d::mixed::path_note(gpu),
                )
            }
            Device::Cpu => ("the CPU reference".to_string(), "the same".to_string()),
        };
        println!(
            "precision: mixed (products and convolutions on half-precision operands with float32 sums: \
             products {products}; convolutions {convolutions}; activations saved for the backward pass in \
             half precision; the backward products' gradients rounded to half precision, the loss scaled \
             as GradScaler does; the rest float32)"
        );
    }
    if o.gradient_checkpointing {
        println!(
            "gradient checkpointing: on (the recurrent baselines' gate convolutions — ConvLSTM, ConvGRU, and \
             the ConvLSTM inside FPN-ConvLSTM, U-ConvLSTM and BU-ConvLSTM — run again in the backward pass \
             instead of being kept: the same numbers, less of those layers' memory per date — a third for \
             ConvLSTM and ConvGRU — for about a third more of their convolution work; other layers are \
             unchanged)"
        );
    }
    let mut results = Vec::new();
    let (mut planned, mut memory_said) = (None, false);
    for (&k, data) in folds.iter().zip(&data) {
        let dir = o.res_dir.join(format!("Fold_{k}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut fold = Fold {
            k,
            dir: &dir,
            device,
            micro: o.batch_size,
        };
        task.start_fold(fold, data)?;
        let model = task.build(o.rdm_seed, device);
        if let Some((w, sd)) = &init {
            load_state_dict(&model, sd, w)?;
        }
        fold.micro = micro_batch(task, fold, &model, data, &mut planned)?;
        write_json(
            &o.res_dir.join("conf.json"),
            &task.conf_json(model.num_parameters()),
        )?;
        let mut opt = Adam::new(
            model.parameters(),
            AdamConfig {
                lr: o.lr,
                ..AdamConfig::default()
            },
        );
        if o.precision == Precision::Mixed {
            opt.scale_losses();
        }
        let r = resume_fold(o.resume, &dir, &model, &mut opt, k)?;
        let (mut trainlog, mut step) = (r.trainlog, r.step);
        let mut skipped = 0;
        let mut best = if r.resumed { r.best } else { task.fresh_best() };
        for epoch in r.first_epoch..=o.epochs {
            if o.steps_done(step) {
                break;
            }
            let rep = o.in_modes(|| task.epoch(fold, &model, &mut opt, data, epoch, &mut step))?;
            if let Some(score) = rep.score {
                if task.better(score, best) {
                    best = score;
                    save_best(&dir, &model)?;
                }
            }
            println!("{}", rep.line);
            // (One readback an epoch.) Said when the epoch skipped steps.
            if let Some(s) = opt.loss_scale() {
                let now = opt.recorded_steps() - s.steps;
                if now > std::mem::replace(&mut skipped, now) {
                    println!(
                        "loss scale 2^{}: {now} step(s) skipped so far, their gradients overflowed half \
                         precision",
                        s.exponent
                    );
                }
            }
            if !std::mem::replace(&mut memory_said, true) && device == Device::Gpu {
                // (With a budget the plan was said before the first epoch; this is what it really took.)
                // Once per run: what the first epoch took.
                let s = Gpu::get()?.pool.stats();
                println!(
                    "GPU memory: peak {} held by tensors, {} held by the pool's buffers (epoch {epoch})",
                    human(s.peak_live_bytes),
                    human(s.peak_bytes)
                );
            }
            trainlog.insert(epoch.to_string(), Value::Object(rep.entry));
            write_json(&dir.join("trainlog.json"), &Value::Object(trainlog.clone()))?;
            save_training_state(
                &dir.join("last.npz"),
                &model,
                &opt,
                Progress { epoch, step, best },
                &trainlog,
            )?;
        }
        plot::training_curves(&dir.join("curves.png"), &trainlog, task.curve_kind())?;
        // Test with the best checkpoint (the last weights when no validation ran).
        load_best(&dir, &model, r.resumed)?;
        let test = task.test(fold, &model, data, &mut step)?;
        publish_best(&dir)?;
        results.push((k, test));
    }
    task.finish(&folds, &results)?;
    Ok(results)
}
