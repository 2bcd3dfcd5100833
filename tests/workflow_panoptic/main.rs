//! End-to-end tests of the panoptic workflow (U-TAE + PaPs; spec §6, §8.2, §8.4):
//!
//! - a tiny U-TAE + PaPs trained on a synthetic PASTIS folder on the CPU path (warm-up, validation with
//!   threshold tuning, best checkpoint, test): the whole output layout (conf.json with train_panoptic.py's
//!   keys, trainlog.json, model.npz with its `min_confidence` buffer, test_metrics.json with
//!   test_panoptic.py's keys, test_tables.npy 18 × 4, curves.png); `evaluate` on the result folder gives the
//!   test numbers of training's test; `predict` writes instance maps and pictures;
//! - `--resume` after 1 epoch gives a bit-identical `last.npz` and the same trainlog as an uninterrupted run, on
//!   the CPU path and on the GPU (skipped loudly without an adapter);
//! - U-ConvLSTM + PaPs (a small RecUNet backbone) trained 2 epochs, evaluated and predicted on the CPU path
//!   and on the GPU (skipped loudly without an adapter): its conf.json (`backbone` uconvlstm, the RecUNet's
//!   `model_kwargs`) rebuilds it; `train --task panoptic --backbone uconvlstm` (get_model's hard-coded RecUNet,
//!   1,692,953 parameters) on the CLI;
//! - the project's `uconvlstm_paps_small` case (tests/data/fixtures) as a weight folder: the weights as an
//!   official `model.pth.tar` through `convert-weights` (the original's state_dict names), `predict` reproduces
//!   its panoptic maps exactly;
//! - `train --task panoptic` on the fixtures' PASTIS folder with the `utae_paps_small` flags (the fixture's
//!   parameter count in conf.json);
//! - the binary on the fixtures' dataset with the `utae_paps_small` weights as a weight folder (the
//!   fixture's own conf.json; the weights also as official `model.pth.tar`, zip and legacy, through
//!   `convert-weights` and directly): `predict` reproduces the fixture's panoptic maps exactly, and `evaluate` runs
//!   test_panoptic.py's loop on it; the CLI (`train --task panoptic`, `demo --task panoptic`) and its errors.
//!
//! Run: `cargo test --test workflow_panoptic`.

#[path = "../common/mod.rs"]
mod common;
mod uconvlstm;
use common::{
    assert_bit_identical, fixtures_root, project_fixtures_root, read_json, sitsgpu, sitsgpu_err,
    text, TmpDir,
};
use sitsgpu::engine::testing::gpu_or_skip;

use std::path::Path;

use sitsgpu::data::npy;
use sitsgpu::data::pastis::PastisOptions;
use sitsgpu::data::state_dict::read_npz;
use sitsgpu::data::synthetic::{write_pastis, SynthOptions};
use sitsgpu::data::torch_writer::{write_torch_checkpoint, write_torch_checkpoint_legacy};
use sitsgpu::models::paps::loss::PapsLossConfig;
use sitsgpu::models::paps::{BackboneConfig, PapsConfig};
use sitsgpu::models::registry::Task;
use sitsgpu::models::utae::UTaeConfig;
use sitsgpu::train::fold_loop::RunOptions;
use sitsgpu::train::panoptic::{self, PanopticOptions};
use sitsgpu::train::semantic::EvaluateOptions;

fn tiny_synth() -> SynthOptions {
    SynthOptions {
        patches: 10,
        size: 16,
        min_dates: 4,
        max_dates: 6,
        ..SynthOptions::default()
    }
}

fn opts(data: &Path, res: &Path, epochs: usize) -> PanopticOptions {
    PanopticOptions {
        backbone: UTaeConfig {
            encoder_widths: vec![8, 8, 8, 16],
            decoder_widths: vec![8, 8, 8, 16],
            out_conv: vec![8, 20],
            n_head: 4,
            d_model: 16,
            ..UTaeConfig::default()
        }
        .into(),
        paps: PapsConfig {
            shape_size: 8,
            ..PapsConfig::default()
        },
        loss: PapsLossConfig::default(),
        background_label: 0,
        run: RunOptions {
            epochs,
            batch_size: 2,
            lr: 0.01,
            fold: Some(1),
            cpu: true,
            progress: false,
            ..RunOptions::new(data, res)
        },
        pad_value: 0.0,
        val_every: 1,
        val_after: 0,
        warmup: 1,
        autotune: true,
        supmax: true,
        val_metrics_only: false,
        ref_date: PastisOptions::default().ref_date,
        mono_date: None,
        keep_last_batch: false,
    }
}

