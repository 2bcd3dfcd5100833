//! Synthetic satellite image time series in exactly the PASTIS layout (spec §1), learnable by a U-TAE: for the
//! demo, the tests and the benchmarks, without downloading the 29 GB dataset. The same phenologies and spectra
//! also make Sentinel-Agri pixel sets ([`pixelset`], spec §2).
//!
//! [`write_pastis`] writes `metadata.geojson`, `NORM_S2_patch.json`, `DATA_S2/S2_{id}.npy` (T, 10, H, W) int16,
//! `ANNOTATIONS/TARGET_{id}.npy` (3, H, W) uint8, `ANNOTATIONS/ParcelIDs_{id}.npy` (H, W) int32 and
//! `INSTANCE_ANNOTATIONS/{HEATMAP,INSTANCES,ZONES}_{id}.npy` (H, W) float32 / int32 / int32 — the dtypes of the
//! released files — plus a `SYNTH.json` marker holding the options (so a later run may overwrite the folder,
//! and no other folder is ever overwritten). Everything derives from the seed: same options, same bytes.
//!
//! # The generative model
//!
//! * **Patches**: IDs `10000 + 7 i` (not contiguous, as in PASTIS), Fold `1 + i % 5`, a patch footprint of
//!   H × W pixels of 10 m as the geometry (EPSG:2154, like the original), tile `"SYNTH"`.
//! * **Dates**: each patch draws its own T in `min_dates..=max_dates`, then one acquisition day in each of T
//!   equal slices of 2018-09-01 ..= 2019-10-31 (so the dates are distinct, sorted and span the season); they
//!   are written as integer `YYYYMMDD` like the released metadata.
//! * **Parcels**: an anisotropic Voronoi partition of the patch (seeds on a jittered grid, one random stretch
//!   and orientation per patch, about one cell per 80 pixels). Each cell is background (p = 0.25) or a parcel of
//!   one of the [`SynthOptions::crop_classes`], never the class of an already drawn neighbouring parcel when
//!   another is available. Some shared borders (p = 0.3) get a one-pixel hedge of background. Parcels cut by
//!   the patch edge that are small (under 3/4 of the mean cell area) are void (class 19, p = 0.5), as PASTIS
//!   labels "parcels mostly outside the patch"; they keep an instance id and a crop spectrum. Void is always a
//!   whole parcel: the loader gives an instance the class of its first pixel (§1.10), so void pixels inside a
//!   labelled parcel would relabel the object.
//! * **Reflectance**: vegetation cover v(d) ∈ [0, 0.95] is a class-specific phenology — a base level plus
//!   double-logistic seasons (autumn sowing, spring green-up, harvest; summer crops later; meadow mowing dips) —
//!   and a pixel is `(1 − v)·ground + v·vegetation + flowering`, with class-specific ground brightness, NIR and
//!   SWIR gains and flowering bumps (rapeseed, sunflower), in S2 reflectance × 10⁴ over B2, B3, B4, B5, B6,
//!   B7, B8, B8A, B11, B12. Background cells are urban, forest, grassland or water. Variation: per parcel
//!   (sowing shift N(0, 6 days), heights ±8 %, ground ±6 %, gain ±4 %), per date (gain ±2 %, blue/green/red
//!   haze), per pixel (gain ±3 %) and per value (noise N(0, 2 % + 25)).
//! * **Clouds**: each date is cloudy with p = 0.12: one or two Gaussian blobs blend every band towards a bright
//!   cloud spectrum (about 7000, less in SWIR). Values are rounded and clamped to 0..=16000 (int16).
//! * **Annotations**: TARGET channel 0 is the class map (0 background, crops, 19 void); channels 1 and 2 are
//!   copies of channel 0, as in the released files we have seen (the `pastis_tiny` fixture). ParcelIDs holds
//!   raw parcel ids (`id·1000 + cell + 1`, 0 on background); INSTANCES relabels the parcels 1..N in raw-id
//!   order (§1.12 step 1); HEATMAP and ZONES follow §1.12 exactly (enlarged bounding box, σ = 0.0588 ×
//!   extent, max / first-argmax over instances), so the heatmap is exactly 1 at each parcel's centre.
//! * **NORM_S2_patch.json**: per fold, the average over the fold's patches of each patch's per-band mean and
//!   unbiased std of the raw int16 values (`compute_norm_vals`, §1.6), in f64, written like `json.dump(…,
//!   indent=4)`.
//!
//! The class signal is strong on purpose: the crop classes differ in when they are green, how green, and in
//! their mean spectra, so a small U-TAE separates them after a few hundred steps, and even a nearest-class-mean
//! classifier on per-pixel temporal means beats chance by far (tested).
//!
//! This file holds the options, the summary and the files written; one patch is generated in `patch.rs`, from
//! the phenologies and spectra of `spectra.rs`.

