//! The Sentinel-Agri pixel-set dataset (spec §2; `PixelSetData` of lightweight-temporal-attention-pytorch).
//!
//! Folder: `DATA/<pid>.npy` (T × C × S integer reflectances), `META/labels.json`, `META/dates.json`,
//! `META/<extra>.json` (geometric features) and the normalisation statistics: by default
//! `S2-2017-T31TFM-meanstd.pkl`, the pickled `(mean, std)` pair train.py loads, else `meanstd.json` (`{"mean":
//! m, "std": s}`, the same values); m scalar, (C) or (T, C) (see [`norm`]).
//!
//! Per sample, in the original order (§2.3):
//! 1. pixel sampling to `npixel` with a mask: S > npixel: `np.random.choice(list(range(S)), size=npixel,
//!    replace=False)` (mask all ones); 0 < S < npixel: the S pixels then copies of pixel 0, mask 0 on the
//!    copies; S = 0: zero pixels, mask `[1, 0, …]`; S = npixel: unchanged;
//! 2. normalisation, float64;
//! 3. jitter `x + clip(σ·randn(T, C, npixel), −clip, clip)`, float64 (σ = 0.01, clip = 0.05 by default, as the
//!    original, which applies it to the training, validation *and* test samples, §10.4 item 22); drawn for every
//!    parcel, S ≤ npixel and S = 0 included, after that parcel's pixel draw;
//! 4. cast to float32; mask replicated over time; extra features standardised with the mean and sample std
//!    (ddof 1) over all parcels of the json, replicated over time.
//!
//! The random parts come from a [`Draw`]: [`Draw::Random`] takes them from a [`NumpyRandomState`], numpy's
//! legacy global stream, so that a run seeded like the original (`np.random.seed(rdm_seed)`) and reading the
//! samples in the same order, in one process, sees the same pixels and noise. (The original's DataLoader uses
//! `num_workers = 8`: each worker process draws from its own copy of the stream, which torch < 1.9 did not
//! reseed, so that exact sequence is not reproducible.) [`Draw::Fixed`] is deterministic evaluation.
//!
//! Ids are the numerically sorted `DATA/*.npy` names; parcels whose label is outside the class subset are
//! dropped and the others get the index of their label in the subset (§2.2). [`kfold_splits`] is train.py's
//! cross-validation split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::json::read_json;
use crate::data::npy::{self, Array};
use crate::data::numpy_random::NumpyRandomState;
use crate::data::pastis::Date;
use crate::engine::error::{Error, Result};

pub mod norm;
mod split;
#[cfg(test)]
mod tests;

use norm::NormStats;
pub use split::{kfold_splits, Split};

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
    /// Normalisation file, `.pkl` (pickled `(mean, std)`) or `.json` (`{"mean", "std"}`); None: the folder's
    /// `S2-2017-T31TFM-meanstd.pkl`, else its `meanstd.json`, else no normalisation.
    pub norm: Option<PathBuf>,
    /// Gaussian jitter `(sigma, clip)` added under [`Draw::Random`] (the original's `jitter`, default
    /// `(0.01, 0.05)`); None: no jitter.
    pub jitter: Option<(f64, f64)>,
}

impl Default for PixelSetOptions {
    fn default() -> Self {
        PixelSetOptions {
            labels: "label_44class".into(),
            npixel: 64,
            sub_classes: Some(SUB_CLASSES.to_vec()),
            extra_feature: Some("geomfeat".into()),
            norm: None,
            jitter: Some((0.01, 0.05)),
        }
    }
}

/// Where the random parts of a sample come from.
#[derive(Debug)]
pub enum Draw<'a> {
    /// As the original: pixels drawn from, and jitter (when `opts.jitter` is set) added with, this numpy stream.
    Random(&'a mut NumpyRandomState),
    /// Deterministic evaluation: no jitter; parcels with more than npixel pixels take the draw of a stream
    /// seeded with their parcel id (the same pixels at every call).
    Fixed,
}

impl Draw<'_> {
    /// The same source, borrowed again (to pass it to several calls).
    pub fn reborrow(&mut self) -> Draw<'_> {
        match self {
            Draw::Random(r) => Draw::Random(r),
            Draw::Fixed => Draw::Fixed,
        }
    }
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

impl PixelSetBatch {
    /// Parcels `start..end` of the batch (a micro-batch).
    pub fn slice(&self, start: usize, end: usize) -> PixelSetBatch {
        let [b, t, c, s] = self.shape;
        assert!(
            start < end && end <= b,
            "PixelSetBatch::slice: expected a range within 0..{b}, got {start}..{end}"
        );
        let cut = |v: &[f32]| {
            let per = v.len() / b.max(1);
            v[start * per..end * per].to_vec()
        };
        PixelSetBatch {
            shape: [end - start, t, c, s],
            pixels: cut(&self.pixels),
            mask: cut(&self.mask),
            extra: cut(&self.extra),
            extra_size: self.extra_size,
            targets: self.targets[start..end].to_vec(),
            ids: self.ids[start..end].to_vec(),
        }
    }
}

