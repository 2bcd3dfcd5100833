//! End-to-end tests of the training workflow (`train` / `evaluate`, spec §7.1, §8.1, §8.4, §1.9):
//!
//! - the semantic meter reproduces every `semantic` U-TAE fixture's `expected/metrics.json` (the original
//!   `IoU.get_miou_acc`, ignore_index -1, percent) from the stored logits, computing on the CPU path the
//!   logits of the batches the fixture does not store;
//! - a tiny U-TAE trained on a synthetic PASTIS folder (CPU path): decreasing training loss, the whole output
//!   layout, and `evaluate` on the result folder giving the same test numbers as training's test;
//! - resuming (`resume: true`) after 1 epoch gives a bit-identical `last.npz` (weights, Adam moments, progress)
//!   and the same `trainlog.json` as an uninterrupted run, also after a simulated kill between writes (log one
//!   epoch ahead of `last.npz`, stray `*.tmp` files) and with a damaged `trainlog.json`;
//! - one GPU smoke run (skipped loudly without an adapter) and the built binary (`synth`, `train`,
//!   `evaluate`, bad input).
//!
//! Run: `cargo test --test workflow_semantic`.

mod common;
use common::{assert_bit_identical, read_json, semantic_cases, sitsgpu, text, TmpDir};

use std::path::Path;

use serde_json::Value;
use sitsgpu::data::npy;
use sitsgpu::data::pastis::{PastisDataset, PastisOptions};
use sitsgpu::data::state_dict::{read_npz, StateDict};
use sitsgpu::data::synthetic::{write_pastis, SynthOptions};
use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::Precision;
use sitsgpu::layers::state::load_state_dict;
use sitsgpu::layers::Ctx;
use sitsgpu::models::semantic::{SemanticConfig, SemanticModel};
use sitsgpu::models::utae::{PadInfo, UTaeConfig};
use sitsgpu::train::fold_loop::RunOptions;
use sitsgpu::train::metrics::ConfusionMatrix;
use sitsgpu::train::semantic::predict::argmax_classes;
use sitsgpu::train::semantic::{evaluate, train, EvaluateOptions, TrainOptions};
use sitsgpu::{Device, Tensor};

// ---------------------------------------------------------------- helpers

fn tiny_synth() -> SynthOptions {
    SynthOptions {
        patches: 10,
        size: 16,
        min_dates: 4,
        max_dates: 6,
        ..SynthOptions::default()
    }
}

fn tiny_model() -> UTaeConfig {
    UTaeConfig {
        encoder_widths: vec![8, 8, 8, 16],
        decoder_widths: vec![8, 8, 8, 16],
        out_conv: vec![8, 20],
        n_head: 4,
        d_model: 16,
        ..UTaeConfig::default()
    }
}

fn train_opts(data: &Path, res: &Path, epochs: usize, cpu: bool) -> TrainOptions {
    TrainOptions {
        run: RunOptions {
            epochs,
            batch_size: 2,
            lr: 0.01,
            fold: Some(1),
            cpu,
            progress: false,
            ..RunOptions::new(data, res)
        },
        model: tiny_model().into(),
        num_classes: 20,
        ignore_index: -1,
        pad_value: 0.0,
        val_every: 1,
        val_after: 0,
        ref_date: sitsgpu::data::pastis::PastisOptions::default().ref_date,
        mono_date: None,
        keep_last_batch: false,
    }
}

fn last_state(res: &Path) -> StateDict {
    read_npz(res.join("Fold_1/last.npz")).unwrap_or_else(|e| panic!("{e}"))
}

/// The test metrics without the wall-clock time.
fn test_numbers(fold_dir: &Path) -> [f64; 3] {
    let m = read_json(&fold_dir.join("test_metrics.json"));
    ["test_accuracy", "test_loss", "test_IoU"].map(|k| {
        m[k].as_f64()
            .unwrap_or_else(|| panic!("{}: no number {k}: {m}", fold_dir.display()))
    })
}

