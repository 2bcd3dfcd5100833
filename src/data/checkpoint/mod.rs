//! PyTorch checkpoints (`model.pth.tar`, `*.pth`, `*.pt` written by `torch.save`) read without Python.
//!
//! [`read_torch_checkpoint`] reads `torch.save({"epoch": int, "state_dict": OrderedDict, "optimizer": …})` (the
//! layout of the U-TAE / L-TAE training scripts, spec §9.3), a dict with a `"model_state_dict"` or `"model"`
//! state dict, or a bare state dict, in both serialisations:
//! * **zip** (torch ≥ 1.6): `<prefix>/data.pkl` is the pickled object; each tensor storage is the record
//!   `<prefix>/data/<key>` (raw bytes, little-endian unless `<prefix>/byteorder` says `big`); `<prefix>` is any
//!   top folder name (`archive`, the file's stem, …).
//! * **legacy** (torch ≤ 1.5, or `_use_new_zipfile_serialization=False`): consecutive pickles — the magic number
//!   0x1950a86a20f9469cfc6c, the protocol version 1001, a sys_info dict, the object, the list of storage keys —
//!   then, for each key of that list in order, an 8-byte little-endian element count and the storage's raw bytes.
//!
//! The pickle is read by the safe [`crate::data::pickle`] VM. A storage is a persistent id
//! `('storage', torch.<Type>Storage, key, location, numel[, view_metadata])`; the location (`cpu`, `cuda:0`) is
//! ignored. Tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks
//! [, metadata])` (also `_rebuild_tensor`, `_rebuild_tensor_v3` with an explicit dtype on a
//! `torch.UntypedStorage`, wrapped by `_rebuild_parameter[_with_state]` or `torch._tensor._rebuild_from_type_v2`);
//! offsets and strides are honoured (non-contiguous views are copied out row-major) and checked against the
//! storage. float32/float64/float16/bfloat16 tensors become [`Values::F32`], integer and bool tensors
//! [`Values::I64`].
//!
//! Everything outside the state dict (optimizer state, schedulers, unknown classes) is parsed into opaque values
//! and ignored, so it never makes loading fail; inside the state dict, a value that is not a dense tensor is an
//! error naming the key.
//!
//! This file finds the state dict in the checkpoint and builds its tensors from the storages; the two
//! serialisations are read in `formats.rs`.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use crate::data::pickle::{Object, Value};
use crate::data::state_dict::{decode, gather_values, DType, Entry, StateDict, Values};
use crate::engine::error::{Error, Result};

mod formats;
#[cfg(test)]
mod tests;

use formats::{legacy_format, zip_format};

/// What [`read_torch_checkpoint`] returns: the epoch (when the checkpoint records one) and the model's state
/// dict, in the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchCheckpoint {
    /// The `"epoch"` entry of the checkpoint dict, if present and an integer.
    pub epoch: Option<i64>,
    /// The model's tensors, keyed by their PyTorch names.
    pub state_dict: StateDict,
}

/// Reads a `torch.save` checkpoint (zip or legacy format; see the module doc). Errors name the file and say what
/// is wrong: not a checkpoint, a truncated archive or stream, an unsupported pickle opcode, a missing storage, a
/// view outside its storage, a state-dict value that is not a dense tensor.
pub fn read_torch_checkpoint(path: impl AsRef<Path>) -> Result<TorchCheckpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fmt = |m: String| Error::format(path, m);
    let (top, mut storages) = if bytes.starts_with(b"PK\x03\x04") {
        zip_format(&bytes).map_err(|m| fmt(format!("unreadable PyTorch checkpoint: {m}")))?
    } else if bytes.first() == Some(&0x80) {
        legacy_format(&bytes).map_err(|m| fmt(format!("unreadable PyTorch checkpoint: {m}")))?
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return Err(fmt(
            "a tar checkpoint (torch < 0.1.10) is not supported: re-save it with a recent torch"
                .into(),
        ));
    } else {
        return Err(fmt(
            "not a PyTorch checkpoint: neither a zip archive (torch >= 1.6) nor a legacy pickle stream".into(),
        ));
    };
    let (epoch, items) = find_state_dict(&top).map_err(fmt)?;
    let mut state_dict = StateDict::new();
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(fmt(format!("state dict key {k:?} is not a string")));
        };
        let entry = tensor(v, &mut storages, 0)
            .map_err(|m| fmt(format!("state dict entry {name:?}: {m}")))?;
        if state_dict.insert(name.clone(), entry).is_some() {
            return Err(fmt(format!("state dict key {name:?} appears twice")));
        }
    }
    Ok(TorchCheckpoint { epoch, state_dict })
}

