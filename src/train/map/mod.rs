//! `sitsgpu map`: a trained semantic model over a user's own GeoTIFF time series, to a georeferenced map.
//!
//! Inputs ([`scene`]): a folder with one multi-band GeoTIFF per date (int16 / uint16 / float32, any layout
//! the reader takes), all on one grid and CRS; dates from the names or `--dates`, as day offsets from the
//! model's `ref_date`; `--bands` maps the files' bands to the model's (PASTIS order); the normalisation of
//! the model's training split travels with it (`Fold_k/normalisation.json`, or `--norm NORM_S2_patch.json`).
//!
//! The scene is cut into windows of the patch size (`--patch_size`, default 128) overlapping by `--overlap`
//! pixels (default a quarter), laid out row by row; the last window of a row or column is moved back to end
//! at the scene's edge, and a scene smaller than a window is one window padded past its edge. Each window is
//! a PASTIS sample: its dates are the scene's dates whose window is not entirely nodata (an all-nodata date
//! is a padded date, dropped as PASTIS pads), normalised as training did, nodata pixels and pixels past the
//! scene set to 0 after normalisation (the band mean). Windows are batched (`--batch_size`) with the
//! original collate (batch-max temporal padding and its pad mask) and run on the GPU while a reader thread
//! prepares the next batches (a channel of two batches: memory bounded by the batch, not the scene).
//!
//! Blending ([`blend`]): each window's logits are weighted by `w(y)·w(x)`, where `w` is 1 in the window's
//! core and ramps linearly down towards a side where a neighbouring window overlaps (never to 0, and not at
//! the scene's edges), summed and divided by the summed weights. Where one window alone covers a pixel the
//! weight is exactly 1, so the map there equals `predict` on that window's pixels as a PASTIS patch, bit for
//! bit (`tests/map.rs` checks it). Rows are written as soon as no later window can touch them, one row of
//! 256-pixel tiles at a time: the accumulator holds about `patch + 256` rows of the scene's width.
//!
//! Outputs: `MAP.tif`, band 1 the class map (uint8, 255 where no date has data, and outside the scene),
//! tiled and deflate-compressed on the input's grid and CRS; with `--probabilities`, `MAP_probabilities.tif`
//! (float32, the softmax of the blended logits, one band per class); with `--attention`,
//! `MAP_attention.tif` (float32, U-TAE's L-TAE attention masks, head-major: band `h·T + t` is head h on the
//! scene's date t, 0 where the date was padded, blended as the logits); and `MAP.png`, a preview (at most
//! 1024 pixels a side) in the PASTIS colours with a legend of the classes present. `--part i/N` maps the i-th
//! of N horizontal bands of window rows to its own file covering only that band's rows (with the windows
//! of the neighbouring band that overlap it, so its pixels equal the single run's): `gdalbuildvrt` of the N
//! parts is the whole map.

pub mod blend;
pub mod scene;

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use crate::data::geotiff::writer::TiledWriter;
use crate::data::geotiff::{GeoTiffReader, SampleType};
use crate::data::pastis::{collate, Batch, Date, PastisSample};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::semantic::SemanticModel;
use crate::models::utae::PadInfo;

use blend::{positions, Accumulator, Preview};

