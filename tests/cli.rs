//! End-to-end tests of the `sitsgpu` binary (run as a subprocess, as a user would):
//! - `predict` reproduces the fixtures' expected logits, attention masks and class maps for every `semantic` case
//!   of `$SITSGPU_FIXTURES/manifest.json` (default `../shared/fixtures`) and of the project's own cases
//!   (`tests/data/fixtures`: the baselines), whatever its conf.json model (U-TAE or a baseline), on the CPU path
//!   and, when an adapter exists, on the GPU;
//! - an official-format checkpoint (`WEIGHT_FOLDER/conf.json` + `Fold_1/model.pth.tar`, zip format of torch ≥ 1.6
//!   and legacy format of torch ≤ 1.5, written at test time by [`sitsgpu::data::torch_writer`] from the fixture's
//!   weights) goes through `convert-weights` bit for bit and `predict` gives the same logits as with the `.npz`;
//! - `convert-weights --to-torch [--legacy]` writes checkpoints the reader reads back exactly;
//! - bad inputs fail with a non-zero status and a message naming the file, the key and the shapes;
//! - `info` says which limits are in force (`SITSGPU_LIMITS=webgpu`: WebGPU's defaults) and rejects a bad value.
//!
//! Without the fixtures each test prints one loud `SKIPPED` line. Run:
//! `cargo test --test cli -- --nocapture` (prints per-case timings).

mod common;
use common::{
    assert_bit_identical, fixtures_root, max_abs, project_fixtures_root, read_json, semantic_cases,
    semantic_cases_in, sitsgpu, sitsgpu_command, sitsgpu_err, sitsgpu_ok, text, TmpDir,
};

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use sitsgpu::data::checkpoint::read_torch_checkpoint;
use sitsgpu::data::npy;
use sitsgpu::data::state_dict::{read_npz, StateDict, Values};
use sitsgpu::data::torch_writer::{write_torch_checkpoint, write_torch_checkpoint_legacy};
use sitsgpu::engine::testing::gpu_or_skip;

/// The fixtures' `utae_small` case, or `None` after a loud skip line.
fn utae_small(test: &str) -> Option<PathBuf> {
    let case = fixtures_root().join("utae_small");
    if case.join("weights.npz").exists() {
        Some(case)
    } else {
        eprintln!(
            "!!!!! SKIPPED {test}: {} not found (set SITSGPU_FIXTURES) !!!!!",
            case.display()
        );
        None
    }
}

/// The case's conf.json with its `reference.constructor_kwargs` (the exact arguments the model was built with)
/// merged over it, written to `dir/conf.json`.
fn write_conf(case: &Path, dir: &Path) -> PathBuf {
    let mut conf = read_json(&case.join("conf.json"));
    let kwargs = conf["reference"]["constructor_kwargs"].clone();
    if let (Some(c), Some(k)) = (conf.as_object_mut(), kwargs.as_object()) {
        for (key, v) in k {
            c.insert(key.clone(), v.clone());
        }
    }
    let p = dir.join("conf.json");
    std::fs::write(&p, serde_json::to_string_pretty(&conf).unwrap()).unwrap();
    p
}

/// The fixtures README's eval tolerance for `file`: `1e-6 + 2e-5 · max|expected|`, or 4× the deviation measured
/// in precision.json if larger.
fn tolerance(precision: &Value, file: &str, expected: &[f32]) -> f64 {
    let measured = precision["expected"][file][0].as_f64().unwrap_or(0.0);
    (1e-6 + 2e-5 * max_abs(expected)).max(4.0 * measured)
}

