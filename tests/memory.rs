//! `train --max_memory` as a user meets it (`src/train/memory.rs`): a budget too small for one sample is a
//! clear error before any step, naming the flag and the figures; a budget between one and two samples runs
//! the batch as micro-batches, says so once, and trains. (That micro-batches leave the batch's gradient is
//! the unit test `train::semantic::tests::micro_batches_accumulate_the_batch_gradient`.) GPU only: the
//! budget is GPU memory.

mod common;
use common::{sitsgpu_err, sitsgpu_ok, text, TmpDir};

use std::ffi::OsStr;

use sitsgpu::engine::testing::gpu_or_skip;

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
    sitsgpu_ok(&[
        &"synth",
        &"--out",
        &p(&data),
        &"--patches",
        &"10",
        &"--size",
        &"16",
        &"--seed",
        &"3",
        &"--min-dates",
        &"3",
        &"--max-dates",
        &"4",
    ]);
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
        err.contains("one training sample needs about") && err.contains("--max_memory"),
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
