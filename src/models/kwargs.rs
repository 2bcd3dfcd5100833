//! Reading a model's constructor arguments from a conf.json object — the `model_kwargs` our runs record, or a
//! reference case's `constructor_kwargs` — with errors that name the file and the key.

use std::path::Path;

use serde_json::Value;

use crate::engine::{Error, Result};

/// A JSON object of keyword arguments (absent keys keep the caller's defaults; `null` counts as absent).
pub struct Kwargs<'a> {
    v: &'a Value,
    path: &'a Path,
}

impl<'a> Kwargs<'a> {
    /// The arguments in `v` (an object), read from `path`.
    pub fn new(v: &'a Value, path: &'a Path) -> Kwargs<'a> {
        Kwargs { v, path }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.v.get(k).filter(|x| !x.is_null())
    }

    /// An error about key `k`.
    pub fn bad(&self, k: &str, why: &str) -> Error {
        Error::format(self.path, format!("conf.json key {k:?}: {why}"))
    }

    /// A non-negative integer, or the first of a pair of equal integers (`input_size: [128, 128]`,
    /// `kernel_size: [3, 3]`).
    pub fn usize(&self, k: &str, slot: &mut usize) -> Result<()> {
        let Some(x) = self.get(k) else { return Ok(()) };
        let v = match x {
            Value::Array(a) if !a.is_empty() && a.iter().all(|e| e == &a[0]) => a[0].as_u64(),
            _ => x.as_u64(),
        };
        *slot = v.ok_or_else(|| {
            self.bad(
                k,
                "expected a non-negative integer (or a pair of equal ones)",
            )
        })? as usize;
        Ok(())
    }

    /// [`Kwargs::usize`] for a size, a count or a stride: at least 1.
    pub fn size(&self, k: &str, slot: &mut usize) -> Result<()> {
        self.usize(k, slot)?;
        if *slot == 0 {
            return Err(self.bad(k, "expected at least 1, got 0"));
        }
        Ok(())
    }

    /// A list of widths, as a JSON list or the original's string spelling ("[64, 64, 64, 128]"), each at
    /// least 1.
    pub fn list(&self, k: &str, slot: &mut Vec<usize>) -> Result<()> {
        let Some(x) = self.get(k) else { return Ok(()) };
        let parsed = match x {
            Value::String(s) => serde_json::from_str::<Vec<usize>>(s).ok(),
            _ => serde_json::from_value::<Vec<usize>>(x.clone()).ok(),
        };
        *slot = parsed.ok_or_else(|| self.bad(k, "expected a list of integers"))?;
        if slot.contains(&0) {
            return Err(self.bad(k, &format!("{slot:?}: every width must be at least 1")));
        }
        Ok(())
    }

    /// A number.
    pub fn f32(&self, k: &str, slot: &mut f32) -> Result<()> {
        let Some(x) = self.get(k) else { return Ok(()) };
        *slot = x.as_f64().ok_or_else(|| self.bad(k, "expected a number"))? as f32;
        Ok(())
    }

    /// A string, if present.
    pub fn string(&self, k: &str) -> Result<Option<String>> {
        self.get(k)
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad(k, "expected a string"))
            })
            .transpose()
    }

    /// A boolean, if present.
    pub fn bool(&self, k: &str) -> Result<Option<bool>> {
        self.get(k)
            .map(|x| {
                x.as_bool()
                    .ok_or_else(|| self.bad(k, "expected true or false"))
            })
            .transpose()
    }

    /// Keys of the object that `known` does not list (a typo in `--model_kwargs` is an error, not ignored).
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        let Some(o) = self.v.as_object() else {
            return Err(Error::format(
                self.path,
                "model arguments: expected a JSON object",
            ));
        };
        match o.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.bad(
                k,
                &format!(
                    "not an argument of this model (known: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}
