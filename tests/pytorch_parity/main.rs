//! Parity with the original PyTorch implementation (llm.c's `test_gpt2` recipe): every case folder listed in
//! `$SITSGPU_FIXTURES/manifest.json` (default `../shared/fixtures`) is run by its kind and its conf.json —
//! never by its name — on the GPU and on the CPU reference path:
//! - eval mode: logits and attention masks of every stored patch (`expected/`);
//! - train mode, dropout 0: the three losses, every step-1 gradient, the weights after 3 Adam steps
//!   (`train_step/`), with the fixtures README's tolerances (raised to 4× the measured float32 noise of
//!   `precision.json`, as `compare.py` does);
//! - `--precision mixed` (products on half-precision operands, `engine::precision`): the same eval-mode
//!   logits and the first training step's loss against the same float32 reference, within bounds derived
//!   from half precision (`halves · 2^-11` of their scale, `halves` = the tensors the run rounded, counted
//!   by the engine: [`check_mixed`]).
//!
//! One line per case and device (worst error per quantity), then
//! `parity: N cases, P passed, F failed, U unsupported [names]`. A case whose model is not implemented yet is
//! counted as unsupported, never skipped silently; every supported case must pass.
//!
//! When a train step fails, the decision diagnosis (`train::diagnose`) runs and its report goes under the
//! case's line: which ReLU / max decisions sit within float32 noise of their boundary (layer, element,
//! margin, upstream gradient), which of them, flipped, reproduce the reference's step-1 gradients, the whole
//! train step checked again with those flips, and the Adam elements whose first step is decided by a
//! noise-level gradient sign. A failure fully explained that way does not fail the test (see
//! `run_fixture_root`).
//!
//! Files: this one (`main.rs`: the harness, the semantic and pixel-set cases), `train_steps.rs` (the
//! train-step checks and the diagnosis, shared by every kind), `panoptic.rs` (U-TAE + PaPs, U-ConvLSTM + PaPs).
//!
//! Roots: `$SITSGPU_FIXTURES` (the shared cases), `../shared/fixtures-paps-init` (`$SITSGPU_FIXTURES_PAPS_INIT`)
//! and the project's own cases in tests/data/fixtures (`make_*_cases.py` there: the baselines, the pixel-set
//! variants, and the PaPs geometries and sweep of `make_paps_cases.py`).
//!
//! Run: `cargo test --release --test pytorch_parity -- --nocapture`.

#[path = "../common/mod.rs"]
mod common;
use common::{fixtures_root, max_abs, read_json};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sitsgpu::data::npy;
use sitsgpu::data::pastis::{PastisDataset, PastisOptions};
use sitsgpu::data::pixelset::{Draw, PixelSetDataset, PixelSetOptions};
use sitsgpu::data::state_dict::{read_npz, StateDict, Values};
use sitsgpu::engine::decisions::{self, Options as DecisionOptions};
use sitsgpu::engine::precision::halves_saved;
use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::{with_precision, Precision};
use sitsgpu::layers::state::{load_state_dict, state_dict};
use sitsgpu::layers::{Ctx, Module};
use sitsgpu::models::pse::focal_loss;
use sitsgpu::models::semantic::SemanticConfig;
use sitsgpu::models::semantic::SemanticModel;
use sitsgpu::models::stclassifier::{PixelSetClassifier, PixelSetModelConfig, TemporalKind};
use sitsgpu::models::utae::PadInfo;
use sitsgpu::train::diagnose::{diagnose, DiagnoseOptions, RefGrad, Reference, RunOutput};
use sitsgpu::train::{Adam, AdamConfig};
use sitsgpu::{Device, Tensor};

mod panoptic;
mod train_steps;
use train_steps::TrainSteps;

/// Tolerance rules of the fixtures README / compare.py.
struct Rules {
    precision: Value,
}

impl Rules {
    fn measured(&self, section: &str, key: &str, idx: usize) -> f64 {
        self.precision
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(|v| v.get(idx))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }
}

