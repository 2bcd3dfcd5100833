//! `sitsgpu predict` for pixel sets: class predictions for every parcel of a Sentinel-Agri folder, from one set
//! of weights or from a weight folder's k-fold ensemble (`PseLTae_pretrained` of the original, spec §4.6: the
//! mean over the folds of `log_softmax(logits)`, argmax for the class).
//!
//! Writes to `out/`: `predictions.json` (`{pid: {"class": training label 0..K-1, "label": its code in
//! label_44class, "confidence": softmax probability}}`), `ids.npy` (N,) int64, `pred.npy` (N,) int64,
//! `logits.npy` (N, K) float32 (one model: the logits; an ensemble: the averaged log-probabilities), and with
//! `save_attention` the attention masks `attention.npy` (N, H, T) of an attention model and their picture
//! `attention.png` (heads × dates, the mean over the parcels) (one file per fold,
//! `attention_Fold_k.npy`, for an ensemble). Evaluation is deterministic: no jitter, a fixed pixel draw per
//! parcel.

use crate::train::plot::attention::{attention_png, AttentionGrid};
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::data::json::write_json;
use crate::data::npy;
use crate::data::pixelset::SUB_CLASSES;
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::state::load_state_dict;
use crate::layers::Ctx;
use crate::models::registry::{find_config, read_weights};
use crate::models::stclassifier::PixelSetClassifier;
use crate::train::pixelset::{
    for_each_batch, model_config, open_dataset, options_from_conf, to_device,
};
use crate::train::state::{checkpoint_of, device_of};

/// Options of pixel-set prediction.
#[derive(Debug, Clone)]
pub struct PixelSetPredictOptions {
    /// Sentinel-Agri pixel-set folder.
    pub dataset_folder: PathBuf,
    /// One checkpoint (.npz or model.pth.tar; its conf.json beside it or in its parent folder, or `config`).
    pub weights: Option<PathBuf>,
    /// A weight folder (conf.json + Fold_*/model.*): the ensemble of every fold found.
    pub weight_folder: Option<PathBuf>,
    /// conf.json of `weights`.
    pub config: Option<PathBuf>,
    /// Parcels per batch.
    pub batch_size: usize,
    /// Output folder.
    pub out: PathBuf,
    /// Also write the attention masks.
    pub save_attention: bool,
    /// CPU reference path.
    pub cpu: bool,
}

