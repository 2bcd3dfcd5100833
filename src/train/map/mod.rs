//! `sitsgpu map`: a trained model over a user's own GeoTIFF time series, to a georeferenced map.
//!
//! Inputs ([`scene`]): a folder with one multi-band GeoTIFF per date (int16 / uint16 / float32, any layout
//! the reader takes), all on one grid and CRS; dates from the names or `--dates`, as day offsets from the
//! model's `ref_date`; `--bands` maps the files' bands to the model's (PASTIS order); the normalisation of
//! the model's training split travels with it (`Fold_k/normalisation.json`, or `--norm NORM_S2_patch.json`).
//! Models: U-TAE and the U-TAE paper's baselines (a class map), U-TAE + PaPs and U-ConvLSTM + PaPs (a class
//! map and an instance map). The pixel-set models (PSE + L-TAE and its competitors) classify parcels given
//! as pixel sets; turning a vector file of parcels into pixel sets is out of scope here, and `map` says so.
//!
//! The scene is cut into windows of the patch size (`--patch_size`, default 128) overlapping by `--overlap`
//! pixels (default a quarter), the last window of a row or column moved back to end at the scene's edge, a
//! scene smaller than a window one window padded past its edge ([`plan`]). Each window is a PASTIS sample:
//! its dates are the scene's dates whose window is not entirely nodata (an all-nodata date is a padded date,
//! dropped as PASTIS pads), normalised as training did, nodata pixels and pixels past the scene set to 0
//! after normalisation (the band mean). Windows are batched (`--batch_size`) with the original collate
//! (batch-max temporal padding and its pad mask) and run on the GPU while a reader thread prepares the next
//! batches (a channel of two batches).
//!
//! **Order and memory.** The windows run block of columns by block of columns, top to bottom inside a
//! block ([`plan`]); each output tile is written as soon as every window covering it has run, and what a
//! block's windows reach past its right edge goes to the next block through a first-in first-out file
//! ([`blend`]). Memory is bounded by the batch, a block (at least four windows and a batch of windows
//! wide) and the readers' caches (one window of decoded tiles per date), never by the scene: a 4× larger
//! scene has the same peak (`tests/map.rs`). An input stored in whole-width strips is read one block wide
//! (see [`plan`]).
//!
//! **Semantic models** ([`blend`]): each window's logits are weighted by `w(y)·w(x)`, where `w` is 1 in the
//! window's core and ramps linearly down towards a side where a neighbouring window overlaps (never to 0,
//! and not at the scene's edges), summed and divided by the summed weights. Where one window alone covers a
//! pixel the weight is exactly 1, so the map there equals `predict` on that window's pixels as a PASTIS
//! patch, bit for bit (`tests/map.rs` checks it).
//!
//! **U-TAE + PaPs** ([`instances`]): each window's panoptic prediction is `predict`'s; an instance is kept by
//! the window whose core holds its center, with the scene-wide id `window index · p² + predict's id`, and its
//! pixels are written from that window (where two windows' kept instances meet, the pixel's own core window
//! wins, then the more confident instance). The class map is the panoptic semantic output, as `predict`
//! gives it: the instance's class on its pixels, 0 (background) elsewhere. As in the original, the
//! centers are the local maxima above the heatmap's mean **over the batch**: `--batch_size 1` makes every
//! window exactly `predict`'s on its pixels (`predict` batches patches the same way). Batches are cut at
//! the end of each row of windows of a block, so a window's batch mates are the same in the single run and
//! in every `--part`, and the parts mosaic to the single run at any batch size.
//!
//! Outputs: `MAP.tif`, band 1 the class map (uint8, 255 where no date has data, and outside the scene),
//! tiled and deflate-compressed on the input's grid and CRS; for PaPs, `MAP_instances.tif` (uint32 instance
//! ids, 0 = no instance or nodata, GDAL nodata 0); with `--probabilities` (semantic models),
//! `MAP_probabilities.tif` (float32, the softmax of the blended logits, one band per class); with
//! `--attention` (a U-TAE encoder), `MAP_attention.tif` (float32, the L-TAE attention masks, head-major:
//! band `h·T + t` is head h on the scene's date t, 0 where the date was padded, blended as the logits); and
//! `MAP.png`, a preview (at most 1024 pixels a side) in the PASTIS colours with a legend of the classes
//! present. `--part i/N` maps the i-th of N horizontal bands of window rows to its own files covering only
//! that band's rows (with the windows of the neighbouring band that overlap it, so its pixels and instance
//! ids equal the single run's): `gdalbuildvrt` of the N parts is the whole map.