/// test_panoptic.py's numbers without the wall-clock time.
fn test_numbers(fold_dir: &Path) -> Vec<f64> {
    let m = read_json(&fold_dir.join("test_metrics.json"));
    [
        "test_loss",
        "test_center_loss",
        "test_size_loss",
        "test_shape_loss",
        "test_class_loss",
        "test_SQ",
        "test_RQ",
        "test_PQ",
    ]
    .map(|k| {
        m[k].as_f64()
            .unwrap_or_else(|| panic!("{}: no number {k}: {m}", fold_dir.display()))
    })
    .to_vec()
}

#[test]
fn train_evaluate_predict_and_resume_on_cpu() {
    let tmp = TmpDir::new("workflow_panoptic", "cpu");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let a = tmp.0.join("a");
    let results = panoptic::train(&opts(&data, &a, 3)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 1);

    // conf.json: train_panoptic.py's keys, recognised as a panoptic run's.
    let conf = read_json(&a.join("conf.json"));
    for k in [
        "shape_size",
        "mask_conv",
        "supmax",
        "autotune",
        "warmup",
        "min_confidence",
        "void_label",
    ] {
        assert!(conf.get(k).is_some(), "conf.json: no {k}");
    }
    assert_eq!(Task::detect(&conf), Some(Task::Panoptic));
    let fold = a.join("Fold_1");
    for f in [
        "model.npz",
        "last.npz",
        "curves.png",
        "test_tables.npy",
        "trainlog.json",
    ] {
        assert!(fold.join(f).is_file(), "missing {f}");
    }
    // Warm-up epoch 1: center loss only, no metrics, no validation; epochs 2, 3: both.
    let log = read_json(&fold.join("trainlog.json"));
    assert_eq!(log["1"]["train_size_loss"], 0.0, "{log}");
    assert!(log["1"].get("val_PQ").is_none() && log["1"].get("train_PQ").is_none());
    for e in ["2", "3"] {
        for k in [
            "train_loss",
            "train_PQ",
            "val_loss",
            "val_SQ",
            "val_RQ",
            "val_PQ",
        ] {
            assert!(log[e].get(k).is_some(), "trainlog epoch {e}: no {k}: {log}");
        }
        assert!(log[e]["train_size_loss"].as_f64().unwrap() > 0.0);
    }
    let model = read_npz(fold.join("model.npz")).unwrap();
    assert!(model.get("min_confidence").is_some(), "the buffer is saved");
    let table = npy::read_f32(fold.join("test_tables.npy")).unwrap();
    assert_eq!(table.shape, vec![18, 4]);
    let got = test_numbers(&fold);
    assert!(got[..5].iter().all(|v| v.is_finite()), "{got:?}");

    // evaluate on the result folder = training's test.
    let e = tmp.0.join("eval");
    let ev = EvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: a.clone(),
        res_dir: e.clone(),
        fold: Some(1),
        batch_size: None,
        cpu: true,
        progress: false,
        keep_last_batch: false,
        max_memory: None,
    };
    panoptic::evaluate::evaluate(&ev).unwrap_or_else(|e| panic!("{e}"));
    let same = |x: &[f64], y: &[f64]| {
        x.iter()
            .zip(y)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
    };
    assert!(
        same(&test_numbers(&e.join("Fold_1")), &got),
        "evaluate vs train's test"
    );
    assert_eq!(
        std::fs::read(e.join("Fold_1/test_tables.npy")).unwrap(),
        std::fs::read(fold.join("test_tables.npy")).unwrap()
    );

    // Resume: 1 epoch, then resumed to 3, is bit-identical to the uninterrupted run.
    let b = tmp.0.join("b");
    panoptic::train(&opts(&data, &b, 1)).unwrap_or_else(|e| panic!("{e}"));
    let mut o = opts(&data, &b, 3);
    o.run.resume = true;
    panoptic::train(&o).unwrap_or_else(|e| panic!("{e}"));
    let last = |r: &Path| read_npz(r.join("Fold_1/last.npz")).unwrap();
    assert_bit_identical(&last(&b), &last(&a), "1 + resume: last.npz");
    assert_eq!(
        read_json(&b.join("Fold_1/trainlog.json")),
        read_json(&fold.join("trainlog.json"))
    );
    assert!(same(&test_numbers(&b.join("Fold_1")), &got));

    // predict (the binary): instance and class maps and a picture per patch.
    let p = tmp.0.join("pred");
    let o = sitsgpu(&[
        &"predict",
        &"--dataset_folder",
        &data,
        &"--weights",
        &fold.join("model.npz"),
        &"--folds",
        &"5",
        &"--out",
        &p,
        &"--cpu",
    ]);
    assert!(o.status.success(), "predict: {}", text(&o));
    let names: Vec<String> = std::fs::read_dir(&p)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let n = |prefix: &str| names.iter().filter(|f| f.starts_with(prefix)).count();
    assert!(n("instance_") > 0, "{names:?}");
    assert_eq!(n("instance_"), n("semantic_"));
    assert_eq!(n("instance_"), n("panoptic_"));
}

