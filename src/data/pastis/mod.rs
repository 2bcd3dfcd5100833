//! The PASTIS dataset (spec §1), read exactly as the original `PASTIS_Dataset` of VSainteuf/utae-paps.
//!
//! ```text
//! folder/metadata.geojson                      ID_PATCH, Fold, dates-S2 per patch
//! folder/NORM_S2_patch.json                    Fold_1..Fold_5 -> {mean: [10], std: [10]}
//! folder/DATA_S2/S2_{id}.npy                   (T, 10, H, W), any numeric dtype
//! folder/ANNOTATIONS/TARGET_{id}.npy           (K, H, W), channel 0 = class 0..19
//! folder/INSTANCE_ANNOTATIONS/{HEATMAP,INSTANCES,ZONES}_{id}.npy   (H, W) each
//! ```
//!
//! What a sample is, in the original's order of operations:
//! 1. the patch order is the metadata sorted by integer ID_PATCH, then, when `folds` is given, the
//!    concatenation of each requested fold's patches in the order the folds are listed (`pd.concat`);
//! 2. dates: each `dates-S2` YYYYMMDD becomes `(date - ref_date).days`; the distinct offsets in ascending
//!    order are the sample's dates (`meta.rs`);
//! 3. data: S2 cast to float32, then `(x - mean_c) / std_c` in float32 with mean/std the element-wise average
//!    of the NORM vectors of the requested folds (all five when `folds` is `None`), averaged in f64 and cast
//!    to f32;
//! 4. target: TARGET channel 0 as int64; with [`Target::Instance`] also the (H, W, 7) instance target
//!    (`arrays.rs`); with [`Target::Unlabeled`] none (prediction on a folder without annotations);
//! 5. `mono_date`: keep one frame (by index, or the closest to a date, first on ties) and a scalar date.
//!
//! [`collate`] is the original `pad_collate`; [`PastisDataset::batches`] reads and collates batches ahead on a
//! background thread. Every error names the file and what is wrong with it.

mod arrays;
pub(crate) use arrays::instance_target;
mod collate;
mod meta;
pub(crate) use meta::read_norm;
mod reader;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bad_input;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use collate::{collate, Batch};
use meta::PatchMeta;
pub use meta::{Date, DATE_RANGE};
pub use reader::Batches;

use crate::data::npy;
use crate::engine::error::{Error, Result};

/// Number of Sentinel-2 bands in PASTIS.
pub const S2_BANDS: usize = 10;

/// The default `pad_value` of the original training scripts (`--pad_value 0`).
pub const DEFAULT_PAD_VALUE: f32 = 0.0;

/// Which target the dataset yields (the original `target` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// `"semantic"`: TARGET channel 0 as int64 classes.
    #[default]
    Semantic,
    /// `"instance"`: also the (H, W, 7) float32 target of PaPs (spec §1.10).
    Instance,
    /// No annotation at all (a folder without `ANNOTATIONS/`, a user's own area): only the S2 series and the
    /// dates are read, and [`PastisSample::target`] is empty. For prediction; training needs labels.
    Unlabeled,
}

/// The mono-date ablation (the original `mono_date` argument): keep a single frame per patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonoDate {
    /// Keep frame k (0-based position in the patch's series).
    Index(usize),
    /// Keep the frame whose day offset is closest to this date (first on ties).
    Date(Date),
}

/// The command-line spelling [`MonoDate::parse`] reads back: the index, or the date as `YYYY-MM-DD`.
impl std::fmt::Display for MonoDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonoDate::Index(k) => write!(f, "{k}"),
            MonoDate::Date(d) => write!(f, "{d}"),
        }
    }
}

impl MonoDate {
    /// Parses the original command-line value: a `YYYY-MM-DD` date if it contains `-`, else an index.
    pub fn parse(s: &str) -> Result<MonoDate> {
        if s.contains('-') {
            Date::parse(s).map(MonoDate::Date)
        } else {
            s.trim().parse().map(MonoDate::Index).map_err(|_| {
                Error::Invalid(format!(
                    "mono_date {s:?}: neither a frame index nor a YYYY-MM-DD date"
                ))
            })
        }
    }
}

