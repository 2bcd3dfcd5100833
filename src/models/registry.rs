//! Building models from the original `conf.json` (the `--model` flag and its hyper-parameters), and reading
//! weights from either our `.npz` state dicts or the official `model.pth.tar` checkpoints.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::checkpoint::read_torch_checkpoint;
use crate::data::state_dict::{read_npz, StateDict};
use crate::engine::{Device, Error, Result};
use crate::layers::state::load_state_dict;
use crate::models::utae::{UTae, UTaeConfig};

/// Reads a JSON file, with errors naming it.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// The conf.json that goes with `weights`: `explicit` if given, else `conf.json` beside the weights file or in
/// its parent folder (the official layout `WEIGHT_FOLDER/conf.json` + `Fold_k/model.pth.tar`).
pub fn find_config(weights: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let dir = weights.parent().unwrap_or(Path::new("."));
    for cand in [dir.join("conf.json"), dir.join("..").join("conf.json")] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(Error::Invalid(format!(
        "no conf.json beside {} or in its parent folder: pass --config conf.json",
        weights.display()
    )))
}

/// A semantic-segmentation model built from a conf.json object (`model`, default "utae").
pub fn semantic_from_conf(conf: &Value, path: &Path, seed: u64, device: Device) -> Result<UTae> {
    let name = conf.get("model").and_then(Value::as_str).unwrap_or("utae");
    match name {
        "utae" => Ok(UTae::new(UTaeConfig::from_json(conf, path)?, seed, device)),
        other => Err(Error::format(
            path,
            format!("model {other:?} is not implemented yet (supported: utae)"),
        )),
    }
}

/// Reads weights: `.npz` (our state dicts, keyed by the PyTorch names) or a PyTorch checkpoint
/// (`model.pth.tar`, zip or legacy format; its `state_dict`).
pub fn read_weights(path: &Path) -> Result<StateDict> {
    if path.extension().and_then(|e| e.to_str()) == Some("npz") {
        read_npz(path)
    } else {
        Ok(read_torch_checkpoint(path)?.state_dict)
    }
}

/// A model from `conf` with the weights of `weights` loaded (strict key and shape checks).
pub fn load_semantic(conf_path: &Path, weights: &Path, device: Device) -> Result<UTae> {
    let conf = read_json(conf_path)?;
    let model = semantic_from_conf(&conf, conf_path, 0, device)?;
    load_state_dict(&model, &read_weights(weights)?, weights)?;
    Ok(model)
}

/// The model a conf.json describes, for checking a state dict's keys and shapes against it (`convert-weights`):
/// U-TAE, or a pixel-set classifier (recognised by its keys, see
/// [`crate::train::pixelset::predict::is_pixelset_conf`]), whose bespoke positions are stood in for by
/// `lms` placeholder dates (they only fix the positional table's shape).
pub fn model_for_checking(conf: &Value, path: &Path) -> Result<Box<dyn crate::layers::Module>> {
    use crate::models::stclassifier::{PixelSetClassifier, PixelSetModelConfig};
    if crate::train::pixelset::predict::is_pixelset_conf(conf) {
        let lms = conf
            .get("len_max_seq")
            .or(conf.get("lms"))
            .and_then(Value::as_u64)
            .unwrap_or(24) as usize;
        let positions: Vec<i64> = (0..lms as i64).collect();
        let c = PixelSetModelConfig::from_json(conf, Some(&positions), path)?;
        return Ok(Box::new(PixelSetClassifier::new(c, 0, Device::Cpu)));
    }
    Ok(Box::new(semantic_from_conf(conf, path, 0, Device::Cpu)?))
}