fn max_err(a: &[f32], b: &[f32]) -> f64 {
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max)
}

/// Collects failures and the worst relative error per quantity.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    eval_failed: bool,
    worst: BTreeMap<&'static str, f64>,
    /// Extra lines printed under the case's line (the decision diagnosis of a failed train step).
    notes: Vec<String>,
    /// The train-step failures are explained by decisions within float32 noise: the diagnosis reproduced
    /// every step-1 gradient by flipping only such decisions, and the whole train step passed with them.
    explained: bool,
}

impl Report {
    fn check(&mut self, quantity: &'static str, name: &str, ok: bool, err: f64, tol: f64) {
        if std::env::var("SITSGPU_PARITY_VERBOSE").is_ok() {
            println!(
                "  {} {name}: err {err:.3e} tol {tol:.3e}",
                if ok { "ok  " } else { "FAIL" }
            );
        }
        let w = self.worst.entry(quantity).or_insert(0.0);
        *w = w.max(if tol > 0.0 { err / tol } else { err });
        if !ok {
            self.failures
                .push(format!("{name}: max_abs {err:.3e} > tol {tol:.3e}"));
        }
    }

    fn summary(&self) -> String {
        self.worst
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}×tol"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Eval-mode arrays: `err <= 1e-6 + 2e-5 · scale`, or 4× the measured deviation.
fn check_forward(rep: &mut Report, rules: &Rules, file: &str, got: &[f32], expected: &[f32]) {
    if got.len() != expected.len() {
        rep.failures.push(format!(
            "{file}: {} values, expected {}",
            got.len(),
            expected.len()
        ));
        return;
    }
    let tol = (1e-6 + 2e-5 * max_abs(expected)).max(4.0 * rules.measured("expected", file, 0));
    rep.check(
        "eval",
        file,
        max_err(got, expected) <= tol,
        max_err(got, expected),
        tol,
    );
}

/// Half precision's unit roundoff: a value rounded to binary16 is off by at most `U` of itself.
const U: f64 = 1.0 / 2048.0;

/// `--precision mixed` against the reference's float32 arrays. The bound is derived from half precision, as
/// `tests/mixed_precision.rs` derives it: `halves` tensors were rounded on the way (the products' operands,
/// counted by the engine), each moving what follows by at most `U` of its scale, first order, so the output
/// moves by at most `halves · U` of its own scale, on top of the float32 rule of [`check_forward`].
fn check_mixed(
    rep: &mut Report,
    rules: &Rules,
    file: &str,
    got: &[f32],
    expected: &[f32],
    halves: usize,
) {
    if got.len() != expected.len() {
        rep.failures.push(format!(
            "mixed {file}: {} values, expected {}",
            got.len(),
            expected.len()
        ));
        return;
    }
    let fp32 = (1e-6 + 2e-5 * max_abs(expected)).max(4.0 * rules.measured("expected", file, 0));
    let tol = fp32 + halves as f64 * U * max_abs(expected);
    let err = max_err(got, expected);
    rep.check("eval mixed", &format!("mixed {file}"), err <= tol, err, tol);
}

/// The first training step's loss under `--precision mixed` against the reference's float32 loss:
/// `halves · U` of it (see [`check_mixed`]) plus the float32 rule's `1e-5`.
fn check_mixed_loss(rep: &mut Report, got: f32, expected: f64, halves: usize) {
    let tol = (1e-5 + halves as f64 * U) * expected.abs();
    let err = (got as f64 - expected).abs();
    rep.check("loss mixed", "mixed step-1 loss", err <= tol, err, tol);
}

/// Runs `f` under `--precision mixed`; its result and how many tensors it rounded to halves.
fn mixed<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = halves_saved();
    let r = with_precision(Precision::Mixed, f);
    (r, halves_saved() - before)
}

/// The reference's step-1 loss.
fn first_loss(info: &Value) -> Option<f64> {
    info["losses"].get(0).and_then(Value::as_f64)
}