/// Checks the files a finished training run leaves (spec §8.4, §9.2) and returns the train losses per epoch.
fn check_layout(res: &Path, epochs: usize) -> Vec<f64> {
    let conf = read_json(&res.join("conf.json"));
    let n_params = conf["N_params"].as_u64().expect("conf.json: N_params");
    assert!(n_params > 1000, "N_params {n_params}");
    assert_eq!(conf["encoder_widths"], serde_json::json!([8, 8, 8, 16]));
    let fold = res.join("Fold_1");
    for f in [
        "model.npz",
        "last.npz",
        "conf_mat.json",
        "conf_mat.npy",
        "curves.png",
    ] {
        assert!(fold.join(f).is_file(), "missing {}", fold.join(f).display());
    }
    let log = read_json(&fold.join("trainlog.json"));
    let log = log.as_object().expect("trainlog.json: an object");
    let mut logged: Vec<usize> = log.keys().map(|k| k.parse().expect("epoch keys")).collect();
    logged.sort_unstable();
    assert_eq!(
        logged,
        (1..=epochs).collect::<Vec<_>>(),
        "trainlog.json epochs"
    );
    for (e, entry) in log {
        for k in [
            "train_loss",
            "train_accuracy",
            "train_IoU",
            "val_loss",
            "val_accuracy",
            "val_IoU",
        ] {
            assert!(
                entry[k].is_number(),
                "trainlog.json epoch {e}: {k} in {entry}"
            );
        }
    }
    let m = read_json(&fold.join("test_metrics.json"));
    let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["test_IoU", "test_accuracy", "test_epoch_time", "test_loss"]
    );
    let [acc, loss, miou] = test_numbers(&fold);
    assert!((0.0..=100.0).contains(&acc) && loss.is_finite() && (0.0..=100.0).contains(&miou));
    // The confusion matrix: 20 × 20 counts in both files, the same; its meter gives the test numbers.
    let cm_json = read_json(&fold.join("conf_mat.json"));
    let rows = cm_json.as_array().expect("conf_mat.json: rows");
    assert_eq!(rows.len(), 20);
    let counts: Vec<u64> = rows
        .iter()
        .flat_map(|r| {
            let r = r.as_array().expect("a row");
            assert_eq!(r.len(), 20);
            r.iter().map(|v| v.as_u64().expect("a count"))
        })
        .collect();
    let npy_cm = npy::read_f32(fold.join("conf_mat.npy")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(npy_cm.shape, vec![20, 20]);
    assert_eq!(
        npy_cm.data.iter().map(|&c| c as u64).collect::<Vec<_>>(),
        counts
    );
    let cm = ConfusionMatrix { k: 20, counts };
    // Test split: fold 5, whole batches of 16 × 16 patches.
    let pixels = cm.counts.iter().sum::<u64>();
    assert!(
        pixels > 0 && pixels % (2 * 16 * 16) == 0,
        "{pixels} test pixels"
    );
    let (cm_miou, cm_acc) = cm.miou_acc(Some(19));
    assert_eq!((cm_miou, cm_acc), (miou, acc), "test metrics vs conf_mat");
    // curves.png: a valid PNG.
    let file = std::fs::File::open(fold.join("curves.png")).unwrap();
    let mut reader = png::Decoder::new(file)
        .read_info()
        .expect("curves.png: a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("curves.png: decodes");
    assert!(info.width >= 100 && info.height >= 100, "{info:?}");
    logged
        .iter()
        .map(|e| log[&e.to_string()]["train_loss"].as_f64().unwrap())
        .collect()
}

// ---------------------------------------------------------------- 1. metrics against the fixtures

fn ids_of(v: &Value) -> Vec<Vec<u64>> {
    v.as_array()
        .expect("a list of batches")
        .iter()
        .map(|b| {
            b.as_array()
                .expect("a batch")
                .iter()
                .map(|x| x.as_u64().expect("an id"))
                .collect()
        })
        .collect()
}

/// The logits (20, H, W) of each patch of each evaluation batch: stored ones from `expected/`, the others
/// computed by the CPU path with the batch the fixture used (U-TAE outputs depend on the batch's padding).
fn case_logits(case: &Path, conf: &Value, ds: &PastisDataset) -> Vec<(u64, Vec<f32>, usize)> {
    let reference = &conf["reference"];
    let mut out = Vec::new();
    let mut model: Option<SemanticModel> = None;
    for ids in ids_of(&reference["eval_batches"]) {
        let stored: Vec<Option<npy::Array<f32>>> = ids
            .iter()
            .map(|id| npy::read_f32(case.join(format!("expected/logits_{id}.npy"))).ok())
            .collect();
        if stored.iter().all(Option::is_some) {
            for (id, a) in ids.iter().zip(stored) {
                let a = a.unwrap();
                out.push((*id, a.data, a.shape[0]));
            }
            continue;
        }
        let model = model.get_or_insert_with(|| {
            let config = SemanticConfig::from_conf(conf, &case.join("conf.json"))
                .unwrap_or_else(|e| panic!("{e}"));
            let m = config.build(0, Device::Cpu);
            let w = case.join("weights.npz");
            load_state_dict(&m, &read_npz(&w).unwrap_or_else(|e| panic!("{e}")), &w)
                .unwrap_or_else(|e| panic!("{e}"));
            m
        });
        let idx: Vec<usize> = ids
            .iter()
            .map(|id| {
                ds.ids()
                    .iter()
                    .position(|x| x == id)
                    .expect("id in dataset")
            })
            .collect();
        let b = ds.load_batch(&idx, 0.0).unwrap_or_else(|e| panic!("{e}"));
        let x = Tensor::from_vec(b.x.clone(), &b.shape, Device::Cpu);
        let pad = PadInfo {
            mask: b.pad_mask.clone(),
        };
        let logits = sitsgpu::no_grad(|| model.forward(&x, &b.dates, &pad, &Ctx::eval()))
            .logits
            .to_vec();
        let per = logits.len() / ids.len();
        for (i, id) in ids.iter().enumerate() {
            out.push((*id, logits[i * per..(i + 1) * per].to_vec(), 20));
        }
    }
    out
}

#[test]
fn metrics_reproduce_the_fixtures() {
    let Some(cases) = semantic_cases("metrics_reproduce_the_fixtures") else {
        return;
    };
    for (name, case) in cases {
        let conf = read_json(&case.join("conf.json"));
        let expected = read_json(&case.join("expected/metrics.json"));
        let folder = conf["reference"]
            .get("dataset_folder_relative_to_case")
            .or(conf.get("dataset_folder"))
            .and_then(Value::as_str)
            .expect("dataset folder");
        let ds = PastisDataset::open(case.join(folder), PastisOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let k = conf["num_classes"].as_u64().unwrap_or(20) as usize;
        let mut cm = ConfusionMatrix::new(k);
        let mut patches = 0;
        for (id, logits, classes) in case_logits(&case, &conf, &ds) {
            assert_eq!(classes, k, "{name}: logits_{id} has {classes} classes");
            let i = ds.ids().iter().position(|x| *x == id).unwrap();
            let target = ds.get(i).unwrap_or_else(|e| panic!("{e}")).target;
            cm.add(&argmax_classes(&logits, k), &target);
            patches += 1;
        }
        assert_eq!(patches, ds.len(), "{name}: every patch counted");
        // --ignore_index -1, Python style: the last class.
        let (miou, acc) = cm.miou_acc(Some(k - 1));
        let (e_miou, e_acc) = (
            expected["mIoU"].as_f64().unwrap(),
            expected["accuracy"].as_f64().unwrap(),
        );
        println!("{name}: mIoU {miou} (expected {e_miou}), OA {acc} (expected {e_acc})");
        assert!(
            (miou - e_miou).abs() <= 1e-6,
            "{name}: mIoU {miou} vs {e_miou}"
        );
        assert!((acc - e_acc).abs() <= 1e-6, "{name}: OA {acc} vs {e_acc}");
    }
}

// ---------------------------------------------------------------- 3. end to end (CPU)

#[test]
fn train_then_evaluate_on_cpu() {
    let tmp = TmpDir::new("workflow", "e2e-cpu");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let res = tmp.0.join("res");
    let results = train(&train_opts(&data, &res, 3, true)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 1);
    let losses = check_layout(&res, 3);
    println!("train losses per epoch: {losses:?}");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "training loss does not decrease: {losses:?}"
    );
    // The numbers returned are the ones written.
    let (k, test) = &results[0];
    assert_eq!(*k, 1);
    assert_eq!(
        test_numbers(&res.join("Fold_1")),
        [test.accuracy, test.loss, test.miou]
    );
    assert!(
        !res.join("overall.json").exists(),
        "overall.json needs 5 folds"
    );

    // evaluate on the result folder: the same test numbers.
    let eval_dir = tmp.0.join("eval");
    let e = EvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: res.clone(),
        res_dir: eval_dir.clone(),
        fold: Some(1),
        batch_size: None,
        cpu: true,
        progress: false,
        keep_last_batch: false,
        max_memory: None,
    };
    evaluate(&e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        test_numbers(&eval_dir.join("Fold_1")),
        test_numbers(&res.join("Fold_1")),
        "evaluate vs training's test"
    );
    assert_eq!(
        read_json(&eval_dir.join("Fold_1/conf_mat.json")),
        read_json(&res.join("Fold_1/conf_mat.json"))
    );
}

