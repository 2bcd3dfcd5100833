//! Helpers shared by the integration tests: the fixtures folder and its semantic U-TAE cases, JSON reading,
//! temporary folders, running the `sitsgpu` binary, comparing state dicts.
#![allow(dead_code)] // each test crate uses a different subset

pub mod gdal;
pub mod steps;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sitsgpu::data::state_dict::{StateDict, Values};

/// `$SITSGPU_FIXTURES`, default `../shared/fixtures` beside the crate.
pub fn fixtures_root() -> PathBuf {
    std::env::var("SITSGPU_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

/// A JSON file (panics naming the file).
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The semantic cases of the fixtures' manifest — U-TAE and the baselines get_model knows (by kind and
/// conf.json's model, not by name): (name, folder); `None` after a loud skip line when there are no fixtures.
pub fn semantic_cases(test: &str) -> Option<Vec<(String, PathBuf)>> {
    semantic_cases_in(&fixtures_root(), test)
}

/// The project's own PyTorch reference cases (`tests/data/make_*_cases.py`).
pub fn project_fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

/// [`semantic_cases`] of the manifest under `root`.
pub fn semantic_cases_in(root: &Path, test: &str) -> Option<Vec<(String, PathBuf)>> {
    let root = root.to_path_buf();
    let manifest = root.join("manifest.json");
    if !manifest.exists() {
        eprintln!(
            "!!!!! SKIPPED {test}: {} not found (set SITSGPU_FIXTURES) !!!!!",
            manifest.display()
        );
        return None;
    }
    let m = read_json(&manifest);
    let cases = m["cases"].as_object().expect("manifest.json: no \"cases\"");
    let mut out = Vec::new();
    for (name, c) in cases {
        let case = root.join(name);
        let model = read_json(&case.join("conf.json"))
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
        let known = sitsgpu::models::semantic::MODELS.contains(&model.as_deref().unwrap_or("utae"));
        if c["kind"] == "semantic" && known {
            out.push((name.clone(), case));
        } else {
            println!(
                "{test}: case {name} (kind {}, model {}) is not a semantic model: left to pytorch_parity",
                c["kind"],
                model.as_deref().unwrap_or("-")
            );
        }
    }
    assert!(
        !out.is_empty(),
        "{test}: the manifest lists no semantic case"
    );
    Some(out)
}

/// The largest |value|, in f64.
pub fn max_abs(a: &[f32]) -> f64 {
    a.iter().map(|&v| (v as f64).abs()).fold(0.0, f64::max)
}

/// A fresh temporary folder, removed when dropped (kept when the test panics, for inspection).
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    /// `<tmp>/sitsgpu-<suite>-<pid>-<tag>`, emptied.
    pub fn new(suite: &str, tag: &str) -> TmpDir {
        let p = std::env::temp_dir().join(format!("sitsgpu-{suite}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The `sitsgpu` binary as a command, `XDG_RUNTIME_DIR` set (some Vulkan loaders warn without it).
pub fn sitsgpu_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sitsgpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// Runs the binary with `args`.
pub fn sitsgpu(args: &[&dyn AsRef<OsStr>]) -> Output {
    sitsgpu_command()
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("cannot run the sitsgpu binary")
}

/// Status, stdout and stderr of a run, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Panics with the run's output unless it succeeded.
pub fn assert_success(o: &Output) {
    assert!(o.status.success(), "sitsgpu failed:\n{}", text(o));
}

/// Runs the binary and panics (with its output) unless it succeeds.
pub fn sitsgpu_ok(args: &[&dyn AsRef<OsStr>]) -> Output {
    let o = sitsgpu(args);
    assert_success(&o);
    o
}

/// Runs the binary, expects a failure, and returns its stderr.
pub fn sitsgpu_err(args: &[&dyn AsRef<OsStr>]) -> String {
    let o = sitsgpu(args);
    assert!(
        !o.status.success(),
        "sitsgpu should have failed:\n{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts two state dicts have the same keys in the same order, shapes, dtypes and bit-identical values.
pub fn assert_bit_identical(got: &StateDict, want: &StateDict, what: &str) {
    let keys = |sd: &StateDict| sd.keys().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: keys");
    for ((k, g), (_, w)) in got.iter().zip(want.iter()) {
        assert_eq!(g.shape, w.shape, "{what}: shape of {k}");
        match (&g.values, &w.values) {
            (Values::F32(a), Values::F32(b)) => {
                let bad = a
                    .iter()
                    .zip(b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count();
                assert_eq!(bad, 0, "{what}: {bad} of {} values of {k} differ", a.len());
            }
            (Values::I64(a), Values::I64(b)) => assert_eq!(a, b, "{what}: values of {k}"),
            _ => panic!("{what}: {k} changed dtype"),
        }
    }
}
