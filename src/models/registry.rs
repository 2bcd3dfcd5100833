//! Building models from the original `conf.json` (the `--model` flag and its hyper-parameters), telling which
//! [`Task`] a conf.json describes, and reading weights from either our `.npz` state dicts or the official
//! `model.pth.tar` checkpoints.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::checkpoint::read_torch_checkpoint;
use crate::data::json::read_json;
use crate::data::state_dict::{read_npz, StateDict};
use crate::engine::{Device, Error, Result};
use crate::layers::state::load_state_dict;
use crate::models::paps::Paps;
use crate::models::semantic::{SemanticConfig, SemanticModel, MODELS};
use crate::models::stclassifier::{PixelSetClassifier, PixelSetModelConfig, TemporalKind};

/// What a model does, and so which workflow and dataset layout go with it (the `--task` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Semantic segmentation of PASTIS patches (U-TAE, utae-paps' `train_semantic.py`).
    Semantic,
    /// Parcel classification from Sentinel-Agri pixel sets (PSE + L-TAE and its competitors, the L-TAE
    /// repository's `train.py`).
    PixelSet,
    /// Panoptic segmentation of PASTIS parcels (U-TAE + PaPs, utae-paps' `train_panoptic.py`).
    Panoptic,
}

/// conf.json keys only a PaPs run has (train_panoptic.py's `vars(config)`, or a fixture's `PaPs` kwargs).
const PANOPTIC_KEYS: [&str; 5] = ["shape_size", "mask_conv", "supmax", "backbone", "PaPs"];

impl Task {
    /// The `--task` value: `semantic`, `pixelset` or `panoptic`.
    pub fn parse(s: &str) -> Result<Task> {
        match s {
            "semantic" => Ok(Task::Semantic),
            "pixelset" => Ok(Task::PixelSet),
            "panoptic" => Ok(Task::Panoptic),
            other => Err(Error::Invalid(format!(
                "--task {other:?}: expected semantic, pixelset or panoptic"
            ))),
        }
    }

    /// The task of a conf.json object: a pixel-set model's has `mlp1` or `npixel`, or names a pixel-set
    /// model (`pse_ltae`, `ltae`, ...); a U-TAE + PaPs run's has PaPs keys (`shape_size`, `mask_conv`,
    /// `supmax`, `backbone`); anything else is a semantic U-TAE's.
    pub fn of_conf(conf: &Value) -> Task {
        if Task::of_conf_pixelset(conf) {
            Task::PixelSet
        } else if PANOPTIC_KEYS.iter().any(|k| conf.get(k).is_some()) {
            Task::Panoptic
        } else {
            Task::Semantic
        }
    }

    fn of_conf_pixelset(conf: &Value) -> bool {
        let pixelset = conf.get("mlp1").is_some()
            || conf.get("npixel").is_some()
            || conf
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| TemporalKind::parse(m).is_some());
        pixelset
    }

    /// The task a conf.json object clearly describes: pixel-set keys ([`Task::of_conf`]), or a semantic
    /// model's (`encoder_widths`, `out_conv`, `model_kwargs`, or a semantic `model`: utae and its baselines);
    /// `None` when it says neither.
    pub fn detect(conf: &Value) -> Option<Task> {
        let task = Task::of_conf(conf);
        if task != Task::Semantic {
            Some(task)
        } else if conf.get("encoder_widths").is_some()
            || conf.get("out_conv").is_some()
            || conf.get("model_kwargs").is_some()
            || conf
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| MODELS.contains(&m))
        {
            Some(Task::Semantic)
        } else {
            None
        }
    }

    /// `--task` when given, else the task of the conf.json at `conf_path` (semantic when it cannot be read:
    /// the semantic workflow then reports the missing or broken file). A `--task` that contradicts what the
    /// conf.json clearly describes ([`Task::detect`]) is an error naming the file.
    pub fn resolve(flag: Option<&str>, conf_path: &Path) -> Result<Task> {
        let conf = read_json(conf_path);
        let Some(s) = flag else {
            return Ok(conf.map_or(Task::Semantic, |c| Task::of_conf(&c)));
        };
        let task = Task::parse(s)?;
        match conf.ok().as_ref().and_then(Task::detect) {
            Some(described) if described != task => Err(Error::format(
                conf_path,
                format!(
                    "describes a {} model, but --task {s} was given: these weights are for the {} task",
                    described.name(),
                    described.name()
                ),
            )),
            _ => Ok(task),
        }
    }

    /// The `--task` spelling: `semantic`, `pixelset` or `panoptic`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Semantic => "semantic",
            Task::PixelSet => "pixelset",
            Task::Panoptic => "panoptic",
        }
    }
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