/// All five rotations (one step each): `overall.json` from the summed test confusion matrices with row and
/// column 19 deleted (fractions), and `evaluate` over the five folds writes the same summary.
#[test]
fn five_folds_write_the_overall_summary() {
    let tmp = TmpDir::new("workflow", "five-folds");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let res = tmp.0.join("res");
    let mut o = train_opts(&data, &res, 1, true);
    o.run.fold = None;
    o.run.max_steps = Some(1);
    let results = train(&o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let mut sum = vec![0u64; 400];
    for k in 1..=5 {
        let cm = read_json(&res.join(format!("Fold_{k}/conf_mat.json")));
        for (t, row) in cm.as_array().unwrap().iter().enumerate() {
            for (p, c) in row.as_array().unwrap().iter().enumerate() {
                sum[t * 20 + p] += c.as_u64().unwrap();
            }
        }
    }
    let kept = |i: usize| i / 20 < 19 && i % 20 < 19;
    let trace: u64 = (0..19).map(|c| sum[c * 21]).sum();
    let total: u64 = (0..400).filter(|&i| kept(i)).map(|i| sum[i]).sum();
    let ov = read_json(&res.join("overall.json"));
    let acc = ov["Accuracy"].as_f64().expect("overall.json: Accuracy");
    assert!(
        (acc - trace as f64 / total as f64).abs() < 1e-12,
        "Accuracy {acc} vs {trace} / {total}"
    );
    let per = read_json(&res.join("per_class.json"));
    assert_eq!(per.as_object().map(|o| o.len()), Some(19), "classes 0..18");
    let e = EvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: res.clone(),
        res_dir: tmp.0.join("eval"),
        fold: None,
        batch_size: None,
        cpu: true,
        progress: false,
        keep_last_batch: false,
        max_memory: None,
    };
    evaluate(&e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read_json(&tmp.0.join("eval/overall.json")), ov);
}

