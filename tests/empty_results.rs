//! No silent empty results: the semantic workflow keeps the original's `drop_last=True` (train_semantic.py and
//! test_semantic.py drop the incomplete last batch of every split), but
//! - a split too small to give one batch is an error before anything is written (nothing trained on, nothing
//!   evaluated), instead of `loss 0.0000 OA NaN mIoU NaN` and a `test_metrics.json` of nulls;
//! - the patches a test pass leaves out are named in a warning, and a training split that loses patches each
//!   epoch says how many;
//! - `--keep_last_batch` (evaluate, and train's validation and test passes) keeps the last incomplete batch.
//!
//! Pixel sets never drop a batch (the L-TAE train.py has no drop_last): a small test fold is evaluated whole,
//! and an empty training split (train.py's validation taking every parcel left) is an error.
//!
//! Run: `cargo test --test empty_results`. Without the fixtures the tests print a loud SKIPPED line.

mod common;
use common::{fixtures_root, read_json, sitsgpu, sitsgpu_ok, text, TmpDir};

use std::path::{Path, PathBuf};

use sitsgpu::data::synthetic::{write_pastis, SynthOptions};

/// The fixtures, or `None` after a loud skip line.
fn fixtures(test: &str) -> Option<PathBuf> {
    let root = fixtures_root();
    if root.join("utae_small/weights.npz").exists() && root.join("pse_ltae_small").exists() {
        Some(root)
    } else {
        eprintln!(
            "!!!!! SKIPPED {test}: fixtures not found in {} (set SITSGPU_FIXTURES) !!!!!",
            root.display()
        );
        None
    }
}

/// A weight folder: the case's conf.json (constructor kwargs merged) + Fold_1..5/model.npz.
fn weight_folder(case: &Path, dir: &Path) -> PathBuf {
    let mut conf = read_json(&case.join("conf.json"));
    let kwargs = conf["reference"]["constructor_kwargs"].clone();
    let c = conf.as_object_mut().unwrap();
    if let Some(k) = kwargs.as_object() {
        for (key, v) in k {
            c.insert(key.clone(), v.clone());
        }
    }
    c.remove("reference");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("conf.json"), conf.to_string()).unwrap();
    for k in 1..=5 {
        let f = dir.join(format!("Fold_{k}"));
        std::fs::create_dir_all(&f).unwrap();
        std::fs::copy(case.join("weights.npz"), f.join("model.npz")).unwrap();
    }
    dir.to_path_buf()
}

/// Accuracy, loss and mIoU of a `test_metrics.json` (all numbers, not nulls).
fn test_numbers(fold_dir: &Path) -> [f64; 3] {
    let m = read_json(&fold_dir.join("test_metrics.json"));
    ["test_accuracy", "test_loss", "test_IoU"].map(|k| {
        m[k].as_f64()
            .unwrap_or_else(|| panic!("{}: {k} is not a number: {m}", fold_dir.display()))
    })
}