/// How to open a PASTIS folder (the original constructor's arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct PastisOptions {
    /// Folds to keep (1..=5), in this order; `None` = all patches, and normalisation over all five folds.
    pub folds: Option<Vec<usize>>,
    /// Normalise with `NORM_S2_patch.json` (default true).
    pub norm: bool,
    /// Reference date of the day offsets (default 2018-09-01).
    pub ref_date: Date,
    /// Semantic or instance target.
    pub target: Target,
    /// Mono-date ablation (default `None`: the whole series).
    pub mono_date: Option<MonoDate>,
    /// Satellites: only `["S2"]` is supported (PASTIS-R's S1A/S1D are not).
    pub sats: Vec<String>,
}

impl Default for PastisOptions {
    fn default() -> Self {
        PastisOptions {
            folds: None,
            norm: true,
            ref_date: Date {
                year: 2018,
                month: 9,
                day: 1,
            },
            target: Target::Semantic,
            mono_date: None,
            sats: vec!["S2".to_string()],
        }
    }
}

/// One patch as the original `__getitem__` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastisSample {
    /// ID_PATCH.
    pub id: u64,
    /// Normalised float32 frames, (T, C, H, W) row-major.
    pub data: Vec<f32>,
    /// `[T, C, H, W]` (T = 1 with `mono_date`).
    pub shape: [usize; 4],
    /// Day offsets from the reference date, ascending, length T.
    pub dates: Vec<i64>,
    /// True with `mono_date`: the original returns a 0-dim date, which collates to shape (B,).
    pub scalar_date: bool,
    /// Semantic classes, (H, W): TARGET channel 0 as int64 (empty with [`Target::Unlabeled`]).
    pub target: Vec<i64>,
    /// With [`Target::Instance`]: the (H, W, 7) float32 instance target (spec §1.10).
    pub instance: Option<Vec<f32>>,
}

