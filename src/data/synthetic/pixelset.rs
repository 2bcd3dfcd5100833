//! Synthetic parcels in exactly the Sentinel-Agri pixel-set layout (spec §2.1), learnable by a PSE + L-TAE:
//! `sitsgpu synth --format pixelset`.
//!
//! [`write_pixelset`] writes `DATA/<pid>.npy` (24, 10, S) int16, `META/labels.json` (`{"label_44class": {pid:
//! code}}`), `META/dates.json` (`{"0": YYYYMMDD, …, "23": …}`), `META/geomfeat.json` (`{pid: [4 features]}`),
//! `META/sizes.json` (`{pid: S}`), `S2-2017-T31TFM-meanstd.pkl` (the pickled `(mean, std)` tuple train.py
//! loads) and `meanstd.json` (the same values), plus the [`MARKER`] holding the options. Everything derives from
//! the seed: same options, same bytes.
//!
//! # The generative model
//! * **Parcels**: ids `100 + 13 i + u` with u uniform in 0..13 (increasing, not contiguous, of 3 to 7 digits so
//!   that a lexical sort would differ from the loader's numeric one). The class of a parcel is uniform over
//!   the first [`PixelSetSynthOptions::classes`] codes of [`SUB_CLASSES`], except about 3 % (at least one) of
//!   class [`OUTSIDE_CLASS`], which is not in the subset: the loader drops them.
//! * **Pixel counts** S: 3 % empty (S = 0, which the loader turns into one zero pixel), 12 % small (1..=63),
//!   the rest log-uniform in 20..=300; parcels 1, 2 and 3 are always S = 0, 9 and 200.
//! * **Dates**: 24 acquisition days of 2017, one in each of 24 equal slices of January 1 ..= November 30, common
//!   to all parcels.
//! * **Reflectance**: the class phenologies and spectra of the PASTIS generator (`spectra.rs`): class k has
//!   the crop kind of [`CLASS_ORDER`]\[k\] (the season model counts days from September 1 of the sowing year,
//!   2016 here), with the same per-parcel variation (sowing shift, heights, ground and gains); the out-of-subset
//!   class is semi-natural grassland. Per pixel: a gain ±3 %, and for 10 % of the pixels a 20–60 % mix with a
//!   hedge (grassland) spectrum; per date: a tile-wide gain ±2 % and blue/green/red haze; per value: noise
//!   N(0, 2 % + 25).
//! * **Clouds**: each date is cloudy with p = 0.15: one or two Gaussian blobs over the tile (parcels sit at
//!   random positions in a unit square) blend every band towards the cloud spectrum. Values are rounded and
//!   clamped to 0..=16000.
//! * **geomfeat** (the PSE paper's four descriptors, in this order): perimeter (m), pixel count (S), cover
//!   ratio (area over the area of the bounding box) and perimeter / surface (1/m), from a rotated rectangle of
//!   S·100 m² (30–90 m² for an empty parcel) with a class-dependent elongation and ±10 % irregularity.
//! * **meanstd**: per date and band, the float64 mean and (population, numpy's default) std of the raw values
//!   over all pixels of all parcels, from exact integer sums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{prepare_dir, write_json, OrderedDates, BANDS, CLASS_ORDER, MARKER};
use crate::data::numpy_pickle::write_f64_tuple;
use crate::data::pixelset::norm::{NORM_JSON, NORM_PICKLE};
use crate::data::pixelset::SUB_CLASSES;
use crate::engine::error::{Error, Result};
use crate::engine::rng::Rng;

use super::spectra::{crop_kind, grassland, region_spectra, CLOUD};

/// Acquisitions per parcel (Sentinel-Agri's T).
pub const DATES: usize = 24;
/// The `label_44class` code of the parcels outside the class subset (not in [`SUB_CLASSES`]).
pub const OUTSIDE_CLASS: i64 = 2;
/// Most pixels of a parcel.
const MAX_PIXELS: usize = 300;
/// Day offset of 2017-01-01 from 2016-09-01 (the season model's origin).
const JAN_1: f64 = 122.0;
/// Days of 2017 that may be drawn: January 1 ..= November 30.
const SEASON: usize = 334;

/// What [`write_pixelset`] generates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PixelSetSynthOptions {
    /// Number of parcels written (10..=100,000), those outside the class subset included. Default 300.
    pub parcels: usize,
    /// Number of classes (1..=18: each gets a distinct phenology of the PASTIS generator), the first codes of
    /// [`SUB_CLASSES`]. Default 6.
    pub classes: usize,
    /// Seed of everything. Default 0.
    pub seed: u64,
}

