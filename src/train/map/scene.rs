//! The inputs of `sitsgpu map`: a folder of GeoTIFFs, one per date, checked against each other (same grid,
//! same CRS, enough bands), their dates (from the file names or a `--dates` file), the band mapping
//! (`--bands`) and the normalisation the model was trained with.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::data::geotiff::{GeoTiffInfo, GeoTiffReader};
use crate::data::pastis::Date;
use crate::engine::{Error, Result};

/// PASTIS's band order (spec §1.3): what `--bands` names map to.
pub const PASTIS_BANDS: [&str; 10] = [
    "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12",
];

/// The date written in a file name: the first `YYYYMMDD` or `YYYY-MM-DD` that is a real date.
pub fn date_in_name(name: &str) -> Option<Date> {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    for i in 0..b.len() {
        // Not in the middle of a longer number.
        if i > 0 && b[i - 1].is_ascii_digit() {
            continue;
        }
        if i + 10 <= b.len()
            && digits(&b[i..i + 4])
            && b[i + 4] == b'-'
            && digits(&b[i + 5..i + 7])
            && b[i + 7] == b'-'
            && digits(&b[i + 8..i + 10])
            && !b.get(i + 10).is_some_and(u8::is_ascii_digit)
        {
            if let Ok(d) = Date::parse(&name[i..i + 10]) {
                return Some(d);
            }
        }
        if i + 8 <= b.len() && digits(&b[i..i + 8]) && !b.get(i + 8).is_some_and(u8::is_ascii_digit)
        {
            if let Some(d) = name[i..i + 8].parse().ok().and_then(Date::from_yyyymmdd) {
                return Some(d);
            }
        }
    }
    None
}

/// One date of the series.
pub struct DateFile {
    /// Acquisition date.
    pub date: Date,
    /// The GeoTIFF.
    pub path: PathBuf,
}

/// The `.tif` / `.tiff` files of `dir` with their dates (from `dates_file`, one `YYYY-MM-DD` or `YYYYMMDD` a
/// line in the files' name order, else from the names), sorted by date.
pub fn list_dates(dir: &Path, dates_file: Option<&Path>) -> Result<Vec<DateFile>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::io(
            dir,
            "no dates: no .tif or .tiff file in the folder",
        ));
    }
    let dates: Vec<Date> = match dates_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            if lines.len() != files.len() {
                return Err(Error::format(
                    f,
                    format!("{} dates for {} GeoTIFFs in {}", lines.len(), files.len(), dir.display()),
                ));
            }
            lines
                .iter()
                .map(|l| {
                    date_in_name(l).ok_or_else(|| {
                        Error::format(f, format!("{l:?} is not a date (YYYY-MM-DD or YYYYMMDD)"))
                    })
                })
                .collect::<Result<_>>()?
        }
        None => files
            .iter()
            .map(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                date_in_name(&name).ok_or_else(|| {
                    Error::format(
                        p,
                        "no date in the file name (YYYYMMDD or YYYY-MM-DD); rename it or give --dates",
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut out: Vec<DateFile> = dates
        .into_iter()
        .zip(files)
        .map(|(date, path)| DateFile { date, path })
        .collect();
    out.sort_by_key(|d| d.date);
    for w in out.windows(2) {
        if w[0].date == w[1].date {
            return Err(Error::format(
                &w[1].path,
                format!("same date as {}", w[0].path.display()),
            ));
        }
    }
    Ok(out)
}

/// Band descriptions from GDAL's metadata tag (42112), by band index, where GDAL wrote them.
fn band_names(path: &Path) -> Vec<Option<String>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    // The tag is ASCII XML; look for `<Item name="DESCRIPTION" sample="N" role="description">NAME</Item>`.
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 20)]).into_owned();
    let mut names = Vec::new();
    for part in text.split("<Item name=\"DESCRIPTION\" sample=\"").skip(1) {
        let Some((n, rest)) = part.split_once('"') else {
            continue;
        };
        let Some((_, rest)) = rest.split_once('>') else {
            continue;
        };
        let Some((name, _)) = rest.split_once("</Item>") else {
            continue;
        };
        if let Ok(i) = n.parse::<usize>() {
            if names.len() <= i {
                names.resize(i + 1, None);
            }
            names[i] = Some(name.trim().to_string());
        }
    }
    names
}

