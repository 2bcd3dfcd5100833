//! `sitsgpu prepare`: a user's own imagery and labels cut into a dataset in the exact PASTIS layout (spec
//! §1.2–1.6, §1.12), so that `train`, `evaluate` and `predict` run on it unchanged.
//!
//! Inputs: the image folder of `sitsgpu map` (one multi-band GeoTIFF per date, dates from the names or
//! `--dates`, `--bands` in PASTIS order, read through [`crate::train::map::scene`]), a label raster (band 1:
//! class ids 0..=255, in practice 0..19 with 19 the void class) and optionally a parcel-id raster (band 1:
//! integer ids, 0 = no parcel), both on the images' grid (same size, geotransform and CRS, checked, errors
//! naming the file).
//!
//! The scene is cut into non-overlapping `P × P` tiles (`--patch_size`, default 128), row by row from the
//! top-left pixel. Tile (ty, tx) of the `nx` tiles a row becomes patch `ID_PATCH = 1 + ty·nx + tx`. The last
//! tile of a row or column, when the scene is not a multiple of P, is **padded** past the scene's edge. For
//! each tile and date, a pixel has data when none of its bands is nodata (the files' GDAL nodata value); a
//! date whose tile is entirely without data is dropped from that patch (a padded date, as PASTIS pads: the
//! patch's `dates-S2` lists only the dates it keeps), and a tile that keeps no date is **skipped**. Pixels
//! without data on a kept date (and pixels past the scene) are written as 0; pixels without data on every
//! kept date (and pixels past the scene) get the void class 19 in TARGET, so that the loss and the metrics
//! ignore them (spec §1.8), and parcel id 0. Pixels where the label raster is nodata are void too.
//!
//! Files written in `--out` (a new or empty folder):
//! - `DATA_S2/S2_<id>.npy`: (T, 10, P, P) int16, the reflectances as stored in the GeoTIFFs (integers that
//!   fit int16, else an error naming the file: scale float reflectances to integers first);
//! - `ANNOTATIONS/TARGET_<id>.npy`: (3, P, P) uint8, channel 0 the class map, channels 1 and 2 copies of it
//!   (as in the released files we have seen; the loaders read channel 0 only, spec §1.3);
//! - with `--parcels`, `ANNOTATIONS/ParcelIDs_<id>.npy` (P, P) int32, the raw ids, and
//!   `INSTANCE_ANNOTATIONS/{HEATMAP,INSTANCES,ZONES}_<id>.npy` by the original recipe (§1.12): instance map =
//!   parcel ids × (class ≠ 0), its sorted distinct ids relabelled 1..N in each patch (INSTANCES, int32); per
//!   instance the bounding box enlarged by a pixel where not at the patch's border, a Gaussian with σ =
//!   0.0588 × the box's extent centred on the box's middle pixel (exactly 1.0 there); HEATMAP (float32) the
//!   maximum over instances, ZONES (int32) the first instance of the argmax (shared with `sitsgpu synth`);
//! - `metadata.geojson`: one feature per patch, properties `ID_PATCH`, `N_Parcel` (instances; 0 without
//!   parcels), `Parcel_Cover` (share of pixels in an instance; without parcels, in a class other than 0 and
//!   19), `TILE` (the image folder's name), `Fold` and `dates-S2` (`{"0": YYYYMMDD, …}`), the geometry the
//!   tile's footprint (a polygon in the raster's CRS, from the geotransform), and the CRS as an EPSG name
//!   where the GeoKeys give one;
//! - `NORM_S2_patch.json`: for each fold, the average over its patches of each patch's per-band mean and
//!   unbiased std of the stored int16 values (`compute_norm_vals`, §1.6), in float64. A fold without patches
//!   has no entry (and a warning is printed).
//!
//! Folds (`--folds k`, default 5 as the training rotations expect): tile (ty, tx) goes to fold
//! `1 + (tx + 2·ty) mod k`. For k ≥ 3 no tile shares its fold with the tile left, right, above or below it,
//! so a fold's patches are spread over the whole scene and no two neighbouring patches train and test
//! together; deterministic, independent of which tiles are skipped.
//!
//! Limits: parcel ids must be below 2²⁴ (they are read through float32); labels must be integers 0..=255.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::data::geotiff::{GeoTiffInfo, GeoTiffReader};
use crate::data::npy;
use crate::engine::{Error, Result};
use crate::train::map::scene;

