//! End-to-end tests of the pixel-set workflow (`train --task pixelset`, `evaluate`, `predict`; spec §2.5, §7.3,
//! §8.3) on synthetic Sentinel-Agri folders (`sitsgpu synth --format pixelset`):
//!
//! - a tiny PSE + L-TAE trained over every fold of a 3-fold split (CPU path): the whole output layout,
//!   `evaluate` on the result folder giving training's test numbers, `predict` with one checkpoint and with the
//!   k-fold ensemble;
//! - resuming after 1 epoch gives a bit-identical `last.npz` and the same `trainlog.json` as an uninterrupted
//!   run, with the random pixel draws and jitter on;
//! - an official `model.pth.tar` of the `pse_ltae_small` fixture in a train.py weight folder: `predict`
//!   reproduces the fixture's logits (reading the original pretrained-weight layout);
//! - the four models learn the synthetic classes (GPU when present, else the CPU path);
//! - the built binary: `synth --format pixelset`, `train --task pixelset` (on the GPU too, with its memory
//!   probe), `evaluate`, and clear errors.
//!
//! Run: `cargo test --test workflow_pixelset`.

mod common;
use common::{assert_success, fixtures_root, read_json, sitsgpu_command, TmpDir};

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sitsgpu::data::npy;
use sitsgpu::data::numpy_pickle::read_arrays;
use sitsgpu::data::state_dict::read_npz;
use sitsgpu::data::synthetic::pixelset::{write_pixelset, PixelSetSynthOptions};
use sitsgpu::data::torch_writer::write_torch_checkpoint;
use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::models::stclassifier::TemporalKind;
use sitsgpu::train::pixelset::predict::{predict, PixelSetPredictOptions};
use sitsgpu::train::pixelset::{
    evaluate, model_conf_from_flags, train, PixelSetEvaluateOptions, PixelSetTrainOptions,
};