// ---------------------------------------------------------------- 4. resume exactness

/// Runs `epochs` epochs into `res` (resuming when asked).
fn run(data: &Path, res: &Path, epochs: usize, resume: bool, cpu: bool) {
    let mut o = train_opts(data, res, epochs, cpu);
    o.run.resume = resume;
    train(&o).unwrap_or_else(|e| panic!("{e}"));
}

fn assert_same_run(got: &Path, want: &Path, what: &str) {
    assert_bit_identical(
        &last_state(got),
        &last_state(want),
        &format!("{what}: last.npz"),
    );
    let model = |r: &Path| read_npz(r.join("Fold_1/model.npz")).unwrap();
    assert_bit_identical(&model(got), &model(want), &format!("{what}: model.npz"));
    let log = |r: &Path| read_json(&r.join("Fold_1/trainlog.json"));
    assert_eq!(log(got), log(want), "{what}: trainlog.json");
    assert_eq!(
        test_numbers(&got.join("Fold_1")),
        test_numbers(&want.join("Fold_1")),
        "{what}: test metrics"
    );
}

fn resume_scenarios(tag: &str, cpu: bool) {
    let tmp = TmpDir::new("workflow", tag);
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let fold = |r: &Path| r.join("Fold_1");

    // A: 3 epochs uninterrupted.
    let a = tmp.0.join("a");
    run(&data, &a, 3, false, cpu);
    let sd = last_state(&a);
    assert!(
        sd.keys().any(|k| k.starts_with("optimizer.exp_avg_sq.")),
        "last.npz holds the Adam moments"
    );
    assert_eq!(
        sd.get("progress.epoch").unwrap().as_i64(),
        Some(&[3i64][..])
    );

    // B: 1 epoch, then resumed up to 3.
    let b = tmp.0.join("b");
    run(&data, &b, 1, false, cpu);
    let after_one = std::fs::read(fold(&b).join("last.npz")).unwrap();
    run(&data, &b, 3, true, cpu);
    assert_same_run(&b, &a, "1 + resume");

    // C: killed after epoch 2's trainlog.json was written, before its last.npz was: the log is one epoch
    // ahead, and stray temporary files are left.
    let c = tmp.0.join("c");
    run(&data, &c, 2, false, cpu);
    std::fs::write(fold(&c).join("last.npz"), &after_one).unwrap();
    std::fs::write(fold(&c).join("last.npz.tmp"), b"PK\x03\x04 half-written").unwrap();
    std::fs::write(fold(&c).join("trainlog.json.tmp"), b"{\"1\": {\"train_lo").unwrap();
    run(&data, &c, 3, true, cpu);
    assert_same_run(&c, &a, "killed between writes + resume");

    // D: trainlog.json damaged (last entry deleted, then truncated mid-file): last.npz is the reference.
    if cpu {
        let d = tmp.0.join("d");
        run(&data, &d, 2, false, cpu);
        let log_path = fold(&d).join("trainlog.json");
        let mut log = read_json(&log_path);
        log.as_object_mut().unwrap().remove("2");
        std::fs::write(&log_path, serde_json::to_string(&log).unwrap()).unwrap();
        run(&data, &d, 2, true, cpu);
        assert_eq!(
            read_json(&log_path),
            read_json(&fold(&b).join("trainlog.json"))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("3");
                    Value::Object(o)
                })
                .unwrap(),
            "an up-to-date run restores the log entries last.npz has"
        );
        let text = std::fs::read_to_string(&log_path).unwrap();
        std::fs::write(&log_path, &text[..text.len() / 2]).unwrap();
        run(&data, &d, 3, true, cpu);
        assert_same_run(&d, &a, "damaged trainlog.json + resume");
    }
}