/// The void class (spec §1.7): pixels without data.
pub const VOID: u8 = 19;
/// Sentinel-2 bands of a PASTIS patch.
const BANDS: usize = 10;
/// Largest parcel id read exactly through float32.
const MAX_PARCEL_ID: f32 = 16_777_216.0;

/// What `prepare` needs.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Folder of GeoTIFFs, one per date.
    pub images: PathBuf,
    /// Label raster (band 1: classes).
    pub labels: PathBuf,
    /// Parcel-id raster (band 1: ids, 0 = none).
    pub parcels: Option<PathBuf>,
    /// The dataset folder to write.
    pub out: PathBuf,
    /// Tile side.
    pub patch_size: usize,
    /// Number of folds.
    pub folds: usize,
    /// `--dates` file.
    pub dates_file: Option<PathBuf>,
    /// `--bands`.
    pub bands: Option<String>,
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    /// IDs of the patches written, ascending.
    pub ids: Vec<u64>,
    /// Tiles skipped (no data on any date).
    pub skipped: usize,
    /// Patches per fold (index f = fold f + 1).
    pub fold_sizes: Vec<usize>,
    /// Instances over all patches.
    pub parcels: usize,
}

/// The fold of tile (ty, tx) among `k` (1-based); see the module doc.
pub fn fold_of(ty: usize, tx: usize, k: usize) -> usize {
    1 + (tx + 2 * ty) % k
}

/// Checks that `other` (the labels or the parcels) is on the grid of the images' first date.
fn check_grid(first: &GeoTiffReader, other: &GeoTiffReader) -> Result<()> {
    let (a, b) = (first.info(), other.info());
    let path = other.path();
    if (a.width, a.height) != (b.width, b.height) {
        return Err(Error::format(
            path,
            format!(
                "{} x {} pixels, the images ({}) have {} x {}: the rasters must be on one grid",
                b.width,
                b.height,
                first.path().display(),
                a.width,
                a.height
            ),
        ));
    }
    if a.georef.geotransform() != b.georef.geotransform() {
        return Err(Error::format(
            path,
            format!(
                "geotransform {:?} differs from {:?} of {}: the rasters must be on one grid",
                b.georef.geotransform(),
                a.georef.geotransform(),
                first.path().display()
            ),
        ));
    }
    if !a.georef.same_crs(&b.georef) {
        return Err(Error::format(
            path,
            format!("CRS differs from that of {}", first.path().display()),
        ));
    }
    Ok(())
}

/// Refuses an output folder that holds anything; creates it.
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        let mut rd = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
        if rd.next().is_some() {
            return Err(Error::io(
                out,
                "the output folder is not empty; give a new or empty folder",
            ));
        }
    }
    for sub in ["DATA_S2", "ANNOTATIONS"] {
        let p = out.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// The EPSG code of a raster's CRS, where its GeoKeys give one (projected, else geographic).
fn epsg(info: &GeoTiffInfo) -> Option<u16> {
    [3072u16, 2048]
        .iter()
        .find_map(|&k| info.georef.key(k).filter(|&c| c != 0 && c != 32767))
}

/// Per-band mean and unbiased std of a (T, 10, P, P) int16 patch (§1.6), in f64.
pub fn patch_stats(s2: &[i16], t: usize, npix: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0f64; BANDS];
    let mut std = vec![0f64; BANDS];
    let n = (t * npix) as f64;
    for b in 0..BANDS {
        let vals = (0..t).flat_map(|ti| s2[(ti * BANDS + b) * npix..][..npix].iter());
        let m = vals.clone().map(|&v| v as f64).sum::<f64>() / n;
        let ss: f64 = vals.map(|&v| (v as f64 - m).powi(2)).sum();
        mean[b] = m;
        std[b] = if n > 1.0 {
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        };
    }
    (mean, std)
}