/// A semantic-segmentation model built from a conf.json object (`model`, default "utae"; a baseline's
/// arguments from `model_kwargs`, see [`SemanticConfig::from_conf`]).
pub fn semantic_from_conf(
    conf: &Value,
    path: &Path,
    seed: u64,
    device: Device,
) -> Result<SemanticModel> {
    Ok(SemanticConfig::from_conf(conf, path)?.build(seed, device))
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
pub fn load_semantic(conf_path: &Path, weights: &Path, device: Device) -> Result<SemanticModel> {
    let conf = read_json(conf_path)?;
    let model = semantic_from_conf(&conf, conf_path, 0, device)?;
    load_state_dict(&model, &read_weights(weights)?, weights)?;
    Ok(model)
}

/// A PaPs model (U-TAE or U-ConvLSTM backbone, [`Paps::configs`]) from `conf` (train_panoptic.py's conf.json) with the weights of `weights` loaded (strict
/// key and shape checks; the `min_confidence` buffer of the checkpoint is the one in force).
pub fn load_panoptic(conf_path: &Path, weights: &Path, device: Device) -> Result<Paps> {
    let conf = read_json(conf_path)?;
    let model = Paps::from_conf(&conf, conf_path, 0, device)?;
    load_state_dict(&model, &read_weights(weights)?, weights)?;
    Ok(model)
}

/// The model a conf.json describes, for checking a state dict's keys and shapes against it (`convert-weights`):
/// a semantic model (U-TAE or a baseline), or a pixel-set classifier (recognised by its keys, see [`Task::of_conf`]), whose bespoke positions
/// are stood in for by `lms` placeholder dates (they only fix the positional table's shape).
pub fn model_for_checking(conf: &Value, path: &Path) -> Result<Box<dyn crate::layers::Module>> {
    if Task::of_conf(conf) == Task::Panoptic {
        return Ok(Box::new(Paps::from_conf(conf, path, 0, Device::Cpu)?));
    }
    if Task::of_conf(conf) == Task::PixelSet {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_task_comes_from_the_flag_or_the_conf() {
        assert_eq!(Task::parse("pixelset").unwrap(), Task::PixelSet);
        assert_eq!(Task::parse("semantic").unwrap(), Task::Semantic);
        assert_eq!(Task::parse("panoptic").unwrap(), Task::Panoptic);
        let e = Task::parse("instance").unwrap_err().to_string();
        assert!(e.contains("--task \"instance\""), "{e}");
        // A train_panoptic.py conf.json (U-TAE keys and PaPs keys) is a panoptic run's.
        assert_eq!(
            Task::detect(&json!({"encoder_widths": [64], "shape_size": 16, "mask_conv": true})),
            Some(Task::Panoptic)
        );
        assert_eq!(
            Task::of_conf(&json!({"mlp1": [10, 32, 64]})),
            Task::PixelSet
        );
        assert_eq!(Task::of_conf(&json!({"npixel": 64})), Task::PixelSet);
        assert_eq!(Task::of_conf(&json!({"model": "pse_tae"})), Task::PixelSet);
        assert_eq!(
            Task::of_conf(&json!({"model": "utae", "encoder_widths": [64]})),
            Task::Semantic
        );
        assert_eq!(Task::of_conf(&json!({})), Task::Semantic);
        // The U-TAE paper's baselines are semantic models (an official conf.json names them in `model`).
        for m in [
            "uconvlstm",
            "buconvlstm",
            "fpn",
            "convlstm",
            "convgru",
            "unet3d",
        ] {
            assert_eq!(
                Task::detect(&json!({ "model": m })),
                Some(Task::Semantic),
                "{m}"
            );
        }
        assert_eq!(
            Task::detect(&json!({"model_kwargs": {}})),
            Some(Task::Semantic)
        );
        assert_eq!(Task::detect(&json!({})), None);
        let nowhere = Path::new("/nonexistent/conf.json");
        assert_eq!(Task::resolve(None, nowhere).unwrap(), Task::Semantic);
        assert_eq!(
            Task::resolve(Some("pixelset"), nowhere).unwrap(),
            Task::PixelSet
        );
    }
}