pub mod blend;
pub mod instances;
pub mod plan;
pub mod scene;

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use crate::data::geotiff::writer::TiledWriter;
use crate::data::geotiff::{GeoTiffReader, SampleType};
use crate::data::pastis::{collate, Batch, Date, PastisSample};
use crate::engine::{no_grad, with_precision, Device, Error, Precision, Result, Tensor};
use crate::layers::Ctx;
use crate::models::paps::{Backbone, Center, Panoptic, Paps};
use crate::models::semantic::SemanticModel;
use crate::models::utae::PadInfo;

use blend::{BlockAccumulator, Channels, Outputs, Preview};
use plan::{Plan, Window};

/// The model a map runs.
#[derive(Clone, Copy)]
pub enum MapModel<'a> {
    /// U-TAE or a U-TAE-paper baseline: a class map from blended logits.
    Semantic(&'a SemanticModel),
    /// U-TAE + PaPs or U-ConvLSTM + PaPs: a class map and an instance map.
    Panoptic(&'a Paps),
}

impl MapModel<'_> {
    /// Heads of the L-TAE attention masks (0 when the model has none).
    fn attention_heads(&self) -> usize {
        match self {
            MapModel::Semantic(SemanticModel::UTae(m)) => m.config.n_head,
            MapModel::Panoptic(m) => match &m.encoder {
                Backbone::UTae(u) => u.config.n_head,
                Backbone::RecUNet(_) => 0,
            },
            MapModel::Semantic(_) => 0,
        }
    }

    /// Whether the model takes windows of `shape` (B, T, C, p, p) (`SemanticModel::check_input`,
    /// `Paps::check_input`).
    fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        match self {
            MapModel::Semantic(m) => m.check_input(shape),
            MapModel::Panoptic(m) => m.check_input(shape),
        }
    }

    /// Classes of the class map.
    fn num_classes(&self) -> usize {
        match self {
            MapModel::Semantic(m) => m.num_classes(),
            MapModel::Panoptic(m) => m.config.num_classes,
        }
    }
}

/// What a batch gave, on the host.
struct Forward {
    /// (B, K, p, p) logits (semantic models).
    logits: Option<Vec<f32>>,
    /// (heads, B, T, h, w) attention and its shape.
    attn: Option<(Vec<f32>, Vec<usize>)>,
    /// The panoptic maps, [`Panoptic::classes`] and the centers (PaPs).
    pano: Option<(Panoptic, Vec<usize>, Vec<Center>)>,
}

impl MapModel<'_> {
    /// Runs the batch (its inputs moved to the tensor, not copied).
    fn forward(&self, b: Batch, device: Device, attention: bool) -> Forward {
        let ctx = Ctx::eval();
        let x = Tensor::from_vec(b.x, &b.shape, device);
        let pad = PadInfo { mask: b.pad_mask };
        let attn = |a: Option<&Tensor>| match (a, attention) {
            (Some(a), true) => Some((a.to_vec(), a.shape().to_vec())),
            _ => None,
        };
        match self {
            MapModel::Semantic(m) => {
                let out = no_grad(|| m.forward(&x, &b.dates, &pad, &ctx));
                Forward {
                    logits: Some(out.logits.to_vec()),
                    attn: attn(out.attn.as_ref()),
                    pano: None,
                }
            }
            MapModel::Panoptic(m) => {
                let out = no_grad(|| m.forward(&x, &b.dates, &pad, &ctx, None, true, false));
                let pano = out.panoptic.map(|p| {
                    let classes = p.classes();
                    (p, classes, out.centers)
                });
                Forward {
                    logits: None,
                    attn: attn(out.attn.as_ref()),
                    pano,
                }
            }
        }
    }
}

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