/// `--bands`: 1-based indices (`3,2,1,...`) or names (`B2,B3,...`, matched against the files' band
/// descriptions, else PASTIS's order) → 0-based band indices of the files, one per model input channel.
pub fn parse_bands(
    spec: Option<&str>,
    channels: usize,
    first: &Path,
    info: &GeoTiffInfo,
) -> Result<Vec<usize>> {
    let Some(spec) = spec else {
        if info.bands < channels {
            return Err(Error::format(
                first,
                format!(
                    "{} band(s), the model takes {channels}; give --bands",
                    info.bands
                ),
            ));
        }
        return Ok((0..channels).collect());
    };
    let names = band_names(first);
    let items: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() != channels {
        return Err(Error::Invalid(format!(
            "--bands {spec:?}: {} band(s) given, the model takes {channels} (PASTIS order {})",
            items.len(),
            PASTIS_BANDS.join(",")
        )));
    }
    items
        .iter()
        .map(|it| {
            if let Ok(i) = it.parse::<usize>() {
                if i == 0 || i > info.bands {
                    return Err(Error::format(first, format!("--bands: band {i} asked for, the file has {} (1-based)", info.bands)));
                }
                return Ok(i - 1);
            }
            if let Some(i) = names.iter().position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(it))) {
                return Ok(i);
            }
            Err(Error::format(
                first,
                format!("--bands: no band named {it:?} (band descriptions: {names:?}); give 1-based indices"),
            ))
        })
        .collect()
}

/// Opens every date and checks it against the first: size, geotransform, CRS, band count.
pub fn open_all(dates: &[DateFile], bands: &[usize]) -> Result<Vec<GeoTiffReader>> {
    let mut readers: Vec<GeoTiffReader> = Vec::new();
    for d in dates {
        let r = GeoTiffReader::open(&d.path)?;
        if let Some(first) = readers.first() {
            let (a, b) = (first.info(), r.info());
            if (a.width, a.height) != (b.width, b.height) {
                return Err(Error::format(
                    &d.path,
                    format!(
                        "{} x {} pixels, {} has {} x {}: every date must be on one grid",
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
                    &d.path,
                    format!(
                        "geotransform {:?} differs from {:?} of {}: every date must be on one grid",
                        b.georef.geotransform(),
                        a.georef.geotransform(),
                        first.path().display()
                    ),
                ));
            }
            if !a.georef.same_crs(&b.georef) {
                return Err(Error::format(
                    &d.path,
                    format!("CRS differs from that of {}", first.path().display()),
                ));
            }
        }
        if let Some(&m) = bands.iter().max() {
            if m >= r.info().bands {
                return Err(Error::format(
                    &d.path,
                    format!(
                        "missing bands: band {} needed, the file has {}",
                        m + 1,
                        r.info().bands
                    ),
                ));
            }
        }
        readers.push(r);
    }
    Ok(readers)
}

/// The record `train` leaves beside each fold's weights: the normalisation of its training split.
pub const NORM_FILE: &str = "normalisation.json";

/// Writes `Fold_k/normalisation.json`.
pub fn write_norm_record(
    fold_dir: &Path,
    mean: &[f32],
    std: &[f32],
    folds: &[usize],
) -> Result<()> {
    crate::data::json::write_json(
        &fold_dir.join(NORM_FILE),
        &json!({"mean": mean, "std": std, "train_folds": folds,
                "note": "per-band mean and std of the training split (NORM_S2_patch.json averaged over train_folds); sitsgpu map normalises with them"}),
    )
}

/// The normalisation of fold `k`'s model: `Fold_k/normalisation.json`, or with `norm_file` (an official
/// `NORM_S2_patch.json`) the average over rotation k's training folds (spec §1.9).
pub fn read_norm_for(
    weight_folder: &Path,
    k: usize,
    norm_file: Option<&Path>,
    bands: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if let Some(f) = norm_file {
        let train: Vec<usize> = (0..3).map(|i| (k - 1 + i) % 5 + 1).collect();
        return crate::data::pastis::read_norm(f, &train, bands);
    }
    let rec = weight_folder.join(format!("Fold_{k}")).join(NORM_FILE);
    if !rec.exists() {
        return Err(Error::io(
            &rec,
            "no normalisation record (written by sitsgpu train); for an official weight folder give \
             --norm NORM_S2_patch.json (the fold's training folds are averaged) and --fold",
        ));
    }
    let text = std::fs::read_to_string(&rec).map_err(|e| Error::io(&rec, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&rec, format!("not valid JSON: {e}")))?;
    let get = |key: &str| -> Result<Vec<f32>> {
        let a = v
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| Error::format(&rec, format!("no {key:?} array")))?;
        let out: Option<Vec<f32>> = a
            .iter()
            .map(|x| x.as_f64().filter(|x| x.is_finite()).map(|x| x as f32))
            .collect();
        let out = out.ok_or_else(|| Error::format(&rec, format!("{key:?}: not finite numbers")))?;
        if out.len() != bands {
            return Err(Error::format(
                &rec,
                format!(
                    "{key:?} has {} values, the model takes {bands} bands",
                    out.len()
                ),
            ));
        }
        Ok(out)
    };
    let (mean, std) = (get("mean")?, get("std")?);
    if std.contains(&0.0) {
        return Err(Error::format(&rec, "a std of 0"));
    }
    Ok((mean, std))
}