use std::path::{Path, PathBuf};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::data::pastis::Date;
use crate::engine::error::{Error, Result};
use crate::engine::rng::Rng;

mod patch;
pub mod pixelset;
mod spectra;
#[cfg(test)]
mod tests;

pub(crate) use patch::centerness;
use patch::{generate_patch, patch_stats};
use spectra::*;

/// Number of Sentinel-2 bands written.
const BANDS: usize = 10;
/// The void class (spec §1.7).
pub const VOID_CLASS: u8 = 19;
/// Crop classes in the order [`SynthOptions::classes`] takes them: phenologically distinct ones first.
pub const CLASS_ORDER: [u8; 18] = [
    2, 3, 1, 5, 7, 8, 4, 9, 16, 13, 6, 14, 15, 18, 12, 10, 11, 17,
];
/// First acquisition day that may be drawn (the PASTIS reference date).
const FIRST_DAY: Date = Date {
    year: 2018,
    month: 9,
    day: 1,
};
/// Number of days from 2018-09-01 to 2019-10-31 inclusive.
const SEASON_DAYS: usize = 426;
/// Marker file of a synth output folder.
pub const MARKER: &str = "SYNTH.json";

/// What [`write_pastis`] generates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SynthOptions {
    /// Number of patches (at least 5, so that every fold has one). Default 40.
    pub patches: usize,
    /// Patch side in pixels (H = W; a multiple of 8 for the U-TAE's three downsamplings, 8..=1024). Default 32.
    pub size: usize,
    /// Seed of everything. Default 0.
    pub seed: u64,
    /// Fewest acquisitions of a patch (at least 1). Default 12.
    pub min_dates: usize,
    /// Most acquisitions of a patch (at most 426, one per day of the season). Default 20.
    pub max_dates: usize,
    /// Number of distinct crop classes (1..=18), the first ones of [`CLASS_ORDER`]. Default 5 (wheat, corn,
    /// meadow, rapeseed, sunflower), plus background and void.
    pub classes: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            patches: 40,
            size: 32,
            seed: 0,
            min_dates: 12,
            max_dates: 20,
            classes: 5,
        }
    }
}

impl SynthOptions {
    /// Checks the options, with a message naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("synth: {m}")));
        if self.patches < 5 {
            return bad(format!(
                "patches = {}: at least 5 are needed so that each of the five folds has a patch",
                self.patches
            ));
        }
        if self.size < 8 || !self.size.is_multiple_of(8) || self.size > 1024 {
            return bad(format!(
                "size = {}: must be a multiple of 8 in 8..=1024 (the U-TAE downsamples three times)",
                self.size
            ));
        }
        if self.min_dates == 0 || self.min_dates > self.max_dates || self.max_dates > SEASON_DAYS {
            return bad(format!(
                "dates {}..={}: need 1 <= min_dates <= max_dates <= {SEASON_DAYS} (one per day of \
                 2018-09-01..=2019-10-31)",
                self.min_dates, self.max_dates
            ));
        }
        if !(1..=18).contains(&self.classes) {
            return bad(format!(
                "classes = {}: must be 1..=18 (the PASTIS crop classes)",
                self.classes
            ));
        }
        Ok(())
    }

    /// The crop classes used: the first [`SynthOptions::classes`] of [`CLASS_ORDER`], sorted.
    pub fn crop_classes(&self) -> Vec<u8> {
        let mut v = CLASS_ORDER[..self.classes.min(18)].to_vec();
        v.sort_unstable();
        v
    }
}

/// What [`write_pastis`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// The dataset folder.
    pub dir: PathBuf,
    /// ID_PATCH of every patch, in generation order (ascending).
    pub ids: Vec<u64>,
    /// Number of patches per fold 1..=5.
    pub fold_sizes: [usize; 5],
    /// Fewest and most acquisitions of a patch.
    pub dates: (usize, usize),
    /// Crop classes used (sorted).
    pub classes: Vec<u8>,
    /// Number of parcels (instances, void ones included) over all patches.
    pub parcels: usize,
    /// Pixels per class 0..=19 over all patches.
    pub class_pixels: [u64; 20],
    /// Number of (patch, date) images with a cloud.
    pub cloudy_images: usize,
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.class_pixels.iter().sum();
        let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
        write!(
            f,
            "{} PASTIS patches in {} (folds of {:?}, {}..={} dates), {} parcels of classes {:?}; \
             background {:.1} %, void {:.1} % of pixels; {} cloudy images",
            self.ids.len(),
            self.dir.display(),
            self.fold_sizes,
            self.dates.0,
            self.dates.1,
            self.parcels,
            self.classes,
            pct(self.class_pixels[0]),
            pct(self.class_pixels[VOID_CLASS as usize]),
            self.cloudy_images
        )
    }
}

