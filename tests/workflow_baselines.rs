//! The U-TAE paper's baselines through the `sitsgpu` binary, as a user runs them: on a synthetic PASTIS
//! folder (`synth`), every `--model` (uconvlstm, buconvlstm and its `--bidirectional` option, fpn, convlstm,
//! convgru, unet3d, small widths through `--model_kwargs`) is trained for a few steps (`train`), its conf.json
//! records the model and its constructor arguments, `evaluate` rebuilds the model from that conf.json and
//! reproduces training's test numbers exactly, and `predict` writes a class map per patch; one model goes
//! through an official-format `model.pth.tar` and back. The flags' errors are checked too. Runs on the GPU
//! when there is one (the CPU reference path otherwise).
//!
//! Run: `cargo test --test workflow_baselines -- --nocapture`.

mod common;
use common::{read_json, sitsgpu_err, sitsgpu_ok, TmpDir};

use std::path::Path;

use serde_json::{json, Value};
use sitsgpu::data::npy;
use sitsgpu::engine::testing::gpu_or_skip;

/// Small constructor arguments per model (seconds per step on a software GPU).
fn small(model: &str) -> Value {
    match model {
        "uconvlstm" | "buconvlstm" => json!({
            "encoder_widths": [8, 8, 8, 16], "decoder_widths": [8, 8, 8, 16], "out_conv": [8, 20], "hidden_dim": 6,
        }),
        "fpn" => json!({"inconv": [4, 8], "n_channels": 8, "hidden_size": 6}),
        "convlstm" | "convgru" => json!({"hidden_dim": 6}),
        "unet3d" => json!({"feats": 1}),
        other => panic!("no small config for {other}"),
    }
}

fn device_flag() -> Vec<&'static str> {
    if gpu_or_skip("workflow_baselines (GPU half)").is_some() {
        vec![]
    } else {
        vec!["--cpu"]
    }
}

#[test]
fn every_baseline_trains_evaluates_and_predicts_through_the_cli() {
    let tmp = TmpDir::new("workflow_baselines", "all");
    let data = tmp.0.join("data");
    let p = |x: &Path| x.display().to_string();
    sitsgpu_ok(&[
        &"synth",
        &"--out",
        &p(&data),
        &"--patches",
        &"10",
        &"--size",
        &"16",
        &"--seed",
        &"4",
        &"--min-dates",
        &"4",
        &"--max-dates",
        &"7",
    ]);
    let dev = device_flag();
    for (model, extra) in [
        ("uconvlstm", None),
        ("buconvlstm", Some("--bidirectional")),
        ("fpn", None),
        ("convlstm", None),
        ("convgru", None),
        ("unet3d", None),
    ] {
        let res = tmp.0.join(format!("res_{model}"));
        let kw = small(model).to_string();
        let mut args: Vec<String> = [
            "train",
            "--dataset_folder",
            &p(&data),
            "--res_dir",
            &p(&res),
            "--model",
            model,
            "--model_kwargs",
            &kw,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(
            [
                "--epochs",
                "1",
                "--max_steps",
                "2",
                "--batch_size",
                "2",
                "--fold",
                "1",
            ]
            .map(String::from),
        );
        args.extend(extra.map(String::from));
        args.extend(dev.iter().map(|s| s.to_string()));
        let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        sitsgpu_ok(&a);
        // conf.json: the model and its full constructor arguments.
        let conf = read_json(&res.join("conf.json"));
        assert_eq!(conf["model"], json!(model));
        let kwargs = &conf["model_kwargs"];
        assert!(
            kwargs.is_object(),
            "{model}: conf.json has no model_kwargs: {conf}"
        );
        if extra.is_some() {
            assert_eq!(kwargs["temporal"], json!("blstm"));
        }
        let trained = read_json(&res.join("Fold_1/test_metrics.json"));
        // evaluate: rebuilt from conf.json, the same test numbers.
        let ev = tmp.0.join(format!("eval_{model}"));
        let mut args = vec![
            "evaluate".to_string(),
            "--dataset_folder".into(),
            p(&data),
            "--weight_folder".into(),
            p(&res),
        ];
        args.extend(["--res_dir".to_string(), p(&ev), "--fold".into(), "1".into()]);
        args.extend(dev.iter().map(|s| s.to_string()));
        let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        sitsgpu_ok(&a);
        let evaluated = read_json(&ev.join("Fold_1/test_metrics.json"));
        for k in ["test_accuracy", "test_loss", "test_IoU"] {
            assert_eq!(
                evaluated[k], trained[k],
                "{model}: {k} of evaluate vs train"
            );
        }
        // predict: a class map per patch, no attention for the baselines.
        let out = tmp.0.join(format!("pred_{model}"));
        let w = res.join("Fold_1/model.npz");
        let mut args = vec![
            "predict".to_string(),
            "--dataset_folder".into(),
            p(&data),
            "--weights".into(),
            p(&w),
        ];
        args.extend([
            "--out".to_string(),
            p(&out),
            "--batch_size".into(),
            "3".into(),
        ]);
        args.extend(dev.iter().map(|s| s.to_string()));
        let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        sitsgpu_ok(&a);
        let preds = std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("pred_")
                    && e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".npy")
            })
            .count();
        assert_eq!(preds, 10, "{model}: one class map per patch");
        let e = sitsgpu_err(&[
            &"predict",
            &"--dataset_folder",
            &p(&data),
            &"--weights",
            &p(&w),
            &"--out",
            &p(&tmp.0.join("x")),
            &"--save_attention",
            &"--cpu",
        ]);
        assert!(e.contains("only U-TAE has attention"), "{e}");
        println!(
            "{model}: trained, evaluated (test mIoU {}), predicted",
            trained["test_IoU"]
        );
        if model == "unet3d" {
            official_checkpoint_round_trip(&tmp.0, &res, &data, &out);
        }
    }
}