/// Per-patch, per-band statistics of one fold's patches.
type BandStats = Vec<Vec<f64>>;

/// One tile's series: the stored int16 values (T, 10, P, P), the dates kept and the pixels with data.
type TileSeries = (Vec<i16>, Vec<usize>, Vec<bool>);

/// Reads tile (r, c) of every date; None when no date has data there.
fn read_tile(
    readers: &mut [GeoTiffReader],
    bands: &[usize],
    (r, c, p): (usize, usize, usize),
) -> Result<Option<TileSeries>> {
    let npix = p * p;
    let mut data = Vec::new();
    let mut kept = Vec::new();
    let mut valid = vec![false; npix];
    for (t, rd) in readers.iter_mut().enumerate() {
        let nodata = rd.info().nodata_f32();
        let v = rd.read_window(r as i64, c as i64, p, p, bands, f32::NAN)?;
        let missing = |x: f32| x.is_nan() || nodata.is_some_and(|n| x == n);
        let has: Vec<bool> = (0..npix)
            .map(|i| (0..bands.len()).all(|b| !missing(v[b * npix + i])))
            .collect();
        if !has.iter().any(|&h| h) {
            continue;
        }
        for (b, plane) in v.chunks_exact(npix).enumerate() {
            for (i, (&x, &h)) in plane.iter().zip(&has).enumerate() {
                if !h {
                    data.push(0i16);
                    continue;
                }
                if x.fract() != 0.0 || x < i16::MIN as f32 || x > i16::MAX as f32 {
                    return Err(Error::format(
                        rd.path(),
                        format!(
                            "value {x} (band {}, row {}, column {}) does not fit int16, as PASTIS stores \
                             reflectances: scale the images to integers (e.g. reflectance × 10000) first",
                            bands[b] + 1,
                            r + i / p,
                            c + i % p
                        ),
                    ));
                }
                data.push(x as i16);
            }
        }
        valid.iter_mut().zip(&has).for_each(|(a, &h)| *a |= h);
        kept.push(t);
    }
    Ok((!kept.is_empty()).then_some((data, kept, valid)))
}

/// Band 1 of tile (r, c) of a single-band raster, with its nodata as NaN (and NaN past the scene).
fn read_band1(rd: &mut GeoTiffReader, (r, c, p): (usize, usize, usize)) -> Result<Vec<f32>> {
    let nodata = rd.info().nodata_f32();
    let mut v = rd.read_window(r as i64, c as i64, p, p, &[0], f32::NAN)?;
    if let Some(n) = nodata {
        v.iter_mut()
            .filter(|x| **x == n)
            .for_each(|x| *x = f32::NAN);
    }
    Ok(v)
}