// ---------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------

/// Pretty JSON with `indent` spaces (Python's `json.dump(..., indent=n)` layout).
fn write_json<T: Serialize>(path: &Path, value: &T, indent: usize) -> Result<()> {
    let ind = vec![b' '; indent];
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(&ind);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .map_err(|e| Error::io(path, format!("cannot serialise JSON: {e}")))?;
    buf.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &buf).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// `{"0": YYYYMMDD, "1": ...}` with the keys in index order.
struct OrderedDates<'a>(&'a [u32]);

impl Serialize for OrderedDates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (i, d) in self.0.iter().enumerate() {
            m.serialize_entry(&i.to_string(), d)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Properties<'a> {
    ID_PATCH: u64,
    N_Parcel: usize,
    Parcel_Cover: f64,
    TILE: &'static str,
    Fold: usize,
    #[serde(rename = "dates-S2")]
    dates: OrderedDates<'a>,
}

#[derive(Serialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: Vec<Vec<[f64; 2]>>,
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Properties<'a>,
    geometry: Geometry,
}

#[derive(Serialize)]
struct CrsProps {
    name: &'static str,
}

#[derive(Serialize)]
struct Crs {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: CrsProps,
}

#[derive(Serialize)]
struct FeatureCollection<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    crs: Crs,
    features: Vec<Feature<'a>>,
}

#[derive(Serialize)]
struct NormEntry {
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Serialize)]
struct Marker<'a> {
    generator: &'static str,
    format: &'static str,
    version: u32,
    options: &'a SynthOptions,
}

/// The files of a synth output that a new run replaces: (folder, prefix) of the per-patch `.npy` files.
const PATCH_FILES: [(&str, &str); 6] = [
    ("DATA_S2", "S2_"),
    ("ANNOTATIONS", "TARGET_"),
    ("ANNOTATIONS", "ParcelIDs_"),
    ("INSTANCE_ANNOTATIONS", "HEATMAP_"),
    ("INSTANCE_ANNOTATIONS", "INSTANCES_"),
    ("INSTANCE_ANNOTATIONS", "ZONES_"),
];

