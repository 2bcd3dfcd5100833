//! Normalisation statistics of the pixel-set loader (spec §2.3 step 3): the `(mean, std)` pair that train.py
//! reads with `pickle.load(open(folder + "/S2-2017-T31TFM-meanstd.pkl"))`, or the same values as
//! `meanstd.json` (`{"mean": m, "std": s}`). The shape of the mean picks the rule: scalar, (C) channel-wise, or
//! (T, C) date- and channel-wise; all the arithmetic is float64, as in numpy.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::numpy_pickle::{self, NdArray};
use crate::engine::error::{Error, Result};

/// The file train.py reads, in the dataset folder.
pub const NORM_PICKLE: &str = "S2-2017-T31TFM-meanstd.pkl";
/// The same statistics as JSON, in the dataset folder.
pub const NORM_JSON: &str = "meanstd.json";

/// Normalisation statistics, by the shape of the mean.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum NormStats {
    /// `x = (x − m) / s`.
    Scalar(f64, f64),
    /// `x[t, c, :] = (x[t, c, :] − m[c]) / s[c]`.
    Channel(Vec<f64>, Vec<f64>),
    /// `x[t, c, :] = (x[t, c, :] − m[t, c]) / s[t, c]`; (T, means (T·C), stds (T·C)).
    DateChannel(usize, Vec<f64>, Vec<f64>),
}

impl NormStats {
    /// Checks that a (T, C, S) parcel of `path` fits these statistics.
    pub(super) fn check(&self, path: &Path, t: usize, c: usize) -> Result<()> {
        let bad = |m: String| Err(Error::format(path, m));
        match self {
            NormStats::Scalar(..) => Ok(()),
            NormStats::Channel(m, _) if m.len() != c => {
                bad(format!("{c} bands but {} normalisation channels", m.len()))
            }
            NormStats::DateChannel(nt, m, _) if *nt != t || m.len() != t * c => bad(format!(
                "{t} dates x {c} bands do not match the (T, C) = ({nt}, {}) normalisation",
                m.len() / nt.max(&1)
            )),
            _ => Ok(()),
        }
    }

    /// (mean, std) of date `t`, band `c` (C bands).
    pub(super) fn at(&self, t: usize, c: usize, bands: usize) -> (f64, f64) {
        match self {
            NormStats::Scalar(m, s) => (*m, *s),
            NormStats::Channel(m, s) => (m[c], s[c]),
            NormStats::DateChannel(_, m, s) => (m[t * bands + c], s[t * bands + c]),
        }
    }
}

/// The statistics to use: `explicit` (`.pkl` or `.json` by extension) or, by default, `<folder>/`[`NORM_PICKLE`],
/// else `<folder>/`[`NORM_JSON`], else none (no normalisation). Returns the file read with the statistics.
pub(super) fn find_norm(
    folder: &Path,
    explicit: Option<&Path>,
) -> Result<Option<(PathBuf, NormStats)>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match [NORM_PICKLE, NORM_JSON]
            .iter()
            .map(|n| folder.join(n))
            .find(|p| p.exists())
        {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let stats = read_norm(&path)?;
    Ok(Some((path, stats)))
}

/// Reads a `.pkl` (a pickled `(mean, std)` pair) or `.json` (`{"mean", "std"}`) normalisation file.
pub(super) fn read_norm(path: &Path) -> Result<NormStats> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let (mean, std) = match ext {
        "pkl" | "pickle" => {
            let mut v = numpy_pickle::read_arrays(path)?;
            if v.len() != 2 {
                return Err(Error::format(
                    path,
                    format!(
                        "expected a pickled (mean, std) pair, found {} arrays",
                        v.len()
                    ),
                ));
            }
            let std = v.pop().expect("two arrays");
            (v.pop().expect("two arrays"), std)
        }
        "json" => read_json_pair(path)?,
        _ => {
            return Err(Error::format(
                path,
                "normalisation file: expected a .pkl (pickled (mean, std)) or a .json ({\"mean\", \"std\"})",
            ))
        }
    };
    from_arrays(path, mean, std)
}

fn from_arrays(path: &Path, mean: NdArray, std: NdArray) -> Result<NormStats> {
    let bad = |m: String| Err(Error::format(path, m));
    if mean.shape != std.shape {
        return bad(format!(
            "the mean has shape {:?} but the std has shape {:?}",
            mean.shape, std.shape
        ));
    }
    if mean.data.is_empty() {
        return bad("empty normalisation statistics".into());
    }
    if let Some(i) = mean.data.iter().position(|m| !m.is_finite()) {
        return bad(format!(
            "mean value {i} (flat index) is {}: not a finite number",
            mean.data[i]
        ));
    }
    if let Some(i) = std.data.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return bad(format!(
            "std value {i} (flat index) is {}: not a positive number (it divides the inputs)",
            std.data[i]
        ));
    }
    Ok(match mean.shape.len() {
        0 => NormStats::Scalar(mean.data[0], std.data[0]),
        1 => NormStats::Channel(mean.data, std.data),
        2 => NormStats::DateChannel(mean.shape[0], mean.data, std.data),
        _ => {
            return bad(format!(
                "the mean has shape {:?}: expected a scalar, (C) or (T, C)",
                mean.shape
            ))
        }
    })
}

fn read_json_pair(path: &Path) -> Result<(NdArray, NdArray)> {
    let j = crate::data::json::read_json(path)?;
    let get = |k: &str| -> Result<NdArray> {
        let v = j
            .get(k)
            .ok_or_else(|| Error::format(path, format!("missing key {k:?}")))?;
        json_array(v).ok_or_else(|| {
            Error::format(
                path,
                format!("{k:?} is not a number or a rectangular 1-D/2-D numeric array"),
            )
        })
    };
    Ok((get("mean")?, get("std")?))
}

/// A number, a list of numbers or a rectangular list of lists of numbers.
fn json_array(v: &Value) -> Option<NdArray> {
    let row = |v: &Value| -> Option<Vec<f64>> { v.as_array()?.iter().map(Value::as_f64).collect() };
    match v {
        Value::Number(n) => Some(NdArray {
            shape: vec![],
            data: vec![n.as_f64()?],
        }),
        Value::Array(rows) if !rows.is_empty() && rows.iter().all(Value::is_array) => {
            let rows: Vec<Vec<f64>> = rows.iter().map(row).collect::<Option<_>>()?;
            let w = rows[0].len();
            if rows.iter().any(|r| r.len() != w) {
                return None;
            }
            Some(NdArray {
                shape: vec![rows.len(), w],
                data: rows.concat(),
            })
        }
        Value::Array(_) => {
            let r = row(v)?;
            Some(NdArray {
                shape: vec![r.len()],
                data: r,
            })
        }
        _ => None,
    }
}
