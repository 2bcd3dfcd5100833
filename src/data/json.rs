//! JSON files: reading with errors that name the file, and writing atomically (a temporary file renamed into
//! place, so a killed run never leaves a half-written `conf.json` or `trainlog.json`).

use std::path::Path;

use serde_json::Value;

use crate::engine::error::{Error, Result};

/// Reads a JSON file, with errors naming it.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// Writes `v` pretty-printed to `path` through a temporary file and a rename (never a half-written file).
pub fn write_json(path: &Path, v: &Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::io(path, e))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sitsgpu-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        let v = serde_json::json!({"b": [1, 2], "a": null});
        write_json(&p, &v).unwrap();
        assert_eq!(read_json(&p).unwrap(), v);
        assert!(!dir.join("a.json.tmp").exists());
        std::fs::write(&p, "{").unwrap();
        let e = read_json(&p).unwrap_err().to_string();
        assert!(e.contains("a.json") && e.contains("invalid JSON"), "{e}");
        let e = read_json(&dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