/// Compares the files `predict` wrote in `out` with `case/expected/`; returns the failures, the worst
/// error / tolerance ratio and the number of pixels whose class was checked.
fn compare_predictions(case: &Path, out: &Path) -> (Vec<String>, f64, usize) {
    let precision = read_json(&case.join("precision.json"));
    let mut failures = Vec::new();
    let mut worst = 0.0f64;
    let mut n_logits = 0;
    let mut n_checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(case.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.starts_with("logits_") || n.starts_with("attn_")) && n.ends_with(".npy"))
        .collect();
    entries.sort();
    for file in entries {
        let want = npy::read_f32(case.join("expected").join(&file)).unwrap();
        let got = match npy::read_f32(out.join(&file)) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        if got.shape != want.shape {
            failures.push(format!(
                "{file}: shape {:?}, expected {:?}",
                got.shape, want.shape
            ));
            continue;
        }
        let tol = tolerance(&precision, &file, &want.data);
        let err = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(&g, &w)| {
                if g.is_finite() {
                    (g as f64 - w as f64).abs()
                } else {
                    f64::INFINITY
                }
            })
            .fold(0.0, f64::max);
        worst = worst.max(err / tol);
        if err > tol {
            failures.push(format!("{file}: max |err| {err:.3e} > tol {tol:.3e}"));
        }
        let Some(id) = file.strip_prefix("logits_") else {
            continue;
        };
        n_logits += 1;
        // pred_<id>: the argmax of the expected logits (first maximum), except where the two best expected logits
        // are within the tolerance (either class is then a correct answer).
        let pred = match npy::read_f32(out.join(format!("pred_{id}"))) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("pred_{id}: {e}"));
                continue;
            }
        };
        let (classes, pixels) = (want.shape[0], want.shape[1..].iter().product::<usize>());
        if pred.shape != want.shape[1..] {
            failures.push(format!(
                "pred_{id}: shape {:?}, expected {:?}",
                pred.shape,
                &want.shape[1..]
            ));
            continue;
        }
        let mut wrong = 0;
        for px in 0..pixels {
            let score = |c: usize| want.data[c * pixels + px];
            let best = (1..classes).fold(0, |b, c| if score(c) > score(b) { c } else { b });
            let second = (0..classes)
                .filter(|&c| c != best)
                .map(score)
                .fold(f32::NEG_INFINITY, f32::max);
            if (score(best) - second) as f64 > tol {
                n_checked += 1;
                if pred.data[px] as usize != best {
                    wrong += 1;
                }
            }
        }
        if wrong > 0 {
            failures.push(format!(
                "pred_{id}: {wrong} pixels differ from the expected argmax"
            ));
        }
    }
    if n_logits == 0 {
        failures.push(format!("{}: no expected/logits_*.npy", case.display()));
    }
    (failures, worst, n_checked)
}

