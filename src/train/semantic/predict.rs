//! `sitsgpu predict`: runs a semantic model in eval mode over PASTIS patches in ID order, in batches with
//! batch-max padding (the original collate), and writes per patch `logits_<ID>.npy` (num_classes × H × W,
//! f32), `pred_<ID>.npy` (H × W, int64, argmax with ties to the lowest class as torch.argmax), `pred_<ID>.png`
//! (the class map in the official colours), `grid_<ID>.png` (input RGB of the middle date | ground truth |
//! prediction) and, on request, `attn_<ID>.npy` (n_head × T × h × w over the patch's own dates).
//!
//! The folder needs no annotations: without `ANNOTATIONS/` (a user's own area in the PASTIS layout) only the
//! S2 series are read and the ground-truth panel of the grid is left grey. The dates are read as the model
//! was trained: the run's `ref_date`, and its `mono_date` for a mono-date model.

use std::path::{Path, PathBuf};

use crate::data::npy;
use crate::data::pastis::{Date, MonoDate, PastisDataset, PastisOptions, Target};
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::Ctx;
use crate::models::semantic::SemanticModel;
use crate::models::utae::PadInfo;
use crate::train::plot;

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
    for batch in ds.batches(indices.clone(), opts.batch_size.max(1)) {
        let batch = batch?;
        let x = Tensor::from_vec(batch.x.clone(), &batch.shape, device);
        let pad = PadInfo {
            mask: batch.pad_mask.clone(),
        };
        let out = no_grad(|| model.forward(&x, &batch.dates, &pad, &ctx));
        let (logits, ls) = (out.logits.to_vec(), out.logits.shape().to_vec());
        let (attn, as_) = match (&out.attn, opts.save_attention) {
            (Some(a), true) => (a.to_vec(), a.shape().to_vec()),
            _ => (Vec::new(), vec![0; 5]),
        };
        let per: usize = ls[1..].iter().product();
        for (i, id) in batch.ids.iter().enumerate() {
            let l = &logits[i * per..(i + 1) * per];
            write(&opts.out, &format!("logits_{id}.npy"), |p| {
                npy::write_f32(p, &ls[1..], l)
            })?;
            let pred = argmax_classes(l, ls[1]);
            write(&opts.out, &format!("pred_{id}.npy"), |p| {
                npy::write_i64(p, &ls[2..], &pred)
            })?;
            let (h, w) = (ls[2], ls[3]);
            write(&opts.out, &format!("pred_{id}.png"), |p| {
                plot::class_map_png(p, &pred, h, w, 4)
            })?;
            // Input RGB of the middle real date, truth, prediction.
            let rgb = middle_date_rgb(&batch.x, &batch.pad_mask, batch.shape, i);
            let truth = batch.targets.get(i * h * w..(i + 1) * h * w);
            write(&opts.out, &format!("grid_{id}.png"), |p| {
                plot::grid_png(p, &rgb, truth, &pred, h, w, 4)
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
            }
            written += 1;
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
    fn argmax_ties_go_to_the_lowest_class() {
        // Two pixels, three classes: pixel 0 scores (0, 0, 0) → class 0; pixel 1 (1, 3, 3) → class 1.
        assert_eq!(
            argmax_classes(&[0.0, 1.0, 0.0, 3.0, 0.0, 3.0], 3),
            vec![0, 1]
        );
    }
}