/// The epoch and the state dict inside the checkpoint's top-level object.
/// The entries of a pickled dict: (key, value) pairs.
type DictItems = [(Value, Value)];

fn find_state_dict(top: &Value) -> std::result::Result<(Option<i64>, &DictItems), String> {
    let Value::Dict(items) = top else {
        return Err(format!(
            "the checkpoint holds a {}{}, not a dict (a whole pickled nn.Module cannot be read: save \
             model.state_dict() instead)",
            top.kind(),
            describe_global(top)
        ));
    };
    for key in ["state_dict", "model_state_dict", "model"] {
        if let Some(sd) = top.get(key) {
            let Value::Dict(sd_items) = sd else {
                return Err(format!(
                    "the checkpoint's {key:?} entry is a {}{}, not a state dict (a pickled nn.Module cannot \
                     be read: save model.state_dict() instead)",
                    sd.kind(),
                    describe_global(sd)
                ));
            };
            let epoch = top.get("epoch").and_then(|e| match e {
                Value::Int(i) => Some(*i),
                _ => None,
            });
            return Ok((epoch, sd_items));
        }
    }
    if items.iter().all(|(_, v)| matches!(v, Value::Object(_))) {
        return Ok((None, items));
    }
    let keys: Vec<String> = items
        .iter()
        .map(|(k, _)| match k {
            Value::Str(s) => format!("{s:?}"),
            other => format!("<{}>", other.kind()),
        })
        .collect();
    Err(format!(
        "no \"state_dict\", \"model_state_dict\" or \"model\" entry, and not a bare state dict (top-level keys: \
         {})",
        keys.join(", ")
    ))
}

fn describe_global(v: &Value) -> String {
    match v.global_name() {
        Some((m, n)) => format!(" ({m}.{n})"),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Storages

/// The element type of a storage class (`torch.FloatStorage`, …): the dtype when it can be read, and the size
/// of one element (needed to skip storages of other types in the legacy stream).
fn storage_type(module: &str, name: &str) -> Option<(Option<DType>, usize)> {
    if !matches!(module, "torch" | "torch.cuda" | "torch.storage") {
        return None;
    }
    Some(match name.trim_start_matches('_') {
        "FloatStorage" => (Some(DType::F32), 4),
        "DoubleStorage" => (Some(DType::F64), 8),
        "HalfStorage" => (Some(DType::F16), 2),
        "BFloat16Storage" => (Some(DType::BF16), 2),
        "LongStorage" => (Some(DType::I64), 8),
        "IntStorage" => (Some(DType::I32), 4),
        "ShortStorage" => (Some(DType::I16), 2),
        "CharStorage" => (Some(DType::I8), 1),
        "ByteStorage" | "UntypedStorage" => (Some(DType::U8), 1),
        "BoolStorage" => (Some(DType::Bool), 1),
        "ComplexFloatStorage" => (None, 8),
        "ComplexDoubleStorage" => (None, 16),
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => (None, 1),
        "QInt32Storage" => (None, 4),
        _ => return None,
    })
}

/// A `torch.<name>` dtype global (the dtype argument of `_rebuild_tensor_v3`).
fn dtype_global(v: &Value) -> std::result::Result<DType, String> {
    let Value::Global { module, name } = v else {
        return Err(format!("expected a torch dtype, found a {}", v.kind()));
    };
    if module != "torch" {
        return Err(format!("expected a torch dtype, found {module}.{name}"));
    }
    Ok(match name.as_str() {
        "float32" | "float" => DType::F32,
        "float64" | "double" => DType::F64,
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        "int64" | "long" => DType::I64,
        "int32" | "int" => DType::I32,
        "int16" | "short" => DType::I16,
        "int8" => DType::I8,
        "uint8" => DType::U8,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "bool" => DType::Bool,
        other => return Err(format!("unsupported tensor dtype torch.{other}")),
    })
}

/// A parsed storage persistent id.
#[derive(Debug, Clone)]
struct StorageRef {
    /// Class name, for messages.
    type_name: String,
    dtype: Option<DType>,
    elem_size: usize,
    /// Key of the storage's bytes (the root storage for a legacy view).
    key: String,
    /// Declared number of elements of the root storage.
    numel: usize,
    /// Legacy storage view: (view key, offset, size) in elements of the root.
    view: Option<(String, usize, usize)>,
}

fn to_usize(v: &Value, what: &str) -> std::result::Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(format!("{what} must be a non-negative int, found {v:?}")),
    }
}