/// `convert-weights --to-torch` into the official layout, then `predict` from `Fold_1/model.pth.tar` gives the
/// logits the `.npz` gave.
fn official_checkpoint_round_trip(tmp: &Path, res: &Path, data: &Path, npz_out: &Path) {
    let p = |x: &Path| x.display().to_string();
    let folder = tmp.join("official");
    std::fs::create_dir_all(folder.join("Fold_1")).unwrap();
    std::fs::copy(res.join("conf.json"), folder.join("conf.json")).unwrap();
    let pth = folder.join("Fold_1/model.pth.tar");
    sitsgpu_ok(&[
        &"convert-weights",
        &"--checkpoint",
        &p(&res.join("Fold_1/model.npz")),
        &"--config",
        &p(&res.join("conf.json")),
        &"--out",
        &p(&pth),
        &"--to-torch",
    ]);
    let out = tmp.join("pred_official");
    let mut args = vec![
        "predict".to_string(),
        "--dataset_folder".into(),
        p(data),
        "--weights".into(),
        p(&pth),
    ];
    args.extend([
        "--out".to_string(),
        p(&out),
        "--batch_size".into(),
        "3".into(),
    ]);
    args.extend(device_flag().iter().map(|s| s.to_string()));
    let a: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    sitsgpu_ok(&a);
    for e in std::fs::read_dir(npz_out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("logits_") {
            let (a, b) = (
                npy::read_f32(npz_out.join(&name)).unwrap(),
                npy::read_f32(out.join(&name)).unwrap(),
            );
            assert_eq!(a.data, b.data, "{name}: .pth.tar vs .npz");
        }
    }
}

#[test]
fn baseline_flags_are_checked() {
    let tmp = TmpDir::new("workflow_baselines", "flags");
    let d = tmp.0.display().to_string();
    let run = |extra: &[&str]| {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"train", &"--dataset_folder", &d, &"--res_dir", &d];
        a.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        sitsgpu_err(&a)
    };
    let e = run(&["--model", "lstm3d"]);
    assert!(
        e.contains("--model lstm3d") && e.contains("uconvlstm"),
        "{e}"
    );
    let e = run(&["--model", "fpn", "--model_kwargs", "{\"hiden_size\": 4}"]);
    assert!(e.contains("hiden_size") && e.contains("hidden_size"), "{e}");
    let e = run(&["--model", "fpn", "--bidirectional"]);
    assert!(e.contains("--bidirectional"), "{e}");
    let e = run(&["--model", "convgru", "--model_kwargs", "{oops"]);
    assert!(e.contains("--model_kwargs") && e.contains("JSON"), "{e}");
    let e = run(&["--model_kwargs", "{}"]);
    assert!(e.contains("U-TAE takes its own flags"), "{e}");
    // Nothing was written.
    assert!(std::fs::read_dir(&tmp.0).unwrap().next().is_none());
}