/// The instance and class maps `predict` wrote in `out` equal the fixture's `pano_instance_<ID>` and
/// `pano_semantic_<ID>` (integers: exactly).
fn check_fixture_maps(case: &Path, out: &Path) {
    let mut checked = 0;
    for f in std::fs::read_dir(case.join("expected")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("pano_instance_")
            .and_then(|s| s.strip_suffix(".npy"))
        else {
            continue;
        };
        let want = npy::read_f32(case.join("expected").join(&name))
            .unwrap()
            .data;
        let got = npy::read_f32(out.join(format!("instance_{id}.npy")))
            .unwrap()
            .data;
        assert_eq!(got, want, "instance map of patch {id}");
        let want = npy::read_f32(case.join(format!("expected/pano_semantic_{id}.npy")))
            .unwrap()
            .data;
        let got = npy::read_f32(out.join(format!("semantic_{id}.npy")))
            .unwrap()
            .data;
        assert_eq!(got, want, "class map of patch {id}");
        checked += 1;
    }
    assert!(checked > 0, "no pano_instance_<ID>.npy in the fixture");
}

/// The fixture's dataset and `utae_paps_small` weights as an official weight folder (its conf.json, the
/// weights as Fold_1/model.npz): `predict` with the fixture's batching reproduces its panoptic maps exactly.
#[test]
fn predict_reproduces_the_fixture_maps() {
    let case = fixtures_root().join("utae_paps_small");
    if !case.join("weights.npz").exists() {
        panic!(
            "fixture utae_paps_small missing under {}",
            fixtures_root().display()
        );
    }
    let tmp = TmpDir::new("workflow_panoptic", "fixture");
    let wf = tmp.0.join("weights");
    std::fs::create_dir_all(wf.join("Fold_1")).unwrap();
    std::fs::copy(case.join("conf.json"), wf.join("conf.json")).unwrap();
    std::fs::copy(case.join("weights.npz"), wf.join("Fold_1/model.npz")).unwrap();
    let data = case.join("../datasets/pastis_tiny");
    // The official checkpoint formats (torch.save zip and legacy): convert-weights reads them back, checked
    // against the conf.json's model, and predict reads them directly.
    let sd = read_npz(case.join("weights.npz")).unwrap();
    let (zip, legacy) = (
        wf.join("Fold_1/model.pth.tar"),
        wf.join("legacy/model.pth.tar"),
    );
    std::fs::create_dir_all(wf.join("legacy")).unwrap();
    write_torch_checkpoint(&zip, &sd, Some(7)).unwrap();
    write_torch_checkpoint_legacy(&legacy, &sd, Some(7)).unwrap();
    let back = tmp.0.join("back.npz");
    let o = sitsgpu(&[
        &"convert-weights",
        &"--checkpoint",
        &legacy,
        &"--out",
        &back,
        &"--config",
        &wf.join("conf.json"),
    ]);
    assert!(o.status.success(), "convert-weights: {}", text(&o));
    assert_bit_identical(&read_npz(&back).unwrap(), &sd, "legacy pth.tar -> npz");
    for (tag, weights) in [
        ("npz", wf.join("Fold_1/model.npz")),
        ("zip", zip),
        ("legacy", legacy),
    ] {
        let out = tmp.0.join(format!("pred-{tag}"));
        let o = sitsgpu(&[
            &"predict",
            &"--dataset_folder",
            &data,
            &"--weights",
            &weights,
            &"--config",
            &wf.join("conf.json"),
            &"--batch_size",
            &"2",
            &"--out",
            &out,
            &"--cpu",
        ]);
        assert!(o.status.success(), "predict ({tag}): {}", text(&o));
        check_fixture_maps(&case, &out);
    }
    // test_panoptic.py's loop on the weight folder: rotation 4 tests fold 3 (one patch, batches of 1).
    let e = tmp.0.join("eval");
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &data,
        &"--weight_folder",
        &wf,
        &"--res_dir",
        &e,
        &"--fold",
        &"4",
        &"--batch_size",
        &"1",
        &"--device",
        &"cpu",
    ]);
    // The fixture's folder holds Fold_1 only: a missing checkpoint is an error naming it ...
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Fold_4"),
        "{}",
        text(&o)
    );
    // ... and with it the fold is evaluated.
    std::fs::create_dir_all(wf.join("Fold_4")).unwrap();
    std::fs::copy(case.join("weights.npz"), wf.join("Fold_4/model.npz")).unwrap();
    let o = sitsgpu(&[
        &"evaluate",
        &"--dataset_folder",
        &data,
        &"--weight_folder",
        &wf,
        &"--res_dir",
        &e,
        &"--fold",
        &"4",
        &"--batch_size",
        &"1",
        &"--device",
        &"cpu",
    ]);
    assert!(o.status.success(), "evaluate: {}", text(&o));
    assert_eq!(test_numbers(&e.join("Fold_4")).len(), 8);
    let table = npy::read_f32(e.join("Fold_4/test_tables.npy")).unwrap();
    assert_eq!(table.shape, vec![18, 4]);
}

