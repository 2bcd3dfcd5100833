//! `train --max_memory` as a user meets it (`src/train/memory.rs`): a budget too small for one sample is a
//! clear error before any step, naming the flag and the figures; a budget between one and two samples runs
//! the batch as micro-batches, says so once, and trains. (That micro-batches leave the batch's gradient is
//! the unit test `train::semantic::tests::micro_batches_accumulate_the_batch_gradient`.) `evaluate` and
//! `predict --max_memory` run batches in parts under a budget between one and two samples' forward pass, say
//! so once, and give the metrics and predictions of whole batches. GPU only: the budget is GPU memory.

mod common;
use common::{read_json, sitsgpu_err, sitsgpu_ok, text, TmpDir};

use std::ffi::OsStr;

use sitsgpu::engine::testing::gpu_or_skip;

/// Ten 16 × 16 synthetic PASTIS patches of 3 to `max_dates` dates in `data`.
fn synth(data: &std::path::Path, seed: u64, max_dates: usize) {
    let (out, seed, max_dates) = (
        data.display().to_string(),
        seed.to_string(),
        max_dates.to_string(),
    );
    sitsgpu_ok(&[
        &"synth",
        &"--out",
        &out,
        &"--patches",
        &"10",
        &"--size",
        &"16",
        &"--seed",
        &seed,
        &"--min-dates",
        &"3",
        &"--max-dates",
        &max_dates,
    ]);
}

fn refs(v: &[String]) -> Vec<&dyn AsRef<OsStr>> {
    v.iter().map(|s| s as &dyn AsRef<OsStr>).collect()
}