impl Default for PixelSetSynthOptions {
    fn default() -> Self {
        PixelSetSynthOptions {
            parcels: 300,
            classes: 6,
            seed: 0,
        }
    }
}

impl PixelSetSynthOptions {
    /// Checks the options, with a message naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("synth --format pixelset: {m}")));
        if !(10..=100_000).contains(&self.parcels) {
            return bad(format!(
                "parcels = {}: must be 10..=100000 (at least two per fold of a 5-fold split)",
                self.parcels
            ));
        }
        if !(1..=18).contains(&self.classes) {
            return bad(format!(
                "classes = {}: must be 1..=18 (one distinct synthetic phenology each)",
                self.classes
            ));
        }
        Ok(())
    }

    /// The `label_44class` codes used, in training-label order.
    pub fn codes(&self) -> Vec<i64> {
        SUB_CLASSES[..self.classes.min(SUB_CLASSES.len())].to_vec()
    }
}

/// What [`write_pixelset`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelSetSynthSummary {
    /// The dataset folder.
    pub dir: PathBuf,
    /// Parcel ids, ascending.
    pub ids: Vec<u64>,
    /// `label_44class` code of each parcel.
    pub labels: Vec<i64>,
    /// Pixel count S of each parcel.
    pub sizes: Vec<usize>,
    /// The codes of the classes in the subset, in training-label order.
    pub classes: Vec<i64>,
    /// The 24 dates, YYYYMMDD.
    pub dates: Vec<u32>,
    /// Number of cloudy dates.
    pub cloudy_dates: usize,
}

impl std::fmt::Display for PixelSetSynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.ids.len();
        let outside = self.labels.iter().filter(|&&l| l == OUTSIDE_CLASS).count();
        let count = |p: &dyn Fn(usize) -> bool| self.sizes.iter().filter(|&&s| p(s)).count();
        let total: usize = self.sizes.iter().sum();
        write!(
            f,
            "{n} Sentinel-Agri pixel-set parcels in {} ({} of classes {:?}, {outside} of class {OUTSIDE_CLASS} \
             outside the subset), {DATES} dates of 2017 ({}..={}, {} cloudy); {}..={} pixels a parcel, mean \
             {:.0} ({} empty, {} under 64, {} over 64)",
            self.dir.display(),
            n - outside,
            self.classes,
            self.dates.first().unwrap_or(&0),
            self.dates.last().unwrap_or(&0),
            self.cloudy_dates,
            self.sizes.iter().min().unwrap_or(&0),
            self.sizes.iter().max().unwrap_or(&0),
            total as f64 / n.max(1) as f64,
            count(&|s| s == 0),
            count(&|s| s > 0 && s < 64),
            count(&|s| s > 64),
        )
    }
}