/// Pixels counted in a fold's confusion matrix.
/// The pixels (or parcels) a test pass counted: every entry of the matrix with the void class (a semantic
/// run's `conf_mat.json` has the void row and column zeroed, as the original writes it; a pixel-set run has
/// no void class and only `conf_mat.json`).
fn pixels(fold_dir: &Path) -> u64 {
    let with_void = fold_dir.join("conf_mat_with_void.json");
    let file = if with_void.exists() {
        with_void
    } else {
        fold_dir.join("conf_mat.json")
    };
    read_json(&file)
        .as_array()
        .expect("conf_mat.json: rows")
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SMALL_UTAE: [&str; 12] = [
    "--encoder_widths",
    "[8,12,16,20]",
    "--decoder_widths",
    "[4,8,12,20]",
    "--out_conv",
    "[8,20]",
    "--n_head",
    "4",
    "--d_model",
    "24",
    "--d_k",
    "4",
];

/// `evaluate --fold 2` on pastis_tiny tests on fold 1, which holds one patch: with batches of 2 nothing would
/// be evaluated. That is an error naming the dataset's metadata and the flag, with no file written;
/// `--keep_last_batch` evaluates the patch, exactly as batches of 1 do.
#[test]
fn a_test_fold_smaller_than_a_batch_is_an_error_unless_the_last_batch_is_kept() {
    let Some(fx) = fixtures("a_test_fold_smaller_than_a_batch") else {
        return;
    };
    let tmp = TmpDir::new("empty_results", "semantic_eval");
    let w = weight_folder(&fx.join("utae_small"), &tmp.0.join("weights"));
    let data = fx.join("datasets/pastis_tiny");
    let evaluate = |res: &Path, extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"evaluate",
            &"--dataset_folder",
            &data,
            &"--weight_folder",
            &w,
            &"--res_dir",
            &res,
            &"--fold",
            &"2",
            &"--cpu",
        ];
        for e in extra {
            args.push(e);
        }
        sitsgpu(&args)
    };
    let res = tmp.0.join("dropped");
    let o = evaluate(&res, &["--batch_size", "2"]);
    assert!(!o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    for want in [
        "metadata.geojson",
        "test split (fold 1) holds 1 patch",
        "--batch_size 2",
        "nothing would be evaluated",
        "--keep_last_batch",
    ] {
        assert!(e.contains(want), "missing {want:?} in: {e}");
    }
    assert!(!res.exists(), "nothing may be written: {}", res.display());

    let kept = tmp.0.join("kept");
    let o = evaluate(&kept, &["--batch_size", "2", "--keep_last_batch"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("warning"), "{}", text(&o));
    let one = tmp.0.join("batch_of_one");
    sitsgpu_ok(&[
        &"evaluate",
        &"--dataset_folder",
        &data,
        &"--weight_folder",
        &w,
        &"--res_dir",
        &one,
        &"--fold",
        &"2",
        &"--batch_size",
        &"1",
        &"--cpu",
    ]);
    assert_eq!(
        test_numbers(&kept.join("Fold_2")),
        test_numbers(&one.join("Fold_2")),
        "the kept last batch is the patch a batch of one evaluates"
    );
    assert_eq!(pixels(&kept.join("Fold_2")), 32 * 32);
}

/// A synthetic dataset of 15 patches (3 per fold): evaluating with batches of 2 leaves one test patch out
/// (drop_last); the warning names it, and the confusion matrix counts 2 patches. `--keep_last_batch` counts
/// all 3 and warns about nothing.
#[test]
fn the_patches_drop_last_leaves_out_are_named() {
    let Some(fx) = fixtures("the_patches_drop_last_leaves_out_are_named") else {
        return;
    };
    let tmp = TmpDir::new("empty_results", "named");
    let data = tmp.0.join("data");
    let s = write_pastis(
        &data,
        &SynthOptions {
            patches: 15,
            size: 16,
            min_dates: 3,
            max_dates: 4,
            ..SynthOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.fold_sizes, [3; 5]);
    // Rotation 1 tests on fold 5: patches 4, 9 and 14 of the generator (ids 10000 + 7 i).
    let fold5: Vec<String> = [4u64, 9, 14]
        .iter()
        .map(|i| (10_000 + 7 * i).to_string())
        .collect();
    let w = weight_folder(&fx.join("utae_small"), &tmp.0.join("weights"));
    let evaluate = |res: &Path, keep: bool| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"evaluate",
            &"--dataset_folder",
            &data,
            &"--weight_folder",
            &w,
            &"--res_dir",
            &res,
            &"--fold",
            &"1",
            &"--batch_size",
            &"2",
            &"--cpu",
        ];
        if keep {
            args.push(&"--keep_last_batch");
        }
        sitsgpu_ok(&args)
    };
    let dropped = tmp.0.join("dropped");
    let e = stderr(&evaluate(&dropped, false));
    let warning = e
        .lines()
        .find(|l| l.starts_with("warning: Fold 1 test"))
        .unwrap_or_else(|| panic!("no warning about the dropped patch: {e}"));
    let named: Vec<&String> = fold5.iter().filter(|id| warning.contains(*id)).collect();
    assert_eq!(named.len(), 1, "one of {fold5:?} named: {warning}");
    assert!(
        warning.contains("not evaluated") && warning.contains("--keep_last_batch"),
        "{warning}"
    );
    assert_eq!(pixels(&dropped.join("Fold_1")), 2 * 16 * 16);

    let kept = tmp.0.join("kept");
    let e = stderr(&evaluate(&kept, true));
    assert!(!e.contains("warning"), "{e}");
    assert_eq!(pixels(&kept.join("Fold_1")), 3 * 16 * 16);

    // Training on rotation 1 (9 patches) with batches of 2: one patch per epoch is left out, said once.
    let res = tmp.0.join("train");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"train",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--fold",
        &"1",
        &"--epochs",
        &"2",
        &"--max_steps",
        &"2",
        &"--batch_size",
        &"2",
        &"--cpu",
    ];
    for a in &SMALL_UTAE {
        args.push(a);
    }
    let e = stderr(&sitsgpu_ok(&args));
    let train_warnings: Vec<&str> = e.lines().filter(|l| l.contains("training split")).collect();
    assert_eq!(train_warnings.len(), 1, "{e}");
    assert!(
        train_warnings[0].contains("1 of its 9 patches are left out of each epoch"),
        "{e}"
    );
    assert!(
        e.contains("validation split (fold 4): 1 of its 3 patches"),
        "{e}"
    );
    assert_eq!(pixels(&res.join("Fold_1")), 2 * 16 * 16);
}

