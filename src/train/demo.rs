//! `sitsgpu demo`: the whole semantic-segmentation workflow (with `--task panoptic`, the panoptic one:
//! [`run_panoptic`]) on synthetic PASTIS-format data, small enough to
//! finish in minutes on a CPU-only machine with a software GPU (lavapipe):
//!
//! 1. writes a synthetic dataset in the PASTIS layout to `DIR/data` (unless one is already there);
//! 2. trains a small U-TAE on rotation 1 (train folds 1-3, validation fold 4, test fold 5) with the original
//!    recipe (Adam, weighted cross-entropy, best checkpoint by validation mIoU), writing `DIR/results`;
//! 3. evaluates the best checkpoint on the test fold (`DIR/results/eval`), as `sitsgpu evaluate` does, and
//!    prints the test OA / mIoU, the time taken and where the curves (`curves.png`) are.

use std::path::Path;
use std::time::Instant;

use crate::data::synthetic::{write_pastis, SynthOptions};
use crate::engine::{Device, Precision, Result};
use crate::layers::NormKind;
use crate::models::paps::loss::PapsLossConfig;
use crate::models::paps::PapsConfig;
use crate::models::registry::load_panoptic;
use crate::models::utae::{AggMode, UTaeConfig};
use crate::train::fold_loop::RunOptions;
use crate::train::panoptic::{self, PanopticOptions};
use crate::train::semantic::predict::PredictOptions;
use crate::train::semantic::{evaluate, train, EvaluateOptions, TrainOptions};

/// The demo's model: U-TAE with the default architecture at an eighth of the width.
pub fn demo_config() -> UTaeConfig {
    UTaeConfig {
        encoder_widths: vec![8, 8, 8, 16],
        decoder_widths: vec![8, 8, 8, 16],
        out_conv: vec![8, 20],
        agg_mode: AggMode::AttGroup,
        encoder_norm: NormKind::Group,
        n_head: 4,
        d_model: 16,
        d_k: 4,
        ..UTaeConfig::default()
    }
}

/// The adapter to use, said out loud: the GPU, or (none found, or `cpu`) the CPU reference path.
/// The demo runs' shared options: rotation 1, seed 1, batch 4, lr 0.01, progress bars.
fn demo_run(data: &Path, res: &Path, epochs: usize, cpu: bool, precision: Precision) -> RunOptions {
    RunOptions {
        epochs,
        lr: 0.01,
        fold: Some(1),
        cpu,
        precision,
        ..RunOptions::new(data, res)
    }
}

fn pick_cpu(cpu: bool) -> bool {
    // A fresh machine may have no GPU driver at all: the demo still runs, on the CPU reference path.
    cpu || match crate::engine::Gpu::get() {
        Ok(g) => {
            println!(
                "GPU: {} ({}, {})",
                g.adapter.name, g.adapter.backend, g.adapter.device_type
            );
            false
        }
        Err(e) => {
            println!("!!! {e}\n!!! running the demo on the CPU reference path instead");
            true
        }
    }
}

/// The synthetic dataset in `dir/data` (written unless one is already there).
fn synthetic_data(dir: &Path) -> Result<std::path::PathBuf> {
    let data = dir.join("data");
    if data.join("metadata.geojson").exists() {
        println!("using the synthetic dataset in {}", data.display());
    } else {
        // 6 to 10 dates per patch keep an epoch within seconds on a software GPU.
        let s = write_pastis(
            &data,
            &SynthOptions {
                min_dates: 6,
                max_dates: 10,
                ..SynthOptions::default()
            },
        )?;
        println!(
            "wrote a synthetic PASTIS dataset: {} patches, {}..{} dates, to {}",
            s.ids.len(),
            s.dates.0,
            s.dates.1,
            data.display()
        );
    }
    Ok(data)
}