enum Outcome {
    Pass(String),
    /// Failure description, whether an eval-mode output failed (not only the train step), and whether the
    /// train-step failures are explained by decisions within float32 noise ([`Report::explained`]).
    Fail(String, bool, bool),
    Unsupported(String),
}

fn flag_list_to_ids(v: &Value) -> Vec<Vec<u64>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    b.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A batch of patches on `device`: x, days, pad info, targets (f32 class ids), ids.
struct DeviceBatch {
    x: Tensor,
    days: Vec<f32>,
    pad: PadInfo,
    targets: Tensor,
    lengths: Vec<usize>,
    /// The instance target (B, H, W, 7), when the dataset was opened for it.
    instance: Option<Vec<f32>>,
}

fn load_batch(ds: &PastisDataset, ids: &[u64], device: Device) -> DeviceBatch {
    let idx: Vec<usize> = ids
        .iter()
        .map(|id| {
            ds.ids()
                .iter()
                .position(|x| x == id)
                .unwrap_or_else(|| panic!("patch {id} not in the dataset"))
        })
        .collect();
    let b = ds.load_batch(&idx, 0.0).unwrap_or_else(|e| panic!("{e}"));
    let lengths = idx
        .iter()
        .map(|&i| ds.dates(i).map(|d| d.len()).unwrap_or(b.shape[1]))
        .collect();
    let [bs, _, _, h, w] = b.shape;
    let pad = PadInfo {
        mask: b.pad_mask.clone(),
    };
    DeviceBatch {
        x: Tensor::from_vec(b.x, &b.shape, device),
        days: b.dates,
        pad,
        targets: Tensor::from_vec(
            b.targets.iter().map(|&t| t as f32).collect(),
            &[bs, h, w],
            device,
        ),
        lengths,
        instance: b.instance,
    }
}

fn f32_of(sd: &StateDict, key: &str) -> Option<Vec<f32>> {
    sd.get(key).map(|e| match &e.values {
        Values::F32(v) => v.clone(),
        Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
    })
}