#[test]
fn resume_is_bit_identical_on_cpu() {
    resume_scenarios("resume-cpu", true);
}

// ---------------------------------------------------------------- GPU smoke run

#[test]
fn gpu_training_smoke_run() {
    if gpu_or_skip("gpu_training_smoke_run").is_none() {
        return;
    }
    let tmp = TmpDir::new("workflow", "e2e-gpu");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let res = tmp.0.join("res");
    run(&data, &res, 2, false, false);
    let losses = check_layout(&res, 2);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert_eq!(read_json(&res.join("conf.json"))["device"], "gpu");
    // Resume on the GPU: 1 epoch, then resumed to 2, is bit-identical to the uninterrupted run.
    let b = tmp.0.join("b");
    run(&data, &b, 1, false, false);
    run(&data, &b, 2, true, false);
    assert_same_run(&b, &res, "GPU 1 + resume");
    // --precision mixed: last.npz holds the loss scaler's state (a power of two, GradScaler's keys), and
    // resuming is bit-identical too (the scale, the growth tracker and the device's step count restored).
    let mixed = |res: &Path, epochs: usize, resume: bool| {
        let mut o = train_opts(&data, res, epochs, false);
        o.run.resume = resume;
        o.run.precision = Precision::Mixed;
        train(&o).unwrap_or_else(|e| panic!("{e}"));
    };
    let m = tmp.0.join("m");
    mixed(&m, 2, false);
    let sd = last_state(&m);
    let scale = sd.get("scaler.scale").and_then(|e| e.as_f32()).unwrap()[0];
    assert_eq!(
        scale,
        2f32.powi(scale.log2().round() as i32),
        "scale {scale}"
    );
    let steps = sd.get("optimizer.step").and_then(|e| e.as_i64()).unwrap()[0];
    let tracker = sd
        .get("scaler._growth_tracker")
        .and_then(|e| e.as_i64())
        .unwrap()[0];
    assert!(
        tracker <= steps && steps > 0,
        "tracker {tracker}, steps {steps}"
    );
    let mb = tmp.0.join("mb");
    mixed(&mb, 1, false);
    mixed(&mb, 2, true);
    assert_same_run(&mb, &m, "GPU mixed 1 + resume");
}

