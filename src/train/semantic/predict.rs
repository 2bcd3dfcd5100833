//! `sitsgpu predict`: runs a semantic model in eval mode over PASTIS patches in ID order, in batches with
//! batch-max padding (the original collate), and writes per patch `logits_<ID>.npy` (num_classes × H × W,
//! f32), `pred_<ID>.npy` (H × W, int64, argmax with ties to the lowest class as torch.argmax), `pred_<ID>.png`
//! (the titled class map with a legend of the classes present), `grid_<ID>.png` (input RGB of the middle date,
//! with that date | ground truth | prediction, the patch's pixel accuracy in the title; see
//! [`plot::maps`]) and, on request, `attn_<ID>.npy` (n_head × T × h × w over the patch's own dates) with its
//! picture `attn_<ID>.png` (heads × dates, [`plot::attention`]).
//!
//! The folder needs no annotations: without `ANNOTATIONS/` (a user's own area in the PASTIS layout) only the
//! S2 series are read and the ground-truth panel of the grid is left grey. The dates are read as the model
//! was trained: the run's `ref_date`, and its `mono_date` for a mono-date model.

use std::path::{Path, PathBuf};

use crate::data::npy;
use crate::data::pastis::{Batch, Date, MonoDate, PastisDataset, PastisOptions, Target};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::semantic::SemanticModel;
use crate::models::utae::PadInfo;
use crate::train::memory;
use crate::train::plot;
use crate::train::plot::attention::{attention_png, AttentionGrid};
use crate::train::plot::maps::{
    class_pixels, classes_present, figure_png, pixel_accuracy, scale_for, upscale, Figure, Panel,
};
use crate::train::plot::ClassNames;
use crate::train::step;

/// What to predict and where to write it.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// PASTIS folder.
    pub dataset_folder: PathBuf,
    /// Folds whose patches are predicted and whose normalisation statistics are averaged (None: all five).
    pub folds: Option<Vec<usize>>,
    /// Patches per batch.
    pub batch_size: usize,
    /// Output folder (created).
    pub out: PathBuf,
    /// Also write the attention masks.
    pub save_attention: bool,
    /// Reference date of the day offsets (the run's `ref_date`).
    pub ref_date: Date,
    /// The run's mono-date ablation, if any (`mono_date`).
    pub mono_date: Option<MonoDate>,
    /// GPU memory budget (`--max_memory`; `None`: the adapter's where it is known): batches whose forward
    /// pass would not fit run in parts (`train::memory::inference_parts`).
    pub max_memory: Option<u64>,
}

/// `argmax` over the class axis of logits (C, P) → (P), first maximum on ties.
pub fn argmax_classes(logits: &[f32], classes: usize) -> Vec<i64> {
    let p = logits.len() / classes;
    (0..p)
        .map(|i| {
            let mut best = 0;
            for c in 1..classes {
                if logits[c * p + i] > logits[best * p + i] {
                    best = c;
                }
            }
            best as i64
        })
        .collect()
}

/// The RGB composite (3, H, W) of sample `i` of a collated batch `x` (B, T, C, H, W) with its pad mask (B, T):
/// S2 bands B4, B3, B2 (channels 2, 1, 0; the last channel when C < 3) of the middle real (unpadded) date, as
/// the input values (normalised). For [`plot::rgb_colours`], which stretches each channel.
pub fn middle_date_rgb(x: &[f32], pad_mask: &[bool], shape: [usize; 5], i: usize) -> Vec<f32> {
    let [_, t_max, c, h, w] = shape;
    let t_real = (0..t_max)
        .filter(|&t| !pad_mask[i * t_max + t])
        .count()
        .max(1);
    let frame = i * t_max + t_real / 2;
    [2usize, 1, 0]
        .iter()
        .flat_map(|&b| x[(frame * c + b.min(c - 1)) * h * w..][..h * w].to_vec())
        .collect()
}

/// The calendar date of the frame [`middle_date_rgb`] draws for sample `i` (the middle real date; the one
/// date of a mono-date batch): the reference date plus its day offset. None when out of the calendar.
pub fn middle_date(batch: &Batch, i: usize, ref_date: Date) -> Option<Date> {
    let offset = if batch.dates_shape.len() == 2 {
        let t_max = batch.dates_shape[1];
        let t_real = (0..t_max)
            .filter(|&t| !batch.pad_mask[i * t_max + t])
            .count()
            .max(1);
        batch.dates.get(i * t_max + t_real / 2)?
    } else {
        batch.dates.get(i)?
    };
    ref_date.plus_days(*offset as i64)
}

/// The title of the input panel: "input RGB, 2019-05-12" (the date when known).
pub fn rgb_title(date: Option<Date>) -> String {
    date.map_or("input RGB (middle date)".into(), |d| {
        format!("input RGB, {d}")
    })
}