/// Runs `predict` on every semantic case (on the CPU path, or the GPU) and checks every output (U-TAE's with
/// its attention masks).
fn predict_all_cases(device: &str) {
    let Some(mut cases) = semantic_cases("predict_reproduces_the_fixtures") else {
        return;
    };
    cases.extend(
        semantic_cases_in(&project_fixtures_root(), "predict_reproduces_the_fixtures")
            .unwrap_or_default(),
    );
    let tmp = TmpDir::new("cli", &format!("predict_{device}"));
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let folder = read_json(&case.join("conf.json"))["reference"]
            ["dataset_folder_relative_to_case"]
            .as_str()
            .unwrap_or("../datasets/pastis_tiny")
            .to_string();
        let dataset = case.join(folder);
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = write_conf(case, &dir);
        let out = dir.join("out");
        let weights = case.join("weights.npz");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"predict",
            &"--dataset_folder",
            &dataset,
            &"--weights",
            &weights,
            &"--config",
            &conf,
            &"--batch_size",
            &"2",
            &"--out",
            &out,
        ];
        if read_json(&case.join("conf.json"))
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("utae")
            == "utae"
        {
            args.push(&"--save_attention");
        }
        if device == "cpu" {
            args.push(&"--cpu");
        }
        let t = Instant::now();
        let o = sitsgpu(&args);
        let secs = t.elapsed().as_secs_f64();
        if !o.status.success() {
            failures.push(format!("{name}: predict failed:\n{}", text(&o)));
            continue;
        }
        let (f, worst, n_checked) = compare_predictions(case, &out);
        println!(
            "predict {name} [{device}]: {} ({secs:.2} s, worst {worst:.2}×tol, {n_checked} class-map pixels \
             with a clear argmax)",
            if f.is_empty() { "ok" } else { "FAILED" }
        );
        failures.extend(f.into_iter().map(|m| format!("{name} [{device}]: {m}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn predict_reproduces_the_fixtures_on_cpu() {
    predict_all_cases("cpu");
}

#[test]
fn predict_reproduces_the_fixtures_on_gpu() {
    if gpu_or_skip("predict_reproduces_the_fixtures_on_gpu").is_none() {
        return;
    }
    predict_all_cases("gpu");
}

type Writer = fn(&Path, &StateDict, Option<i64>) -> sitsgpu::engine::Result<()>;

/// The official layout, written from the fixture's weights: `folder/conf.json` + `folder/Fold_1/model.pth.tar`,
/// then `convert-weights` back to .npz (bit-identical) and `predict` from the checkpoint (same logits as from the
/// .npz).
#[test]
fn official_checkpoints_round_trip_through_the_cli() {
    let Some(case) = utae_small("official_checkpoints_round_trip_through_the_cli") else {
        return;
    };
    let tmp = TmpDir::new("cli", "official");
    let npz = case.join("weights.npz");
    let sd = read_npz(&npz).unwrap();
    assert_eq!(sd.len(), 158, "spec §9.3: 158 state-dict entries");
    let dataset = fixtures_root().join("datasets/pastis_tiny");
    let predict = |weights: &Path, out: &Path, config: Option<&Path>| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"predict",
            &"--dataset-folder",
            &dataset,
            &"--weights",
            &weights,
            &"--batch-size",
            &"2",
            &"--out",
            &out,
            &"--cpu",
        ];
        if let Some(c) = &config {
            args.extend([&"--config" as &dyn AsRef<std::ffi::OsStr>, c]);
        }
        sitsgpu_ok(&args);
    };
    let reference_out = tmp.0.join("from_npz");
    let conf = write_conf(&case, &tmp.0);
    predict(&npz, &reference_out, Some(&conf));

    for (format, write) in [
        (
            "zip",
            (|p, sd, e| write_torch_checkpoint(p, sd, e)) as Writer,
        ),
        ("legacy", |p, sd, e| write_torch_checkpoint_legacy(p, sd, e)),
    ] {
        let t = Instant::now();
        let folder = tmp.0.join(format);
        std::fs::create_dir_all(folder.join("Fold_1")).unwrap();
        write_conf(&case, &folder);
        let ckpt = folder.join("Fold_1/model.pth.tar");
        write(&ckpt, &sd, Some(100)).unwrap();
        assert_eq!(read_torch_checkpoint(&ckpt).unwrap().epoch, Some(100));

        // convert-weights finds WEIGHT_FOLDER/conf.json in the parent folder and checks every key and shape.
        let x = tmp.0.join(format!("x_{format}.npz"));
        let o = sitsgpu_ok(&[&"convert-weights", &"--checkpoint", &ckpt, &"--out", &x]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("checked 158 entries") && stdout.contains("epoch Some(100)"),
            "{stdout}"
        );
        let back = read_npz(&x).unwrap();
        assert_bit_identical(&back, &sd, format);
        let nbt = back
            .iter()
            .filter(|(k, _)| k.ends_with("num_batches_tracked"))
            .collect::<Vec<_>>();
        assert!(!nbt.is_empty());
        assert!(nbt.iter().all(|(_, e)| matches!(e.values, Values::I64(_))));

        // predict straight from the checkpoint (conf.json found beside it): the same logits, bit for bit.
        let out = tmp.0.join(format!("from_{format}"));
        predict(&ckpt, &out, None);
        for entry in std::fs::read_dir(&reference_out).unwrap() {
            let name = entry.unwrap().file_name();
            let a = std::fs::read(reference_out.join(&name)).unwrap();
            let b = std::fs::read(out.join(&name))
                .unwrap_or_else(|e| panic!("{format}: {name:?}: {e}"));
            assert!(a == b, "{format}: {name:?} differs from the .npz run");
        }
        println!(
            "official checkpoint [{format}]: ok ({:.2} s)",
            t.elapsed().as_secs_f64()
        );
    }
}

