//! State dicts: named tensors in PyTorch's order, and their `.npz` files.
//!
//! A [`StateDict`] maps exact PyTorch `state_dict` keys (`in_conv.conv.conv.0.weight`, …) to an [`Entry`]: a
//! row-major shape and the values, float ([`Values::F32`]) or integer ([`Values::I64`], e.g. the
//! `num_batches_tracked` counters of BatchNorm). Insertion order is kept (PyTorch's order).
//!
//! `.npz` files are zip archives of `.npy` members, stored or deflate-compressed (`np.savez` /
//! `np.savez_compressed`); the key of a member is its name without `.npy`. [`read_npz`] converts dtypes as:
//! * `f2`, `f4`, `f8` → [`Values::F32`] (f8 rounded to the nearest f32);
//! * `i1`, `i2`, `i4`, `i8`, `u1`, `u2`, `u4`, `u8`, `b1` (bool → 0/1) → [`Values::I64`] (a `u8` value above
//!   `i64::MAX` is an error);
//!
//! little- or big-endian, C or Fortran order (Fortran arrays are reordered to row-major). Other dtypes (complex,
//! strings, structured, object) are errors naming the file and the member. [`write_npz`] writes f32 as `<f4` and
//! i64 as `<i8` (.npy format 1.0, deflate-compressed like `np.savez_compressed`), atomically.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::engine::error::{Error, Result};

/// The values of one tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floating-point tensors (f16/bf16/f32/f64 in the file) as f32.
    F32(Vec<f32>),
    /// Integer and bool tensors as i64.
    I64(Vec<i64>),
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One named tensor of a state dict: shape (row-major, PyTorch order; `[]` for a scalar) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Shape; the product of its dimensions is the number of values (1 for `[]`).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Values,
}

impl Entry {
    /// An entry from a shape and values. Panics when the shape does not match the number of values.
    pub fn new(shape: Vec<usize>, values: Values) -> Self {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            values.len(),
            "Entry::new: expected {n} values for shape {shape:?}, got {}",
            values.len()
        );
        Entry { shape, values }
    }

    /// A float entry (panics when the shape does not match).
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        Entry::new(shape, Values::F32(values))
    }

    /// An integer entry (panics when the shape does not match).
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        Entry::new(shape, Values::I64(values))
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.values.len()
    }

    /// The values if this is a float entry.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }

    /// The values if this is an integer entry.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.values {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }
}

/// Named tensors in insertion order, with lookup by name. Equality compares names, order and entries.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    entries: Vec<(String, Entry)>,
    index: HashMap<String, usize>,
}

impl PartialEq for StateDict {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts `entry` under `name`. A new name goes last; an existing name keeps its place, and the old entry
    /// is returned.
    pub fn insert(&mut self, name: impl Into<String>, entry: Entry) -> Option<Entry> {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => Some(std::mem::replace(&mut self.entries[i].1, entry)),
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, entry));
                None
            }
        }
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    /// The entry named `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.index.get(name).map(|&i| &mut self.entries[i].1)
    }

    /// Whether an entry is named `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Removes and returns the entry named `name` (the others keep their order).
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        let i = self.index.remove(name)?;
        let (_, e) = self.entries.remove(i);
        for (_, j) in self.index.iter_mut() {
            if *j > i {
                *j -= 1;
            }
        }
        Some(e)
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// `(name, entry)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }
}

impl FromIterator<(String, Entry)> for StateDict {
    fn from_iter<I: IntoIterator<Item = (String, Entry)>>(iter: I) -> Self {
        let mut sd = StateDict::new();
        for (k, e) in iter {
            sd.insert(k, e);
        }
        sd
    }
}

impl IntoIterator for StateDict {
    type Item = (String, Entry);
    type IntoIter = std::vec::IntoIter<(String, Entry)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Element types and raw-byte decoding (shared with the torch checkpoint reader).

/// An element type of raw tensor bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DType {
    F16,
    BF16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl DType {
    pub(crate) fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }
}