#[test]
fn cli_train_and_its_errors() {
    let tmp = TmpDir::new("workflow_panoptic", "cli");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let res = tmp.0.join("res");
    let small: [&dyn AsRef<std::ffi::OsStr>; 12] = [
        &"--encoder_widths",
        &"[8,8,8,16]",
        &"--decoder_widths",
        &"[8,8,8,16]",
        &"--out_conv",
        &"[8,20]",
        &"--n_head",
        &"4",
        &"--d_model",
        &"16",
        &"--shape_size",
        &"4",
    ];
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"train",
        &"--task",
        &"panoptic",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--fold",
        &"1",
        &"--epochs",
        &"2",
        &"--warmup",
        &"1",
        &"--val_after",
        &"0",
        &"--val_every",
        &"1",
        &"--batch_size",
        &"2",
        &"--cpu",
    ];
    args.extend(small);
    let o = sitsgpu(&args);
    assert!(o.status.success(), "train --task panoptic: {}", text(&o));
    let conf = read_json(&res.join("conf.json"));
    assert_eq!(
        (conf["shape_size"].as_u64(), conf["lr"].as_f64()),
        (Some(4), Some(0.01))
    );
    assert!(res.join("Fold_1/test_tables.npy").is_file());

    // A panoptic flag to the semantic task, a semantic weight folder to the panoptic task.
    let e = sitsgpu_err(&[
        &"train",
        &"--dataset_folder",
        &data,
        &"--shape_size",
        &"8",
        &"--cpu",
    ]);
    assert!(e.contains("--task panoptic"), "{e}");
    let sem = tmp.0.join("sem");
    std::fs::create_dir_all(sem.join("Fold_1")).unwrap();
    std::fs::write(
        sem.join("conf.json"),
        r#"{"model": "utae", "encoder_widths": [8, 8, 8, 16]}"#,
    )
    .unwrap();
    let e = sitsgpu_err(&[
        &"evaluate",
        &"--dataset_folder",
        &data,
        &"--weight_folder",
        &sem,
        &"--task",
        &"panoptic",
        &"--cpu",
    ]);
    assert!(e.contains("conf.json") && e.contains("semantic"), "{e}");
    // Panoptic weights read as the semantic task's (no --task: the conf.json says panoptic).
    let e = sitsgpu_err(&[
        &"evaluate",
        &"--dataset_folder",
        &data,
        &"--weight_folder",
        &res,
        &"--task",
        &"semantic",
        &"--cpu",
    ]);
    assert!(e.contains("conf.json") && e.contains("panoptic"), "{e}");
}