/// Training: a training split smaller than a batch is an error (nothing to train on); a validation split
/// smaller than a batch is one too, unless `--keep_last_batch`, which keeps the last incomplete batch of the
/// validation and test passes (and gives numbers, not NaN, in trainlog.json and test_metrics.json).
#[test]
fn training_needs_a_batch_in_every_split() {
    let Some(fx) = fixtures("training_needs_a_batch_in_every_split") else {
        return;
    };
    let tmp = TmpDir::new("empty_results", "train");
    let data = fx.join("datasets/pastis_tiny");
    // Rotation 4: training folds 4, 5, 1 (2 patches), validation fold 2 (1), test fold 3 (1).
    let train = |res: &Path, batch: &str, keep: bool| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"train",
            &"--dataset_folder",
            &data,
            &"--res_dir",
            &res,
            &"--fold",
            &"4",
            &"--epochs",
            &"1",
            &"--batch_size",
            &batch,
            &"--cpu",
        ];
        for a in &SMALL_UTAE {
            args.push(a);
        }
        if keep {
            args.push(&"--keep_last_batch");
        }
        sitsgpu(&args)
    };
    let res = tmp.0.join("b3");
    let o = train(&res, "3", true);
    assert!(!o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("metadata.geojson")
            && e.contains("training split (fold 4, fold 5, fold 1) holds 2 patches")
            && e.contains("nothing would be trained on"),
        "{e}"
    );
    assert!(!res.exists(), "nothing may be written");

    let res = tmp.0.join("b2");
    let o = train(&res, "2", false);
    assert!(!o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("validation split (fold 2) holds 1 patch") && e.contains("--keep_last_batch"),
        "{e}"
    );
    assert!(!res.exists(), "nothing may be written");

    let o = train(&res, "2", true);
    assert!(o.status.success(), "{}", text(&o));
    let log = read_json(&res.join("Fold_4/trainlog.json"));
    for k in ["train_loss", "val_loss", "val_accuracy", "val_IoU"] {
        assert!(log["1"][k].is_number(), "trainlog.json {k}: {log}");
    }
    test_numbers(&res.join("Fold_4"));
    assert_eq!(pixels(&res.join("Fold_4")), 32 * 32);
    assert!(res.join("Fold_4/model.npz").exists());
    assert!(
        !res.join("Fold_4/best.npz").exists(),
        "best.npz is published as model.npz"
    );
}

/// Pixel sets: train.py never drops a batch, so a test fold smaller than the batch is evaluated whole (with or
/// without `--keep_last_batch`, a no-op there); an empty training split is an error.
#[test]
fn pixel_sets_keep_every_parcel() {
    let Some(fx) = fixtures("pixel_sets_keep_every_parcel") else {
        return;
    };
    let tmp = TmpDir::new("empty_results", "pixelset");
    let w = weight_folder(&fx.join("pse_ltae_small"), &tmp.0.join("weights"));
    let data = fx.join("datasets/s2agri_tiny");
    // 6 parcels in 5 folds: fold 1 tests 2 parcels, with batches of 4.
    let mut counts = Vec::new();
    for keep in [false, true] {
        let res = tmp.0.join(format!("eval_{keep}"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"evaluate",
            &"--dataset_folder",
            &data,
            &"--weight_folder",
            &w,
            &"--res_dir",
            &res,
            &"--fold",
            &"1",
            &"--batch_size",
            &"4",
            &"--cpu",
        ];
        if keep {
            args.push(&"--keep_last_batch");
        }
        let o = sitsgpu_ok(&args);
        assert!(!stderr(&o).contains("warning"), "{}", text(&o));
        test_numbers(&res.join("Fold_1"));
        counts.push(pixels(&res.join("Fold_1")));
    }
    assert_eq!(counts, [2, 2], "both parcels of the test fold are counted");

    let res = tmp.0.join("train");
    let o = sitsgpu(&[
        &"train",
        &"--task",
        &"pixelset",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--kfold",
        &"2",
        &"--epochs",
        &"1",
        &"--cpu",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("s2agri_tiny") && e.contains("training split is empty"),
        "{e}"
    );
    assert!(!res.exists(), "nothing may be written");
}