/// Refuses a non-empty folder that is not a previous synth output of the same `format` (its [`MARKER`] says
/// which); in a previous one, removes the per-item files it wrote: in each `(folder, prefix)` of `files`, the
/// `<prefix><digits>.npy` files (other files are left alone).
fn prepare_dir(dir: &Path, format: &str, files: &[(&str, &str)]) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(dir, "exists and is not a folder"));
    }
    if !dir.exists() {
        return std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join(MARKER).is_file() {
        return Err(Error::io(
            dir,
            format!(
                "refusing to write a synthetic dataset here: the folder is not empty and is not a previous \
                 `sitsgpu synth` output (no {MARKER}); choose a new or empty folder"
            ),
        ));
    }
    let marker = dir.join(MARKER);
    let text = std::fs::read_to_string(&marker).map_err(|e| Error::io(&marker, e))?;
    let previous = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|j| j.get("format")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if previous != format {
        return Err(Error::io(
            dir,
            format!(
                "refusing to write a synthetic {format} dataset here: the folder holds a `sitsgpu synth` output \
                 of format {previous:?} ({MARKER}); choose a new or empty folder"
            ),
        ));
    }
    for &(sub, prefix) in files {
        let folder = dir.join(sub);
        if !folder.is_dir() {
            continue;
        }
        let mut stale = Vec::new();
        for e in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let e = e.map_err(|e| Error::io(&folder, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".npy"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if ours {
                stale.push(e.path());
            }
        }
        stale.sort();
        for p in stale {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Writes a synthetic PASTIS dataset (see the module doc) into `dir`, which must be new, empty, or a previous
/// synth output (recognised by its `SYNTH.json`; its per-patch files are replaced). Same options, same bytes.
pub fn write_pastis(dir: &Path, opts: &SynthOptions) -> Result<SynthSummary> {
    opts.validate()?;
    prepare_dir(dir, "pastis", &PATCH_FILES)?;
    write_json(
        &dir.join(MARKER),
        &Marker {
            generator: "sitsgpu synth",
            format: "pastis",
            version: 1,
            options: opts,
        },
        4,
    )?;
    for sub in ["DATA_S2", "ANNOTATIONS", "INSTANCE_ANNOTATIONS"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    let crops = opts.crop_classes();
    let (h, w) = (opts.size, opts.size);
    let npix = h * w;
    let mut ids = Vec::with_capacity(opts.patches);
    let mut all_dates: Vec<Vec<u32>> = Vec::with_capacity(opts.patches);
    let mut meta: Vec<(usize, f64)> = Vec::with_capacity(opts.patches);
    type Stats = Vec<[f64; BANDS]>;
    let mut fold_stats: Vec<(Stats, Stats)> = vec![(Vec::new(), Vec::new()); 5];
    let mut summary = SynthSummary {
        dir: dir.to_path_buf(),
        ids: Vec::new(),
        fold_sizes: [0; 5],
        dates: (usize::MAX, 0),
        classes: crops.clone(),
        parcels: 0,
        class_pixels: [0; 20],
        cloudy_images: 0,
    };
    for i in 0..opts.patches {
        let id = 10_000 + 7 * i as u64;
        let fold = 1 + i % 5;
        let patch_seed = Rng::new(
            opts.seed
                .wrapping_add((i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)),
        )
        .next_u64();
        let mut rng = Rng::new(patch_seed);
        let p = generate_patch(id, opts, &crops, &mut rng);
        let t = p.dates.len();

        crate::data::npy::write(
            dir.join("DATA_S2").join(format!("S2_{id}.npy")),
            &[t, BANDS, h, w],
            &p.s2,
        )?;
        let target: Vec<u8> = p.classes.repeat(3);
        crate::data::npy::write(
            dir.join("ANNOTATIONS").join(format!("TARGET_{id}.npy")),
            &[3, h, w],
            &target,
        )?;
        crate::data::npy::write(
            dir.join("ANNOTATIONS").join(format!("ParcelIDs_{id}.npy")),
            &[h, w],
            &p.parcel_ids,
        )?;
        let inst = dir.join("INSTANCE_ANNOTATIONS");
        crate::data::npy::write(inst.join(format!("HEATMAP_{id}.npy")), &[h, w], &p.heatmap)?;
        crate::data::npy::write(
            inst.join(format!("INSTANCES_{id}.npy")),
            &[h, w],
            &p.instances,
        )?;
        crate::data::npy::write(inst.join(format!("ZONES_{id}.npy")), &[h, w], &p.zones)?;

        let (mean, std) = patch_stats(&p.s2, t, npix);
        fold_stats[fold - 1].0.push(mean);
        fold_stats[fold - 1].1.push(std);
        let covered = p.instances.iter().filter(|&&v| v != 0).count();
        meta.push((p.n_instances, covered as f64 / npix as f64));
        for &c in &p.classes {
            summary.class_pixels[c as usize] += 1;
        }
        summary.parcels += p.n_instances;
        summary.cloudy_images += p.cloudy;
        summary.fold_sizes[fold - 1] += 1;
        summary.dates = (summary.dates.0.min(t), summary.dates.1.max(t));
        ids.push(id);
        all_dates.push(p.dates);
    }

    // NORM_S2_patch.json: plain average over the fold's patches of the per-patch statistics.
    let avg = |v: &[[f64; BANDS]]| -> Vec<f64> {
        (0..BANDS)
            .map(|b| v.iter().map(|x| x[b]).sum::<f64>() / v.len() as f64)
            .collect()
    };
    let norm: std::collections::BTreeMap<String, NormEntry> = fold_stats
        .iter()
        .enumerate()
        .map(|(f, (m, s))| {
            (
                format!("Fold_{}", f + 1),
                NormEntry {
                    mean: avg(m),
                    std: avg(s),
                },
            )
        })
        .collect();
    write_json(&dir.join("NORM_S2_patch.json"), &norm, 4)?;

    let side = (opts.size * 10) as f64;
    let features = (0..opts.patches)
        .map(|i| {
            let x0 = 600_000.0 + (i % 25) as f64 * 2.0 * side;
            let y0 = 6_800_000.0 + (i / 25) as f64 * 2.0 * side;
            Feature {
                kind: "Feature",
                properties: Properties {
                    ID_PATCH: ids[i],
                    N_Parcel: meta[i].0,
                    Parcel_Cover: meta[i].1,
                    TILE: "SYNTH",
                    Fold: 1 + i % 5,
                    dates: OrderedDates(&all_dates[i]),
                },
                geometry: Geometry {
                    kind: "Polygon",
                    coordinates: vec![vec![
                        [x0, y0],
                        [x0 + side, y0],
                        [x0 + side, y0 + side],
                        [x0, y0 + side],
                        [x0, y0],
                    ]],
                },
            }
        })
        .collect();
    write_json(
        &dir.join("metadata.geojson"),
        &FeatureCollection {
            kind: "FeatureCollection",
            crs: Crs {
                kind: "name",
                properties: CrsProps {
                    name: "urn:ogc:def:crs:EPSG::2154",
                },
            },
            features,
        },
        1,
    )?;
    summary.ids = ids;
    Ok(summary)
}