// ---------------------------------------------------------------- 5. the command line

#[test]
fn cli_synth_train_evaluate() {
    let tmp = TmpDir::new("workflow", "cli");
    let (d, r, e) = (tmp.0.join("d"), tmp.0.join("r"), tmp.0.join("e"));
    let o = sitsgpu(&[
        &"synth",
        &"--out",
        &d,
        &"--patches",
        &"10",
        &"--size",
        &"16",
        &"--min-dates",
        &"4",
        &"--max-dates",
        &"6",
    ]);
    assert!(o.status.success(), "synth: {}", text(&o));
    let o = sitsgpu(&[
        &"train",
        &"--dataset_folder",
        &d,
        &"--res_dir",
        &r,
        &"--fold",
        &"1",
        &"--epochs",
        &"1",
        &"--batch_size",
        &"2",
        &"--encoder_widths",
        &"[8,8,8,16]",
        &"--decoder_widths",
        &"[8,8,8,16]",
        &"--out_conv",
        &"[8, 20]",
        &"--n_head",
        &"4",
        &"--d_model",
        &"16",
        &"--max_steps",
        &"3",
        &"--cpu",
    ]);
    assert!(o.status.success(), "train: {}", text(&o));
    check_layout(&r, 1);
    assert_eq!(read_json(&r.join("conf.json"))["device"], "cpu");
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &d,
        &"--weight_folder",
        &r,
        &"--res_dir",
        &e,
        &"--fold",
        &"1",
        &"--cpu",
    ]);
    assert!(o.status.success(), "evaluate: {}", text(&o));
    assert_eq!(
        test_numbers(&e.join("Fold_1")),
        test_numbers(&r.join("Fold_1")),
        "evaluate vs train's test"
    );
    // --precision mixed: the same checkpoint with its products on half-precision operands. The attention's
    // products move by about 2^-11 of their operands, so the test numbers stay within a few hundredths.
    let em = tmp.0.join("em");
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &d,
        &"--weight_folder",
        &r,
        &"--res_dir",
        &em,
        &"--fold",
        &"1",
        &"--cpu",
        &"--precision",
        &"mixed",
    ]);
    assert!(
        o.status.success(),
        "evaluate --precision mixed: {}",
        text(&o)
    );
    let (fp32, mixed) = (
        test_numbers(&e.join("Fold_1")),
        test_numbers(&em.join("Fold_1")),
    );
    for (f, m) in fp32.iter().zip(&mixed) {
        assert!(
            (f - m).abs() <= 0.02 * f.abs().max(1.0),
            "fp32 {fp32:?} vs mixed {mixed:?}"
        );
    }
    // Bad input: non-zero exit, the path named.
    let o = sitsgpu(&[
        &"train",
        &"--dataset_folder",
        &"/nonexistent",
        &"--res_dir",
        &tmp.0.join("r2"),
        &"--fold",
        &"1",
        &"--epochs",
        &"1",
        &"--cpu",
    ]);
    assert!(!o.status.success(), "train on /nonexistent: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent"),
        "stderr lacks the path: {}",
        text(&o)
    );
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &"/nonexistent",
        &"--weight_folder",
        &r,
        &"--res_dir",
        &tmp.0.join("e2"),
        &"--fold",
        &"1",
        &"--cpu",
    ]);
    assert!(
        !o.status.success(),
        "evaluate on /nonexistent: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent"),
        "stderr lacks the path: {}",
        text(&o)
    );
}