fn parse_pid(pid: &Value) -> std::result::Result<StorageRef, String> {
    let bad = || {
        format!(
            "unsupported persistent id {pid:?} (expected ('storage', type, key, location, numel))"
        )
    };
    let Value::Tuple(t) = pid else {
        return Err(bad());
    };
    if t.len() < 5 || t[0].as_str() != Some("storage") {
        return Err(bad());
    }
    let (module, name) = t[1].global_name().ok_or_else(bad)?;
    let (dtype, elem_size) = storage_type(module, name)
        .ok_or_else(|| format!("unknown storage type {module}.{name}"))?;
    let key = t[2].as_str().ok_or_else(bad)?.to_string();
    let numel = to_usize(&t[4], "the storage size")?;
    let view = match t.get(5) {
        None | Some(Value::None) => None,
        Some(Value::Tuple(v)) if v.len() == 3 => Some((
            v[0].as_str().ok_or_else(bad)?.to_string(),
            to_usize(&v[1], "the storage view offset")?,
            to_usize(&v[2], "the storage view size")?,
        )),
        Some(_) => return Err(bad()),
    };
    Ok(StorageRef {
        type_name: format!("{module}.{name}"),
        dtype,
        elem_size,
        key,
        numel,
        view,
    })
}

/// Every storage persistent id in `v` (the whole checkpoint: the legacy stream holds all of them).
fn collect_pids<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::PersistentId(p) => out.push(p),
        Value::Tuple(x) | Value::List(x) | Value::Set(x) => {
            x.iter().for_each(|e| collect_pids(e, out))
        }
        Value::Dict(x) => x.iter().for_each(|(k, e)| {
            collect_pids(k, out);
            collect_pids(e, out)
        }),
        Value::Object(o) => {
            collect_pids(&o.callable, out);
            collect_pids(&o.args, out);
            if let Some(s) = &o.state {
                collect_pids(s, out);
            }
            o.list_items.iter().for_each(|e| collect_pids(e, out));
            o.dict_items.iter().for_each(|(k, e)| {
                collect_pids(k, out);
                collect_pids(e, out)
            });
        }
        _ => {}
    }
}

/// Where storage bytes come from, with a cache of decoded storages.
struct Storages<'a> {
    source: Source<'a>,
    big_endian: bool,
    decoded: HashMap<(String, DType), Values>,
}

enum Source<'a> {
    Zip {
        archive: zip::ZipArchive<Cursor<&'a [u8]>>,
        prefix: String,
    },
    Legacy(HashMap<String, &'a [u8]>),
}

impl Storages<'_> {
    /// The whole storage `key` decoded as `dtype`.
    fn values(&mut self, key: &str, dtype: DType) -> std::result::Result<&Values, String> {
        let id = (key.to_string(), dtype);
        if !self.decoded.contains_key(&id) {
            let bytes: Vec<u8> = match &mut self.source {
                Source::Zip { archive, prefix } => {
                    let name = format!("{prefix}data/{key}");
                    let mut f = archive.by_name(&name).map_err(|_| {
                        format!("storage key {key:?} not found: the archive has no record {name}")
                    })?;
                    let mut b = Vec::with_capacity(f.size().min(1 << 30) as usize);
                    f.read_to_end(&mut b)
                        .map_err(|e| format!("record {name}: cannot read it: {e}"))?;
                    b
                }
                Source::Legacy(map) => map
                    .get(key)
                    .ok_or_else(|| {
                        format!("storage key {key:?} not found in the file's storage list")
                    })?
                    .to_vec(),
            };
            let usable = bytes.len() - bytes.len() % dtype.size();
            let v = decode(&bytes[..usable], dtype, self.big_endian)
                .map_err(|m| format!("storage {key:?}: {m}"))?;
            self.decoded.insert(id.clone(), v);
        }
        Ok(&self.decoded[&id])
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tensors

/// A state-dict value → entry.
fn tensor(v: &Value, storages: &mut Storages, depth: usize) -> std::result::Result<Entry, String> {
    let Value::Object(o) = v else {
        return Err(format!(
            "not a tensor but a {}{}",
            v.kind(),
            describe_global(v)
        ));
    };
    if depth > 8 {
        return Err("tensor wrappers nested too deeply".into());
    }
    let args = o.args.as_seq().unwrap_or(&[]);
    let arg = |i: usize| {
        args.get(i).ok_or_else(|| {
            format!(
                "{} needs more than {} arguments",
                describe_global(v).trim(),
                args.len()
            )
        })
    };
    match v.global_name() {
        Some(("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2")) => {
            dense(arg(0)?, arg(1)?, arg(2)?, arg(3)?, None, storages)
        }
        Some(("torch._utils", "_rebuild_tensor_v3")) => {
            let dtype = dtype_global(arg(6)?)?;
            dense(arg(0)?, arg(1)?, arg(2)?, arg(3)?, Some(dtype), storages)
        }
        Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
            tensor(arg(0)?, storages, depth + 1)
        }
        Some(("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type")) => {
            // (func, new_type, args, state): a tensor subclass; rebuild the underlying tensor.
            let inner = Value::Object(Box::new(Object {
                callable: arg(0)?.clone(),
                args: arg(2)?.clone(),
                state: None,
                list_items: vec![],
                dict_items: vec![],
            }));
            tensor(&inner, storages, depth + 1)
        }
        Some((m, n)) => Err(format!(
            "unsupported value built by {m}.{n}: only dense tensors (torch._utils._rebuild_tensor_v2 and \
             friends) can be read"
        )),
        None => Err(format!("not a tensor but an object built by {:?}", o.callable)),
    }
}

