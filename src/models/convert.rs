//! `sitsgpu convert-weights`: an official checkpoint (`model.pth.tar`, zip or legacy torch format) to our
//! `.npz` with the same state_dict names, or an `.npz` (or a checkpoint) to the official format that `torch.load`
//! and the original scripts read. The state dict is checked key by key and shape by shape against the model its
//! conf.json describes (see [`registry::model_for_checking`]) before anything is written.

use std::path::{Path, PathBuf};

use crate::data::checkpoint::{read_torch_checkpoint, TorchCheckpoint};
use crate::data::json::read_json;
use crate::data::state_dict::{read_npz, write_npz};
use crate::data::torch_writer::{write_torch_checkpoint, write_torch_checkpoint_legacy};
use crate::engine::{Error, Result};
use crate::layers::state::load_state_dict;
use crate::models::registry;

/// What `convert-weights` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// Our `.npz` state dict.
    Npz,
    /// `torch.save` of `{"epoch", "state_dict"}` in the zip format of torch >= 1.6.
    Torch,
    /// The same in the legacy format of torch <= 1.5.
    TorchLegacy,
}

/// What a conversion did, printed by the command (`Display`: one line per step).
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The conf.json the state dict was checked against (`None`: none found, written unchecked).
    pub checked_against: Option<PathBuf>,
    /// The file written.
    pub out: PathBuf,
    /// Number of state-dict entries.
    pub entries: usize,
    /// The checkpoint's epoch, if it has one.
    pub epoch: Option<i64>,
}

impl std::fmt::Display for Converted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.checked_against {
            Some(conf) => writeln!(
                f,
                "checked {} entries against the model of {}",
                self.entries,
                conf.display()
            )?,
            None => writeln!(f, "no conf.json found: writing the state_dict unchecked")?,
        }
        write!(
            f,
            "wrote {} ({} entries, epoch {:?})",
            self.out.display(),
            self.entries,
            self.epoch
        )
    }
}

/// Reads `checkpoint` (with a torch output format, an `.npz` is accepted too), checks it against the model of
/// `config` (default: the conf.json beside it or in its parent folder; without one it is written unchecked) and
/// writes it to `out` in `format`, creating `out`'s folder. Nothing is written when the check fails.
pub fn convert_weights(
    checkpoint: &Path,
    out: &Path,
    config: Option<&Path>,
    format: OutFormat,
) -> Result<Converted> {
    let ck = if format != OutFormat::Npz
        && checkpoint.extension().and_then(|e| e.to_str()) == Some("npz")
    {
        TorchCheckpoint {
            epoch: None,
            state_dict: read_npz(checkpoint)?,
        }
    } else {
        read_torch_checkpoint(checkpoint)?
    };
    let checked_against = match registry::find_config(checkpoint, config) {
        Ok(conf_path) => {
            let conf = read_json(&conf_path)?;
            let model = registry::model_for_checking(&conf, &conf_path)?;
            load_state_dict(model.as_ref(), &ck.state_dict, checkpoint)?;
            Some(conf_path)
        }
        Err(e) if config.is_some() => return Err(e),
        Err(_) => None,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match format {
        OutFormat::Npz => write_npz(out, &ck.state_dict),
        OutFormat::Torch => write_torch_checkpoint(out, &ck.state_dict, ck.epoch),
        OutFormat::TorchLegacy => write_torch_checkpoint_legacy(out, &ck.state_dict, ck.epoch),
    }?;
    Ok(Converted {
        checked_against,
        out: out.to_path_buf(),
        entries: ck.state_dict.len(),
        epoch: ck.epoch,
    })
}