/// What a run did, and where its time and memory went.
#[derive(Debug, Clone, Default)]
pub struct MapReport {
    /// Windows run through the model.
    pub windows: usize,
    /// Column blocks.
    pub blocks: usize,
    /// Seconds in all.
    pub seconds: f64,
    /// Seconds the model thread waited for the reader (the GPU starved).
    pub waited: f64,
    /// Seconds the reader thread spent reading, normalising and collating windows.
    pub reading: f64,
    /// Seconds in the model's forward passes (the outputs read back included).
    pub model: f64,
    /// Seconds adding window outputs to the accumulator (and finding PaPs instances' windows).
    pub blending: f64,
    /// Seconds finishing pixels and writing tiles (compression included).
    pub writing: f64,
    /// Peak bytes of the block accumulators.
    pub accumulator_bytes: usize,
    /// Peak bytes of the readers' decoded-tile caches, all dates together.
    pub cache_bytes: usize,
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

/// The peak resident memory of this process (VmHWM, bytes), where the system reports it (Linux).
pub fn peak_resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A window read for the model: its place in the batch, the scene dates it kept, its valid-pixel mask.
struct ReadWindow {
    at: usize,
    kept: Vec<usize>,
    valid: Vec<bool>,
}

/// One prepared batch: the collated windows and where they go.
struct Prepared {
    /// None when no window of the chunk has data.
    batch: Option<Batch>,
    /// Every window of the chunk, in run order, with what was read (None: no data on any date).
    windows: Vec<(Window, Option<ReadWindow>)>,
    /// Seconds it took to read.
    seconds: f64,
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
    let mut data = Vec::with_capacity(readers.len() * nc * p * p);
    let mut kept = Vec::new();
    let mut valid = vec![false; p * p];
    let mut has = vec![true; p * p];
    for (t, rd) in readers.iter_mut().enumerate() {
        let nodata = rd.info().nodata_f32();
        let mut v = rd.read_window(r as i64, c as i64, p, p, bands, f32::NAN)?;
        // A pixel has data on this date when none of its bands is missing.
        has.fill(true);
        for plane in v.chunks_exact(p * p) {
            for (h, &x) in has.iter_mut().zip(plane) {
                *h &= !(x.is_nan() || nodata == Some(x));
            }
        }
        if !has.iter().any(|&h| h) {
            continue; // a padded date for this window
        }
        for (b, plane) in v.chunks_exact_mut(p * p).enumerate() {
            let (m, s) = (mean[b], std[b]);
            for (x, &h) in plane.iter_mut().zip(&has) {
                *x = if h { (*x - m) / s } else { 0.0 };
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
pub fn map(model: MapModel<'_>, device: Device, opts: &MapOptions) -> Result<MapReport> {
    let start = Instant::now();
    let heads = model.attention_heads();
    if opts.attention && heads == 0 {
        return Err(Error::Invalid(
            "--attention: only a U-TAE encoder has attention masks".into(),
        ));
    }
    let panoptic = matches!(model, MapModel::Panoptic(_));
    if opts.probabilities && panoptic {
        return Err(Error::Invalid(
            "--probabilities: U-TAE + PaPs gives one class per instance (MAP.tif, MAP_instances.tif), not \
             per-pixel class probabilities"
                .into(),
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
    // Before any output is created: every window is p × p, of n_dates dates and the chosen bands.
    model
        .check_input(&[1, n_dates, bands.len(), p, p])
        .map_err(|e| Error::Invalid(format!("--patch_size {p}: {e}")))?;
    let chunk_w = readers.iter().map(|r| r.chunk_size().0).max().unwrap_or(w);
    let batch_size = opts.batch_size.max(1);
    let plan = Plan::new((h, w), p, overlap, opts.part, (chunk_w, batch_size))?;
    if panoptic {
        plan.check_ids()?;
    }
    let windows = plan.windows();
    // Each reader keeps one window of decoded chunks: a block's read columns.
    let read_cols = plan
        .blocks
        .iter()
        .map(|b| b.end - plan.xs[b.kx.start.min(plan.xs.len() - 1)])
        .max()
        .unwrap_or(p);
    for rd in &mut readers {
        rd.set_cache_window(p, read_cols.max(p));
    }
    let classes = model.num_classes();
    let extra = if opts.attention { heads * n_dates } else { 0 };
    let ch = Channels {
        classes: if panoptic { 0 } else { classes },
        extra,
        claims: panoptic,
    };
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let georef = info.georef.offset(plan.row0, 0);
    let out_h = plan.row1 - plan.row0;
    let create = |path: &Path, bands: usize, ty: SampleType, nodata: Option<f64>| {
        TiledWriter::create(path, w, out_h, bands, ty, &georef, nodata, false)
    };
    let mut files = vec![opts.out.clone()];
    let mut optional = |on: bool, suffix: &str, bands: usize, ty, nodata| -> Result<_> {
        if !on {
            return Ok(None);
        }
        let path = sibling(&opts.out, suffix, "tif");
        let wr = create(&path, bands, ty, nodata)?;
        files.push(path);
        Ok(Some(wr))
    };
    let mut outputs = Outputs {
        classes: create(&opts.out, 1, SampleType::U8, Some(255.0))?,
        instances: optional(panoptic, "_instances", 1, SampleType::U32, Some(0.0))?,
        probs: optional(
            opts.probabilities,
            "_probabilities",
            classes,
            SampleType::F32,
            None,
        )?,
        extra: optional(extra > 0, "_attention", extra.max(1), SampleType::F32, None)?,
        preview: Preview::new(w, out_h),
    };
    // Spill files beside the output, removed as they are consumed (and on errors).
    let spill_path = |j: usize| {
        let name = opts
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        opts.out.with_file_name(format!(".{name}.block{j}.spill"))
    };
    let bar = crate::train::progress::bar(opts.progress, windows.len() as u64, "map");
    bar.set_message("windows");
    let (norm_mean, norm_std) = (opts.norm.0.clone(), opts.norm.1.clone());
    // U-TAE + PaPs: batches never straddle a row of windows of a block, so that a window's batch mates
    // (whose heatmap mean sets its centers) are the same in the single run and in every part.
    let batches: Vec<&[Window]> = if panoptic {
        windows
            .chunk_by(|a, b| (a.block, a.ky) == (b.block, b.ky))
            .flat_map(|row| row.chunks(batch_size))
            .collect()
    } else {
        windows.chunks(batch_size).collect()
    };
    let mut r = MapReport {
        windows: windows.len(),
        blocks: plan.blocks.len(),
        ..MapReport::default()
    };
    let mut done = 0usize;
    let (tx, rx) = sync_channel::<Result<Prepared>>(2);
    let cache_bytes = std::thread::scope(|s| -> Result<usize> {
        // Dropped when this closure returns (an error included), so that the reader stops sending.
        let rx = rx;
        let batches = &batches;
        let reader = s.spawn(move || {
            for chunk in batches {
                let t0 = Instant::now();
                let mut samples = Vec::new();
                let mut out = Vec::new();
                for wnd in chunk.iter() {
                    match read_window(
                        &mut readers,
                        &days,
                        &bands,
                        (&norm_mean, &norm_std),
                        (wnd.y, wnd.x, p),
                    ) {
                        Ok(Some((smp, kept, valid))) => {
                            let at = samples.len();
                            samples.push(smp);
                            out.push((*wnd, Some(ReadWindow { at, kept, valid })));
                        }
                        Ok(None) => out.push((*wnd, None)),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return 0;
                        }
                    }
                }
                let batch = (!samples.is_empty()).then(|| collate(&samples, 0.0));
                let prepared = Prepared {
                    batch,
                    windows: out,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                if tx.send(Ok(prepared)).is_err() {
                    break;
                }
            }
            readers.iter().map(GeoTiffReader::peak_cache_bytes).sum()
        });
        let mut acc = BlockAccumulator::new(&plan, 0, ch, None, spill_path(0))?;
        loop {
            let t0 = Instant::now();
            let Ok(msg) = rx.recv() else { break };
            r.waited += t0.elapsed().as_secs_f64();
            let prep = msg?;
            r.reading += prep.seconds;
            let t0 = Instant::now();
            let fw = prep.batch.map(|b| model.forward(b, device, extra > 0));
            r.model += t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let mut last_y = None;
            for (wnd, read) in &prep.windows {
                while wnd.block > acc.block {
                    let next = acc.block + 1;
                    let t1 = Instant::now();
                    let (spill, peak) = acc.finish(&mut outputs)?;
                    r.writing += t1.elapsed().as_secs_f64();
                    r.accumulator_bytes = r.accumulator_bytes.max(peak);
                    acc = BlockAccumulator::new(&plan, next, ch, spill, spill_path(next))?;
                }
                last_y = Some(wnd.y);
                let (Some(rw), Some(fw)) = (read, fw.as_ref()) else {
                    continue;
                };
                let i = rw.at;
                let per = classes * p * p;
                let logits = fw.logits.as_ref().map(|l| &l[i * per..(i + 1) * per]);
                let extras = fw
                    .attn
                    .as_ref()
                    .map(|(a, s)| blend::attention_full(a, s, i, &rw.kept, n_dates, p));
                let claims = fw.pano.as_ref().map(|(pano, cls, centers)| {
                    instances::window_claims(pano, cls, centers, i, &plan, (wnd.ky, wnd.kx))
                });
                acc.add(wnd, logits, extras.as_deref(), &rw.valid, claims.as_deref())?;
            }
            r.blending += t0.elapsed().as_secs_f64();
            // Rows above the last window's top are final in its block.
            let t0 = Instant::now();
            if let Some(y) = last_y {
                acc.flush(y, &mut outputs)?;
            }
            r.writing += t0.elapsed().as_secs_f64();
            done += prep.windows.len();
            bar.inc(prep.windows.len() as u64);
            let secs = start.elapsed().as_secs_f64();
            bar.set_message(format!("{:.1} windows/s", done as f64 / secs.max(1e-9)));
        }
        let t0 = Instant::now();
        loop {
            let next = acc.block + 1;
            let (spill, peak) = acc.finish(&mut outputs)?;
            r.accumulator_bytes = r.accumulator_bytes.max(peak);
            if next >= plan.blocks.len() {
                break;
            }
            acc = BlockAccumulator::new(&plan, next, ch, spill, spill_path(next))?;
        }
        r.writing += t0.elapsed().as_secs_f64();
        reader
            .join()
            .map_err(|_| Error::Invalid("map: the reader thread panicked".into()))
    })?;
    r.cache_bytes = cache_bytes;
    bar.finish_and_clear();
    let Outputs {
        classes: class_w,
        probs,
        extra,
        instances,
        preview,
    } = outputs;
    class_w.finish()?;
    for wr in [instances, probs, extra].into_iter().flatten() {
        wr.finish()?;
    }
    let png = opts.out.with_extension("png");
    preview.write(&png)?;
    files.push(png);
    r.files = files;
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
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
    /// The class map to write (GeoTIFF, band 1 uint8, 255 = nodata); a .png preview goes beside it, and
    /// for U-TAE + PaPs `<out>_instances.tif` (uint32 instance ids unique over the scene, 0 = none).
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
    /// Also write `<out>_probabilities.tif` (float32, one band per class; semantic models).
    #[arg(long)]
    pub probabilities: bool,
    /// Also write `<out>_attention.tif` (a U-TAE encoder: float32, one band per head and date).
    #[arg(long)]
    pub attention: bool,
    /// Map the I-th of N horizontal bands of windows only (I/N, 1-based), to its own file.
    #[arg(long)]
    pub part: Option<String>,
    /// Windows per batch (U-TAE + PaPs: the center threshold is the heatmap mean over the batch, as the
    /// original's; 1 makes windows independent).
    #[arg(
        long = "batch_size",
        visible_alias = "batch-size",
        default_value_t = 4,
        value_parser = crate::train::flags::at_least_one
    )]
    pub batch_size: usize,
    /// Normalisation of an official weight folder: its NORM_S2_patch.json (the fold's training folds are
    /// averaged). Our folders carry Fold_k/normalisation.json.
    #[arg(long)]
    pub norm: Option<PathBuf>,
    /// Run on the CPU reference path.
    #[arg(long)]
    pub cpu: bool,
    /// Matrix products on half-precision operands with float32 sums (cooperative matrices or f16 where the
    /// adapter has them), as in a `--precision mixed` training run; fp32 (the default) computes the
    /// original's numbers.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

impl MapArgs {
    /// Runs `sitsgpu map` in the precision asked.
    pub fn run(&self) -> Result<()> {
        with_precision(self.precision, || self.run_in_precision())
    }

    fn run_in_precision(&self) -> Result<()> {
        use crate::models::registry::{self, Task};
        let conf = self.weight_folder.join("conf.json");
        let conf_v = crate::data::json::read_json(&conf)?;
        let task = Task::resolve(None, &conf)?;
        if task == Task::PixelSet {
            return Err(Error::Invalid(format!(
                "{}: a pixel-set model (PSE + L-TAE, TAE, GRU, TempCNN) classifies parcels given as pixel \
                 sets, and map segments images (U-TAE, the U-TAE paper's baselines, U-TAE + PaPs): parcels \
                 from a vector file are out of scope here (write them as pixel sets in the Sentinel-Agri \
                 layout and run predict)",
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
        let (semantic, panoptic) = match task {
            Task::Panoptic => (
                None,
                Some(registry::load_panoptic(&conf, &weights, device)?),
            ),
            _ => (
                Some(registry::load_semantic(&conf, &weights, device)?),
                None,
            ),
        };
        let model = match (&semantic, &panoptic) {
            (Some(m), _) => MapModel::Semantic(m),
            (_, Some(m)) => MapModel::Panoptic(m),
            _ => return Err(Error::Invalid("map: no model loaded".into())),
        };
        let r = map(
            model,
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
        let mib = |b: f64| b / (1024.0 * 1024.0);
        println!(
            "time: model {:.1} s, reading {:.1} s (its own thread), blending {:.1} s, writing {:.1} s",
            r.model, r.reading, r.blending, r.writing
        );
        let resident = peak_resident_bytes()
            .map(|b| format!("; peak resident {:.1} MiB", mib(b as f64)))
            .unwrap_or_default();
        println!(
            "memory: {} block(s), accumulator peak {} bytes ({:.1} MiB), tile caches peak {} bytes ({:.1} MiB){resident}",
            r.blocks,
            r.accumulator_bytes,
            mib(r.accumulator_bytes as f64),
            r.cache_bytes,
            mib(r.cache_bytes as f64)
        );
        for f in &r.files {
            println!("wrote {}", f.display());
        }
        Ok(())
    }
}