/// A dense tensor: `size`/`stride`/`offset` view of the storage persistent id `storage`, copied out row-major.
fn dense(
    storage: &Value,
    offset: &Value,
    size: &Value,
    stride: &Value,
    dtype_override: Option<DType>,
    storages: &mut Storages,
) -> std::result::Result<Entry, String> {
    let Value::PersistentId(pid) = storage else {
        return Err(format!(
            "the storage is a {}, not a persistent id",
            storage.kind()
        ));
    };
    let s = parse_pid(pid)?;
    let dtype = match (dtype_override, s.dtype) {
        (Some(d), _) => d,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(format!(
                "tensors of storage type {} are not supported",
                s.type_name
            ))
        }
    };
    let dims = |v: &Value, what: &str| -> std::result::Result<Vec<usize>, String> {
        v.as_seq()
            .ok_or_else(|| format!("the {what} must be a tuple, found a {}", v.kind()))?
            .iter()
            .map(|d| to_usize(d, &format!("each {what} entry")))
            .collect()
    };
    let shape = dims(size, "size")?;
    let strides = dims(stride, "stride")?;
    let offset = to_usize(offset, "the storage offset")?;
    if shape.len() != strides.len() {
        return Err(format!(
            "size {shape:?} and stride {strides:?} have different lengths"
        ));
    }
    // The elements available to this tensor, in units of its dtype: [base, base + len) of the decoded storage.
    let root_bytes_declared = s
        .numel
        .checked_mul(s.elem_size)
        .ok_or("storage size overflows")?;
    let (base, len) = match &s.view {
        None => (0, root_bytes_declared / dtype.size()),
        Some((_, off, n)) => {
            if off + n > s.numel {
                return Err(format!(
                    "storage view {off}..{} is outside storage {:?} of {} elements",
                    off + n,
                    s.key,
                    s.numel
                ));
            }
            (
                off * s.elem_size / dtype.size(),
                n * s.elem_size / dtype.size(),
            )
        }
    };
    let n: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    if n == 0 {
        let values = decode(&[], dtype, false)?;
        return Ok(Entry { shape, values });
    }
    let last = shape
        .iter()
        .zip(&strides)
        .try_fold(offset, |a, (&d, &st)| {
            a.checked_add((d - 1).checked_mul(st)?)
        })
        .ok_or("stride overflow")?;
    if last >= len {
        return Err(format!(
            "shape {shape:?} with stride {strides:?} at offset {offset} reaches element {last}, but storage {:?} \
             ({}) holds {len} elements",
            s.key, s.type_name
        ));
    }
    let all = storages.values(&s.key, dtype)?;
    if base + len > all.len() {
        return Err(format!(
            "storage {:?} holds {} elements of {:?} but the checkpoint declares {}",
            s.key,
            all.len(),
            dtype,
            base + len
        ));
    }
    let values = gather_values(all, base + offset, &shape, &strides);
    Ok(Entry { shape, values })
}
