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

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use crate::data::pickle::{self, Object, Value};
use crate::data::state_dict::{decode, gather_values, DType, Entry, StateDict, Values};
use crate::engine::error::{Error, Result};

/// What [`read_torch_checkpoint`] returns: the epoch (when the checkpoint records one) and the model's state
/// dict, in the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchCheckpoint {
    /// The `"epoch"` entry of the checkpoint dict, if present and an integer.
    pub epoch: Option<i64>,
    /// The model's tensors, keyed by their PyTorch names.
    pub state_dict: StateDict,
}

/// The legacy format's first pickle.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Reads a `torch.save` checkpoint (zip or legacy format; see the module doc). Errors name the file and say what
/// is wrong: not a checkpoint, a truncated archive or stream, an unsupported pickle opcode, a missing storage, a
/// view outside its storage, a state-dict value that is not a dense tensor.
pub fn read_torch_checkpoint(path: impl AsRef<Path>) -> Result<TorchCheckpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fmt = |m: String| Error::format(path, m);
    let (top, mut storages) = if bytes.starts_with(b"PK\x03\x04") {
        zip_format(&bytes).map_err(fmt)?
    } else if bytes.first() == Some(&0x80) {
        legacy_format(&bytes).map_err(fmt)?
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
    let (epoch, sd_value) = find_state_dict(&top).map_err(fmt)?;
    let Value::Dict(items) = sd_value else {
        unreachable!("find_state_dict returns a dict")
    };
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
fn find_state_dict(top: &Value) -> std::result::Result<(Option<i64>, &Value), String> {
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
            if !matches!(sd, Value::Dict(_)) {
                return Err(format!(
                    "the checkpoint's {key:?} entry is a {}{}, not a state dict (a pickled nn.Module cannot \
                     be read: save model.state_dict() instead)",
                    sd.kind(),
                    describe_global(sd)
                ));
            }
            let epoch = top.get("epoch").and_then(|e| match e {
                Value::Int(i) => Some(*i),
                _ => None,
            });
            return Ok((epoch, sd));
        }
    }
    if items.iter().all(|(_, v)| matches!(v, Value::Object(_))) {
        return Ok((None, top));
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

// ---------------------------------------------------------------------------------------------------------------
// The two serialisations

fn zip_format(bytes: &[u8]) -> std::result::Result<(Value, Storages<'_>), String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive, or truncated: {e}"))?;
    let pkls: Vec<String> = archive
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .collect();
    let pkl = match pkls.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(
                "the zip archive has no <prefix>/data.pkl record: not a torch.save checkpoint"
                    .into(),
            )
        }
        many => {
            return Err(format!(
                "the zip archive has several data.pkl records: {many:?}"
            ))
        }
    };
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    let read = |archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
                name: &str|
     -> std::result::Result<Vec<u8>, String> {
        let mut f = archive
            .by_name(name)
            .map_err(|e| format!("record {name}: {e}"))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b)
            .map_err(|e| format!("record {name}: cannot read it: {e}"))?;
        Ok(b)
    };
    let data = read(&mut archive, &pkl)?;
    let (top, _) = pickle::load(&data).map_err(|e| format!("{pkl}: {e}"))?;
    let byteorder = format!("{prefix}byteorder");
    let big_endian = if archive.file_names().any(|n| n == byteorder) {
        let b = read(&mut archive, &byteorder)?;
        match b.as_slice() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(format!(
                    "{byteorder}: unknown byte order {:?}",
                    String::from_utf8_lossy(other)
                ))
            }
        }
    } else {
        false
    };
    let storages = Storages {
        source: Source::Zip { archive, prefix },
        big_endian,
        decoded: HashMap::new(),
    };
    Ok((top, storages))
}