/// YYYYMMDD of day `doy` (0-based) of 2017.
fn date_2017(doy: usize) -> u32 {
    const MONTHS: [usize; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let (mut d, mut m) = (doy, 0);
    while d >= MONTHS[m] {
        d -= MONTHS[m];
        m += 1;
    }
    20_170_000 + (m as u32 + 1) * 100 + d as u32 + 1
}

/// A cloud blob over the unit-square tile: centre, sd.
type Blob = (f64, f64, f64);

/// Tile-wide conditions of one date: gain, haze, cloud level and blobs.
struct Atmosphere {
    gain: f64,
    haze: f64,
    cloud_level: f64,
    blobs: Vec<Blob>,
}

fn atmosphere(rng: &mut Rng) -> Atmosphere {
    let gain = 1.0 + 0.02 * rng.normal();
    let haze = 80.0 * rng.normal().abs();
    let (mut cloud_level, mut blobs) = (0.0, Vec::new());
    if rng.next_f64() < 0.15 {
        cloud_level = 0.85 + 0.25 * rng.next_f64();
        for _ in 0..1 + rng.below(2) {
            blobs.push((rng.next_f64(), rng.next_f64(), 0.1 + 0.25 * rng.next_f64()));
        }
    }
    Atmosphere {
        gain,
        haze,
        cloud_level,
        blobs,
    }
}

/// Cloud cover (0..=1) of a parcel at (x, y) under `blobs`.
fn cloud_at(blobs: &[Blob], x: f64, y: f64) -> f64 {
    blobs
        .iter()
        .map(|&(cx, cy, sd)| {
            let d2 = (x - cx).powi(2) + (y - cy).powi(2);
            (1.5 * (-d2 / (2.0 * sd * sd)).exp()).min(1.0)
        })
        .fold(0.0, f64::max)
}

/// One generated parcel.
struct Parcel {
    label: i64,
    /// (24, 10, S) raw values.
    values: Vec<i16>,
    size: usize,
    geomfeat: [f64; 4],
}

/// The pixel count of parcel `i`.
fn draw_size(i: usize, rng: &mut Rng) -> usize {
    match i {
        1 => return 0,
        2 => return 9,
        3 => return 200,
        _ => {}
    }
    let u = rng.next_f64();
    if u < 0.03 {
        0
    } else if u < 0.15 {
        1 + rng.below(63) as usize
    } else {
        let (lo, hi) = (20f64.ln(), (MAX_PIXELS as f64).ln());
        ((lo + (hi - lo) * rng.next_f64()).exp().round() as usize).clamp(20, MAX_PIXELS)
    }
}

/// Perimeter, pixel count, cover ratio, perimeter / surface of a parcel of `size` pixels and class index `k`.
fn geomfeat(size: usize, k: usize, rng: &mut Rng) -> [f64; 4] {
    let area = if size == 0 {
        30.0 + 60.0 * rng.next_f64()
    } else {
        size as f64 * 100.0 * (1.0 + 0.05 * rng.normal())
    }
    .max(10.0);
    let elong = (1.3 + 0.35 * (k % 4) as f64) * (0.15 * rng.normal()).exp().max(1.0 / 1.3);
    let (a, b) = ((area * elong).sqrt(), (area / elong).sqrt());
    let irregular = 1.0 + 0.1 * rng.normal().abs();
    let perimeter = 2.0 * (a + b) * irregular;
    let theta = std::f64::consts::FRAC_PI_2 * rng.next_f64();
    let (c, s) = (theta.cos(), theta.sin());
    let bbox = (a * c + b * s) * (a * s + b * c);
    let cover = (area / bbox / irregular).min(1.0);
    let r3 = |x: f64| (x * 1e3).round() / 1e3;
    [
        r3(perimeter),
        size as f64,
        (cover * 1e6).round() / 1e6,
        (perimeter / area * 1e6).round() / 1e6,
    ]
}

fn generate_parcel(
    i: usize,
    opts: &PixelSetSynthOptions,
    days: &[f64],
    atm: &[Atmosphere],
    rng: &mut Rng,
) -> Parcel {
    let codes = opts.codes();
    let outside = i == 4 || (i > 4 && rng.next_f64() < 0.03);
    let k = rng.below(codes.len() as u64) as usize;
    let (label, kind) = if outside {
        (OUTSIDE_CLASS, grassland())
    } else {
        (codes[k], crop_kind(CLASS_ORDER[k]))
    };
    let size = draw_size(i, rng);
    let spectra = region_spectra(&kind, days, rng);
    let hedge = region_spectra(&grassland(), days, rng);
    let (x, y) = (rng.next_f64(), rng.next_f64());
    let pixel_gain: Vec<f64> = (0..size).map(|_| 1.0 + 0.03 * rng.normal()).collect();
    let mix: Vec<f64> = (0..size)
        .map(|_| {
            if rng.next_f64() < 0.1 {
                0.2 + 0.4 * rng.next_f64()
            } else {
                0.0
            }
        })
        .collect();
    let mut values = vec![0i16; DATES * BANDS * size];
    for (t, a) in atm.iter().enumerate() {
        let cover = cloud_at(&a.blobs, x, y);
        for b in 0..BANDS {
            for p in 0..size {
                let mut r = ((1.0 - mix[p]) * spectra[t][b] + mix[p] * hedge[t][b])
                    * pixel_gain[p]
                    * a.gain;
                if b < 3 {
                    r += a.haze;
                }
                r += (0.02 * r + 25.0) * rng.normal();
                if cover > 0.0 {
                    let c = (cover * (0.9 + 0.2 * rng.next_f64())).min(1.0);
                    r = (1.0 - c) * r + c * CLOUD[b] * a.cloud_level;
                }
                values[(t * BANDS + b) * size + p] = r.round().clamp(0.0, 16000.0) as i16;
            }
        }
    }
    let geomfeat = geomfeat(size, if outside { codes.len() } else { k }, rng);
    Parcel {
        label,
        values,
        size,
        geomfeat,
    }
}

#[derive(Serialize)]
struct Marker<'a> {
    generator: &'static str,
    format: &'static str,
    version: u32,
    options: &'a PixelSetSynthOptions,
}

#[derive(Serialize)]
struct MeanStd {
    mean: Vec<Vec<f64>>,
    std: Vec<Vec<f64>>,
}