/// `convert-weights --to-torch [--legacy]`: .npz → model.pth.tar (folder created), read back exactly; and a
/// zip checkpoint → legacy keeps the epoch.
#[test]
fn convert_weights_to_torch() {
    let Some(case) = utae_small("convert_weights_to_torch") else {
        return;
    };
    let tmp = TmpDir::new("cli", "to_torch");
    let npz = case.join("weights.npz");
    let sd = read_npz(&npz).unwrap();
    let conf = write_conf(&case, &tmp.0);
    let zip_out = tmp.0.join("w/Fold_3/model.pth.tar");
    sitsgpu_ok(&[
        &"convert-weights",
        &"--checkpoint",
        &npz,
        &"--config",
        &conf,
        &"--out",
        &zip_out,
        &"--to-torch",
    ]);
    assert!(std::fs::read(&zip_out).unwrap().starts_with(b"PK\x03\x04"));
    let z = read_torch_checkpoint(&zip_out).unwrap();
    assert_eq!(z.epoch, None);
    assert_bit_identical(&z.state_dict, &sd, "--to-torch");

    let ckpt = tmp.0.join("epoch.pth.tar");
    write_torch_checkpoint(&ckpt, &sd, Some(42)).unwrap();
    let legacy_out = tmp.0.join("legacy.pth.tar");
    sitsgpu_ok(&[
        &"convert-weights",
        &"--checkpoint",
        &ckpt,
        &"--config",
        &conf,
        &"--out",
        &legacy_out,
        &"--to-torch",
        &"--legacy",
    ]);
    assert_eq!(std::fs::read(&legacy_out).unwrap()[0], 0x80);
    let l = read_torch_checkpoint(&legacy_out).unwrap();
    assert_eq!(l.epoch, Some(42));
    assert_bit_identical(&l.state_dict, &sd, "--to-torch --legacy");

    // --legacy alone is a usage error.
    let e = sitsgpu_err(&[
        &"convert-weights",
        &"--checkpoint",
        &ckpt,
        &"--out",
        &legacy_out,
        &"--legacy",
    ]);
    assert!(e.contains("--to-torch"), "{e}");
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let Some(case) = utae_small("bad_inputs_fail_with_clear_messages") else {
        return;
    };
    let tmp = TmpDir::new("cli", "errors");
    let sd = read_npz(case.join("weights.npz")).unwrap();

    // A conf.json whose last out_conv width differs from the checkpoint's 20 classes.
    let folder = tmp.0.join("wrong");
    std::fs::create_dir_all(folder.join("Fold_1")).unwrap();
    let conf = write_conf(&case, &folder);
    let mut c = read_json(&conf);
    c["out_conv"] = serde_json::json!([8, 19]);
    c["num_classes"] = serde_json::json!(19);
    std::fs::write(&conf, c.to_string()).unwrap();
    let ckpt = folder.join("Fold_1/model.pth.tar");
    write_torch_checkpoint(&ckpt, &sd, Some(1)).unwrap();
    let x = tmp.0.join("x.npz");
    let e = sitsgpu_err(&[&"convert-weights", &"--checkpoint", &ckpt, &"--out", &x]);
    // The first mismatching tensor in the model's order: the last conv of out_conv, 20 vs 19 output channels.
    let (key, file_shape) = sd
        .iter()
        .filter(|(k, _)| k.starts_with("out_conv."))
        .find(|(_, e)| e.shape.first() == Some(&20))
        .map(|(k, e)| (k.to_string(), e.shape.clone()))
        .unwrap();
    let mut model_shape = file_shape.clone();
    model_shape[0] = 19;
    for want in [
        format!("{key:?}"),
        format!("{file_shape:?}"),
        format!("{model_shape:?}"),
        "model.pth.tar".to_string(),
    ] {
        assert!(e.contains(&want), "missing {want} in: {e}");
    }
    assert!(!x.exists(), "nothing is written on a mismatch");

    // A missing checkpoint.
    let missing = tmp.0.join("nowhere/Fold_2/model.pth.tar");
    let e = sitsgpu_err(&[&"convert-weights", &"--checkpoint", &missing, &"--out", &x]);
    assert!(e.contains(&missing.display().to_string()), "{e}");

    // A missing dataset folder.
    let no_data = tmp.0.join("no_such_dataset");
    let conf_ok = write_conf(&case, &tmp.0);
    let e = sitsgpu_err(&[
        &"predict",
        &"--dataset_folder",
        &no_data,
        &"--weights",
        &case.join("weights.npz"),
        &"--config",
        &conf_ok,
        &"--out",
        &tmp.0.join("out"),
        &"--cpu",
    ]);
    assert!(e.contains(&no_data.display().to_string()), "{e}");
}