/// A Sentinel-Agri pixel-set folder.
#[derive(Debug, Clone)]
pub struct PixelSetDataset {
    folder: PathBuf,
    opts: PixelSetOptions,
    ids: Vec<u64>,
    targets: Vec<usize>,
    positions: Vec<i64>,
    norm: Option<(PathBuf, NormStats)>,
    extra: BTreeMap<String, Vec<f64>>,
    extra_m: Vec<f64>,
    extra_s: Vec<f64>,
    /// Bands C of every parcel.
    bands: usize,
    /// Raw (T, C, S) arrays of every sample, after [`PixelSetDataset::preload`].
    raw: Option<Vec<Array<f32>>>,
}

fn f64_list(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::Number(n) => Some(vec![n.as_f64()?]),
        Value::Array(a) => a.iter().map(Value::as_f64).collect(),
        _ => None,
    }
}

/// Checks the options that the original would only trip over later (or never).
fn validate(opts: &PixelSetOptions) -> Result<()> {
    if opts.npixel == 0 {
        return Err(Error::Invalid(
            "pixel-set options: npixel must be at least 1".into(),
        ));
    }
    if let Some((sigma, clip)) = opts.jitter {
        if !(sigma.is_finite() && sigma >= 0.0 && clip.is_finite() && clip >= 0.0) {
            return Err(Error::Invalid(format!(
                "pixel-set options: jitter (sigma, clip) = ({sigma}, {clip}) must be finite and non-negative"
            )));
        }
    }
    Ok(())
}

