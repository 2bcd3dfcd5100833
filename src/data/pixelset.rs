//! The Sentinel-Agri pixel-set dataset (spec §2; `PixelSetData` of lightweight-temporal-attention-pytorch).
//!
//! Folder: `DATA/<pid>.npy` (T × C × S integer reflectances), `META/labels.json`, `META/dates.json`,
//! `META/<extra>.json` (geometric features) and the normalisation statistics (`meanstd.json`: `{"mean": m,
//! "std": s}`, the values of the original `.pkl` tuple; m scalar, (C) or (T, C)).
//!
//! Per sample, in the original order (§2.3): pixel sampling to `npixel` with a mask (S > npixel: `npixel`
//! distinct pixels drawn at random; 0 < S < npixel: the S pixels then copies of pixel 0, mask 0 on the copies;
//! S = 0: zero pixels, mask `[1, 0, …]`), normalisation in float64, cast to float32, mask replicated over
//! time, extra features standardised with the mean and sample std (ddof 1) over all parcels of the json,
//! replicated over time. Jitter is not applied (the original's test-time noise, §10.4 item 22). The random
//! draw uses sitsgpu's [`Rng`], not numpy's stream: only parcels with S ≤ npixel are reproduced exactly.
//!
//! Ids are the numerically sorted `DATA/*.npy` names; parcels whose label is outside the class subset are
//! dropped and the others get the index of their label in the subset (§2.2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::npy;
use crate::data::pastis::Date;
use crate::engine::error::{Error, Result};
use crate::engine::rng::Rng;

/// The 20 classes of `label_44class` kept by the original training script (§2.2).
pub const SUB_CLASSES: [i64; 20] = [
    1, 3, 4, 5, 6, 8, 9, 12, 13, 14, 16, 18, 19, 23, 28, 31, 33, 34, 36, 39,
];

/// Options of [`PixelSetDataset::open`] (the original constructor's arguments, train.py's values).
#[derive(Debug, Clone)]
pub struct PixelSetOptions {
    /// Nomenclature key of `labels.json` (`"label_44class"`).
    pub labels: String,
    /// Pixels per sample (`--npixel`, 64).
    pub npixel: usize,
    /// Classes kept, in training-label order (None: every label, unchanged).
    pub sub_classes: Option<Vec<i64>>,
    /// Name of the extra-feature json in META (`"geomfeat"`), or None for no extra features.
    pub extra_feature: Option<String>,
    /// Normalisation json (`{"mean", "std"}`); None: `<folder>/meanstd.json` if it exists, else no normalisation.
    pub norm: Option<PathBuf>,
}

impl Default for PixelSetOptions {
    fn default() -> Self {
        PixelSetOptions {
            labels: "label_44class".into(),
            npixel: 64,
            sub_classes: Some(SUB_CLASSES.to_vec()),
            extra_feature: Some("geomfeat".into()),
            norm: None,
        }
    }
}

/// Normalisation statistics, by the shape of the mean (§2.3 step 3).
#[derive(Debug, Clone)]
enum NormStats {
    Scalar(f64, f64),
    Channel(Vec<f64>, Vec<f64>),
    DateChannel(usize, Vec<f64>, Vec<f64>),
}

/// One sample: pixels (T, C, npixel), mask (T, npixel), extra (T, E), all float32, row-major.
#[derive(Debug, Clone)]
pub struct PixelSetSample {
    /// Parcel id.
    pub id: u64,
    /// Normalised pixels (T, C, npixel).
    pub pixels: Vec<f32>,
    /// Pixel mask (T, npixel): 1 real pixel, 0 padding copy.
    pub mask: Vec<f32>,
    /// Standardised extra features (T, E) (empty without extra features).
    pub extra: Vec<f32>,
    /// Training label (index in the class subset).
    pub target: usize,
}

/// A batch: pixels (B, T, C, S), mask (B, T, S), extra (B, T, E), targets (B).
#[derive(Debug, Clone)]
pub struct PixelSetBatch {
    /// [B, T, C, S].
    pub shape: [usize; 4],
    /// Pixels (B, T, C, S).
    pub pixels: Vec<f32>,
    /// Mask (B, T, S).
    pub mask: Vec<f32>,
    /// Extra features (B, T, E).
    pub extra: Vec<f32>,
    /// Number of extra features E.
    pub extra_size: usize,
    /// Training labels.
    pub targets: Vec<usize>,
    /// Parcel ids.
    pub ids: Vec<u64>,
}