/// Writes the dataset; see the module doc.
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareReport> {
    let p = opts.patch_size;
    if p < 16 || !p.is_multiple_of(8) {
        return Err(Error::Invalid(format!(
            "--patch_size {p}: expected a multiple of 8 from 16 up (U-TAE halves it three times, and its \
             lowest level needs 2 × 2 pixels for its reflect-padded convolutions)"
        )));
    }
    if opts.folds < 2 {
        return Err(Error::Invalid(format!(
            "--folds {}: expected at least 2",
            opts.folds
        )));
    }
    let dates = scene::list_dates(&opts.images, opts.dates_file.as_deref())?;
    let first = GeoTiffReader::open(&dates[0].path)?;
    let bands = scene::parse_bands(opts.bands.as_deref(), BANDS, &dates[0].path, first.info())?;
    let mut readers = scene::open_all(&dates, &bands)?;
    let mut labels = GeoTiffReader::open(&opts.labels)?;
    check_grid(&first, &labels)?;
    let mut parcels = match &opts.parcels {
        Some(f) => {
            let r = GeoTiffReader::open(f)?;
            check_grid(&first, &r)?;
            Some(r)
        }
        None => None,
    };
    let info = first.info().clone();
    drop(first);
    prepare_out(&opts.out)?;
    if parcels.is_some() {
        let d = opts.out.join("INSTANCE_ANNOTATIONS");
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    for rd in readers
        .iter_mut()
        .chain(std::iter::once(&mut labels))
        .chain(parcels.as_mut())
    {
        let rows = rd.chunk_rows_for(p);
        rd.set_cache_rows(rows);
    }
    let (h, w) = (info.height, info.width);
    let (ny, nx) = (h.div_ceil(p), w.div_ceil(p));
    let npix = p * p;
    let gt = info.georef.geotransform();
    let tile_name = opts
        .images
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dsub = |sub: &str, name: String| opts.out.join(sub).join(name);
    let mut features = Vec::new();
    let mut fold_stats: Vec<(BandStats, BandStats)> = vec![(Vec::new(), Vec::new()); opts.folds];
    let mut report = PrepareReport {
        ids: Vec::new(),
        skipped: 0,
        fold_sizes: vec![0; opts.folds],
        parcels: 0,
    };
    for ty in 0..ny {
        for tx in 0..nx {
            let (r, c) = (ty * p, tx * p);
            let Some((s2, kept, valid)) = read_tile(&mut readers, &bands, (r, c, p))? else {
                report.skipped += 1;
                continue;
            };
            let id = (1 + ty * nx + tx) as u64;
            let fold = fold_of(ty, tx, opts.folds);
            // Classes: band 1 of the labels, void without data.
            let lab = read_band1(&mut labels, (r, c, p))?;
            let mut classes = vec![VOID; npix];
            for (i, (&v, &ok)) in lab.iter().zip(&valid).enumerate() {
                if !ok || v.is_nan() {
                    continue;
                }
                if v.fract() != 0.0 || !(0.0..=255.0).contains(&v) {
                    return Err(Error::format(
                        &opts.labels,
                        format!(
                            "label {v} at row {}, column {}: classes must be integers 0..=255 (PASTIS: \
                             0..19, 19 void)",
                            r + i / p,
                            c + i % p
                        ),
                    ));
                }
                classes[i] = v as u8;
            }
            let t = kept.len();
            npy::write(
                dsub("DATA_S2", format!("S2_{id}.npy")),
                &[t, BANDS, p, p],
                &s2,
            )?;
            npy::write(
                dsub("ANNOTATIONS", format!("TARGET_{id}.npy")),
                &[3, p, p],
                &classes.repeat(3),
            )?;
            let (n_parcel, covered) = match parcels.as_mut() {
                Some(prd) => {
                    let raw = read_band1(prd, (r, c, p))?;
                    let mut ids = vec![0i32; npix];
                    for (i, (&v, &ok)) in raw.iter().zip(&valid).enumerate() {
                        if !ok || v.is_nan() || v == 0.0 {
                            continue;
                        }
                        if v.fract() != 0.0 || !(0.0..MAX_PARCEL_ID).contains(&v) {
                            return Err(Error::format(
                                prd.path(),
                                format!(
                                    "parcel id {v} at row {}, column {}: ids must be integers 0..2^24 \
                                     (0 = no parcel); renumber the parcels",
                                    r + i / p,
                                    c + i % p
                                ),
                            ));
                        }
                        ids[i] = v as i32;
                    }
                    // §1.12 step 1: parcel ids on non-background pixels, relabelled 1..N in id order.
                    let mut distinct: Vec<i32> = ids
                        .iter()
                        .zip(&classes)
                        .filter(|&(&id, &cl)| id != 0 && cl != 0)
                        .map(|(&id, _)| id)
                        .collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    let code: BTreeMap<i32, i32> = distinct
                        .iter()
                        .enumerate()
                        .map(|(k, &id)| (id, k as i32 + 1))
                        .collect();
                    let instances: Vec<i32> = ids
                        .iter()
                        .zip(&classes)
                        .map(|(&id, &cl)| match cl {
                            0 => 0,
                            _ => code.get(&id).copied().unwrap_or(0),
                        })
                        .collect();
                    let n = distinct.len();
                    let (heat, zones) = crate::data::synthetic::centerness(&instances, n, p, p);
                    let inst = "INSTANCE_ANNOTATIONS";
                    npy::write(
                        dsub("ANNOTATIONS", format!("ParcelIDs_{id}.npy")),
                        &[p, p],
                        &ids,
                    )?;
                    npy::write(dsub(inst, format!("HEATMAP_{id}.npy")), &[p, p], &heat)?;
                    npy::write(
                        dsub(inst, format!("INSTANCES_{id}.npy")),
                        &[p, p],
                        &instances,
                    )?;
                    npy::write(dsub(inst, format!("ZONES_{id}.npy")), &[p, p], &zones)?;
                    (n, instances.iter().filter(|&&v| v != 0).count())
                }
                None => (0, classes.iter().filter(|&&c| c != 0 && c != VOID).count()),
            };
            report.parcels += n_parcel;
            let (mean, std) = patch_stats(&s2, t, npix);
            fold_stats[fold - 1].0.push(mean);
            fold_stats[fold - 1].1.push(std);
            report.fold_sizes[fold - 1] += 1;
            report.ids.push(id);
            let mut d = Map::new();
            for (k, &ti) in kept.iter().enumerate() {
                let dt = dates[ti].date;
                let v = dt.year as i64 * 10_000 + dt.month as i64 * 100 + dt.day as i64;
                d.insert(k.to_string(), json!(v));
            }
            let corner = |row: usize, col: usize| {
                let (row, col) = (row as f64, col as f64);
                [
                    gt[0] + col * gt[1] + row * gt[2],
                    gt[3] + col * gt[4] + row * gt[5],
                ]
            };
            let ring = vec![
                corner(r, c),
                corner(r, c + p),
                corner(r + p, c + p),
                corner(r + p, c),
                corner(r, c),
            ];
            features.push(json!({
                "type": "Feature",
                "properties": {
                    "ID_PATCH": id,
                    "N_Parcel": n_parcel,
                    "Parcel_Cover": covered as f64 / npix as f64,
                    "TILE": tile_name,
                    "Fold": fold,
                    "dates-S2": Value::Object(d),
                },
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }));
        }
    }
    if report.ids.is_empty() {
        return Err(Error::format(
            &opts.images,
            "no tile has data on any date: nothing to write",
        ));
    }
    let mut root = json!({"type": "FeatureCollection", "features": features});
    if let Some(code) = epsg(&info) {
        root["crs"] = json!({"type": "name", "properties": {"name": format!("urn:ogc:def:crs:EPSG::{code}")}});
    }
    crate::data::json::write_json(&opts.out.join("metadata.geojson"), &root)?;
    let avg = |v: &[Vec<f64>]| -> Vec<f64> {
        (0..BANDS)
            .map(|b| v.iter().map(|x| x[b]).sum::<f64>() / v.len() as f64)
            .collect()
    };
    let mut norm = Map::new();
    for (f, (m, s)) in fold_stats.iter().enumerate() {
        if m.is_empty() {
            eprintln!(
                "warning: fold {} has no patch (the scene has {} tile(s) with data); it has no entry in \
                 NORM_S2_patch.json",
                f + 1,
                report.ids.len()
            );
            continue;
        }
        norm.insert(
            format!("Fold_{}", f + 1),
            json!({"mean": avg(m), "std": avg(s)}),
        );
    }
    crate::data::json::write_json(&opts.out.join("NORM_S2_patch.json"), &Value::Object(norm))?;
    Ok(report)
}

/// `sitsgpu prepare`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PrepareArgs {
    /// Folder of GeoTIFFs, one multi-band file per date (date in the name: YYYYMMDD or YYYY-MM-DD).
    #[arg(long)]
    pub images: PathBuf,
    /// Label raster on the images' grid: band 1 the class of each pixel (0..19, 19 = void).
    #[arg(long)]
    pub labels: PathBuf,
    /// Parcel-id raster on the images' grid (band 1, 0 = no parcel): also writes the instance annotations
    /// (HEATMAP, INSTANCES, ZONES) for U-TAE + PaPs.
    #[arg(long)]
    pub parcels: Option<PathBuf>,
    /// The dataset folder to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Tile side in pixels (a multiple of 8 from 16 up; PASTIS patches are 128).
    #[arg(
        long = "patch_size",
        visible_alias = "patch-size",
        default_value_t = 128
    )]
    pub patch_size: usize,
    /// Number of folds (the training rotations use 5).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// A file of dates, one a line (YYYY-MM-DD or YYYYMMDD), for the GeoTIFFs in name order.
    #[arg(long)]
    pub dates: Option<PathBuf>,
    /// The files' bands in PASTIS order (B2 B3 B4 B5 B6 B7 B8 B8A B11 B12): 1-based indices or band names,
    /// comma-separated (default: the first ten bands).
    #[arg(long)]
    pub bands: Option<String>,
}

