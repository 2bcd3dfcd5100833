//! Helpers shared by the integration tests: the fixtures folder, JSON reading, temporary folders.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use serde_json::Value;

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
