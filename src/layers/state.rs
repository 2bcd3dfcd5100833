//! Moving weights between a [`Module`] and a `state_dict` (the original PyTorch names and shapes): load with
//! strict key and shape checks, and export parameters + buffers (`num_batches_tracked` as int64), so that
//! checkpoints move between sitsgpu and PyTorch both ways.

use std::path::Path;

use crate::data::state_dict::{Entry, StateDict, Values};
use crate::engine::{Error, Result};
use crate::layers::Module;

/// Parameters and buffers of `m` as a state dict, in registration order.
pub fn state_dict(m: &dyn Module) -> StateDict {
    let mut sd = StateDict::default();
    for (name, t) in m
        .named_parameters("")
        .into_iter()
        .chain(m.named_buffers(""))
    {
        let values = if name.ends_with("num_batches_tracked") {
            Values::I64(t.to_vec().iter().map(|&v| v as i64).collect())
        } else {
            Values::F32(t.to_vec())
        };
        sd.insert(
            name,
            Entry {
                shape: t.shape().to_vec(),
                values,
            },
        );
    }
    sd
}

/// Copies every entry of `sd` into the module's parameters and buffers. A key the module lacks, a module
/// tensor missing from the file, or a shape mismatch is an error naming the key (and both shapes); `path`
/// names the file in the message.
pub fn load_state_dict(m: &dyn Module, sd: &StateDict, path: &Path) -> Result<()> {
    let mine: Vec<(String, crate::engine::Tensor)> = m
        .named_parameters("")
        .into_iter()
        .chain(m.named_buffers(""))
        .collect();
    let unexpected: Vec<&str> = sd
        .keys()
        .filter(|key| !mine.iter().any(|(n, _)| n == key))
        .collect();
    if !unexpected.is_empty() && unexpected.len() * 2 >= sd.len() {
        return Err(Error::format(
            path,
            format!(
                "{} of its {} entries (first {:?}) are not in this model (whose first is {:?}): the weights \
                 of another model? (a pixel-set classifier's given to U-TAE, or the reverse; check the \
                 conf.json and --task)",
                unexpected.len(),
                sd.len(),
                unexpected[0],
                mine.first().map_or("", |(n, _)| n.as_str())
            ),
        ));
    }
    if let Some(key) = unexpected.first() {
        return Err(Error::format(
            path,
            format!("unexpected key {key:?}: the model has no such parameter or buffer"),
        ));
    }
    for (name, t) in &mine {
        let Some(e) = sd.get(name) else {
            return Err(Error::format(
                path,
                format!("missing key {name:?} (shape {:?} in the model)", t.shape()),
            ));
        };
        // PyTorch stores num_batches_tracked as a 0-d int64; accept () or (1,).
        let same =
            e.shape == t.shape() || (e.shape.iter().product::<usize>() == 1 && t.numel() == 1);
        if !same {
            return Err(Error::format(
                path,
                format!(
                    "key {name:?}: shape {:?} in the file, {:?} in the model",
                    e.shape,
                    t.shape()
                ),
            ));
        }
        let data: Vec<f32> = match &e.values {
            Values::F32(v) => v.clone(),
            Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                format!(
                    "key {name:?}: non-finite value {} at flat index {i}: the weights are unusable (a training \
                     that diverged?)",
                    data[i]
                ),
            ));
        }
        t.storage().write(&data);
    }
    Ok(())
}