/// What `map` needs besides the model.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// Folder of GeoTIFFs, one per date.
    pub images: PathBuf,
    /// The class map to write (`MAP.tif`).
    pub out: PathBuf,
    /// `--dates` file.
    pub dates_file: Option<PathBuf>,
    /// `--bands`.
    pub bands: Option<String>,
    /// Window side.
    pub patch_size: usize,
    /// Overlap between neighbouring windows (None: a quarter of the window).
    pub overlap: Option<usize>,
    /// Also write class probabilities.
    pub probabilities: bool,
    /// Also write U-TAE's attention masks.
    pub attention: bool,
    /// `(i, n)`: the i-th (1-based) of n bands of window rows.
    pub part: (usize, usize),
    /// Windows per batch.
    pub batch_size: usize,
    /// The model's reference date.
    pub ref_date: Date,
    /// Per-band normalisation (mean, std).
    pub norm: (Vec<f32>, Vec<f32>),
    /// Input channels of the model.
    pub channels: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct MapReport {
    /// Windows run through the model.
    pub windows: usize,
    /// Seconds in all.
    pub seconds: f64,
    /// Seconds the model thread waited for the reader (the GPU starved).
    pub waited: f64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// `--part i/N` → (i, N).
pub fn parse_part(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Invalid(format!("--part {s:?}: expected I/N with 1 <= I <= N"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// A file beside `out` named `<stem>_<suffix>.<ext>`.
pub fn sibling(out: &Path, suffix: &str, ext: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}{suffix}.{ext}"))
}

/// One prepared batch: the collated windows and where they go.
struct Prepared {
    /// None when no window of the chunk has data.
    batch: Option<Batch>,
    /// Windows of the chunk (with or without data), for the progress bar.
    n: usize,
    /// (row, col) of each window's top-left pixel.
    at: Vec<(usize, usize)>,
    /// Each window's scene dates kept (indices into the series).
    kept: Vec<Vec<usize>>,
    /// Each window's valid-pixel mask (P × P): some date has data there.
    valid: Vec<Vec<bool>>,
}

/// A window as a PASTIS sample, the scene dates it kept, and its valid-pixel mask.
type WindowSample = (PastisSample, Vec<usize>, Vec<bool>);

/// Reads window (r, c) of every date: the PASTIS sample, the dates kept and the valid mask.
fn read_window(
    readers: &mut [GeoTiffReader],
    days: &[i64],
    bands: &[usize],
    (mean, std): (&[f32], &[f32]),
    (r, c, p): (usize, usize, usize),
) -> Result<Option<WindowSample>> {
    let nc = bands.len();
    let mut data = Vec::new();
    let mut kept = Vec::new();
    let mut valid = vec![false; p * p];
    for (t, rd) in readers.iter_mut().enumerate() {
        let nodata = rd.info().nodata_f32();
        let mut v = rd.read_window(r as i64, c as i64, p, p, bands, f32::NAN)?;
        let missing = |x: f32| x.is_nan() || nodata.is_some_and(|n| x == n);
        // A pixel has data on this date when none of its bands is missing.
        let has: Vec<bool> = (0..p * p)
            .map(|i| (0..nc).all(|b| !missing(v[b * p * p + i])))
            .collect();
        if !has.iter().any(|&h| h) {
            continue; // a padded date for this window
        }
        for (b, plane) in v.chunks_exact_mut(p * p).enumerate() {
            for (x, &h) in plane.iter_mut().zip(&has) {
                *x = if h { (*x - mean[b]) / std[b] } else { 0.0 };
            }
        }
        valid.iter_mut().zip(&has).for_each(|(a, &h)| *a |= h);
        data.extend_from_slice(&v);
        kept.push(t);
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let sample = PastisSample {
        id: 0,
        shape: [kept.len(), nc, p, p],
        dates: kept.iter().map(|&t| days[t]).collect(),
        data,
        scalar_date: false,
        target: Vec::new(),
        instance: None,
    };
    Ok(Some((sample, kept, valid)))
}

/// Runs `model` over the scene and writes the map (and the optional files); see the module doc.
pub fn map(model: &SemanticModel, device: Device, opts: &MapOptions) -> Result<MapReport> {
    let start = Instant::now();
    if opts.attention && !matches!(model, SemanticModel::UTae(_)) {
        return Err(Error::Invalid(
            "--attention: only U-TAE has attention masks".into(),
        ));
    }
    let p = opts.patch_size;
    if p == 0 || !p.is_multiple_of(8) {
        return Err(Error::Invalid(format!(
            "--patch_size {p}: expected a positive multiple of 8"
        )));
    }
    let overlap = opts.overlap.unwrap_or(p / 4);
    if overlap >= p {
        return Err(Error::Invalid(format!(
            "--overlap {overlap}: must be smaller than the window ({p})"
        )));
    }
    let dates = scene::list_dates(&opts.images, opts.dates_file.as_deref())?;
    let first = GeoTiffReader::open(&dates[0].path)?;
    let bands = scene::parse_bands(
        opts.bands.as_deref(),
        opts.channels,
        &dates[0].path,
        first.info(),
    )?;
    drop(first);
    let mut readers = scene::open_all(&dates, &bands)?;
    let info = readers[0].info().clone();
    let (h, w) = (info.height, info.width);
    let days: Vec<i64> = dates
        .iter()
        .map(|d| d.date.days_since(opts.ref_date))
        .collect();
    let n_dates = days.len();
    let ys = positions(h, p, p - overlap);
    let xs = positions(w, p, p - overlap);
    // The part: window rows [k0, k1) and the output rows they own.
    let (pi, pn) = opts.part;
    if pn > ys.len() {
        return Err(Error::Invalid(format!(
            "--part {pi}/{pn}: the scene has {} row(s) of windows; use at most {} parts",
            ys.len(),
            ys.len()
        )));
    }
    let k0 = (pi - 1) * ys.len() / pn;
    let k1 = pi * ys.len() / pn;
    let out_r0 = if k0 == 0 { 0 } else { ys[k0] };
    let out_r1 = if k1 == ys.len() { h } else { ys[k1] };
    // Every window that touches the part's rows, row-major.
    let windows: Vec<(usize, usize, usize, usize)> = ys
        .iter()
        .enumerate()
        .filter(|&(_, &y)| y < out_r1 && y + p > out_r0)
        .flat_map(|(ky, &y)| xs.iter().enumerate().map(move |(kx, &x)| (ky, kx, y, x)))
        .collect();
    for rd in &mut readers {
        let rows = rd.chunk_rows_for(p);
        rd.set_cache_rows(rows);
    }
    let classes = model.num_classes();
    let heads = match model {
        SemanticModel::UTae(m) if opts.attention => m.config.n_head,
        _ => 0,
    };
    let extra = heads * n_dates;
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let georef = info.georef.offset(out_r0, 0);
    let out_h = out_r1 - out_r0;
    let mut class_w = TiledWriter::create(
        &opts.out,
        w,
        out_h,
        1,
        SampleType::U8,
        &georef,
        Some(255.0),
        false,
    )?;
    let mut prob_w = match opts.probabilities {
        true => Some(TiledWriter::create(
            &sibling(&opts.out, "_probabilities", "tif"),
            w,
            out_h,
            classes,
            SampleType::F32,
            &georef,
            None,
            false,
        )?),
        false => None,
    };
    let mut attn_w = match heads > 0 {
        true => Some(TiledWriter::create(
            &sibling(&opts.out, "_attention", "tif"),
            w,
            out_h,
            extra,
            SampleType::F32,
            &georef,
            None,
            false,
        )?),
        false => None,
    };
    let mut acc = Accumulator::new(w, out_r0, out_r1, classes, extra, (&ys, &xs), p);
    let mut preview = Preview::new(w, out_h);
    let bar = crate::train::progress::bar(opts.progress, windows.len() as u64, "map");
    bar.set_message("windows");
    let (norm_mean, norm_std) = (opts.norm.0.clone(), opts.norm.1.clone());
    let batch_size = opts.batch_size.max(1);
    let mut done = 0usize;
    let mut waited = 0.0f64;
    let (tx, rx) = sync_channel::<Result<Prepared>>(2);
    let result: Result<()> = std::thread::scope(|s| {
        let win = &windows;
        s.spawn(move || {
            for chunk in win.chunks(batch_size) {
                let mut samples = Vec::new();
                let (mut at, mut kept, mut valid) = (Vec::new(), Vec::new(), Vec::new());
                for &(_, _, y, x) in chunk {
                    match read_window(
                        &mut readers,
                        &days,
                        &bands,
                        (&norm_mean, &norm_std),
                        (y, x, p),
                    ) {
                        Ok(Some((smp, k, v))) => {
                            samples.push(smp);
                            at.push((y, x));
                            kept.push(k);
                            valid.push(v);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let batch = (!samples.is_empty()).then(|| collate(&samples, 0.0));
                let prepared = Prepared {
                    batch,
                    n: chunk.len(),
                    at,
                    kept,
                    valid,
                };
                if tx.send(Ok(prepared)).is_err() {
                    return;
                }
            }
        });
        let ctx = Ctx::eval();
        let mut last_row = out_r0;
        loop {
            let t0 = Instant::now();
            let Ok(msg) = rx.recv() else { break };
            waited += t0.elapsed().as_secs_f64();
            let prep = msg?;
            done += prep.n;
            bar.inc(prep.n as u64);
            let Some(b) = &prep.batch else { continue };
            let x = Tensor::from_vec(b.x.clone(), &b.shape, device);
            let pad = PadInfo {
                mask: b.pad_mask.clone(),
            };
            let out = no_grad(|| model.forward(&x, &b.dates, &pad, &ctx));
            let logits = out.logits.to_vec();
            let attn = match (&out.attn, heads > 0) {
                (Some(a), true) => Some((a.to_vec(), a.shape().to_vec())),
                _ => None,
            };
            let per = classes * p * p;
            for (i, &(y, xw)) in prep.at.iter().enumerate() {
                let extra_vals = attn
                    .as_ref()
                    .map(|(a, s)| blend::attention_full(a, s, i, &prep.kept[i], n_dates, p));
                acc.add(
                    y,
                    xw,
                    &logits[i * per..(i + 1) * per],
                    extra_vals.as_deref(),
                    &prep.valid[i],
                );
                last_row = y;
            }
            // Rows above the last window's top are final.
            acc.flush(
                last_row,
                &mut class_w,
                prob_w.as_mut(),
                attn_w.as_mut(),
                &mut preview,
            )?;
            let secs = start.elapsed().as_secs_f64();
            bar.set_message(format!("{:.1} windows/s", done as f64 / secs.max(1e-9)));
        }
        Ok(())
    });
    result?;
    acc.flush(
        out_r1,
        &mut class_w,
        prob_w.as_mut(),
        attn_w.as_mut(),
        &mut preview,
    )?;
    bar.finish_and_clear();
    let mut files = vec![opts.out.clone()];
    class_w.finish()?;
    if let Some(pw) = prob_w {
        pw.finish()?;
        files.push(sibling(&opts.out, "_probabilities", "tif"));
    }
    if let Some(aw) = attn_w {
        aw.finish()?;
        files.push(sibling(&opts.out, "_attention", "tif"));
    }
    let png = opts.out.with_extension("png");
    preview.write(&png)?;
    files.push(png);
    Ok(MapReport {
        windows: windows.len(),
        seconds: start.elapsed().as_secs_f64(),
        waited,
        files,
    })
}

/// `sitsgpu map`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct MapArgs {
    /// Weight folder: conf.json + Fold_k/model.npz (ours) or Fold_k/model.pth.tar (official).
    #[arg(long = "weight_folder", visible_alias = "weight-folder")]
    pub weight_folder: PathBuf,
    /// Which fold's model (default: the only one in the folder).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Folder of GeoTIFFs, one multi-band file per date (date in the name: YYYYMMDD or YYYY-MM-DD).
    #[arg(long)]
    pub images: PathBuf,
    /// The class map to write (GeoTIFF, band 1 uint8, 255 = nodata); a .png preview goes beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// A file of dates, one a line (YYYY-MM-DD or YYYYMMDD), for the GeoTIFFs in name order.
    #[arg(long)]
    pub dates: Option<PathBuf>,
    /// The files' bands for the model's channels (PASTIS order B2 B3 B4 B5 B6 B7 B8 B8A B11 B12): 1-based
    /// indices or band names, comma-separated (default: the first bands).
    #[arg(long)]
    pub bands: Option<String>,
    /// Window side in pixels (a multiple of 8; PASTIS patches are 128).
    #[arg(
        long = "patch_size",
        visible_alias = "patch-size",
        default_value_t = 128
    )]
    pub patch_size: usize,
    /// Overlap of neighbouring windows in pixels (default: a quarter of the window).
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Also write `<out>_probabilities.tif` (float32, one band per class).
    #[arg(long)]
    pub probabilities: bool,
    /// Also write `<out>_attention.tif` (U-TAE: float32, one band per head and date).
    #[arg(long)]
    pub attention: bool,
    /// Map the I-th of N horizontal bands of windows only (I/N, 1-based), to its own file.
    #[arg(long)]
    pub part: Option<String>,
    /// Windows per batch.
    #[arg(long = "batch_size", visible_alias = "batch-size", default_value_t = 4)]
    pub batch_size: usize,
    /// Normalisation of an official weight folder: its NORM_S2_patch.json (the fold's training folds are
    /// averaged). Our folders carry Fold_k/normalisation.json.
    #[arg(long)]
    pub norm: Option<PathBuf>,
    /// Run on the CPU reference path.
    #[arg(long)]
    pub cpu: bool,
}

impl MapArgs {
    /// Runs `sitsgpu map`.
    pub fn run(&self) -> Result<()> {
        use crate::models::registry::{self, Task};
        let conf = self.weight_folder.join("conf.json");
        let conf_v = crate::data::json::read_json(&conf)?;
        if Task::resolve(None, &conf)? != Task::Semantic {
            return Err(Error::Invalid(format!(
                "{}: map runs semantic models (U-TAE and the baselines); this folder holds another task",
                conf.display()
            )));
        }
        let fold = match self.fold {
            Some(k) if (1..=5).contains(&k) => k,
            Some(k) => return Err(Error::Invalid(format!("--fold {k}: expected 1..5"))),
            None => {
                let found: Vec<usize> = (1..=5)
                    .filter(|k| crate::train::state::checkpoint_of(&self.weight_folder, *k).is_ok())
                    .collect();
                match found.as_slice() {
                    [k] => *k,
                    [] => {
                        return Err(Error::io(
                            &self.weight_folder,
                            "no Fold_k/model.npz or model.pth.tar",
                        ))
                    }
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{}: folds {found:?} found; choose one with --fold",
                            self.weight_folder.display()
                        )))
                    }
                }
            }
        };
        let weights = crate::train::state::checkpoint_of(&self.weight_folder, fold)?;
        let (ref_date, mono) = crate::train::semantic::dates_from_conf(&conf_v, &conf)?;
        if mono.is_some() {
            return Err(Error::Invalid(format!(
                "{}: mono-date models are not supported by map",
                conf.display()
            )));
        }
        let channels = conf_v
            .get("input_dim")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(10) as usize;
        let norm = scene::read_norm_for(&self.weight_folder, fold, self.norm.as_deref(), channels)?;
        let part = match &self.part {
            Some(s) => parse_part(s)?,
            None => (1, 1),
        };
        // Inputs are checked before the device is touched.
        scene::list_dates(&self.images, self.dates.as_deref())?;
        let device = crate::train::state::device_of(self.cpu)?;
        let model = registry::load_semantic(&conf, &weights, device)?;
        let r = map(
            &model,
            device,
            &MapOptions {
                images: self.images.clone(),
                out: self.out.clone(),
                dates_file: self.dates.clone(),
                bands: self.bands.clone(),
                patch_size: self.patch_size,
                overlap: self.overlap,
                probabilities: self.probabilities,
                attention: self.attention,
                part,
                batch_size: self.batch_size,
                ref_date,
                norm,
                channels,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            },
        )?;
        println!(
            "mapped {} windows in {:.1} s ({:.1} windows/s; the model waited {:.1} s for the reader)",
            r.windows,
            r.seconds,
            r.windows as f64 / r.seconds.max(1e-9),
            r.waited
        );
        for f in &r.files {
            println!("wrote {}", f.display());
        }
        Ok(())
    }
}