/// `evaluate` runs test_semantic.py's command line unchanged: `--device cpu` (the CPU path, as `--cpu`),
/// `--num_workers` and `--display_step` (no-ops here) with `--fold`, `--batch_size`, `--res_dir`,
/// `--weight_folder` and `--dataset_folder`.
#[test]
fn evaluate_accepts_test_semantic_flags() {
    let Some(case) = utae_small("evaluate_accepts_test_semantic_flags") else {
        return;
    };
    let tmp = TmpDir::new("cli", "evaluate_flags");
    // A weight folder in the official layout; rotation 2 tests on fold 1, which holds one patch.
    let weights = tmp.0.join("weights");
    std::fs::create_dir_all(weights.join("Fold_2")).unwrap();
    write_conf(&case, &weights);
    std::fs::copy(case.join("weights.npz"), weights.join("Fold_2/model.npz")).unwrap();
    let res = tmp.0.join("res");
    sitsgpu_ok(&[
        &"evaluate",
        &"--dataset_folder",
        &fixtures_root().join("datasets/pastis_tiny"),
        &"--weight_folder",
        &weights,
        &"--res_dir",
        &res,
        &"--fold",
        &"2",
        &"--batch_size",
        &"1",
        &"--device",
        &"cpu",
        &"--num_workers",
        &"4",
        &"--display_step",
        &"10",
    ]);
    let m = read_json(&res.join("Fold_2/test_metrics.json"));
    assert!(m["test_accuracy"].as_f64().is_some(), "{m}");
    assert!(res.join("Fold_2/conf_mat.pkl").exists());
}

/// `predict` on a PASTIS-layout folder without annotations (a user's own area): the same outputs as with
/// them; training on that folder fails naming the missing label file.
#[test]
fn predict_runs_without_annotations() {
    let Some(case) = utae_small("predict_runs_without_annotations") else {
        return;
    };
    let tmp = TmpDir::new("cli", "unlabeled");
    let labeled = fixtures_root().join("datasets/pastis_tiny");
    let unlabeled = tmp.0.join("area");
    std::fs::create_dir_all(unlabeled.join("DATA_S2")).unwrap();
    for name in ["metadata.geojson", "NORM_S2_patch.json"] {
        std::fs::copy(labeled.join(name), unlabeled.join(name)).unwrap();
    }
    for e in std::fs::read_dir(labeled.join("DATA_S2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), unlabeled.join("DATA_S2").join(e.file_name())).unwrap();
    }
    let conf = write_conf(&case, &tmp.0);
    let predict = |data: &Path, out: &Path| {
        sitsgpu_ok(&[
            &"predict",
            &"--dataset_folder",
            &data,
            &"--weights",
            &case.join("weights.npz"),
            &"--config",
            &conf,
            &"--batch_size",
            &"2",
            &"--out",
            &out,
            &"--cpu",
        ])
    };
    let (with, without) = (tmp.0.join("with_labels"), tmp.0.join("without"));
    predict(&labeled, &with);
    let o = predict(&unlabeled, &without);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("4 patches"),
        "{}",
        text(&o)
    );
    for id in [12, 305, 4100, 77777] {
        for file in [format!("logits_{id}.npy"), format!("pred_{id}.npy")] {
            let a = std::fs::read(with.join(&file)).unwrap();
            let b = std::fs::read(without.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(a == b, "{file} differs without the annotations");
        }
        for file in [format!("pred_{id}.png"), format!("grid_{id}.png")] {
            assert!(without.join(&file).exists(), "{file}");
        }
    }
    let e = sitsgpu_err(&[
        &"train",
        &"--dataset_folder",
        &unlabeled,
        &"--res_dir",
        &tmp.0.join("res"),
        &"--fold",
        &"1",
        &"--cpu",
    ]);
    assert!(e.contains("TARGET_") && e.contains("does not exist"), "{e}");
}

#[test]
fn info_says_which_limits_are_in_force() {
    if gpu_or_skip("info_says_which_limits_are_in_force").is_none() {
        return;
    }
    let info = |limits: &str| {
        sitsgpu_command()
            .arg("info")
            .env("SITSGPU_LIMITS", limits)
            .output()
            .expect("cannot run the sitsgpu binary")
    };
    let o = info("webgpu");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && out.contains("limits in force: WebGPU's defaults")
            && out.contains("max_storage_buffers_per_shader_stage  8\n")
            && out.contains("max_compute_workgroup_storage_size    16384 bytes"),
        "{}",
        text(&o)
    );
    let o = info("");
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stdout).contains("limits in force: the adapter's own"),
        "{}",
        text(&o)
    );
    let o = info("webgpu-ish");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("SITSGPU_LIMITS=\"webgpu-ish\""),
        "{}",
        text(&o)
    );
}