/// Runs the demo in `dir` for `epochs` epochs.
pub fn run(dir: &Path, epochs: usize, cpu: bool, precision: Precision) -> Result<()> {
    let start = Instant::now();
    let cpu = pick_cpu(cpu);
    let data = synthetic_data(dir)?;
    let res = dir.join("results");
    let opts = TrainOptions {
        run: demo_run(&data, &res, epochs, cpu, precision),
        model: demo_config().into(),
        num_classes: 20,
        ignore_index: -1,
        pad_value: 0.0,
        val_every: 1,
        val_after: 0,
        ref_date: crate::data::pastis::PastisOptions::default().ref_date,
        mono_date: None,
        keep_last_batch: false,
    };
    train(&opts)?;
    let eval_dir = res.join("eval");
    let e = EvaluateOptions {
        dataset_folder: data,
        weight_folder: res.clone(),
        res_dir: eval_dir.clone(),
        fold: Some(1),
        batch_size: Some(4),
        cpu,
        progress: true,
        keep_last_batch: false,
        max_memory: None,
    };
    let results = evaluate(&e)?;
    let (_, m) = &results[0];
    println!(
        "demo done in {:.0} s: test OA {:.1} %, mIoU {:.1} % (classes present in the synthetic data); curves: {}, metrics: {}",
        start.elapsed().as_secs_f64(),
        m.accuracy,
        m.miou,
        res.join("Fold_1/curves.png").display(),
        eval_dir.join("Fold_1/test_metrics.json").display()
    );
    Ok(())
}

/// `demo --task panoptic`: the same synthetic data, a small U-TAE + PaPs (the demo U-TAE, shapes of side 16)
/// trained on rotation 1 with train_panoptic.py's recipe shortened to `epochs` epochs (warm-up of 2 epochs,
/// validation and threshold tuning after every later epoch), its best checkpoint evaluated on the test fold
/// as `evaluate` does (SQ / RQ / PQ, test_tables.npy), and the test patches drawn as `predict` does
/// (`DIR/results/predict/panoptic_<ID>.png`: RGB | true parcels | predicted parcels).
pub fn run_panoptic(dir: &Path, epochs: usize, cpu: bool, precision: Precision) -> Result<()> {
    let start = Instant::now();
    let cpu = pick_cpu(cpu);
    let data = synthetic_data(dir)?;
    let res = dir.join("results");
    let opts = PanopticOptions {
        backbone: demo_config().into(),
        paps: PapsConfig::default(),
        loss: PapsLossConfig::default(),
        background_label: 0,
        run: demo_run(&data, &res, epochs, cpu, precision),
        pad_value: 0.0,
        val_every: 1,
        val_after: 0,
        warmup: 2.min(epochs.saturating_sub(1)),
        autotune: true,
        supmax: true,
        val_metrics_only: false,
        ref_date: crate::data::pastis::PastisOptions::default().ref_date,
        mono_date: None,
        keep_last_batch: false,
    };
    panoptic::train(&opts)?;
    let eval_dir = res.join("eval");
    let e = EvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: res.clone(),
        res_dir: eval_dir.clone(),
        fold: Some(1),
        batch_size: Some(4),
        cpu,
        progress: true,
        keep_last_batch: false,
        max_memory: None,
    };
    let results = panoptic::evaluate::evaluate(&e)?;
    let [sq, rq, pq] = results[0].1;
    let conf = res.join("conf.json");
    let weights = res.join("Fold_1/model.npz");
    let device = if cpu { Device::Cpu } else { Device::Gpu };
    let model = load_panoptic(&conf, &weights, device)?;
    let pictures = res.join("predict");
    let n = panoptic::evaluate::predict(
        &model,
        device,
        &PredictOptions {
            dataset_folder: data,
            folds: Some(vec![5]),
            batch_size: 4,
            out: pictures.clone(),
            save_attention: false,
            ref_date: opts.ref_date,
            mono_date: None,
            max_memory: None,
        },
    )?;
    println!(
        "panoptic demo done in {:.0} s: test SQ {:.1} RQ {:.1} PQ {:.1} (%); curves: {}, metrics: {}, \
         {n} pictures: {}",
        start.elapsed().as_secs_f64(),
        100.0 * sq,
        100.0 * rq,
        100.0 * pq,
        res.join("Fold_1/curves.png").display(),
        eval_dir.join("Fold_1/test_metrics.json").display(),
        pictures.join("panoptic_<ID>.png").display()
    );
    Ok(())
}