struct Inner {
    folder: PathBuf,
    opts: PastisOptions,
    patches: Vec<PatchMeta>,
    ids: Vec<u64>,
    norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// A PASTIS folder opened for some folds. Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct PastisDataset {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PastisDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PastisDataset")
            .field("folder", &self.inner.folder)
            .field("len", &self.len())
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl PastisDataset {
    /// Opens `folder`: reads `metadata.geojson` (and `NORM_S2_patch.json` when `opts.norm`), keeps the patches
    /// of the requested folds in the original's order, and checks that each kept patch has its files.
    pub fn open(folder: impl AsRef<Path>, opts: PastisOptions) -> Result<PastisDataset> {
        let folder = folder.as_ref().to_path_buf();
        if opts.sats.len() != 1 || opts.sats[0] != "S2" {
            return Err(Error::Invalid(format!(
                "sats {:?}: only [\"S2\"] is supported (PASTIS-R's S1A/S1D are not)",
                opts.sats
            )));
        }
        let all_folds = [1, 2, 3, 4, 5];
        let folds: &[usize] = opts.folds.as_deref().unwrap_or(&all_folds);
        if folds.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: folds is an empty list",
                folder.display()
            )));
        }
        if let Some(f) = folds.iter().find(|f| !(1..=5).contains(*f)) {
            return Err(Error::Invalid(format!(
                "{}: unknown fold {f} in folds {folds:?} (PASTIS folds are 1..=5)",
                folder.display()
            )));
        }
        if !folder.is_dir() {
            return Err(Error::io(
                &folder,
                "the PASTIS dataset folder does not exist (or is not a folder)",
            ));
        }
        let meta = meta::read_metadata(&folder.join("metadata.geojson"), opts.ref_date)?;
        let meta_len = meta.len();
        let fold_counts = (1..=5)
            .map(|f| (f, meta.iter().filter(|p| p.fold == f).count()))
            .filter(|&(_, n)| n > 0)
            .map(|(f, n)| format!("{f} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        let patches: Vec<PatchMeta> = match &opts.folds {
            None => meta,
            Some(fs) => fs
                .iter()
                .flat_map(|&f| meta.iter().filter(move |p| p.fold == f).cloned())
                .collect(),
        };
        let norm = if opts.norm {
            Some(meta::read_norm(
                &folder.join("NORM_S2_patch.json"),
                folds,
                S2_BANDS,
            )?)
        } else {
            None
        };
        if patches.is_empty() {
            let md = folder.join("metadata.geojson");
            return Err(if meta_len == 0 {
                Error::format(md, "no patch: the \"features\" list is empty")
            } else {
                Error::format(
                    md,
                    format!(
                        "no patch in fold {}: the {meta_len} patches listed are in folds {}",
                        folds
                            .iter()
                            .map(|f| f.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        fold_counts
                    ),
                )
            });
        }
        let ids = patches.iter().map(|p| p.id).collect();
        let ds = PastisDataset {
            inner: Arc::new(Inner {
                folder,
                opts,
                patches,
                ids,
                norm,
            }),
        };
        for p in &ds.inner.patches {
            for path in ds.files(p.id) {
                if !path.is_file() {
                    return Err(Error::io(
                        &path,
                        format!(
                            "missing: patch {} is listed in metadata.geojson (Fold {}) but this file does not exist (or is not a file)",
                            p.id, p.fold
                        ),
                    ));
                }
            }
        }
        Ok(ds)
    }

    /// The files a sample of patch `id` reads, S2 first.
    fn files(&self, id: u64) -> Vec<PathBuf> {
        let mut v = vec![self.s2_path(id)];
        if self.inner.opts.target != Target::Unlabeled {
            v.push(self.annotation_path("ANNOTATIONS", "TARGET", id));
        }
        if self.inner.opts.target == Target::Instance {
            for kind in ["HEATMAP", "INSTANCES", "ZONES"] {
                v.push(self.annotation_path("INSTANCE_ANNOTATIONS", kind, id));
            }
        }
        v
    }

    fn annotation_path(&self, dir: &str, kind: &str, id: u64) -> PathBuf {
        self.inner.folder.join(dir).join(format!("{kind}_{id}.npy"))
    }

    /// `folder/DATA_S2/S2_{id}.npy`.
    pub fn s2_path(&self, id: u64) -> PathBuf {
        self.inner
            .folder
            .join("DATA_S2")
            .join(format!("S2_{id}.npy"))
    }

    /// The dataset folder.
    pub fn folder(&self) -> &Path {
        &self.inner.folder
    }

    /// The options it was opened with.
    pub fn options(&self) -> &PastisOptions {
        &self.inner.opts
    }

    /// Number of patches.
    pub fn len(&self) -> usize {
        self.inner.patches.len()
    }

    /// True when no patch was kept.
    pub fn is_empty(&self) -> bool {
        self.inner.patches.is_empty()
    }

    /// ID_PATCH of every sample, in sample order.
    pub fn ids(&self) -> &[u64] {
        &self.inner.ids
    }

    /// Day offsets of sample `i` (ascending, before any `mono_date` selection).
    pub fn dates(&self, i: usize) -> Option<&[i64]> {
        self.inner.patches.get(i).map(|p| p.dates.as_slice())
    }

    /// Normalisation (mean, std) per band as float32, when `norm` is on.
    pub fn norm(&self) -> Option<(&[f32], &[f32])> {
        self.inner
            .norm
            .as_ref()
            .map(|(m, s)| (m.as_slice(), s.as_slice()))
    }

    /// Checks every file the samples read, before a workflow starts (so that bad inputs are reported before
    /// anything is written): the S2 series' headers (dtype, truncation, shape (T, 10, H, W), one frame per
    /// date of `dates-S2`) and, for floating-point series, their values (no NaN or infinity); the TARGET files'
    /// headers (K, H, W) and classes (integers in 0..`num_classes` when given); with [`Target::Instance`] the
    /// HEATMAP / INSTANCES / ZONES maps (shape (H, W), values). Integer series, as in the real
    /// PASTIS (int16), need only their header, so this reads little more than the annotations.
    pub fn check(&self, num_classes: Option<usize>) -> Result<()> {
        for p in &self.inner.patches {
            let s2 = self.s2_path(p.id);
            let header = npy::read_header(&s2)?;
            let [_, _, h, w] = check_s2_shape(p, &s2, &header.shape)?;
            if header.is_float() {
                let a = npy::read_f32(&s2)?;
                if let Some((idx, v)) = arrays::first_non_finite(&a.data, &a.shape) {
                    return Err(non_finite(&s2, v, &idx));
                }
            }
            if self.inner.opts.target == Target::Unlabeled {
                continue;
            }
            let target_path = self.annotation_path("ANNOTATIONS", "TARGET", p.id);
            npy::read_header(&target_path)?;
            let (tshape, tdata) = arrays::read_f64(&target_path)?;
            arrays::check_shape(
                &target_path,
                "TARGET (3, H, W) matching S2",
                &tshape,
                &[None, Some(h), Some(w)],
            )?;
            if tshape[0] == 0 {
                return Err(Error::format(&target_path, "TARGET has no channel"));
            }
            check_classes(&target_path, &tdata[..h * w], w, num_classes)?;
            if self.inner.opts.target == Target::Instance {
                // HEATMAP, INSTANCES and ZONES: present, (H, W), finite, integer ids.
                self.read_targets(p.id, h, w)?;
            }
        }
        Ok(())
    }

    /// Reads sample `i` (the original `__getitem__(i)`).
    pub fn get(&self, i: usize) -> Result<PastisSample> {
        let p = self.inner.patches.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: sample index {i} out of range (len {})",
                self.inner.folder.display(),
                self.len()
            ))
        })?;
        let id = p.id;
        let s2 = self.s2_path(id);
        let npy::Array { shape, mut data } = npy::read_f32(&s2)?;
        let [t, c, h, w] = check_s2_shape(p, &s2, &shape)?;
        if let Some((idx, v)) = arrays::first_non_finite(&data, &shape) {
            return Err(non_finite(&s2, v, &idx));
        }
        if let Some((mean, std)) = &self.inner.norm {
            for (j, plane) in data.chunks_exact_mut(h * w).enumerate() {
                let (m, s) = (mean[j % c], std[j % c]);
                plane.iter_mut().for_each(|v| *v = (*v - m) / s);
            }
        }

        let (target, instance) = if self.inner.opts.target == Target::Unlabeled {
            (Vec::new(), None)
        } else {
            self.read_targets(id, h, w)?
        };

        let mut sample = PastisSample {
            id,
            data,
            shape: [t, c, h, w],
            dates: p.dates.clone(),
            scalar_date: false,
            target,
            instance,
        };
        if let Some(mono) = self.inner.opts.mono_date {
            let k = match mono {
                MonoDate::Index(k) => {
                    if k >= t {
                        return Err(Error::format(
                            &s2,
                            format!(
                                "mono_date index {k} is out of range: patch {id} has {t} dates"
                            ),
                        ));
                    }
                    k
                }
                MonoDate::Date(d) => {
                    let target = d.days_since(self.inner.opts.ref_date);
                    // argmin of |dates - target|, first on ties (t >= 1: metadata never has an empty series).
                    let mut best = 0;
                    for (j, &v) in sample.dates.iter().enumerate() {
                        if (v - target).abs() < (sample.dates[best] - target).abs() {
                            best = j;
                        }
                    }
                    best
                }
            };
            let frame = c * h * w;
            sample.data = sample.data[k * frame..(k + 1) * frame].to_vec();
            sample.shape[0] = 1;
            sample.dates = vec![sample.dates[k]];
            sample.scalar_date = true;
        }
        Ok(sample)
    }

    /// The semantic target of patch `id` (TARGET channel 0, (H, W) int64) and, with [`Target::Instance`], the
    /// (H, W, 7) instance target.
    fn read_targets(&self, id: u64, h: usize, w: usize) -> Result<(Vec<i64>, Option<Vec<f32>>)> {
        let target_path = self.annotation_path("ANNOTATIONS", "TARGET", id);
        let (tshape, tdata) = arrays::read_f64(&target_path)?;
        arrays::check_shape(
            &target_path,
            "TARGET (3, H, W) matching S2",
            &tshape,
            &[None, Some(h), Some(w)],
        )?;
        if tshape[0] == 0 {
            return Err(Error::format(&target_path, "TARGET has no channel"));
        }
        let classes = &tdata[..h * w];
        check_classes(&target_path, classes, w, None)?;
        let target: Vec<i64> = classes.iter().map(|&v| v as i64).collect();

        let instance = if self.inner.opts.target == Target::Instance {
            let read_map = |kind: &str| -> Result<(PathBuf, Vec<f64>)> {
                let path = self.annotation_path("INSTANCE_ANNOTATIONS", kind, id);
                let (shape, data) = arrays::read_f64(&path)?;
                arrays::check_shape(
                    &path,
                    &format!("{kind} (H, W) matching S2"),
                    &shape,
                    &[Some(h), Some(w)],
                )?;
                Ok((path, data))
            };
            let (heat_path, heatmap) = read_map("HEATMAP")?;
            if let Some((idx, v)) = arrays::first_non_finite(&heatmap, &[h, w]) {
                return Err(Error::format(
                    &heat_path,
                    format!("non-finite value {v} at (y, x) = {idx:?}"),
                ));
            }
            let (inst_path, inst) = read_map("INSTANCES")?;
            let instances = arrays::as_ids(&inst_path, &inst, w)?;
            let (zones_path, zones) = read_map("ZONES")?;
            let zones = arrays::as_ids(&zones_path, &zones, w)?;
            Some(arrays::instance_target(
                &heatmap, &instances, &zones, classes, h, w,
            ))
        } else {
            None
        };
        Ok((target, instance))
    }
}