fn synth(dir: &Path, parcels: usize) -> PathBuf {
    let data = dir.join("data");
    write_pixelset(
        &data,
        &PixelSetSynthOptions {
            parcels,
            classes: 4,
            seed: 3,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    data
}

/// A tiny PSE + L-TAE (a few thousand parameters).
fn tiny_model(kind: TemporalKind) -> Map<String, Value> {
    let mut explicit = json!({"mlp1": [10, 8, 16], "mlp2": [36, 16]});
    let extra = match kind {
        TemporalKind::Ltae => json!({"n_head": 2, "d_k": 4, "d_model": 16, "mlp3": [16, 16]}),
        TemporalKind::Tae => json!({"n_head": 2, "d_k": 4, "d_model": null, "mlp3": [32, 16]}),
        TemporalKind::Gru => json!({"hidden_dim": 16}),
        TemporalKind::TempCnn => json!({"nker": [8], "mlp3": [16]}),
    };
    explicit
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut m =
        model_conf_from_flags(kind, None, explicit.as_object().unwrap().clone(), 20).unwrap();
    m.insert("mlp4".into(), json!([16, 20]));
    m
}

fn opts(data: &Path, res: &Path, epochs: usize, cpu: bool) -> PixelSetTrainOptions {
    let mut o = PixelSetTrainOptions::new(data, res);
    o.model = tiny_model(TemporalKind::Ltae);
    o.kfold = 3;
    o.run.epochs = epochs;
    o.run.batch_size = 16;
    o.run.lr = 0.01;
    o.run.cpu = cpu;
    o.run.progress = false;
    o
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn train_evaluate_predict_on_every_fold() {
    let tmp = TmpDir::new("pixelset-wf", "all");
    let data = synth(&tmp.0, 60);
    let res = tmp.0.join("res");
    let mut o = opts(&data, &res, 2, true);
    o.deterministic_eval = true;
    let results = train(&o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 3);
    let conf = read_json(&res.join("conf.json"));
    assert!(conf["N_params"].as_u64().unwrap() > 1000);
    assert_eq!(conf["model"], "pse_ltae");
    let mut tested = 0;
    for k in 1..=3 {
        let f = res.join(format!("Fold_{k}"));
        for name in [
            "trainlog.json",
            "model.npz",
            "last.npz",
            "test_metrics.json",
            "conf_mat.pkl",
            "conf_mat.npy",
            "per_class.json",
            "curves.png",
        ] {
            assert!(f.join(name).exists(), "Fold_{k}/{name}");
        }
        let log = read_json(&f.join("trainlog.json"));
        let keys: Vec<&String> = log["2"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "train_loss",
                "train_accuracy",
                "train_IoU",
                "val_accuracy",
                "val_loss",
                "val_IoU"
            ]
        );
        let tm = read_json(&f.join("test_metrics.json"));
        let keys: Vec<&String> = tm.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["test_accuracy", "test_loss", "test_IoU"]);
        // The pickled confusion matrix (as the original writes it) equals the .npy, and counts the test fold.
        let pkl = read_arrays(f.join("conf_mat.pkl")).unwrap();
        let npy = npy::read_f32(f.join("conf_mat.npy")).unwrap();
        assert_eq!(pkl[0].shape, vec![20, 20]);
        tested += pkl[0].data.iter().sum::<f64>() as usize;
        assert_eq!(
            pkl[0].data,
            npy.data.iter().map(|&v| v as f64).collect::<Vec<_>>()
        );
    }
    // Every parcel is tested exactly once over the folds.
    let ds = sitsgpu::train::pixelset::open_dataset(&data, 64, true, None, false).unwrap();
    assert_eq!(tested, ds.len());
    let ov = read_json(&res.join("overall.json"));
    assert!(ov["MACRO_IoU"].is_number() && ov["Accuracy"].is_number());
    // evaluate on the result folder: the same (deterministic) test numbers as training's test.
    let ev = tmp.0.join("eval");
    let got = evaluate(&PixelSetEvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: res.clone(),
        res_dir: ev.clone(),
        fold: None,
        batch_size: None,
        original_sampling: false,
        cpu: true,
        progress: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for ((k, a), (_, b)) in got.iter().zip(&results) {
        assert_eq!(a.accuracy, b.accuracy, "fold {k}");
        assert!(
            (a.loss - b.loss).abs() < 1e-9,
            "fold {k}: {} vs {}",
            a.loss,
            b.loss
        );
    }
    assert_eq!(
        file_bytes(&ev.join("Fold_2/conf_mat.npy")),
        file_bytes(&res.join("Fold_2/conf_mat.npy"))
    );
    // predict: one checkpoint, then the 3-fold ensemble (mean log-probabilities).
    let out1 = tmp.0.join("pred1");
    let n = predict(&PixelSetPredictOptions {
        dataset_folder: data.clone(),
        weights: Some(res.join("Fold_1/model.npz")),
        weight_folder: None,
        config: None,
        batch_size: 8,
        out: out1.clone(),
        save_attention: true,
        cpu: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let preds = read_json(&out1.join("predictions.json"));
    assert_eq!(preds.as_object().unwrap().len(), n);
    let attn = npy::read_f32(out1.join("attention.npy")).unwrap();
    assert_eq!(attn.shape, vec![n, 2, 24]);
    assert!(
        std::fs::metadata(out1.join("attention.png")).is_ok_and(|m| m.len() > 1000),
        "attention.png: the heads × dates picture"
    );
    let out3 = tmp.0.join("pred3");
    predict(&PixelSetPredictOptions {
        dataset_folder: data,
        weights: None,
        weight_folder: Some(res),
        config: None,
        batch_size: 8,
        out: out3.clone(),
        save_attention: false,
        cpu: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let lp = npy::read_f32(out3.join("logits.npy")).unwrap();
    for row in lp.data.chunks(20) {
        // A mean of log-probabilities: exp sums to at most 1 (Jensen), and is positive.
        let s: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        assert!(s > 0.0 && s <= 1.0 + 1e-5, "{s}");
    }
}

#[test]
fn resume_is_bit_identical_with_random_draws() {
    let tmp = TmpDir::new("pixelset-wf", "resume");
    let data = synth(&tmp.0, 45);
    let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
    let mut full = opts(&data, &a, 2, true);
    full.run.fold = Some(2);
    train(&full).unwrap_or_else(|e| panic!("{e}"));
    let mut first = opts(&data, &b, 1, true);
    first.run.fold = Some(2);
    train(&first).unwrap_or_else(|e| panic!("{e}"));
    let mut rest = opts(&data, &b, 2, true);
    rest.run.fold = Some(2);
    rest.run.resume = true;
    train(&rest).unwrap_or_else(|e| panic!("{e}"));
    for f in ["last.npz", "model.npz", "conf_mat.npy"] {
        assert_eq!(
            read_npz_or_bytes(&a.join("Fold_2").join(f)),
            read_npz_or_bytes(&b.join("Fold_2").join(f)),
            "{f}"
        );
    }
    assert_eq!(
        read_json(&a.join("Fold_2/trainlog.json")),
        read_json(&b.join("Fold_2/trainlog.json"))
    );
}

/// The arrays of an .npz (zip timestamps aside), or the bytes of another file.
fn read_npz_or_bytes(p: &Path) -> Vec<u8> {
    if p.extension().and_then(|e| e.to_str()) == Some("npz") {
        let sd = read_npz(p).unwrap();
        let mut out = Vec::new();
        for (k, e) in sd.iter() {
            out.extend(k.as_bytes());
            out.extend(format!("{:?}{:?}", e.shape, e.values).as_bytes());
        }
        out
    } else {
        file_bytes(p)
    }
}

#[test]
fn an_original_checkpoint_reproduces_the_fixture_logits() {
    let case = fixtures_root().join("pse_ltae_small");
    if !case.join("weights.npz").exists() {
        eprintln!(
            "!!!!! SKIPPED: no pse_ltae_small fixture at {} !!!!!",
            case.display()
        );
        return;
    }
    // A weight folder as train.py leaves it: conf.json (its own keys) + Fold_1/model.pth.tar.
    let tmp = TmpDir::new("pixelset-wf", "official");
    let wf = tmp.0.join("weights");
    std::fs::create_dir_all(wf.join("Fold_1")).unwrap();
    let mut conf = read_json(&case.join("conf.json"));
    conf.as_object_mut().unwrap().remove("reference");
    std::fs::write(wf.join("conf.json"), conf.to_string()).unwrap();
    let sd = read_npz(case.join("weights.npz")).unwrap();
    write_torch_checkpoint(wf.join("Fold_1/model.pth.tar"), &sd, Some(7)).unwrap();
    let data = case.join("../datasets/s2agri_tiny");
    let mut devices = vec![true];
    if gpu_or_skip("an_original_checkpoint_reproduces_the_fixture_logits (GPU)").is_some() {
        devices.push(false);
    }
    for cpu in devices {
        let out = tmp.0.join(format!("pred-{cpu}"));
        let n = predict(&PixelSetPredictOptions {
            dataset_folder: data.clone(),
            weights: Some(wf.join("Fold_1/model.pth.tar")),
            weight_folder: None,
            config: None,
            batch_size: 4,
            out: out.clone(),
            save_attention: false,
            cpu,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 6);
        let ids = npy::read_f32(out.join("ids.npy")).unwrap().data;
        let logits = npy::read_f32(out.join("logits.npy")).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let e = npy::read_f32(case.join(format!("expected/logits_{id}.npy"))).unwrap();
            let got = &logits.data[i * 20..(i + 1) * 20];
            let scale = e.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in got.iter().zip(&e.data) {
                // The fixtures README's eval tolerance.
                assert!(
                    (a - b).abs() <= 1e-6 + 2e-5 * scale,
                    "parcel {id}: {a} vs {b} (cpu {cpu})"
                );
            }
        }
    }
}

#[test]
fn the_four_models_learn_the_synthetic_classes() {
    // 4 classes among 20 outputs: chance is about 25 % OA. Trained 6 epochs on about 70 parcels (fold 1 of 5),
    // on the CPU reference path (faster than lavapipe at these widths; the GPU kernels of all four models are
    // checked against PyTorch in tests/pytorch_parity/).
    let tmp = TmpDir::new("pixelset-wf", "learn");
    let data = synth(&tmp.0, 120);
    let cpu = true;
    for kind in [
        TemporalKind::Ltae,
        TemporalKind::Tae,
        TemporalKind::Gru,
        TemporalKind::TempCnn,
    ] {
        let res = tmp.0.join(kind.name());
        let mut o = opts(&data, &res, 6, cpu);
        o.model = tiny_model(kind);
        o.kfold = 5;
        o.run.fold = Some(1);
        o.deterministic_eval = true;
        let r = train(&o).unwrap_or_else(|e| panic!("{e}"));
        let log = read_json(&res.join("Fold_1/trainlog.json"));
        let loss = |e: &str| log[e]["train_loss"].as_f64().unwrap();
        assert!(
            loss("6") < loss("1"),
            "{kind:?}: training loss {} → {}",
            loss("1"),
            loss("6")
        );
        assert!(
            r[0].1.accuracy > 50.0,
            "{kind:?}: test OA {:.1} %",
            r[0].1.accuracy
        );
    }
}

#[test]
fn command_line() {
    let tmp = TmpDir::new("pixelset-wf", "cli");
    let data = tmp.0.join("data");
    let out = sitsgpu_command()
        .args(["synth", "--format", "pixelset", "--parcels", "40", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert_success(&out);
    let res = tmp.0.join("res");
    let run = |extra: &[&str]| {
        let mut c = sitsgpu_command();
        c.args(["train", "--task", "pixelset", "--dataset_folder"])
            .arg(&data)
            .arg("--res_dir")
            .arg(&res)
            .args([
                "--epochs",
                "1",
                "--fold",
                "1",
                "--batch_size",
                "16",
                "--cpu",
            ])
            .args(extra);
        c.output().unwrap()
    };
    let out = run(&["--variant", "9k", "--max_steps", "1"]);
    assert_success(&out);
    assert_eq!(read_json(&res.join("conf.json"))["N_params"], 39_956);
    // evaluate recognises the pixel-set weight folder from its conf.json.
    let out = sitsgpu_command()
        .args(["evaluate", "--cpu", "--fold", "1", "--dataset_folder"])
        .arg(&data)
        .arg("--weight_folder")
        .arg(&res)
        .arg("--res_dir")
        .arg(tmp.0.join("ev"))
        .output()
        .unwrap();
    assert_success(&out);
    assert!(tmp.0.join("ev/Fold_1/test_metrics.json").exists());
    // convert-weights checks a pixel-set state dict against the conf.json beside it, both ways.
    let pth = tmp.0.join("export/Fold_1/model.pth.tar");
    let out = sitsgpu_command()
        .args(["convert-weights", "--to-torch", "--checkpoint"])
        .arg(res.join("Fold_1/model.npz"))
        .arg("--out")
        .arg(&pth)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("checked"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = tmp.0.join("back.npz");
    let out = sitsgpu_command()
        .args(["convert-weights", "--checkpoint"])
        .arg(&pth)
        .arg("--config")
        .arg(res.join("conf.json"))
        .arg("--out")
        .arg(&back)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        read_npz_or_bytes(&back),
        read_npz_or_bytes(&res.join("Fold_1/model.npz"))
    );
    // GRU with bespoke positions crashes in the original: refused with the reason.
    let out = run(&["--gru", "--positions", "bespoke"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("positions"), "{err}");
    // On a GPU the memory planner probes the default model's training pass before the first epoch, from 2
    // parcels: its decoder's train-mode BatchNorm1d has no statistics for one (a probe of one panicked).
    if gpu_or_skip("pixel-set training on the GPU").is_some() {
        let out = sitsgpu_command()
            .args(["train", "--task", "pixelset", "--dataset_folder"])
            .arg(&data)
            .arg("--res_dir")
            .arg(tmp.0.join("gpu"))
            .args(["--epochs", "1", "--fold", "1", "--batch_size", "16"])
            .args(["--max_steps", "1"])
            .output()
            .unwrap();
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("GPU memory: a batch of 16"), "{text}");
    }
    // --batch_size 1 cannot train them: a clear error before anything runs (PyTorch raises in the step).
    let out = sitsgpu_command()
        .args(["train", "--task", "pixelset", "--cpu", "--batch_size", "1"])
        .arg("--dataset_folder")
        .arg(&data)
        .arg("--res_dir")
        .arg(tmp.0.join("b1"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at least 2 parcels"),
        "{err}"
    );
    // A pixel-set flag without --task pixelset, two model flags, a missing folder.
    let out = sitsgpu_command()
        .args(["train", "--npixel", "32", "--dataset_folder", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--task pixelset"));
    let out = run(&["--tae", "--tcnn"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one"));
    let out = sitsgpu_command()
        .args(["train", "--task", "pixelset", "--cpu", "--dataset_folder"])
        .arg(tmp.0.join("nowhere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nowhere"), "{err}");
}