#[test]
fn cli_demo_panoptic() {
    let tmp = TmpDir::new("workflow_panoptic", "demo");
    let dir = tmp.0.join("demo");
    let o = sitsgpu(&[
        &"demo",
        &"--task",
        &"panoptic",
        &"--dir",
        &dir,
        &"--epochs",
        &"2",
        &"--cpu",
    ]);
    assert!(o.status.success(), "demo --task panoptic: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("panoptic demo done") && out.contains("PQ"),
        "{out}"
    );
    let res = dir.join("results");
    for f in [
        "Fold_1/curves.png",
        "Fold_1/model.npz",
        "eval/Fold_1/test_tables.npy",
    ] {
        assert!(res.join(f).is_file(), "missing {f}");
    }
    let pictures = std::fs::read_dir(res.join("predict"))
        .unwrap()
        .filter(|f| {
            let name = f.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("panoptic_")
        })
        .count();
    assert!(pictures > 0, "no panoptic_<ID>.png");
    let e = common::sitsgpu_err(&[&"demo", &"--task", &"pixelset", &"--dir", &dir]);
    assert!(e.contains("semantic or panoptic"), "{e}");
}

/// On the GPU (skipped loudly without an adapter): 2 epochs, and 1 epoch then `--resume` to 2, bit-identical.
#[test]
fn gpu_smoke_run_and_resume() {
    if gpu_or_skip("gpu_smoke_run_and_resume").is_none() {
        return;
    }
    let tmp = TmpDir::new("workflow_panoptic", "gpu");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let gpu = |res: &Path, epochs: usize, resume: bool| {
        let mut o = opts(&data, res, epochs);
        o.run.cpu = false;
        o.run.resume = resume;
        panoptic::train(&o).unwrap_or_else(|e| panic!("{e}"));
    };
    let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
    gpu(&a, 2, false);
    assert_eq!(read_json(&a.join("conf.json"))["device"], "gpu");
    let numbers = test_numbers(&a.join("Fold_1"));
    assert!(numbers[..5].iter().all(|v| v.is_finite()), "{numbers:?}");
    gpu(&b, 1, false);
    gpu(&b, 2, true);
    let last = |r: &Path| read_npz(r.join("Fold_1/last.npz")).unwrap();
    assert_bit_identical(&last(&b), &last(&a), "GPU 1 + resume: last.npz");
    assert_eq!(
        read_json(&b.join("Fold_1/trainlog.json")),
        read_json(&a.join("Fold_1/trainlog.json"))
    );
}

/// `train --task panoptic` on the fixtures' PASTIS folder with the utae_paps_small fixture's flags (rotation 4:
/// the folder has folds 1..4), one optimiser step per epoch.
#[test]
fn cli_train_on_the_fixture_dataset() {
    let data = fixtures_root().join("datasets/pastis_tiny");
    assert!(
        data.join("metadata.geojson").exists(),
        "fixtures missing under {}",
        fixtures_root().display()
    );
    let tmp = TmpDir::new("workflow_panoptic", "fixture-train");
    let res = tmp.0.join("res");
    let o = sitsgpu(&[
        &"train",
        &"--task",
        &"panoptic",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--fold",
        &"4",
        &"--batch_size",
        &"1",
        &"--epochs",
        &"2",
        &"--max_steps",
        &"2",
        &"--warmup",
        &"1",
        &"--val_every",
        &"1",
        &"--val_after",
        &"0",
        &"--encoder_widths",
        &"[8,12,16,20]",
        &"--decoder_widths",
        &"[4,8,12,20]",
        &"--out_conv",
        &"[8,20]",
        &"--n_head",
        &"4",
        &"--d_model",
        &"24",
        &"--d_k",
        &"4",
        &"--shape_size",
        &"8",
        &"--device",
        &"cpu",
    ]);
    assert!(o.status.success(), "train: {}", text(&o));
    // The fixture's parameter count (conf.json N_params of utae_paps_small: 49,877).
    let want = read_json(&fixtures_root().join("utae_paps_small/conf.json"))["N_params"].clone();
    assert_eq!(read_json(&res.join("conf.json"))["N_params"], want);
    assert!(res.join("Fold_4/test_metrics.json").is_file());
    assert!(res.join("Fold_4/test_tables.npy").is_file());
}