/// A Sentinel-Agri pixel-set folder.
#[derive(Debug, Clone)]
pub struct PixelSetDataset {
    folder: PathBuf,
    opts: PixelSetOptions,
    ids: Vec<u64>,
    targets: Vec<usize>,
    positions: Vec<i64>,
    norm: Option<NormStats>,
    extra: BTreeMap<String, Vec<f64>>,
    extra_m: Vec<f64>,
    extra_s: Vec<f64>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

fn f64_list(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::Number(n) => Some(vec![n.as_f64()?]),
        Value::Array(a) => a.iter().map(Value::as_f64).collect(),
        _ => None,
    }
}

fn parse_norm(path: &Path) -> Result<NormStats> {
    let j = read_json(path)?;
    let bad = |what: &str| Error::format(path, what.to_string());
    let get = |k: &str| j.get(k).ok_or_else(|| bad(&format!("missing key {k:?}")));
    let (m, s) = (get("mean")?, get("std")?);
    let flat = |v: &Value| -> Option<(Vec<usize>, Vec<f64>)> {
        match v {
            Value::Number(n) => Some((vec![], vec![n.as_f64()?])),
            Value::Array(rows) if rows.iter().all(Value::is_array) => {
                let mut out = Vec::new();
                let w = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
                for r in rows {
                    let r = f64_list(r)?;
                    if r.len() != w {
                        return None;
                    }
                    out.extend(r);
                }
                Some((vec![rows.len(), w], out))
            }
            Value::Array(_) => {
                let v = f64_list(v)?;
                Some((vec![v.len()], v))
            }
            _ => None,
        }
    };
    let (ms, mv) =
        flat(m).ok_or_else(|| bad("\"mean\" is not a number or a 1-D/2-D numeric array"))?;
    let (ss, sv) =
        flat(s).ok_or_else(|| bad("\"std\" is not a number or a 1-D/2-D numeric array"))?;
    if ms != ss {
        return Err(bad(&format!(
            "\"mean\" has shape {ms:?} but \"std\" has shape {ss:?}"
        )));
    }
    Ok(match ms.len() {
        0 => NormStats::Scalar(mv[0], sv[0]),
        1 => NormStats::Channel(mv, sv),
        _ => NormStats::DateChannel(ms[0], mv, sv),
    })
}