/// The two pictures of a semantic prediction: `pred_<ID>.png` (the prediction alone) and `grid_<ID>.png`
/// (input RGB | ground truth when there is one | prediction, the patch's pixel accuracy in the title).
/// `rgb` (3, H, W), `truth` and `pred` (H, W).
pub fn semantic_figures(
    id: u64,
    rgb: &[f32],
    date: Option<Date>,
    truth: Option<&[i64]>,
    pred: &[i64],
    (h, w): (usize, usize),
) -> (Figure, Figure) {
    let scale = scale_for(h, w);
    let prediction = Panel {
        title: "prediction".into(),
        pixels: class_pixels(pred, h, w, scale),
    };
    let single = Figure {
        title: format!("patch {id}: predicted classes"),
        panels: vec![prediction.clone()],
        panel_size: (w * scale, h * scale),
        legend: classes_present([pred]),
        names: ClassNames::Pastis,
    };
    let mut panels = vec![Panel {
        title: rgb_title(date),
        pixels: upscale(&plot::rgb_colours(rgb, h, w), h, w, scale),
    }];
    let title = match truth {
        Some(t) => {
            panels.push(Panel {
                title: "ground truth".into(),
                pixels: class_pixels(t, h, w, scale),
            });
            match pixel_accuracy(t, pred) {
                Some(a) => format!("patch {id}: pixel accuracy {a:.1} % (void excluded)"),
                None => format!("patch {id}: every pixel is void"),
            }
        }
        None => format!("patch {id}: prediction (no ground truth in this folder)"),
    };
    panels.push(prediction);
    let grid = Figure {
        title,
        panels,
        panel_size: (w * scale, h * scale),
        legend: classes_present(truth.into_iter().chain([pred])),
        names: ClassNames::Pastis,
    };
    (single, grid)
}

/// Runs `model` over the dataset and writes the files; returns the number of patches written.
pub fn predict(model: &SemanticModel, device: Device, opts: &PredictOptions) -> Result<usize> {
    if opts.save_attention && !matches!(model, SemanticModel::UTae(_)) {
        return Err(Error::Invalid(
            "--save_attention: only U-TAE has attention masks (the baselines have none)".into(),
        ));
    }
    // Labels only where there are some: a user's own area has no ANNOTATIONS/ folder.
    let labeled = opts.dataset_folder.join("ANNOTATIONS").is_dir();
    let ds = PastisDataset::open(
        &opts.dataset_folder,
        PastisOptions {
            folds: opts.folds.clone(),
            ref_date: opts.ref_date,
            mono_date: opts.mono_date,
            target: if labeled {
                Target::Semantic
            } else {
                Target::Unlabeled
            },
            ..PastisOptions::default()
        },
    )?;
    // Every input file is checked before the output folder is touched.
    ds.check(None)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let indices: Vec<usize> = (0..ds.len()).collect();
    let ctx = Ctx::eval();
    let mut written = 0;
    // Parts of at most `micro` samples when a whole batch's forward pass would not fit the GPU's memory
    // (train::memory; each patch's outputs are the same either way).
    let micro = memory::inference_parts(opts.batch_size.max(1), opts.max_memory, device, |n| {
        let n = n.min(ds.len()).max(1);
        let b = ds
            .batches((0..n).collect(), n)
            .next()
            .ok_or_else(|| Error::Invalid("memory probe: no patch to predict".into()))??;
        model.check_input(&b.shape).map_err(Error::Invalid)?;
        let x = Tensor::from_vec(b.x.clone(), &b.shape, device);
        let pad = PadInfo {
            mask: b.pad_mask.clone(),
        };
        model.forward(&x, &b.dates, &pad, &ctx);
        Ok(())
    })?;
    for batch in ds.batches(indices.clone(), opts.batch_size.max(1)) {
        let batch = batch?;
        model.check_input(&batch.shape).map_err(Error::Invalid)?;
        for p in step::parts(batch.ids.len(), micro) {
            let sliced;
            let part = if p.whole {
                &batch
            } else {
                sliced = batch.slice(p.start, p.end);
                &sliced
            };
            let x = Tensor::from_vec(part.x.clone(), &part.shape, device);
            let pad = PadInfo {
                mask: part.pad_mask.clone(),
            };
            let out = no_grad(|| model.forward(&x, &part.dates, &pad, &ctx));
            let (logits, ls) = (out.logits.to_vec(), out.logits.shape().to_vec());
            let (attn, as_) = match (&out.attn, opts.save_attention) {
                (Some(a), true) => (a.to_vec(), a.shape().to_vec()),
                _ => (Vec::new(), vec![0; 5]),
            };
            let per: usize = ls[1..].iter().product();
            for (i, id) in part.ids.iter().enumerate() {
                let l = &logits[i * per..(i + 1) * per];
                write(&opts.out, &format!("logits_{id}.npy"), |p| {
                    npy::write_f32(p, &ls[1..], l)
                })?;
                let pred = argmax_classes(l, ls[1]);
                write(&opts.out, &format!("pred_{id}.npy"), |p| {
                    npy::write_i64(p, &ls[2..], &pred)
                })?;
                let (h, w) = (ls[2], ls[3]);
                // Input RGB of the middle real date, truth, prediction.
                let rgb = middle_date_rgb(&part.x, &part.pad_mask, part.shape, i);
                let truth = part.targets.get(i * h * w..(i + 1) * h * w);
                let date = middle_date(part, i, opts.ref_date);
                let (single, grid) = semantic_figures(*id, &rgb, date, truth, &pred, (h, w));
                write(&opts.out, &format!("pred_{id}.png"), |p| {
                    figure_png(p, &single)
                })?;
                write(&opts.out, &format!("grid_{id}.png"), |p| {
                    figure_png(p, &grid)
                })?;
                if opts.save_attention {
                    let t_i = ds
                        .dates(ds.ids().iter().position(|x| x == id).unwrap_or(0))
                        .map_or(as_[2], |d| d.len().min(as_[2])); // one date with mono_date
                    let (heads, b, t_max, hw) = (as_[0], as_[1], as_[2], as_[3] * as_[4]);
                    let mut a = Vec::with_capacity(heads * t_i * hw);
                    for h in 0..heads {
                        let base = (h * b + i) * t_max * hw;
                        a.extend_from_slice(&attn[base..base + t_i * hw]);
                    }
                    write(&opts.out, &format!("attn_{id}.npy"), |p| {
                        npy::write_f32(p, &[heads, t_i, as_[3], as_[4]], &a)
                    })?;
                    // The same masks as a picture: heads × the patch's dates, at the attention's resolution.
                    let offsets = part.dates_shape.get(1).map_or(&[][..], |&t_max| {
                        &part.dates[i * t_max..i * t_max + t_i.min(t_max)]
                    });
                    let dates = (0..t_i)
                        .map(|t| {
                            offsets
                                .get(t)
                                .and_then(|&o| opts.ref_date.plus_days(o as i64))
                                .map_or(format!("date {t}"), |d| d.to_string())
                        })
                        .collect();
                    let grid = AttentionGrid {
                        title: format!(
                            "patch {id}: U-TAE attention, {heads} heads × {t_i} dates ({} × {} at 1/8 resolution)",
                            as_[3], as_[4]
                        ),
                        values: &a,
                        heads,
                        dates,
                        rows: as_[3],
                        cols: as_[4],
                    };
                    write(&opts.out, &format!("attn_{id}.png"), |p| {
                        attention_png(p, &grid)
                    })?;
                }
                written += 1;
            }
        }
    }
    Ok(written)
}