#[test]
fn a_budget_plans_micro_batches_or_refuses_clearly() {
    if gpu_or_skip("memory (--max_memory)").is_none() {
        return;
    }
    let tmp = TmpDir::new("memory", "budget");
    let data = tmp.0.join("data");
    let p = |x: &std::path::Path| x.display().to_string();
    synth(&data, 3, 4);
    let train = |res: &str, budget: &str| -> Vec<String> {
        [
            "train",
            "--dataset_folder",
            &p(&data),
            "--res_dir",
            &p(&tmp.0.join(res)),
            "--epochs",
            "1",
            "--max_steps",
            "1",
            "--batch_size",
            "2",
            "--fold",
            "1",
            "--keep_last_batch",
            "--max_memory",
            budget,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Too small: the error names the flag and says what one sample needs.
    let a = train("tiny", "1kB");
    let err = sitsgpu_err(&refs(&a));
    assert!(
        err.contains("one training sample needs about")
            && err.contains("--max_memory")
            && err.contains("--precision mixed"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // "needs about N MiB": a budget just above one sample's need gives micro-batches of 1.
    let need: f64 = err
        .split("needs about ")
        .nth(1)
        .and_then(|r| r.split(" MiB").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in: {err}"));
    let budget = format!("{}KiB", ((need + 0.1) * 1024.0) as u64);
    let a = train("micro", &budget);
    let out = text(&sitsgpu_ok(&refs(&a)));
    assert!(
        out.contains("as micro-batches of 1 samples"),
        "budget {budget}: {out}"
    );
    assert_eq!(out.matches("GPU memory: a batch of 2").count(), 1, "{out}");
    assert!(tmp.0.join("micro/Fold_1/model.npz").exists());
    // An impossible size is a flag error.
    let a = train("bad", "lots");
    let err = sitsgpu_err(&refs(&a));
    assert!(
        err.contains("--max_memory") && err.contains("not a size"),
        "{err}"
    );
}

/// The "needs about N MiB" figure of an error.
fn need_mib(err: &str) -> f64 {
    err.split("needs about ")
        .nth(1)
        .and_then(|r| r.split(" MiB").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in: {err}"))
}

#[test]
fn evaluate_and_predict_run_batches_in_parts_under_a_budget() {
    if gpu_or_skip("memory (evaluate/predict --max_memory)").is_none() {
        return;
    }
    let tmp = TmpDir::new("memory", "inference");
    let (data, weights) = (tmp.0.join("data"), tmp.0.join("weights"));
    let p = |x: &std::path::Path| x.display().to_string();
    synth(&data, 5, 5);
    sitsgpu_ok(&[
        &"train",
        &"--dataset_folder",
        &p(&data),
        &"--res_dir",
        &p(&weights),
        &"--epochs",
        &"1",
        &"--max_steps",
        &"1",
        &"--batch_size",
        &"2",
        &"--fold",
        &"1",
        &"--keep_last_batch",
    ]);
    let evaluate = |res: &str, budget: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = [
            "evaluate",
            "--dataset_folder",
            &p(&data),
            "--weight_folder",
            &p(&weights),
            "--res_dir",
            &p(&tmp.0.join(res)),
            "--fold",
            "1",
            "--keep_last_batch",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(b) = budget {
            a.extend(["--max_memory".to_string(), b.to_string()]);
        }
        a
    };
    let err = sitsgpu_err(&refs(&evaluate("tiny", Some("1kB"))));
    assert!(
        err.contains("one sample's forward pass needs about") && !err.contains("panicked"),
        "{err}"
    );
    let budget = format!("{}KiB", ((need_mib(&err) + 0.1) * 1024.0) as u64);
    let out = text(&sitsgpu_ok(&refs(&evaluate("parts", Some(&budget)))));
    assert_eq!(
        out.matches("evaluating it in parts of 1 samples").count(),
        1,
        "budget {budget}: {out}"
    );
    sitsgpu_ok(&refs(&evaluate("whole", None)));
    let metrics = |res: &str| read_json(&tmp.0.join(res).join("Fold_1/test_metrics.json"));
    let (parts, whole) = (metrics("parts"), metrics("whole"));
    for key in ["test_loss", "test_accuracy", "test_IoU"] {
        let (a, b) = (parts[key].as_f64().unwrap(), whole[key].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{key}: {a} in parts, {b} whole"
        );
    }
    // predict: the same class maps, batch in parts or whole.
    let model = p(&weights.join("Fold_1/model.npz"));
    let predict_args = |out: &str, budget: Option<&str>| {
        let mut a: Vec<String> = [
            "predict",
            "--dataset_folder",
            &p(&data),
            "--weights",
            &model,
            "--batch_size",
            "2",
            "--folds",
            "1",
            "--out",
            &p(&tmp.0.join(out)),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(b) = budget {
            a.extend(["--max_memory".to_string(), b.to_string()]);
        }
        a
    };
    // Its own patches: its own figure.
    let err = sitsgpu_err(&refs(&predict_args("pred_tiny", Some("1kB"))));
    let budget = format!("{}KiB", ((need_mib(&err) + 0.1) * 1024.0) as u64);
    let said = text(&sitsgpu_ok(&refs(&predict_args(
        "pred_parts",
        Some(&budget),
    ))));
    assert!(
        said.contains("evaluating it in parts of 1 samples"),
        "{said}"
    );
    sitsgpu_ok(&refs(&predict_args("pred_whole", None)));
    let mut compared = 0;
    for entry in std::fs::read_dir(tmp.0.join("pred_whole")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.starts_with("pred_") && name.ends_with(".npy") {
            let a = std::fs::read(tmp.0.join("pred_whole").join(&name)).unwrap();
            let b = std::fs::read(tmp.0.join("pred_parts").join(&name)).unwrap();
            assert_eq!(
                a, b,
                "{name}: classes differ between whole batches and parts"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2, "fold 1 has two patches");
}

/// A batch whose largest tensor would exceed the adapter's storage binding runs as micro-batches that fit it
/// (under WebGPU's default limits, 128 MiB: two samples' input of 110 dates at 128² is 138 MiB, one is 69),
/// and a sample that alone exceeds it is a clear error, not a panic. About a minute on lavapipe.
#[test]
fn tensors_over_the_storage_binding_become_micro_batches_or_a_clear_error() {
    if gpu_or_skip("memory (storage binding)").is_none() {
        return;
    }
    let tmp = TmpDir::new("memory", "binding");
    let (data, res) = (tmp.0.join("data"), tmp.0.join("res"));
    let p = |x: &std::path::Path| x.display().to_string();
    sitsgpu_ok(&refs(
        &[
            "synth",
            "--out",
            &p(&data),
            "--patches",
            "5",
            "--size",
            "128",
            "--seed",
            "1",
            "--min-dates",
            "110",
            "--max-dates",
            "110",
        ]
        .map(String::from),
    ));
    let webgpu = |args: &[String]| {
        common::sitsgpu_command()
            .env("SITSGPU_LIMITS", "webgpu")
            .args(args)
            .output()
            .expect("cannot run the sitsgpu binary")
    };
    let train = [
        "train",
        "--dataset_folder",
        &p(&data),
        "--res_dir",
        &p(&res),
        "--epochs",
        "1",
        "--max_steps",
        "1",
        "--batch_size",
        "2",
        "--fold",
        "1",
        "--keep_last_batch",
        "--encoder_widths",
        "[4,4,4,8]",
        "--decoder_widths",
        "[4,4,4,8]",
        "--out_conv",
        "[4,20]",
        "--n_head",
        "2",
        "--d_model",
        "16",
        "--max_memory",
        "50GB",
    ]
    .map(String::from);
    let o = webgpu(&train);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("over this adapter's largest storage binding (128.0 MiB)")
            && out.contains("as micro-batches of 1 samples"),
        "{out}"
    );
    assert!(res.join("Fold_1/model.npz").exists());
    // One sample over the binding: the first convolution's output of 40 dates at 128² (160 MiB).
    let profile = [
        "profile",
        "--train",
        "--config",
        "paper",
        "--model",
        "utae",
        "--batch_size",
        "1",
        "--dates",
        "40",
        "--size",
        "128",
        "--warmup",
        "0",
        "--steps",
        "1",
    ]
    .map(String::from);
    let o = webgpu(&profile);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        err.contains("error: conv2d: a tensor of")
            && err.contains("exceeds this adapter's maximum storage binding")
            && err.contains("HINT")
            && !err.contains("panicked"),
        "{err}"
    );
}

/// Evaluation one sample at a time (`Ctx::split_input_bytes`; `sitsgpu profile --split_mib 0`) holds one
/// sample's feature maps instead of the batch's: the forward pass's peak is lower than the whole batch's.
/// (That the scores are the same is the unit test
/// `models::semantic::tests::evaluation_in_parts_gives_the_whole_batchs_outputs`.)
#[test]
fn evaluation_one_sample_at_a_time_lowers_the_peak() {
    if gpu_or_skip("memory (evaluation split)").is_none() {
        return;
    }
    let peak = |split_mib: &str| -> f64 {
        let o = sitsgpu_ok(&[
            &"profile",
            &"--json",
            &"--model",
            &"utae",
            &"--batch_size",
            &"4",
            &"--dates",
            &"6",
            &"--size",
            &"32",
            &"--warmup",
            &"0",
            &"--steps",
            &"1",
            &"--split_mib",
            &split_mib,
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("profile --json");
        v["memory"]["peak_live_bytes"]
            .as_f64()
            .expect("peak_live_bytes")
    };
    let (whole, split) = (peak("100000"), peak("0"));
    assert!(
        split < 0.8 * whole,
        "one sample at a time: {split} bytes at the peak, the whole batch {whole}"
    );
}