fn legacy_format(bytes: &[u8]) -> std::result::Result<(Value, Storages<'_>), String> {
    let mut pos = 0;
    let mut next = |what: &str| -> std::result::Result<Value, String> {
        let (v, n) = pickle::load(&bytes[pos..]).map_err(|e| {
            format!(
                "legacy format, {what} (at byte {pos}): {e}{}",
                if e.message.starts_with("truncated") {
                    " (the file is truncated)"
                } else {
                    ""
                }
            )
        })?;
        pos += n;
        Ok(v)
    };
    match next("magic number")? {
        Value::BigInt(b) if b == MAGIC_NUMBER => {}
        _ => return Err("not a PyTorch checkpoint: the legacy magic number is missing".into()),
    }
    match next("protocol version")? {
        Value::Int(LEGACY_PROTOCOL_VERSION) => {}
        v => {
            return Err(format!(
                "unsupported legacy protocol version {v:?} (expected 1001)"
            ))
        }
    }
    let sys_info = next("sys_info")?;
    if sys_info.get("little_endian") == Some(&Value::Bool(false)) {
        return Err("written on a big-endian machine: not supported".into());
    }
    let top = next("object")?;
    let keys = match next("storage key list")? {
        Value::List(k) => k,
        v => {
            return Err(format!(
                "the storage key list is a {}, not a list",
                v.kind()
            ))
        }
    };
    // Element size and count of every storage, from the persistent ids of the object.
    let mut pids = Vec::new();
    collect_pids(&top, &mut pids);
    let mut info: HashMap<String, std::result::Result<(usize, usize), String>> = HashMap::new();
    for pid in pids {
        match parse_pid(pid) {
            Ok(s) => {
                info.insert(s.key, Ok((s.elem_size, s.numel)));
            }
            Err(m) => {
                if let Value::Tuple(t) = pid {
                    if let Some(k) = t.get(2).and_then(Value::as_str) {
                        info.insert(k.to_string(), Err(m));
                    }
                }
            }
        }
    }
    let mut map = HashMap::new();
    for key in &keys {
        let key = key
            .as_str()
            .ok_or_else(|| format!("storage key {key:?} is not a string"))?;
        let (elem_size, numel) = info
            .get(key)
            .ok_or_else(|| {
                format!("storage key {key:?} of the key list is used by no tensor: cannot size it")
            })?
            .clone()
            .map_err(|m| format!("storage {key:?}: {m}"))?;
        let count_bytes = bytes.get(pos..pos + 8).ok_or_else(|| {
            format!("truncated: the file ends before storage {key:?} (at byte {pos})")
        })?;
        let count = u64::from_le_bytes(count_bytes.try_into().unwrap());
        if count != numel as u64 {
            return Err(format!(
                "storage {key:?} has {count} elements in the file but {numel} in its persistent id"
            ));
        }
        pos += 8;
        let n = numel
            .checked_mul(elem_size)
            .ok_or("storage size overflows")?;
        let data = bytes.get(pos..pos + n).ok_or_else(|| {
            format!(
                "truncated: storage {key:?} needs {n} bytes at byte {pos}, the file has {} left",
                bytes.len() - pos
            )
        })?;
        map.insert(key.to_string(), data);
        pos += n;
    }
    let storages = Storages {
        source: Source::Legacy(map),
        big_endian: false,
        decoded: HashMap::new(),
    };
    Ok((top, storages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sitsgpu_ckpt_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The state dict `tests/data/make_torch_checkpoints.py` writes into the `ckpt_*` files.
    fn expected_full() -> StateDict {
        let mut sd = StateDict::new();
        sd.insert(
            "conv.weight",
            Entry::f32(vec![2, 3], vec![0.5, -1.0, 2.25, 3.0, -4.5, 5.75]),
        );
        // The transpose: a (3, 2) view with stride (1, 3) of the same storage.
        sd.insert(
            "conv.weight_t",
            Entry::f32(vec![3, 2], vec![0.5, 3.0, -1.0, -4.5, 2.25, 5.75]),
        );
        // One storage [10, 11, 12, 13, 14] at offsets 1 and 3.
        sd.insert("lin.bias", Entry::f32(vec![2], vec![11.0, 12.0]));
        sd.insert("lin.weight", Entry::f32(vec![1, 2], vec![13.0, 14.0]));
        sd.insert("bn.num_batches_tracked", Entry::i64(vec![], vec![7]));
        // DoubleStorage [0.25, 1.5, -3.0, 1e-3] with stride 2.
        sd.insert("bn.running_var", Entry::f32(vec![2], vec![0.25, -3.0]));
        sd.insert("empty", Entry::f32(vec![0, 3], vec![]));
        sd
    }

    fn expected_misc() -> StateDict {
        let mut sd = StateDict::new();
        sd.insert("weight", Entry::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        sd.insert(
            "half",
            Entry::f32(vec![4], vec![1.5, -2.0, 65504.0, 2f32.powi(-24)]),
        );
        // _rebuild_tensor_v3 with torch.int32 on an UntypedStorage of [9, -5, 100000], offset 1.
        sd.insert("ints", Entry::i64(vec![2], vec![-5, 100000]));
        sd
    }

    #[test]
    fn zip_and_legacy_checkpoints_read_the_same() {
        let z = read_torch_checkpoint(data("ckpt_zip.pth.tar")).unwrap();
        let l = read_torch_checkpoint(data("ckpt_legacy.pth.tar")).unwrap();
        assert_eq!(z.epoch, Some(12));
        assert_eq!(z.state_dict, expected_full());
        assert_eq!(l, z);
    }

    #[test]
    fn bare_and_model_key_state_dicts() {
        let b = read_torch_checkpoint(data("bare_zip.pth")).unwrap();
        assert_eq!(b.epoch, None);
        assert_eq!(b.state_dict, expected_misc());
        let m = read_torch_checkpoint(data("model_legacy.pth")).unwrap();
        assert_eq!(m, b);
    }

    #[test]
    fn the_optimizer_part_parses_into_opaque_values() {
        let bytes = std::fs::read(data("ckpt_legacy.pth.tar")).unwrap();
        let (top, _) = legacy_format(&bytes).unwrap();
        let opt = top.get("optimizer").unwrap();
        let group = &opt.get("param_groups").unwrap().as_seq().unwrap()[0];
        assert_eq!(
            group.get("betas"),
            Some(&Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)]))
        );
        assert_eq!(group.get("foreach"), Some(&Value::None));
        let sched = opt.get("scheduler").unwrap();
        assert_eq!(
            sched.global_name(),
            Some(("sitsgpu_test.sched", "WarmupScheduler"))
        );
        let Value::Object(o) = sched else { panic!() };
        assert_eq!(
            o.state.as_ref().unwrap().get("last_epoch"),
            Some(&Value::Int(11))
        );
        assert!(matches!(opt.get("big"), Some(Value::BigInt(_))));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tmp_dir("err");
        let err = |p: &Path| read_torch_checkpoint(p).unwrap_err().to_string();

        let e = err(&dir.join("missing.pth.tar"));
        assert!(e.contains("missing.pth.tar"), "{e}");

        for (src, cut, want) in [
            ("ckpt_zip.pth.tar", 2000, "truncated"),
            ("ckpt_legacy.pth.tar", 600, "truncated"),
            ("ckpt_legacy.pth.tar", 1744, "truncated: storage"),
        ] {
            let bytes = std::fs::read(data(src)).unwrap();
            let p = dir.join(format!("cut_{cut}_{src}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = err(&p);
            assert!(
                e.contains(&format!("cut_{cut}_{src}")) && e.contains(want),
                "{e}"
            );
        }

        let p = dir.join("opcode.pth");
        std::fs::write(&p, b"\x80\x02\xfe.").unwrap();
        let e = err(&p);
        assert!(
            e.contains("opcode.pth") && e.contains("unknown or unsupported pickle opcode 0xfe"),
            "{e}"
        );

        let p = dir.join("text.pth");
        std::fs::write(&p, b"hello").unwrap();
        assert!(err(&p).contains("not a PyTorch checkpoint"));

        let e = err(&data("bad_view.pth"));
        assert!(
            e.contains("bad_view.pth")
                && e.contains("entry \"bad\"")
                && e.contains(
                    "reaches element 5, but storage \"77\" (torch.FloatStorage) holds 5 elements"
                ),
            "{e}"
        );

        let e = err(&data("bad_global.pth"));
        assert!(
            e.contains("bad_global.pth")
                && e.contains("entry \"w\"")
                && e.contains("torch._utils._rebuild_sparse_tensor"),
            "{e}"
        );

        // The zip checkpoint without its storage record data/2.
        let src = std::fs::read(data("ckpt_zip.pth.tar")).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(&src[..])).unwrap();
        let p = dir.join("nostorage.pth");
        {
            let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
            for i in 0..archive.len() {
                let f = archive.by_index_raw(i).unwrap();
                if f.name() != "archive/data/2" {
                    w.raw_copy_file(f).unwrap();
                }
            }
            w.finish().unwrap();
        }
        let e = err(&p);
        assert!(
            e.contains("nostorage.pth")
                && e.contains("storage key \"2\" not found")
                && e.contains("archive/data/2"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
