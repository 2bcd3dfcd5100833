//! The bad-input corpus: corrupted copies of the fixtures' tiny datasets (`datasets/pastis_tiny`,
//! `datasets/s2agri_tiny`) and weights (`utae_small`, `pse_ltae_small`), each broken in one way, run through every
//! command that reads them (`train` on the CPU path for one step, `evaluate`, `predict`, `convert-weights`, and
//! `synth` into a foreign folder), semantic (`semantic.rs`), pixel-set (`pixelset.rs`) and panoptic
//! (`panoptic.rs`: instance annotations, U-TAE + PaPs weight folders).
//!
//! Every case must give:
//! - a non-zero exit status;
//! - one `error:` line naming the file at fault (its path) and what is wrong (a keyword);
//! - no panic (no "panicked", no "RUST_BACKTRACE" on stderr);
//! - no partial output: a fresh output folder stays empty (no `test_metrics.json`, `model.npz`, `overall.json`,
//!   predictions, not even `conf.json`), and a folder holding a previous run's results is left byte for byte as
//!   it was (no file added, changed or removed), because bad inputs are found before anything is written.
//!
//! Each group prints `bad-input corpus (<group>): N cases, H handled (per command)`; a failing case is reported
//! with its command line and output. Run: `cargo test --test bad_inputs -- --nocapture`
//! (`SITSGPU_SHOW_ERRORS=1` prints every case's message). Without the fixtures the tests print a loud SKIPPED
//! line.

#[path = "../common/mod.rs"]
mod common;
mod panoptic;
mod pixelset;
mod semantic;

use common::{fixtures_root, read_json, sitsgpu_command};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sitsgpu::data::npy;

// ---------------------------------------------------------------- the case runner

/// What a failed run must leave in an output location.
pub enum Out {
    /// Did not exist before: must not exist after, or hold no file.
    Fresh(PathBuf),
    /// A previous run's results: must be byte for byte unchanged.
    Kept(PathBuf, BTreeMap<PathBuf, Vec<u8>>),
}

/// One command line on one broken input.
pub struct Case {
    name: String,
    command: &'static str,
    args: Vec<OsString>,
    /// Must appear in stderr (a path, or its end).
    path: String,
    /// Must appear in stderr, case-insensitively (`a|b`: one of them).
    keyword: String,
    outs: Vec<Out>,
    /// The run's stderr (`SITSGPU_SHOW_ERRORS=1` prints it).
    stderr: RefCell<String>,
}

/// Every file under `dir` (relative path → bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// `dir` filled with a previous run's results (a training / evaluation layout, or predictions), snapshotted.
pub fn previous_results(dir: &Path, kind: &str) -> Out {
    let files: &[&str] = match kind {
        "predict" => &[
            "logits_12.npy",
            "pred_12.npy",
            "predictions.json",
            "ids.npy",
        ],
        _ => &[
            "conf.json",
            "overall.json",
            "per_class.json",
            "Fold_1/model.npz",
            "Fold_1/test_metrics.json",
            "Fold_4/model.npz",
            "Fold_4/last.npz",
            "Fold_4/trainlog.json",
            "Fold_4/test_metrics.json",
            "Fold_4/conf_mat.npy",
        ],
    };
    for f in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("a previous run's {f}\n")).unwrap();
    }
    Out::Kept(dir.to_path_buf(), snapshot(dir))
}

/// A command line from a template: whitespace-separated words, each `@` replaced by the next path.
pub fn argv(template: &str, paths: &[&Path]) -> Vec<OsString> {
    let mut paths = paths.iter();
    let args: Vec<OsString> = template
        .split_whitespace()
        .map(|w| match w {
            "@" => paths.next().expect("a path per @").as_os_str().to_owned(),
            w => w.into(),
        })
        .collect();
    assert!(paths.next().is_none(), "more paths than @ in {template:?}");
    args
}