impl PixelSetDataset {
    /// Opens `folder`: lists and sorts the parcels, reads labels, dates, extra features and normalisation.
    /// Every missing or malformed file is an error naming it.
    pub fn open(folder: impl AsRef<Path>, opts: PixelSetOptions) -> Result<PixelSetDataset> {
        let folder = folder.as_ref().to_path_buf();
        let data = folder.join("DATA");
        let mut pids = Vec::new();
        for e in std::fs::read_dir(&data).map_err(|e| Error::io(&data, e))? {
            let e = e.map_err(|e| Error::io(&data, e))?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".npy") {
                let id: u64 = stem.parse().map_err(|_| {
                    Error::format(
                        e.path(),
                        "parcel file names must be integer ids (<pid>.npy)",
                    )
                })?;
                pids.push(id);
            }
        }
        pids.sort_unstable();
        if pids.is_empty() {
            return Err(Error::format(&data, "no <pid>.npy parcel file"));
        }
        // Labels.
        let lpath = folder.join("META").join("labels.json");
        let labels = read_json(&lpath)?;
        let nomen = labels
            .get(&opts.labels)
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::format(
                    &lpath,
                    format!(
                        "no nomenclature {:?} (an object of pid → label)",
                        opts.labels
                    ),
                )
            })?;
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for &p in &pids {
            let l = nomen
                .get(&p.to_string())
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    Error::format(
                        &lpath,
                        format!("no integer {:?} label for parcel {p}", opts.labels),
                    )
                })?;
            match &opts.sub_classes {
                Some(sub) => {
                    if let Some(k) = sub.iter().position(|&c| c == l) {
                        ids.push(p);
                        targets.push(k);
                    }
                }
                None => {
                    if l < 0 {
                        return Err(Error::format(
                            &lpath,
                            format!("negative label {l} for parcel {p}"),
                        ));
                    }
                    ids.push(p);
                    targets.push(l as usize);
                }
            }
        }
        // Dates → positions (days since the first date).
        let dpath = folder.join("META").join("dates.json");
        let dj = read_json(&dpath)?;
        let dobj = dj
            .as_object()
            .ok_or_else(|| Error::format(&dpath, "expected an object {\"0\": YYYYMMDD, ...}"))?;
        let mut dates = Vec::new();
        for i in 0..dobj.len() {
            let v = dobj.get(&i.to_string()).ok_or_else(|| {
                Error::format(
                    &dpath,
                    format!(
                        "missing key \"{i}\" (keys must be \"0\"..\"{}\")",
                        dobj.len() - 1
                    ),
                )
            })?;
            let n = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
            let d = n.and_then(Date::from_yyyymmdd).ok_or_else(|| {
                Error::format(&dpath, format!("key \"{i}\": {v} is not a YYYYMMDD date"))
            })?;
            dates.push(d);
        }
        let positions = dates.iter().map(|d| d.days_since(dates[0]).abs()).collect();
        // Extra features: mean and sample std over all parcels of the file.
        let (mut extra, mut extra_m, mut extra_s) = (BTreeMap::new(), Vec::new(), Vec::new());
        if let Some(name) = &opts.extra_feature {
            let epath = folder.join("META").join(format!("{name}.json"));
            let ej = read_json(&epath)?;
            let obj = ej
                .as_object()
                .ok_or_else(|| Error::format(&epath, "expected an object {pid: [features]}"))?;
            for (k, v) in obj {
                let f = f64_list(v).ok_or_else(|| {
                    Error::format(&epath, format!("parcel {k}: features are not numbers"))
                })?;
                extra.insert(k.clone(), f);
            }
            let e = extra.values().next().map_or(0, Vec::len);
            if extra.values().any(|v| v.len() != e) || extra.len() < 2 {
                return Err(Error::format(
                    &epath,
                    "every parcel needs the same number of features, and at least 2 parcels are needed for the std",
                ));
            }
            let n = extra.len() as f64;
            extra_m = (0..e)
                .map(|j| extra.values().map(|v| v[j]).sum::<f64>() / n)
                .collect();
            extra_s = (0..e)
                .map(|j| {
                    let ss: f64 = extra.values().map(|v| (v[j] - extra_m[j]).powi(2)).sum();
                    (ss / (n - 1.0)).sqrt()
                })
                .collect();
            for &p in &ids {
                if !extra.contains_key(&p.to_string()) {
                    return Err(Error::format(&epath, format!("no features for parcel {p}")));
                }
            }
        }
        let norm_path = opts.norm.clone().or_else(|| {
            let p = folder.join("meanstd.json");
            p.exists().then_some(p)
        });
        let norm = norm_path.as_deref().map(parse_norm).transpose()?;
        Ok(PixelSetDataset {
            folder,
            opts,
            ids,
            targets,
            positions,
            norm,
            extra,
            extra_m,
            extra_s,
        })
    }

    /// Number of samples (after the class filter).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Parcel ids, in sample order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Training labels, in sample order.
    pub fn targets(&self) -> &[usize] {
        &self.targets
    }

    /// Date positions (days since the first date), the L-TAE's bespoke positions (§2.4).
    pub fn date_positions(&self) -> &[i64] {
        &self.positions
    }

    /// Number of extra features per sample (0 without).
    pub fn extra_size(&self) -> usize {
        self.extra_m.len()
    }

    /// Sample `i`; `rng` draws the pixels of parcels with more than `npixel` pixels.
    pub fn get(&self, i: usize, rng: &mut Rng) -> Result<PixelSetSample> {
        let id = self.ids[i];
        let path = self.folder.join("DATA").join(format!("{id}.npy"));
        let a = npy::read_f32(&path)?;
        if a.shape.len() != 3 {
            return Err(Error::format(
                &path,
                format!("expected a T x C x S array, got shape {:?}", a.shape),
            ));
        }
        let (t, c, s) = (a.shape[0], a.shape[1], a.shape[2]);
        let np = self.opts.npixel;
        // Pixel indices and mask (one per output position).
        let (idx, m): (Vec<Option<usize>>, Vec<f32>) = if s > np {
            let mut all: Vec<usize> = (0..s).collect();
            for k in 0..np {
                let j = k + rng.below((s - k) as u64) as usize;
                all.swap(k, j);
            }
            (all[..np].iter().map(|&j| Some(j)).collect(), vec![1.0; np])
        } else if s == 0 {
            let mut m = vec![0.0; np];
            m[0] = 1.0;
            (vec![None; np], m)
        } else {
            (
                (0..np).map(|k| Some(if k < s { k } else { 0 })).collect(),
                (0..np).map(|k| if k < s { 1.0 } else { 0.0 }).collect(),
            )
        };
        if let Some(NormStats::DateChannel(nt, mv, _)) = &self.norm {
            if *nt != t || mv.len() != t * c {
                return Err(Error::format(
                    &path,
                    format!(
                        "shape {:?} does not match the (T, C) = ({nt}, {}) normalisation",
                        a.shape,
                        mv.len() / nt
                    ),
                ));
            }
        }
        if let Some(NormStats::Channel(mv, _)) = &self.norm {
            if mv.len() != c {
                return Err(Error::format(
                    &path,
                    format!("{c} bands but {} normalisation channels", mv.len()),
                ));
            }
        }
        let mut pixels = Vec::with_capacity(t * c * np);
        for ti in 0..t {
            for ci in 0..c {
                let (mu, sd) = match &self.norm {
                    None => (0.0, 1.0),
                    Some(NormStats::Scalar(m, s)) => (*m, *s),
                    Some(NormStats::Channel(m, s)) => (m[ci], s[ci]),
                    Some(NormStats::DateChannel(_, m, s)) => (m[ti * c + ci], s[ti * c + ci]),
                };
                for k in idx.iter() {
                    let raw = k.map_or(0.0, |j| a.data[(ti * c + ci) * s + j] as f64);
                    pixels.push(((raw - mu) / sd) as f32);
                }
            }
        }
        let mask: Vec<f32> = (0..t).flat_map(|_| m.iter().copied()).collect();
        let extra = match &self.opts.extra_feature {
            Some(_) => {
                let f = &self.extra[&id.to_string()];
                let ef: Vec<f32> = f
                    .iter()
                    .zip(self.extra_m.iter().zip(&self.extra_s))
                    .map(|(&v, (&m, &s))| ((v - m) / s) as f32)
                    .collect();
                (0..t).flat_map(|_| ef.iter().copied()).collect()
            }
            None => Vec::new(),
        };
        Ok(PixelSetSample {
            id,
            pixels,
            mask,
            extra,
            target: self.targets[i],
        })
    }

    /// The samples `indices`, stacked (all parcels must have the same T and C).
    pub fn load_batch(&self, indices: &[usize], rng: &mut Rng) -> Result<PixelSetBatch> {
        let mut b = PixelSetBatch {
            shape: [indices.len(), 0, 0, self.opts.npixel],
            pixels: Vec::new(),
            mask: Vec::new(),
            extra: Vec::new(),
            extra_size: self.extra_size(),
            targets: Vec::new(),
            ids: Vec::new(),
        };
        for (n, &i) in indices.iter().enumerate() {
            let s = self.get(i, rng)?;
            let t = s.mask.len() / self.opts.npixel;
            let c = s.pixels.len() / (t * self.opts.npixel).max(1);
            if n == 0 {
                b.shape[1] = t;
                b.shape[2] = c;
            } else if (t, c) != (b.shape[1], b.shape[2]) {
                return Err(Error::format(
                    self.folder.join("DATA").join(format!("{}.npy", s.id)),
                    format!(
                        "{t} dates x {c} bands, but the batch has {} x {}",
                        b.shape[1], b.shape[2]
                    ),
                ));
            }
            b.pixels.extend(s.pixels);
            b.mask.extend(s.mask);
            b.extra.extend(s.extra);
            b.targets.push(s.target);
            b.ids.push(s.id);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Option<PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/datasets");
        p.join("s2agri_tiny").exists().then_some(p)
    }

    #[test]
    fn matches_the_original_loader() {
        let Some(root) = fixtures() else {
            eprintln!("SKIPPED: no fixtures");
            return;
        };
        let ds =
            PixelSetDataset::open(root.join("s2agri_tiny"), PixelSetOptions::default()).unwrap();
        let lj = read_json(&root.join("loader_expected/loaders.json")).unwrap();
        let lj = &lj["s2agri_tiny"];
        let ids: Vec<u64> = lj["ids_in_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ds.ids(), &ids[..]);
        let tg: Vec<usize> = lj["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ds.targets(), &tg[..]);
        let pos: Vec<i64> = lj["date_positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(ds.date_positions(), &pos[..]);
        let exp = crate::data::state_dict::read_npz(root.join("loader_expected/s2agri_tiny.npz"))
            .unwrap();
        let f = |k: &str| -> Vec<f64> {
            let e = exp.get(k).unwrap_or_else(|| panic!("{k}"));
            match &e.values {
                crate::data::state_dict::Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
                crate::data::state_dict::Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
            }
        };
        let mut rng = Rng::new(0);
        for (i, &id) in ids.iter().enumerate() {
            let s = ds.get(i, &mut rng).unwrap();
            assert_eq!(
                s.mask.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                f(&format!("mask_{id}"))
            );
            let ex = f(&format!("extra_{id}"));
            for (a, b) in s.extra.iter().zip(&ex) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "extra {id}: {a} vs {b}"
                );
            }
            assert_eq!(f(&format!("target_{id}")), vec![s.target as f64]);
            let st = f(&format!("input_stats_{id}"));
            let (t, c, np) = (24, 10, 64);
            assert_eq!(s.pixels.len(), t * c * np);
            for tc in 0..t * c {
                let row = &s.pixels[tc * np..(tc + 1) * np];
                let sum: f64 = row.iter().map(|&v| v as f64).sum();
                let sq: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
                let e = &st[tc * 3..tc * 3 + 3];
                assert!(
                    (sum - e[0]).abs() <= 1e-5 * e[0].abs().max(1.0),
                    "{id} sum {sum} vs {}",
                    e[0]
                );
                assert!(
                    (sq - e[1]).abs() <= 1e-5 * e[1].abs().max(1.0),
                    "{id} sq {sq} vs {}",
                    e[1]
                );
                assert_eq!(row[0], e[2] as f32, "{id} pixel 0");
            }
        }
    }

    #[test]
    fn sampling_cases() {
        // npixel 3: parcel 1 has S = 5 (3 distinct pixels drawn, mask all ones), parcel 2 has S = 0 (zero
        // pixels, mask [1, 0, 0]); T = 2, C = 1, pixel s of parcel 1 holds the value 10·s + t, no normalisation.
        let dir = std::env::temp_dir().join(format!("sitsgpu-pixelset-s-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("DATA")).unwrap();
        std::fs::create_dir_all(dir.join("META")).unwrap();
        let v: Vec<f32> = (0..2)
            .flat_map(|t| (0..5).map(move |s| (10 * s + t) as f32))
            .collect();
        npy::write_f32(dir.join("DATA/1.npy"), &[2, 1, 5], &v).unwrap();
        npy::write_f32(dir.join("DATA/2.npy"), &[2, 1, 0], &[]).unwrap();
        std::fs::write(
            dir.join("META/labels.json"),
            r#"{"label_44class": {"1": 3, "2": 1}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("META/dates.json"),
            r#"{"0": 20170103, "1": 20170119}"#,
        )
        .unwrap();
        let opts = PixelSetOptions {
            npixel: 3,
            extra_feature: None,
            ..PixelSetOptions::default()
        };
        let ds = PixelSetDataset::open(&dir, opts).unwrap();
        assert_eq!(ds.targets(), &[1, 0]);
        assert_eq!(ds.date_positions(), &[0, 16]);
        let mut rng = Rng::new(7);
        let a = ds.get(0, &mut rng).unwrap();
        assert_eq!(a.mask, vec![1.0; 6]);
        let mut picked: Vec<f32> = a.pixels[..3].to_vec();
        // the same pixels at both dates
        assert!(a.pixels[3..]
            .iter()
            .zip(&picked)
            .all(|(p1, p0)| *p1 == p0 + 1.0));
        picked.sort_by(f32::total_cmp);
        picked.dedup();
        assert_eq!(picked.len(), 3);
        let b = ds.get(1, &mut rng).unwrap();
        assert_eq!(b.pixels, vec![0.0; 6]);
        assert_eq!(b.mask, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sitsgpu-pixelset-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("DATA")).unwrap();
        std::fs::create_dir_all(dir.join("META")).unwrap();
        std::fs::write(dir.join("DATA/3.npy"), b"junk").unwrap();
        let e = PixelSetDataset::open(&dir, PixelSetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("labels.json"), "{e}");
        std::fs::write(
            dir.join("META/labels.json"),
            r#"{"label_44class": {"3": 1}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("META/dates.json"), r#"{"0": 20170103}"#).unwrap();
        std::fs::write(
            dir.join("META/geomfeat.json"),
            r#"{"3": [1, 2], "4": [2, 3]}"#,
        )
        .unwrap();
        let ds = PixelSetDataset::open(&dir, PixelSetOptions::default()).unwrap();
        let e = ds.get(0, &mut Rng::new(0)).unwrap_err().to_string();
        assert!(e.contains("3.npy"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