/// Runs the prediction; returns the number of parcels.
pub fn predict(p: &PixelSetPredictOptions) -> Result<usize> {
    let (conf_path, members): (PathBuf, Vec<(String, PathBuf)>) =
        match (&p.weights, &p.weight_folder) {
            (Some(w), None) => (
                find_config(w, p.config.as_deref())?,
                vec![(String::new(), w.clone())],
            ),
            (None, Some(folder)) => {
                let mut members = Vec::new();
                for k in 1.. {
                    if !folder.join(format!("Fold_{k}")).is_dir() {
                        break;
                    }
                    members.push((format!("_Fold_{k}"), checkpoint_of(folder, k)?));
                }
                if members.is_empty() {
                    return Err(Error::format(folder, "no Fold_1/ folder with a checkpoint"));
                }
                (
                    p.config.clone().unwrap_or(folder.join("conf.json")),
                    members,
                )
            }
            _ => return Err(Error::Invalid(
                "predict: give either --weights (one checkpoint) or --weight_folder (an ensemble)"
                    .into(),
            )),
        };
    let opts = options_from_conf(&conf_path, &p.dataset_folder, &p.out)?;
    let device = device_of(p.cpu)?;
    let ds = open_dataset(&p.dataset_folder, opts.npixel, opts.geomfeat(), None, false)?;
    let config = model_config(
        &Value::Object(opts.model.clone()),
        &ds,
        opts.num_classes,
        &conf_path,
    )?;
    let k = config.num_classes();
    let model = PixelSetClassifier::new(config, 0, device);
    let all: Vec<usize> = (0..ds.len()).collect();
    let n = ds.len();
    let ensemble = p.weight_folder.is_some();
    let mut sum = vec![0.0f32; n * k];
    // Every member's weights are checked before anything runs or is written.
    let mut weights = Vec::new();
    for (_, w) in &members {
        let sd = read_weights(w)?;
        load_state_dict(&model, &sd, w)?;
        weights.push(sd);
    }
    std::fs::create_dir_all(&p.out).map_err(|e| Error::io(&p.out, e))?;
    for ((suffix, w), sd) in members.iter().zip(&weights) {
        load_state_dict(&model, sd, w)?;
        let (mut out, mut attn, mut attn_shape) = (Vec::with_capacity(n * k), Vec::new(), (0, 0));
        for_each_batch(&ds, &all, p.batch_size, None, |_, batch| {
            let (x, extra) = to_device(&batch, device);
            no_grad(|| {
                let (logits, a) = model.forward(&x, &batch.mask, extra.as_ref(), &Ctx::eval());
                let mut v = logits.to_vec();
                if ensemble {
                    v.chunks_mut(k).for_each(log_softmax);
                }
                out.extend(v);
                if let (true, Some(a)) = (p.save_attention, a) {
                    // (H, B, T) → (B, H, T) rows appended per parcel.
                    let s = a.shape().to_vec();
                    attn_shape = (s[0], s[2]);
                    attn.extend(a.permute(&[1, 0, 2]).to_vec());
                }
            });
            Ok(true)
        })?;
        for (acc, v) in sum.iter_mut().zip(&out) {
            *acc += v / members.len() as f32;
        }
        if p.save_attention {
            if attn.is_empty() {
                eprintln!("note: this model has no attention masks (GRU / TempCNN); none written");
            } else {
                npy::write_f32(
                    p.out.join(format!("attention{suffix}.npy")),
                    &[n, attn_shape.0, attn_shape.1],
                    &attn,
                )?;
                // The picture: each head's weight of each date, averaged over the parcels.
                let (heads, t) = attn_shape;
                let mut mean = vec![0.0f32; heads * t];
                for parcel in attn.chunks(heads * t) {
                    for (m, v) in mean.iter_mut().zip(parcel) {
                        *m += v / n.max(1) as f32;
                    }
                }
                let positions = ds.date_positions();
                let grid = AttentionGrid {
                    title: format!(
                        "L-TAE attention: {heads} heads × {t} dates, mean over {n} parcels"
                    ),
                    values: &mean,
                    heads,
                    dates: (0..t)
                        .map(|d| {
                            positions
                                .get(d)
                                .map_or(format!("date {d}"), |p| format!("day {p}"))
                        })
                        .collect(),
                    rows: 1,
                    cols: 1,
                };
                attention_png(&p.out.join(format!("attention{suffix}.png")), &grid)?;
            }
        }
    }
    let logits = Tensor::from_vec(sum.clone(), &[n, k], Device::Cpu);
    let pred = logits.argmax(1);
    let probs = if ensemble {
        logits.exp().to_vec()
    } else {
        logits.softmax(1).to_vec()
    };
    let mut preds = Map::new();
    for (i, &id) in ds.ids().iter().enumerate() {
        let c = pred[i] as usize;
        preds.insert(
            id.to_string(),
            json!({"class": c, "label": SUB_CLASSES.get(c).copied().unwrap_or(c as i64), "confidence": probs[i * k + c]}),
        );
    }
    let ids: Vec<i64> = ds.ids().iter().map(|&v| v as i64).collect();
    npy::write_i64(p.out.join("ids.npy"), &[n], &ids)?;
    npy::write_i64(p.out.join("pred.npy"), &[n], &pred)?;
    npy::write_f32(p.out.join("logits.npy"), &[n, k], &sum)?;
    write_json(&p.out.join("predictions.json"), &Value::Object(preds))?;
    Ok(n)
}

/// In place, `x - log Σ exp x` with the max subtracted first (f64 sums).
fn log_softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    x.iter_mut().for_each(|v| *v = (*v as f64 - lse) as f32);
}