/// `train --mono_date --ref_date` records both in conf.json; `evaluate` and `predict` read them back, so the
/// mono-date model is evaluated on the date it was trained on (evaluate reproduces training's test numbers)
/// and predicts from that one date (attention over T = 1).
#[test]
fn mono_date_runs_are_evaluated_on_their_date() {
    let tmp = TmpDir::new("workflow", "mono");
    let (d, r, e, p) = (
        tmp.0.join("d"),
        tmp.0.join("r"),
        tmp.0.join("e"),
        tmp.0.join("p"),
    );
    write_pastis(&d, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let o = sitsgpu(&[
        &"train",
        &"--dataset_folder",
        &d,
        &"--res_dir",
        &r,
        &"--fold",
        &"1",
        &"--epochs",
        &"1",
        &"--max_steps",
        &"1",
        &"--batch_size",
        &"2",
        &"--encoder_widths",
        &"8,8,8,16",
        &"--decoder_widths",
        &"[8,8,8,16]",
        &"--out_conv",
        &"[8, 20]",
        &"--n_head",
        &"4",
        &"--d_model",
        &"16",
        &"--mono_date",
        &"2",
        &"--ref_date",
        &"2018-08-01",
        &"--device",
        &"cpu",
    ]);
    assert!(o.status.success(), "train: {}", text(&o));
    let conf = read_json(&r.join("conf.json"));
    assert_eq!(
        (&conf["mono_date"], &conf["ref_date"]),
        (&Value::from("2"), &Value::from("2018-08-01"))
    );
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &d,
        &"--weight_folder",
        &r,
        &"--res_dir",
        &e,
        &"--fold",
        &"1",
        &"--cpu",
    ]);
    assert!(o.status.success(), "evaluate: {}", text(&o));
    assert_eq!(
        test_numbers(&e.join("Fold_1")),
        test_numbers(&r.join("Fold_1")),
        "evaluate vs train's test"
    );
    let o = sitsgpu(&[
        &"predict",
        &"--dataset_folder",
        &d,
        &"--weights",
        &r.join("Fold_1/model.npz"),
        &"--folds",
        &"5",
        &"--out",
        &p,
        &"--save_attention",
        &"--cpu",
    ]);
    assert!(o.status.success(), "predict: {}", text(&o));
    let attn: Vec<_> = std::fs::read_dir(&p)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("attn_") && name.ends_with(".npy")
        })
        .collect();
    assert!(!attn.is_empty(), "no attention written");
    for a in attn {
        let shape = npy::read_f32(&a).unwrap().shape;
        assert_eq!(shape[1], 1, "{}: T = 1 with mono_date", a.display());
        // Its picture beside it: heads × dates.
        let png = a.with_extension("png");
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 1000),
            "{} missing",
            png.display()
        );
    }
}