/// Writes a synthetic Sentinel-Agri dataset (see the module doc) into `dir`, which must be new, empty, or a
/// previous `--format pixelset` synth output (its `DATA/<pid>.npy` files are replaced). Same options, same bytes.
pub fn write_pixelset(dir: &Path, opts: &PixelSetSynthOptions) -> Result<PixelSetSynthSummary> {
    opts.validate()?;
    prepare_dir(dir, "pixelset", &[("DATA", "")])?;
    write_json(
        &dir.join(MARKER),
        &Marker {
            generator: "sitsgpu synth",
            format: "pixelset",
            version: 1,
            options: opts,
        },
        4,
    )?;
    for sub in ["DATA", "META"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    let mut rng = Rng::new(opts.seed ^ 0xD1B5_4A32_D192_ED03);
    let doys: Vec<usize> = (0..DATES)
        .map(|t| {
            let (lo, hi) = (t * SEASON / DATES, (t + 1) * SEASON / DATES);
            lo + rng.below((hi - lo) as u64) as usize
        })
        .collect();
    let days: Vec<f64> = doys.iter().map(|&d| JAN_1 + d as f64).collect();
    let dates: Vec<u32> = doys.iter().map(|&d| date_2017(d)).collect();
    let atm: Vec<Atmosphere> = (0..DATES).map(|_| atmosphere(&mut rng)).collect();

    let mut summary = PixelSetSynthSummary {
        dir: dir.to_path_buf(),
        ids: Vec::new(),
        labels: Vec::new(),
        sizes: Vec::new(),
        classes: opts.codes(),
        dates: dates.clone(),
        cloudy_dates: atm.iter().filter(|a| !a.blobs.is_empty()).count(),
    };
    let mut geom: BTreeMap<u64, [f64; 4]> = BTreeMap::new();
    // Exact integer sums per (date, band) for the statistics: count, Σx, Σx².
    let mut sums = vec![(0u128, 0u128); DATES * BANDS];
    let mut pixels = 0u128;
    let mut pid = 100u64;
    for i in 0..opts.parcels {
        let seed = Rng::new(
            opts.seed
                .wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
        .next_u64();
        let mut prng = Rng::new(seed);
        let id = pid + prng.below(13);
        pid += 13;
        let p = generate_parcel(i, opts, &days, &atm, &mut prng);
        crate::data::npy::write(
            dir.join("DATA").join(format!("{id}.npy")),
            &[DATES, BANDS, p.size],
            &p.values,
        )?;
        for (tb, sum) in sums.iter_mut().enumerate() {
            for &v in &p.values[tb * p.size..(tb + 1) * p.size] {
                let v = v as u128; // values are 0..=16000
                sum.0 += v;
                sum.1 += v * v;
            }
        }
        pixels += p.size as u128;
        geom.insert(id, p.geomfeat);
        summary.ids.push(id);
        summary.labels.push(p.label);
        summary.sizes.push(p.size);
    }

    // mean = Σx / N, std = √(N·Σx² − (Σx)²) / N (population std), exact until the last division.
    let n = pixels as f64;
    let rows = |f: &dyn Fn(&(u128, u128)) -> f64| -> Vec<Vec<f64>> {
        sums.chunks(BANDS)
            .map(|r| r.iter().map(f).collect())
            .collect()
    };
    let mean = rows(&|&(s, _)| s as f64 / n);
    let std = rows(&|&(s, q)| ((pixels * q - s * s) as f64).sqrt() / n);
    let flat = |v: &[Vec<f64>]| v.concat();
    write_f64_tuple(
        dir.join(NORM_PICKLE),
        &[
            (&[DATES, BANDS], &flat(&mean)),
            (&[DATES, BANDS], &flat(&std)),
        ],
    )?;
    write_json(&dir.join(NORM_JSON), &MeanStd { mean, std }, 1)?;

    let meta = dir.join("META");
    let labels: BTreeMap<u64, i64> = summary
        .ids
        .iter()
        .copied()
        .zip(summary.labels.iter().copied())
        .collect();
    let mut nomenclatures = BTreeMap::new();
    nomenclatures.insert("label_44class", labels);
    write_json(&meta.join("labels.json"), &nomenclatures, 1)?;
    write_json(&meta.join("dates.json"), &OrderedDates(&dates), 1)?;
    write_json(&meta.join("geomfeat.json"), &geom, 1)?;
    let sizes: BTreeMap<u64, usize> = summary
        .ids
        .iter()
        .copied()
        .zip(summary.sizes.iter().copied())
        .collect();
    write_json(&meta.join("sizes.json"), &sizes, 1)?;
    Ok(summary)
}

#[cfg(test)]
#[path = "pixelset_tests.rs"]
mod tests;