impl PrepareArgs {
    /// Runs `sitsgpu prepare`.
    pub fn run(&self) -> Result<()> {
        let r = prepare(&PrepareOptions {
            images: self.images.clone(),
            labels: self.labels.clone(),
            parcels: self.parcels.clone(),
            out: self.out.clone(),
            patch_size: self.patch_size,
            folds: self.folds,
            dates_file: self.dates.clone(),
            bands: self.bands.clone(),
        })?;
        println!(
            "wrote {} patches to {} ({} tile(s) without data skipped; patches per fold {:?}; {} parcels)",
            r.ids.len(),
            self.out.display(),
            r.skipped,
            r.fold_sizes,
            r.parcels
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_tiles_never_share_a_fold() {
        for k in 3..=7 {
            for ty in 0..6 {
                for tx in 0..6 {
                    let f = fold_of(ty, tx, k);
                    assert!((1..=k).contains(&f));
                    assert_ne!(f, fold_of(ty, tx + 1, k));
                    assert_ne!(f, fold_of(ty + 1, tx, k));
                }
            }
        }
    }

    #[test]
    fn patch_stats_are_mean_and_unbiased_std() {
        // T = 1, one pixel per band would be n = 1; use 2 pixels.
        let mut s2 = vec![0i16; 20];
        s2[0] = 1;
        s2[1] = 3;
        let (m, s) = patch_stats(&s2, 1, 2);
        assert_eq!(m[0], 2.0);
        assert!((s[0] - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!((m[1], s[1]), (0.0, 0.0));
    }

    /// Patch sides U-TAE cannot take are refused before any file is read (8 reaches a 1 × 1 level, too
    /// small for its reflect-padded convolutions).
    #[test]
    fn patch_sides_u_tae_cannot_take_are_refused() {
        for p in [0, 8, 12, 20] {
            let opts = PrepareOptions {
                images: "no-such-folder".into(),
                labels: "no-such-labels.tif".into(),
                parcels: None,
                out: "no-such-out".into(),
                patch_size: p,
                folds: 5,
                dates_file: None,
                bands: None,
            };
            let e = prepare(&opts).unwrap_err().to_string();
            assert!(
                e.contains("--patch_size") && e.contains("from 16 up"),
                "{p}: {e}"
            );
        }
    }
}
