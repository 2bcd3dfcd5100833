//! The two serialisations of `torch.save` (see the parent module doc). `zip_format` reads `<prefix>/data.pkl`
//! and the byte order, and leaves the `<prefix>/data/<key>` records in the archive, read when a tensor needs
//! them; `legacy_format` reads the consecutive pickles (magic number, protocol version, sys_info, object,
//! storage keys) and slices each storage's raw bytes out of the stream, sized by the persistent ids. Both
//! return the top-level object and its `Storages`.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::{collect_pids, parse_pid, Source, Storages};
use crate::data::pickle::{self, Value};

/// The legacy format's first pickle.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

pub(super) fn zip_format(bytes: &[u8]) -> std::result::Result<(Value, Storages<'_>), String> {
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

pub(super) fn legacy_format(bytes: &[u8]) -> std::result::Result<(Value, Storages<'_>), String> {
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