/// Checks an S2 series' shape against its patch's metadata: (T, 10, H, W) with one frame per distinct date of
/// `dates-S2`, H and W non-zero. Returns [T, C, H, W].
fn check_s2_shape(p: &PatchMeta, s2: &Path, shape: &[usize]) -> Result<[usize; 4]> {
    arrays::check_shape(
        s2,
        "S2 series (T, 10, H, W)",
        shape,
        &[None, Some(S2_BANDS), None, None],
    )?;
    let [t, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    if t != p.dates.len() {
        let dup = if p.listed != p.dates.len() {
            format!(" ({} listed, some on the same day)", p.listed)
        } else {
            String::new()
        };
        return Err(Error::format(
            s2,
            format!(
                "{t} frames, but \"dates-S2\" of patch {} in metadata.geojson has {} distinct \
                 dates{dup}: one frame per date is expected",
                p.id,
                p.dates.len()
            ),
        ));
    }
    if h == 0 || w == 0 {
        return Err(Error::format(s2, format!("empty frames: shape {shape:?}")));
    }
    Ok([t, c, h, w])
}

/// The error for a NaN or an infinity in input data: the file and the first bad (t, c, y, x) index.
fn non_finite(path: &Path, v: f64, idx: &[usize]) -> Error {
    Error::format(
        path,
        format!(
            "non-finite value {v} at (t, c, y, x) = ({}): input data must be finite (the original would train \
             on it silently and produce NaN losses)",
            idx.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// Checks TARGET channel 0 (H, W row-major, width `w`): integer classes, non-negative, below `num_classes`
/// when given; the error names the first bad pixel.
fn check_classes(path: &Path, classes: &[f64], w: usize, num_classes: Option<usize>) -> Result<()> {
    let upper = num_classes.map_or(f64::INFINITY, |k| k as f64);
    let Some(i) = classes
        .iter()
        .position(|&v| !(v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v < upper))
    else {
        return Ok(());
    };
    let v = classes[i];
    let why = if !v.is_finite() {
        "non-finite class".to_string()
    } else if v.fract() != 0.0 {
        "not an integer: class".to_string()
    } else {
        match num_classes {
            Some(k) if v >= 0.0 => format!("outside the {k} classes 0..{}: class", k - 1),
            _ => "negative: class".to_string(),
        }
    };
    Err(Error::format(
        path,
        format!(
            "{why} {v} at (y, x) = ({}, {}) of channel 0",
            i / w.max(1),
            i % w.max(1)
        ),
    ))
}