fn write(dir: &Path, name: &str, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    f(&dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_pictures_have_titles_panels_and_legends() {
        // A 16 × 16 patch (scale 24: panels of 384 pixels), classes 1 and 3, half the truth void.
        let (h, w) = (16, 16);
        let rgb: Vec<f32> = (0..3 * h * w).map(|i| (i % 7) as f32).collect();
        let truth: Vec<i64> = (0..h * w).map(|i| if i < 128 { 1 } else { 19 }).collect();
        let pred: Vec<i64> = (0..h * w).map(|i| if i < 64 { 1 } else { 3 }).collect();
        let date = Date::new(2019, 5, 12);
        let (single, grid) = semantic_figures(7, &rgb, date, Some(&truth), &pred, (h, w));
        assert_eq!(grid.title, "patch 7: pixel accuracy 50.0 % (void excluded)");
        assert_eq!(grid.panels[0].title, "input RGB, 2019-05-12");
        assert_eq!(grid.legend, vec![1, 3, 19]);
        assert_eq!(single.legend, vec![1, 3]);
        let dir = std::env::temp_dir().join(format!("sitsgpu_sem_pics_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, fig) in [("pred_7.png", &single), ("grid_7.png", &grid)] {
            let path = dir.join(name);
            figure_png(&path, fig).unwrap();
            let c = plot::maps::render_figure(&path, fig).unwrap();
            let size = plot::maps::figure_size(fig);
            plot::assert_readable(name, &c, size, 12..46);
            let decoder =
                png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
            let info = decoder.read_info().unwrap().info().clone();
            assert_eq!((info.width as usize, info.height as usize), size);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // Without ground truth: two panels and no accuracy.
        let (_, grid) = semantic_figures(7, &rgb, None, None, &pred, (h, w));
        assert_eq!(grid.panels.len(), 2);
        assert_eq!(grid.panels[0].title, "input RGB (middle date)");
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_class() {
        // Two pixels, three classes: pixel 0 scores (0, 0, 0) → class 0; pixel 1 (1, 3, 3) → class 1.
        assert_eq!(
            argmax_classes(&[0.0, 1.0, 0.0, 3.0, 0.0, 3.0], 3),
            vec![0, 1]
        );
    }
}