impl PixelSetDataset {
    /// Opens `folder`: lists and sorts the parcels, reads labels, dates, extra features and normalisation.
    /// Every missing or malformed file is an error naming it.
    pub fn open(folder: impl AsRef<Path>, opts: PixelSetOptions) -> Result<PixelSetDataset> {
        validate(&opts)?;
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
        if ids.is_empty() {
            return Err(Error::format(
                &lpath,
                match &opts.sub_classes {
                    Some(sub) => format!(
                        "none of the {} parcels of DATA/ has a {:?} label among the {} classes kept {sub:?}: \
                         there is nothing to train on or evaluate",
                        pids.len(),
                        opts.labels,
                        sub.len()
                    ),
                    None => "no parcel".to_string(),
                },
            ));
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

        let norm = norm::find_norm(&folder, opts.norm.as_deref())?;
        let mut ds = PixelSetDataset {
            folder,
            opts,
            ids,
            targets,
            positions,
            norm,
            extra,
            extra_m,
            extra_s,
            bands: 0,
            raw: None,
        };
        ds.bands = ds.check_parcels()?;
        Ok(ds)
    }

    /// Checks every kept parcel's file before anything runs: its header (dtype, truncation, a (T, C, S) shape
    /// with one frame per date of `META/dates.json` and the same bands as the other parcels and as the
    /// normalisation) and, for floating-point files, its values (no NaN or infinity). Integer files, as the real
    /// Sentinel-Agri data, need only their header. Returns the number of bands C.
    fn check_parcels(&self) -> Result<usize> {
        let mut bands: Option<(usize, u64)> = None;
        for &id in &self.ids {
            let path = self.parcel_path(id);
            let h = npy::read_header(&path)?;
            let (t, c) = self.check_shape(&path, &h.shape)?;
            match bands {
                None => bands = Some((c, id)),
                Some((c0, id0)) if c0 != c => {
                    return Err(Error::format(
                        &path,
                        format!(
                        "{c} bands, but parcel {id0} has {c0}: every parcel needs the same bands"
                    ),
                    ))
                }
                Some(_) => {}
            }
            if let Some((_, n)) = &self.norm {
                n.check(&path, t, c)?;
            }
            if h.is_float() {
                let a = npy::read_f32(&path)?;
                check_finite(&path, &a)?;
            }
        }
        Ok(bands.map_or(0, |(c, _)| c))
    }

    /// A parcel's (T, C, S) shape, with T the number of dates of `META/dates.json`; returns (T, C).
    fn check_shape(&self, path: &Path, shape: &[usize]) -> Result<(usize, usize)> {
        if shape.len() != 3 {
            return Err(Error::format(
                path,
                format!("expected a T x C x S array, got shape {shape:?}"),
            ));
        }
        let (t, c) = (shape[0], shape[1]);
        if t != self.positions.len() {
            return Err(Error::format(
                path,
                format!(
                    "{t} dates in the array, but META/dates.json lists {}: one frame per date is expected",
                    self.positions.len()
                ),
            ));
        }
        Ok((t, c))
    }

    /// The dataset folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Number of bands C of the parcels.
    pub fn bands(&self) -> usize {
        self.bands
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

    /// The options the dataset was opened with.
    pub fn options(&self) -> &PixelSetOptions {
        &self.opts
    }

    /// The normalisation file in use (None: no normalisation).
    pub fn norm_file(&self) -> Option<&Path> {
        self.norm.as_ref().map(|(p, _)| p.as_path())
    }

    /// Keeps every sample's raw (T, C, S) array in memory (4 bytes a value), so that [`get`](Self::get) stops
    /// reading `DATA/`. Unlike the original `--preload` (`PixelSetData_preloaded`), which caches *processed*
    /// samples and so freezes one pixel draw and one jitter for the whole training, this caches the raw arrays:
    /// every access still draws anew, exactly as without preloading.
    pub fn preload(&mut self) -> Result<()> {
        if self.raw.is_none() {
            let raw = (0..self.len())
                .map(|i| self.read_raw(i))
                .collect::<Result<Vec<_>>>()?;
            self.raw = Some(raw);
        }
        Ok(())
    }

    fn parcel_path(&self, id: u64) -> PathBuf {
        self.folder.join("DATA").join(format!("{id}.npy"))
    }

    /// Sample `i`'s (T, C, S) array from disk, checked against the normalisation.
    fn read_raw(&self, i: usize) -> Result<Array<f32>> {
        let path = self.parcel_path(self.ids[i]);
        let a = npy::read_f32(&path)?;
        let (t, c) = self.check_shape(&path, &a.shape)?;
        if c != self.bands {
            return Err(Error::format(
                &path,
                format!("{c} bands, but the other parcels have {}", self.bands),
            ));
        }
        if let Some((_, n)) = &self.norm {
            n.check(&path, t, c)?;
        }
        check_finite(&path, &a)?;
        Ok(a)
    }

    /// Sample `i`, processed as the original (module doc); `draw` gives the pixel draw and the jitter.
    pub fn get(&self, i: usize, draw: Draw<'_>) -> Result<PixelSetSample> {
        let id = self.ids[i];
        let read;
        let a = match &self.raw {
            Some(raw) => &raw[i],
            None => {
                read = self.read_raw(i)?;
                &read
            }
        };
        let (t, c, s) = (a.shape[0], a.shape[1], a.shape[2]);
        let np = self.opts.npixel;
        let mut draw = draw;
        // Pixel index of each output position (None: a zero pixel) and the mask.
        let (idx, m): (Vec<Option<usize>>, Vec<f32>) = if s > np {
            let picked = match &mut draw {
                Draw::Random(r) => r.choice_without_replacement(s, np),
                // np.random.seed(pid) (ids beyond 2^32 − 1 wrap, where numpy would refuse the seed).
                Draw::Fixed => NumpyRandomState::new(id as u32).choice_without_replacement(s, np),
            };
            (picked.into_iter().map(Some).collect(), vec![1.0; np])
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
        // Normalisation (float64).
        let mut x = Vec::with_capacity(t * c * np);
        for ti in 0..t {
            for ci in 0..c {
                let (mu, sd) = self
                    .norm
                    .as_ref()
                    .map_or((0.0, 1.0), |(_, n)| n.at(ti, ci, c));
                for k in &idx {
                    let raw = k.map_or(0.0, |j| a.data[(ti * c + ci) * s + j] as f64);
                    x.push(match &self.norm {
                        Some(_) => (raw - mu) / sd,
                        None => raw,
                    });
                }
            }
        }
        // Jitter: x + clip(sigma * randn(T, C, npixel), -clip, clip), float64.
        if let (Draw::Random(r), Some((sigma, clip))) = (&mut draw, self.opts.jitter) {
            let mut g = vec![0.0; x.len()];
            r.fill_standard_normal(&mut g);
            for (v, g) in x.iter_mut().zip(g) {
                *v += (sigma * g).clamp(-clip, clip);
            }
        }
        let pixels: Vec<f32> = x.into_iter().map(|v| v as f32).collect();
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

    /// The samples `indices`, in that order (so `draw` is consumed in that order), stacked (all parcels must
    /// have the same T and C).
    pub fn load_batch(&self, indices: &[usize], mut draw: Draw<'_>) -> Result<PixelSetBatch> {
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
            let s = self.get(i, draw.reborrow())?;
            let t = s.mask.len() / self.opts.npixel;
            let c = s.pixels.len() / (t * self.opts.npixel).max(1);
            if n == 0 {
                b.shape[1] = t;
                b.shape[2] = c;
            } else if (t, c) != (b.shape[1], b.shape[2]) {
                return Err(Error::format(
                    self.parcel_path(s.id),
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

/// A NaN or an infinity in a parcel is an error naming the file and the first bad (t, c, s) index (the original
/// would train on it silently).
fn check_finite(path: &Path, a: &Array<f32>) -> Result<()> {
    match npy::first_non_finite(&a.data, &a.shape) {
        None => Ok(()),
        Some((idx, v)) => Err(Error::format(
            path,
            format!(
                "non-finite value {v} at (t, c, s) = ({}): input data must be finite",
                idx.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