/// Decodes `bytes` (a whole number of elements) of `dtype` into f32 or i64 values.
pub(crate) fn decode(
    bytes: &[u8],
    dtype: DType,
    big_endian: bool,
) -> std::result::Result<Values, String> {
    let size = dtype.size();
    if !bytes.len().is_multiple_of(size) {
        return Err(format!(
            "{} bytes is not a whole number of {size}-byte elements",
            bytes.len()
        ));
    }
    // Each chunk in little-endian order.
    let chunks = bytes.chunks_exact(size).map(|c| {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(c);
        if big_endian {
            b[..size].reverse();
        }
        b
    });
    fn le<const N: usize>(b: [u8; 8]) -> [u8; N] {
        b[..N].try_into().unwrap()
    }
    Ok(match dtype {
        DType::F16 => Values::F32(
            chunks
                .map(|b| f16_to_f32(u16::from_le_bytes(le(b))))
                .collect(),
        ),
        DType::BF16 => Values::F32(
            chunks
                .map(|b| f32::from_bits((u16::from_le_bytes(le(b)) as u32) << 16))
                .collect(),
        ),
        DType::F32 => Values::F32(chunks.map(|b| f32::from_le_bytes(le(b))).collect()),
        DType::F64 => Values::F32(chunks.map(|b| f64::from_le_bytes(b) as f32).collect()),
        DType::I8 => Values::I64(chunks.map(|b| b[0] as i8 as i64).collect()),
        DType::I16 => Values::I64(chunks.map(|b| i16::from_le_bytes(le(b)) as i64).collect()),
        DType::I32 => Values::I64(chunks.map(|b| i32::from_le_bytes(le(b)) as i64).collect()),
        DType::I64 => Values::I64(chunks.map(i64::from_le_bytes).collect()),
        DType::U8 => Values::I64(chunks.map(|b| b[0] as i64).collect()),
        DType::Bool => Values::I64(chunks.map(|b| (b[0] != 0) as i64).collect()),
        DType::U16 => Values::I64(chunks.map(|b| u16::from_le_bytes(le(b)) as i64).collect()),
        DType::U32 => Values::I64(chunks.map(|b| u32::from_le_bytes(le(b)) as i64).collect()),
        DType::U64 => Values::I64(
            chunks
                .map(|b| {
                    let v = u64::from_le_bytes(b);
                    i64::try_from(v).map_err(|_| format!("uint64 value {v} does not fit in an i64"))
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
    })
}

/// IEEE half → f32 (exact: every half is an f32), subnormals and infinities/NaN included.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24, normalised.
            let shift = m.leading_zeros() - 21; // puts the leading 1 at bit 10
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Copies the strided view (`offset`, `shape`, `strides`, in elements) of `src` out contiguously (row-major).
/// The caller has checked that every index is inside `src`.
pub(crate) fn gather<T: Copy>(
    src: &[T],
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Vec<T> {
    let n: usize = shape.iter().product();
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (&d, &s) in shape.iter().zip(strides).rev() {
            if d > 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        return src[offset..offset + n].to_vec();
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    let mut pos = offset;
    for _ in 0..n {
        out.push(src[pos]);
        // Increment the multi-index, last dimension fastest.
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            pos += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            pos -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

/// `gather` for either kind of values.
pub(crate) fn gather_values(
    src: &Values,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Values {
    match src {
        Values::F32(v) => Values::F32(gather(v, offset, shape, strides)),
        Values::I64(v) => Values::I64(gather(v, offset, shape, strides)),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// .npy members

/// Parses one `.npy` image into an entry.
fn parse_npy(b: &[u8]) -> std::result::Result<Entry, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic)".into());
    }
    let (header_len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            if b.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = b
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let (descr, fortran, shape) = parse_header(header)?;
    let (big_endian, dtype) = parse_descr(&descr)?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let data = &b[start + header_len..];
    let need = n.checked_mul(dtype.size()).ok_or("shape too large")?;
    if data.len() < need {
        return Err(format!(
            "truncated data: shape {shape:?} of {descr} needs {need} bytes, found {}",
            data.len()
        ));
    }
    let values = decode(&data[..need], dtype, big_endian)?;
    let values = if fortran && shape.len() > 1 {
        // Column-major strides, then copy out row-major.
        let mut strides = vec![1usize; shape.len()];
        for d in 1..shape.len() {
            strides[d] = strides[d - 1] * shape[d - 1];
        }
        gather_values(&values, 0, &shape, &strides)
    } else {
        values
    };
    Ok(Entry { shape, values })
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (numpy's header, a Python dict literal).
fn parse_header(h: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let bad = || format!("unreadable .npy header {:?}", h.trim_end());
    let field = |key: &str| -> std::result::Result<&str, String> {
        let k1 = format!("'{key}'");
        let k2 = format!("\"{key}\"");
        let at = h.find(&k1).or_else(|| h.find(&k2)).ok_or_else(bad)?;
        let rest = h[at + k1.len()..].trim_start();
        rest.strip_prefix(':').map(str::trim_start).ok_or_else(bad)
    };
    let d = field("descr")?;
    let quote = d.chars().next().ok_or_else(bad)?;
    if quote != '\'' && quote != '"' {
        return Err(format!(
            "unsupported dtype (structured or not a plain type): {}",
            h.trim_end()
        ));
    }
    let descr = d[1..].split(quote).next().ok_or_else(bad)?.to_string();
    let f = field("fortran_order")?;
    let fortran = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return Err(bad());
    };
    let s = field("shape")?;
    let s = s.strip_prefix('(').ok_or_else(bad)?;
    let s = &s[..s.find(')').ok_or_else(bad)?];
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse::<usize>().map_err(|_| bad()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((descr, fortran, shape))
}

/// `'<f4'` → (big endian?, dtype).
fn parse_descr(descr: &str) -> std::result::Result<(bool, DType), String> {
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let dtype = match code {
        "f2" | "e" => DType::F16,
        "f4" | "f" => DType::F32,
        "f8" | "d" => DType::F64,
        "i1" | "b" => DType::I8,
        "i2" | "h" => DType::I16,
        "i4" | "i" => DType::I32,
        "i8" | "q" => DType::I64,
        "u1" | "B" => DType::U8,
        "u2" | "H" => DType::U16,
        "u4" | "I" => DType::U32,
        "u8" | "Q" => DType::U64,
        "b1" | "?" => DType::Bool,
        _ => {
            return Err(format!(
            "unsupported dtype {descr:?} (supported: float f2/f4/f8, int i1-i8, uint u1-u8, bool)"
        ))
        }
    };
    Ok((order == '>', dtype))
}

/// The `.npy` image of an entry (format 1.0, `<f4` or `<i8`, C order, header padded to 64 bytes).
fn npy_bytes(e: &Entry) -> Vec<u8> {
    let descr = match e.values {
        Values::F32(_) => "<f4",
        Values::I64(_) => "<i8",
    };
    let shape = match e.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", e.shape[0]),
        _ => format!(
            "({})",
            e.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + e.numel() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &e.values {
        Values::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Values::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// .npz archives

/// Reads every array of an `.npz` file (see the module doc for the dtype conversions). Keys are member names
/// without `.npy`, in archive order. Errors name the file and, for a bad member, the member.
pub fn read_npz(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_npz_from(path, std::io::BufReader::new(file))
}

fn read_npz_from<R: Read + Seek>(path: &Path, reader: R) -> Result<StateDict> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| {
        Error::format(
            path,
            format!("not a readable .npz (zip) archive, or truncated: {e}"),
        )
    })?;
    let mut sd = StateDict::new();
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::format(path, format!("member #{i}: {e}")))?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().to_string();
        let mut bytes = Vec::with_capacity(member.size().min(1 << 30) as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| Error::format(path, format!("member {name}: cannot read it: {e}")))?;
        let entry =
            parse_npy(&bytes).map_err(|m| Error::format(path, format!("member {name}: {m}")))?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        if sd.insert(key.clone(), entry).is_some() {
            return Err(Error::format(path, format!("duplicate array name {key:?}")));
        }
    }
    Ok(sd)
}

/// Writes `sd` as an `.npz` that `np.load` reads (member `<name>.npy`; f32 as `<f4`, i64 as `<i8`;
/// deflate-compressed), atomically: into `<path>.tmp`, then renamed into place.
pub fn write_npz(path: impl AsRef<Path>, sd: &StateDict) -> Result<()> {
    let path = path.as_ref();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::result::Result<(), String> {
        let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        for (name, entry) in sd.iter() {
            let bytes = npy_bytes(entry);
            let options = zip::write::FileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(bytes.len() as u64 >= u32::MAX as u64 / 2);
            zip.start_file(format!("{name}.npy"), options)
                .map_err(|e| e.to_string())?;
            zip.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        let mut w = zip.finish().map_err(|e| e.to_string())?;
        w.flush().map_err(|e| e.to_string())?;
        w.get_ref().sync_all().map_err(|e| e.to_string())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        std::env::var("SITSGPU_FIXTURES")
            .map(Into::into)
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures").into())
    }

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sitsgpu_sd_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_the_utae_small_fixture() {
        let p = fixtures().join("utae_small/weights.npz");
        if !p.exists() {
            println!(
                "SKIPPED reads_the_utae_small_fixture: {} not found",
                p.display()
            );
            return;
        }
        let sd = read_npz(&p).unwrap();
        // spec §9.3: a semantic U-TAE has 158 state-dict entries, num_batches_tracked included.
        assert_eq!(sd.len(), 158);
        assert_eq!(sd.keys().next(), Some("in_conv.conv.conv.0.weight"));
        // --encoder_widths [8, ...], 10 input bands, 3x3 kernels.
        let w = sd.get("in_conv.conv.conv.0.weight").unwrap();
        assert_eq!(w.shape, vec![8, 10, 3, 3]);
        assert!(w.as_f32().unwrap().iter().any(|&x| x != 0.0));
        let nbt = sd
            .get("up_blocks.0.skip_conv.1.num_batches_tracked")
            .unwrap();
        assert_eq!(nbt.shape, Vec::<usize>::new());
        assert_eq!(nbt.as_i64().map(|v| v.len()), Some(1));
        let n_i64 = sd.iter().filter(|(_, e)| e.as_i64().is_some()).count();
        let n_nbt = sd
            .keys()
            .filter(|k| k.ends_with("num_batches_tracked"))
            .count();
        assert_eq!(n_i64, n_nbt);
        // Parameters + buffers (running stats) add up to more than the 38,776 trainable parameters.
        let floats: usize = sd
            .iter()
            .filter_map(|(_, e)| e.as_f32())
            .map(|v| v.len())
            .sum();
        assert!(floats > 38_776, "{floats}");
    }

    #[test]
    fn npz_round_trip_f32_and_i64() {
        let dir = tmp_dir("rt");
        let p = dir.join("sd.npz");
        let mut sd = StateDict::new();
        sd.insert(
            "b.weight",
            Entry::f32(
                vec![2, 3],
                vec![1.0, -2.5, 3.25, f32::MIN_POSITIVE, 1e30, -0.0],
            ),
        );
        sd.insert("a.num_batches_tracked", Entry::i64(vec![], vec![i64::MAX]));
        sd.insert("c", Entry::i64(vec![3], vec![-1, 0, 1 << 40]));
        sd.insert("d.empty", Entry::f32(vec![0, 4], vec![]));
        sd.insert("e.vec", Entry::f32(vec![1], vec![7.0]));
        write_npz(&p, &sd).unwrap();
        assert!(!dir.join("sd.npz.tmp").exists());
        let back = read_npz(&p).unwrap();
        assert_eq!(back, sd);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["b.weight", "a.num_batches_tracked", "c", "d.empty", "e.vec"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn npy_headers_dtypes_and_fortran_order() {
        let e = parse_npy(
            b"\x93NUMPY\x01\x00\x45\x00{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }          \n\
              \x00\x01\x00\x04\x00\x02\x00\x05\x00\x03\x00\x06",
        )
        .unwrap();
        // Column-major [[1, 2, 3], [4, 5, 6]] big-endian int16.
        assert_eq!(e, Entry::i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        let e = parse_npy(b"\x93NUMPY\x01\x00\x38\x00{'descr': '<f2', 'fortran_order': False, 'shape': (2,)}\n\x00\x3c\x01\x00").unwrap();
        assert_eq!(e, Entry::f32(vec![2], vec![1.0, 2f32.powi(-24)]));
        let err = parse_npy(
            b"\x93NUMPY\x01\x00\x38\x00{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}\n",
        )
        .unwrap_err();
        assert!(err.contains("unsupported dtype \"<c8\""), "{err}");
        let err = parse_npy(b"\x93NUMPY\x01\x00\x38\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n\0\0").unwrap_err();
        assert!(err.contains("truncated data"), "{err}");
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn npz_errors_name_file_and_member() {
        let dir = tmp_dir("err");
        let e = read_npz(dir.join("missing.npz")).unwrap_err().to_string();
        assert!(e.contains("missing.npz"), "{e}");
        // A truncated archive (the central directory is at the end).
        let p = dir.join("t.npz");
        let mut sd = StateDict::new();
        sd.insert("w", Entry::f32(vec![64], vec![0.5; 64]));
        write_npz(&p, &sd).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let cut = dir.join("cut.npz");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_npz(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.npz") && e.contains("truncated"), "{e}");
        // A member that is not an array.
        let bad = dir.join("bad.npz");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&bad).unwrap());
            z.start_file("x.npy", zip::write::FileOptions::default())
                .unwrap();
            z.write_all(b"hello").unwrap();
            z.finish().unwrap();
        }
        let e = read_npz(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.npz") && e.contains("member x.npy") && e.contains("bad magic"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