fn run_semantic(case: &Path, conf: &Value, device: Device) -> Outcome {
    let reference = &conf["reference"];
    // The model by the conf.json's `model` (get_model's names) and the reference's constructor arguments.
    let config = match SemanticConfig::from_conf(conf, &case.join("conf.json")) {
        Ok(c) => c,
        Err(e) => return Outcome::Unsupported(format!("{e}")),
    };
    let weights = read_npz(case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
    let rules = Rules {
        precision: std::fs::read_to_string(case.join("precision.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null),
    };
    let folder = reference
        .get("dataset_folder_relative_to_case")
        .or(conf.get("dataset_folder"))
        .and_then(Value::as_str)
        .expect("dataset folder");
    let ds = PastisDataset::open(case.join(folder), PastisOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rep = Report::default();

    // ---- eval mode
    let model = config.build(0, device);
    load_state_dict(&model, &weights, &case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
    let stored = flag_list_to_ids(
        reference
            .get("expected_stored_for")
            .or(reference.get("eval_batches"))
            .unwrap_or(&Value::Null),
    );
    let ctx = Ctx::eval();
    for ids in &stored {
        let batch = load_batch(&ds, ids, device);
        let out = sitsgpu::no_grad(|| model.forward(&batch.x, &batch.days, &batch.pad, &ctx));
        let (out_mixed, halves) =
            mixed(|| sitsgpu::no_grad(|| model.forward(&batch.x, &batch.days, &batch.pad, &ctx)));
        let logits_mixed = out_mixed.logits.to_vec();
        let logits = out.logits.to_vec();
        let attn = out.attn.as_ref().map_or(Vec::new(), |a| a.to_vec());
        let ls = out.logits.shape().to_vec();
        let as_ = out.attn.as_ref().map_or(vec![0; 5], |a| a.shape().to_vec());
        let per_logits: usize = ls[1..].iter().product();
        let (heads, bsz, t_max, hw) = (as_[0], as_[1], as_[2], as_[3] * as_[4]);
        for (i, id) in ids.iter().enumerate() {
            let file = format!("logits_{id}.npy");
            if let Ok(e) = npy::read_f32(case.join("expected").join(&file)) {
                let part = i * per_logits..(i + 1) * per_logits;
                check_forward(&mut rep, &rules, &file, &logits[part.clone()], &e.data);
                check_mixed(
                    &mut rep,
                    &rules,
                    &file,
                    &logits_mixed[part],
                    &e.data,
                    halves,
                );
            }
            let file = format!("attn_{id}.npy");
            if let Ok(e) = npy::read_f32(case.join("expected").join(&file)) {
                if out.attn.is_none() {
                    rep.failures
                        .push(format!("{file}: the model has no attention"));
                    continue;
                }
                let t_i = batch.lengths[i];
                let mut mine = Vec::with_capacity(heads * t_i * hw);
                for h in 0..heads {
                    let base = (h * bsz + i) * t_max * hw;
                    mine.extend_from_slice(&attn[base..base + t_i * hw]);
                }
                check_forward(&mut rep, &rules, &file, &mine, &e.data);
            }
        }
    }
    if !rep.failures.is_empty() {
        rep.eval_failed = true;
    }

    // ---- train steps (dropout 0)
    let tdir = case.join("train_step");
    if tdir.join("losses.json").exists() {
        let info = read_json(&tdir.join("losses.json"));
        let build = || {
            let model = config.build(0, device);
            load_state_dict(&model, &weights, &case.join("weights.npz"))
                .unwrap_or_else(|e| panic!("{e}"));
            model
        };
        let n_classes = build().num_classes();
        // nn.CrossEntropyLoss(weight=w), w = 1 except w[ignore_index] = 0 (Python negative indexing).
        let ignore = conf
            .get("ignore_index")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let mut w = vec![1.0f32; n_classes];
        let wi = if ignore < 0 {
            n_classes as i64 + ignore
        } else {
            ignore
        };
        if (0..n_classes as i64).contains(&wi) {
            w[wi as usize] = 0.0;
        }
        let w = Tensor::from_vec(w, &[n_classes], device);
        let batches = flag_list_to_ids(
            reference
                .get("train_batch_order")
                .unwrap_or(&info["batches"]),
        );
        let loss_of = |model: &SemanticModel, ids: &[u64]| {
            let batch = load_batch(&ds, ids, device);
            let ctx = Ctx::train_without_dropout();
            let out = model.forward(&batch.x, &batch.days, &batch.pad, &ctx);
            out.logits.cross_entropy(&batch.targets, Some(&w), -100)
        };
        if let (Some(ids), Some(want)) = (batches.first(), first_loss(&info)) {
            let model = build();
            let (loss, halves) = mixed(|| loss_of(&model, ids).item());
            check_mixed_loss(&mut rep, loss, want, halves);
        }
        let steps = TrainSteps {
            rules: &rules,
            tdir: &tdir,
            info: &info,
            batches: &batches,
        };
        steps.check_and_diagnose(&mut rep, &build, &loss_of);
    }
    if rep.failures.is_empty() {
        Outcome::Pass(rep.summary())
    } else {
        Outcome::Fail(rep_fail_text(&rep), rep.eval_failed, rep.explained)
    }
}

/// A pixel-set batch on `device`: pixels (B, T, C, S), host mask (B, T, S), extra (B, T, E), targets.
fn load_pse_batch(
    ds: &PixelSetDataset,
    ids: &[u64],
    device: Device,
) -> (Tensor, Vec<f32>, Option<Tensor>, Vec<usize>) {
    let idx: Vec<usize> = ids
        .iter()
        .map(|id| {
            ds.ids()
                .iter()
                .position(|x| x == id)
                .unwrap_or_else(|| panic!("parcel {id} not in the dataset"))
        })
        .collect();
    let b = ds
        .load_batch(&idx, Draw::Fixed)
        .unwrap_or_else(|e| panic!("{e}"));
    let [bs, t, _, _] = b.shape;
    let extra =
        (b.extra_size > 0).then(|| Tensor::from_vec(b.extra, &[bs, t, b.extra_size], device));
    (
        Tensor::from_vec(b.pixels, &b.shape, device),
        b.mask,
        extra,
        b.targets,
    )
}

fn run_pse(case: &Path, conf: &Value, device: Device) -> Outcome {
    let reference = &conf["reference"];
    let folder = reference
        .get("dataset_folder_relative_to_case")
        .or(conf.get("dataset_folder"))
        .and_then(Value::as_str)
        .expect("dataset folder");
    let opts = PixelSetOptions {
        npixel: conf.get("npixel").and_then(Value::as_u64).unwrap_or(64) as usize,
        ..PixelSetOptions::default()
    };
    let ds = PixelSetDataset::open(case.join(folder), opts).unwrap_or_else(|e| panic!("{e}"));
    let kwargs = reference.get("constructor_kwargs").unwrap_or(conf);
    // The class: the reference's constructor name (`models.stclassifier.PseTae(**kwargs)`), else the
    // conf.json's train.py flags.
    let conf_path = case.join("conf.json");
    let kind = match reference.get("constructor").and_then(Value::as_str) {
        Some(ctor) => {
            let class = ctor.split('(').next().unwrap_or(ctor);
            let class = class.rsplit('.').next().unwrap_or(class);
            TemporalKind::parse(class).unwrap_or_else(|| panic!("unknown constructor {ctor}"))
        }
        None => TemporalKind::of_conf(conf, &conf_path).unwrap_or_else(|e| panic!("{e}")),
    };
    let config =
        PixelSetModelConfig::from_json_as(kind, kwargs, Some(ds.date_positions()), &conf_path)
            .unwrap_or_else(|e| panic!("{e}"));
    let weights = read_npz(case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
    let rules = Rules {
        precision: std::fs::read_to_string(case.join("precision.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null),
    };
    let mut rep = Report::default();

    // ---- eval mode
    let model = PixelSetClassifier::new(config.clone(), 0, device);
    load_state_dict(&model, &weights, &case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
    let stored = flag_list_to_ids(
        reference
            .get("expected_stored_for")
            .or(reference.get("eval_batches"))
            .unwrap_or(&Value::Null),
    );
    let ctx = Ctx::eval();
    for ids in &stored {
        let (x, mask, extra, _) = load_pse_batch(&ds, ids, device);
        let (logits, attn) = sitsgpu::no_grad(|| model.forward(&x, &mask, extra.as_ref(), &ctx));
        let ((logits_mixed, _), halves) =
            mixed(|| sitsgpu::no_grad(|| model.forward(&x, &mask, extra.as_ref(), &ctx)));
        let logits_mixed = logits_mixed.to_vec();
        let ls = logits.shape().to_vec();
        let as_ = attn.as_ref().map_or(vec![0, 0, 0], |a| a.shape().to_vec());
        let (logits, attn) = (logits.to_vec(), attn.map_or(Vec::new(), |a| a.to_vec()));
        let (heads, bsz, t) = (as_[0], as_[1], as_[2]);
        for (i, id) in ids.iter().enumerate() {
            let file = format!("logits_{id}.npy");
            if let Ok(e) = npy::read_f32(case.join("expected").join(&file)) {
                let part = i * ls[1]..(i + 1) * ls[1];
                check_forward(&mut rep, &rules, &file, &logits[part.clone()], &e.data);
                check_mixed(
                    &mut rep,
                    &rules,
                    &file,
                    &logits_mixed[part],
                    &e.data,
                    halves,
                );
            }
            let file = format!("attn_{id}.npy");
            if let Ok(e) = npy::read_f32(case.join("expected").join(&file)) {
                let mine: Vec<f32> = (0..heads)
                    .flat_map(|h| attn[(h * bsz + i) * t..(h * bsz + i + 1) * t].to_vec())
                    .collect();
                check_forward(&mut rep, &rules, &file, &mine, &e.data);
            }
        }
    }
    if !rep.failures.is_empty() {
        rep.eval_failed = true;
    }

    // ---- train steps (dropout 0), focal loss
    let tdir = case.join("train_step");
    if tdir.join("losses.json").exists() {
        let info = read_json(&tdir.join("losses.json"));
        let build = || {
            let model = PixelSetClassifier::new(config.clone(), 0, device);
            load_state_dict(&model, &weights, &case.join("weights.npz"))
                .unwrap_or_else(|e| panic!("{e}"));
            model
        };
        let gamma = conf.get("gamma").and_then(Value::as_f64).unwrap_or(1.0) as f32;
        let batches = flag_list_to_ids(
            reference
                .get("train_batch_order")
                .unwrap_or(&info["batches"]),
        );
        let loss_of = |model: &PixelSetClassifier, ids: &[u64]| {
            let (x, mask, extra, targets) = load_pse_batch(&ds, ids, device);
            let ctx = Ctx::train_without_dropout();
            let (logits, _) = model.forward(&x, &mask, extra.as_ref(), &ctx);
            focal_loss(&logits, &targets, gamma)
        };
        if let (Some(ids), Some(want)) = (batches.first(), first_loss(&info)) {
            let model = build();
            let (loss, halves) = mixed(|| loss_of(&model, ids).item());
            check_mixed_loss(&mut rep, loss, want, halves);
        }
        let steps = TrainSteps {
            rules: &rules,
            tdir: &tdir,
            info: &info,
            batches: &batches,
        };
        steps.check_and_diagnose(&mut rep, &build, &loss_of);
    }
    if rep.failures.is_empty() {
        Outcome::Pass(rep.summary())
    } else {
        Outcome::Fail(rep_fail_text(&rep), rep.eval_failed, rep.explained)
    }
}

fn rep_fail_text(rep: &Report) -> String {
    let mut text = format!(
        "{}; {} failures: {}",
        rep.summary(),
        rep.failures.len(),
        rep.failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    for note in &rep.notes {
        text.push_str(&format!("\n    {}", note.replace('\n', "\n    ")));
    }
    text
}

/// The project's own PyTorch reference cases (`tests/data/make_pixelset_cases.py`: TAE, GRU, TempCNN and the
/// max/min poolings, which the shared fixtures do not cover), run like the shared ones.
fn project_fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

#[test]
fn pytorch_parity() {
    run_fixture_root(&fixtures_root());
}

#[test]
fn pytorch_parity_project_cases() {
    run_fixture_root(&project_fixtures_root());
}

/// The second shared fixture root: `$SITSGPU_FIXTURES_PAPS_INIT`, default `../shared/fixtures-paps-init` (U-TAE +
/// PaPs at the official initialisation of the size head: boxes of one pixel, the aliasing quirk of spec §6.4).
#[test]
fn pytorch_parity_paps_init() {
    let root = std::env::var("SITSGPU_FIXTURES_PAPS_INIT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures-paps-init")
        });
    run_fixture_root(&root);
}

/// Every case of the manifest under `root`, by kind and conf.json, on the GPU (when present) and the CPU.
fn run_fixture_root(root: &Path) {
    let root = root.to_path_buf();
    let manifest = root.join("manifest.json");
    if !manifest.exists() {
        eprintln!(
            "!!!!! SKIPPED pytorch_parity: no fixtures at {} (set SITSGPU_FIXTURES) !!!!!",
            root.display()
        );
        return;
    }
    let manifest = read_json(&manifest);
    let cases: Vec<(String, String)> = manifest["cases"]
        .as_object()
        .expect("manifest.json: cases")
        .iter()
        .map(|(name, v)| (name.clone(), v["kind"].as_str().unwrap_or("?").to_string()))
        .collect();
    let mut devices = vec![Device::Cpu];
    if gpu_or_skip("pytorch_parity (GPU half)").is_some() {
        devices.insert(0, Device::Gpu);
    }
    let (mut passed, mut failed, mut unsupported) = (Vec::new(), Vec::new(), Vec::new());
    let only = std::env::var("SITSGPU_PARITY_CASES").ok();
    // A case whose train step fails only because of decisions within float32 noise does not fail the test:
    // the decision diagnosis (train::diagnose) must reproduce every step-1 gradient by flipping only ReLU /
    // max decisions whose inputs are within 64·ε·RMS of the boundary, and the whole train step (losses,
    // gradients, weights after the steps) must then pass with those flips at step 1; the eval outputs must
    // match anyway. No float32 implementation can be required to reproduce such decisions. utae_default is
    // the live example: a ReLU input of the down_blocks.0.conv2 GroupNorm (patch 305, date 1, channel 21,
    // pixel (7, 14)) is +9.0e-9 in f64 and PyTorch rounds it positive, ours rounds it to -1.9e-7 (CPU) or
    // -3.2e-7 (GPU); on the CPU a second one (up_blocks.0.conv1, channel 41, -1.9e-6) adds small misses. The
    // report under its line finds both on its own. (This replaces the exemption of the manifest's
    // `quality.ok = false` cases: a flag on the fixture cannot tell a conditioning flip from a bug, the
    // diagnosis does; the flag is still mentioned in the note.)
    let unstable: Vec<String> = manifest["cases"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.pointer("/quality/ok").and_then(Value::as_bool) == Some(false))
        .map(|(k, _)| k.clone())
        .collect();
    let mut tolerated = Vec::new();
    for (name, kind) in &cases {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|c| c == name))
        {
            continue;
        }
        let dir = root.join(name);
        let conf = read_json(&dir.join("conf.json"));
        let mut case_ok = true;
        let mut case_unsupported = None;
        let mut case_eval_failed = false;
        let mut case_explained = true;
        for &device in &devices {
            let outcome = match kind.as_str() {
                "semantic" => run_semantic(&dir, &conf, device),
                "pse" => run_pse(&dir, &conf, device),
                "panoptic" => panoptic::run_panoptic(&dir, &conf, device),
                other => Outcome::Unsupported(format!("kind {other:?} not implemented yet")),
            };
            match outcome {
                Outcome::Pass(s) => println!("PASS {name} [{device:?}]: {s}"),
                Outcome::Fail(s, eval_failed, explained) => {
                    println!("FAIL {name} [{device:?}]: {s}");
                    case_ok = false;
                    case_eval_failed |= eval_failed;
                    case_explained &= explained;
                }
                Outcome::Unsupported(why) => {
                    case_unsupported = Some(why);
                    break;
                }
            }
        }
        match case_unsupported {
            Some(why) => {
                println!("UNSUPPORTED {name}: {why}");
                unsupported.push(name.clone());
            }
            None if case_ok => passed.push(name.clone()),
            None => {
                if !case_eval_failed && case_explained {
                    tolerated.push(name.clone());
                }
                failed.push(name.clone())
            }
        }
    }
    println!(
        "parity: {} cases, {} passed, {} failed, {} unsupported [{}]",
        cases.len(),
        passed.len(),
        failed.len(),
        unsupported.len(),
        unsupported.join(", ")
    );
    for t in &tolerated {
        println!(
            "NOTE {t}: its train-step mismatch is explained by decisions within float32 noise (diagnosis above: the \
             flips reproduce the reference's gradients and the whole train step passes with them) and does not fail \
             this test; eval outputs matched{}",
            if unstable.contains(t) {
                "; the fixture generator also flags this reference as unstable (manifest quality.ok = false)"
            } else {
                ""
            }
        );
    }
    let strict: Vec<&String> = failed.iter().filter(|f| !tolerated.contains(f)).collect();
    assert!(strict.is_empty(), "parity failures: {strict:?}");
}