/// Runs one case; `Err` says what went wrong.
fn run_case(c: &Case) -> Result<(), String> {
    let o = sitsgpu_command()
        .args(&c.args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("cannot run the sitsgpu binary");
    let stderr = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
    c.stderr.replace(stderr.clone());
    let mut problems = Vec::new();
    if o.status.success() {
        problems.push("exit status 0".to_string());
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        problems.push("panicked".into());
    }
    let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
    if errors != 1 {
        problems.push(format!("{errors} error lines, expected one"));
    }
    if !stderr.contains(&c.path) {
        problems.push(format!("the message does not name {:?}", c.path));
    }
    let lower = stderr.to_lowercase();
    if !c
        .keyword
        .split('|')
        .any(|k| lower.contains(&k.to_lowercase()))
    {
        problems.push(format!("the message lacks the keyword {:?}", c.keyword));
    }
    for out in &c.outs {
        match out {
            Out::Fresh(p) => {
                let left = snapshot(p);
                if p.is_file() || !left.is_empty() {
                    problems.push(format!(
                        "partial output left in {}: {:?}",
                        p.display(),
                        left.keys().collect::<Vec<_>>()
                    ));
                }
            }
            Out::Kept(p, before) => {
                let after = snapshot(p);
                let changed: Vec<_> = after
                    .keys()
                    .chain(before.keys())
                    .filter(|k| after.get(*k) != before.get(*k))
                    .collect();
                if !changed.is_empty() {
                    problems.push(format!(
                        "the previous results in {} were touched: {changed:?}",
                        p.display()
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let line: Vec<_> = c.args.iter().map(|a| a.to_string_lossy()).collect();
    Err(format!(
        "{}: {}\n  $ sitsgpu {}\n  status {}\n  stdout: {}\n  stderr: {stderr}",
        c.name,
        problems.join("; "),
        line.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stdout).trim_end()
    ))
}

/// Runs every case, prints the counts per command, and fails listing every case not handled.
pub fn run_all(group: &str, cases: &[Case]) {
    let mut per_command: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for c in cases {
        let r = run_case(c);
        if std::env::var_os("SITSGPU_SHOW_ERRORS").is_some() {
            println!("{}: {}", c.name, c.stderr.borrow());
        }
        let e = per_command.entry(c.command).or_default();
        e.0 += 1;
        match r {
            Ok(()) => e.1 += 1,
            Err(msg) => failures.push(msg),
        }
    }
    let per: Vec<String> = per_command
        .iter()
        .map(|(k, (n, h))| format!("{k} {h}/{n}"))
        .collect();
    println!(
        "bad-input corpus ({group}): {} cases, {} handled ({})",
        cases.len(),
        cases.len() - failures.len(),
        per.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} of {} {group} cases not handled:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The cases of a group, each with a folder of its own under `tmp`.
pub struct Corpus {
    /// The group's temporary folder.
    pub tmp: PathBuf,
    /// The fixtures folder.
    pub fixtures: PathBuf,
    /// The group's intact weight folder (conf.json + Fold_1..5/model.npz).
    pub weights: PathBuf,
    /// The cases so far.
    pub cases: Vec<Case>,
    n: usize,
}

impl Corpus {
    /// A group in `tmp`, with an intact weight folder made from the fixture case `case`.
    pub fn new(tmp: &Path, fixtures: &Path, case: &str) -> Corpus {
        let weights = tmp.join("weights");
        weight_folder(&fixtures.join(case), &weights);
        Corpus {
            tmp: tmp.to_path_buf(),
            fixtures: fixtures.to_path_buf(),
            weights,
            cases: Vec::new(),
            n: 0,
        }
    }

    /// A fresh folder for the next case.
    pub fn dir(&mut self, name: &str) -> PathBuf {
        self.n += 1;
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let d = self.tmp.join(format!("{:03}_{slug}", self.n));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Adds a case: `args` must fail naming `path` and saying `keyword`, leaving `out` as described.
    pub fn push(
        &mut self,
        name: &str,
        cmd: &'static str,
        args: Vec<OsString>,
        expect: (&str, &str),
        out: Out,
    ) {
        self.cases.push(Case {
            name: format!("{name} [{cmd}]"),
            command: cmd,
            args,
            path: expect.0.to_string(),
            keyword: expect.1.to_string(),
            outs: vec![out],
            stderr: RefCell::default(),
        });
    }
}

// ---------------------------------------------------------------- breaking files

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Keeps the first `keep` bytes of `path` (negative: drops that many from the end).
pub fn truncate(path: &Path, keep: isize) {
    let b = std::fs::read(path).unwrap();
    let n = if keep < 0 {
        b.len() - keep.unsigned_abs()
    } else {
        keep as usize
    };
    std::fs::write(path, &b[..n]).unwrap();
}

/// Overwrites the start of `path` with `bytes`.
pub fn scribble(path: &Path, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[..bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

/// A version 1.0 `.npy` with this header dict and these data bytes.
pub fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

/// Rewrites a numeric `.npy` as float32 with `v` at flat position `at`.
pub fn poison(path: &Path, at: usize, v: f32) {
    let mut a = npy::read_f32(path).unwrap();
    a.data[at] = v;
    npy::write_f32(path, &a.shape, &a.data).unwrap();
}

/// Rewrites an integer `.npy` as int16 keeping the leading `n` entries of axis `axis`.
pub fn slice_axis(path: &Path, axis: usize, n: usize) {
    let a = npy::read_f32(path).unwrap();
    let outer: usize = a.shape[..axis].iter().product();
    let inner: usize = a.shape[axis + 1..].iter().product();
    let d = a.shape[axis];
    let mut v: Vec<i16> = Vec::new();
    for o in 0..outer {
        let block = &a.data[o * d * inner..(o * d + n) * inner];
        v.extend(block.iter().map(|&x| x as i16));
    }
    let mut shape = a.shape.clone();
    shape[axis] = n;
    npy::write(path, &shape, &v).unwrap();
}

/// Rewrites an integer `.npy` as int16 with a new shape of the same size.
pub fn reshape(path: &Path, shape: &[usize]) {
    let a = npy::read_f32(path).unwrap();
    let v: Vec<i16> = a.data.iter().map(|&x| x as i16).collect();
    npy::write(path, shape, &v).unwrap();
}

/// Rewrites a JSON file through `f`.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v = read_json(path);
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A weight folder: the fixture case's conf.json (its `reference.constructor_kwargs`, the exact arguments the
/// model was built with, merged over it) + Fold_1..5/model.npz (the case's initial weights).
pub fn weight_folder(case: &Path, dir: &Path) {
    let mut conf = read_json(&case.join("conf.json"));
    let kwargs = conf["reference"]["constructor_kwargs"].clone();
    let c = conf.as_object_mut().unwrap();
    for (key, v) in kwargs.as_object().into_iter().flatten() {
        c.insert(key.clone(), v.clone());
    }
    c.remove("reference");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("conf.json"), conf.to_string()).unwrap();
    for k in 1..=5 {
        let f = dir.join(format!("Fold_{k}"));
        std::fs::create_dir_all(&f).unwrap();
        std::fs::copy(case.join("weights.npz"), f.join("model.npz")).unwrap();
    }
}

/// The fixtures, or `None` after a loud skip line.
pub fn fixtures() -> Option<PathBuf> {
    let root = fixtures_root();
    let needed = [
        "utae_small/weights.npz",
        "pse_ltae_small/weights.npz",
        "datasets/pastis_tiny/metadata.geojson",
        "datasets/s2agri_tiny/META/labels.json",
    ];
    if needed.iter().all(|f| root.join(f).exists()) {
        return Some(root);
    }
    eprintln!(
        "!!!!! SKIPPED bad-input corpus: fixtures not found in {} (set SITSGPU_FIXTURES) !!!!!",
        root.display()
    );
    None
}
