//! `.npy` arrays through the npyz crate: read any numeric dtype as f32 (or i64), write f32, with errors that
//! name the file and what is wrong (truncated data, unsupported dtype, Fortran order). [`read_header`] checks a
//! file's header (magic, dtype, order, shape, length) without reading its data, so that the workflows can check
//! every input before they start.

use std::io::{BufReader, BufWriter, Read};

use npyz::WriterBuilder;
use std::path::Path;

use crate::engine::error::{Error, Result};

/// An array read from disk: shape (C order) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<T>,
}

fn open(path: &Path) -> Result<npyz::NpyFile<BufReader<std::fs::File>>> {
    check_header(path)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(BufReader::new(f))
        .map_err(|e| Error::format(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(Error::format(
            path,
            "Fortran-ordered arrays are not supported (save with C order)",
        ));
    }
    Ok(npy)
}

/// What the header of a `.npy` says: the shape (C order) and the element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Shape.
    pub shape: Vec<usize>,
    /// numpy's type string without its byte-order mark: `f4`, `i2`, `u1`, `b1`, ...
    pub dtype: String,
}

impl Header {
    /// Whether the values are floating point (and so may hold NaN or infinities).
    pub fn is_float(&self) -> bool {
        self.dtype.starts_with('f')
    }
}

/// The numeric types [`read_f32`] reads.
const NUMERIC: [&str; 11] = [
    "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1",
];

/// Reads and checks the header of the `.npy` at `path` (see [`check_header`]; also: a numeric dtype that
/// [`read_f32`] reads, C order), without reading the data.
pub fn read_header(path: impl AsRef<Path>) -> Result<Header> {
    let path = path.as_ref();
    let npy = open(path)?;
    let dtype = numeric_dtype(path, &npy)?;
    Ok(Header {
        shape: npy.shape().iter().map(|&d| d as usize).collect(),
        dtype,
    })
}

/// The dtype code (`f4`, `i2`, ...) of a numeric array; an error naming the file otherwise.
fn numeric_dtype(path: &Path, npy: &npyz::NpyFile<BufReader<std::fs::File>>) -> Result<String> {
    let code = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    let kind_size = code.trim_start_matches(['<', '>', '|', '=']).to_string();
    if NUMERIC.contains(&kind_size.as_str()) {
        Ok(kind_size)
    } else {
        Err(Error::format(
            path,
            format!(
                "unsupported dtype {code}: expected numbers (float, integer or bool), e.g. int16 reflectances"
            ),
        ))
    }
}

macro_rules! read_as {
    ($npy:expr, $path:expr, $ty:ty, $conv:expr) => {{
        let v: Vec<$ty> = $npy
            .into_vec()
            .map_err(|e| Error::format($path, format!("truncated or unreadable data: {e}")))?;
        v.into_iter().map($conv).collect()
    }};
}

/// Reads a numeric `.npy` (f4, f8, i1, i2, i4, i8, u1, u2, u4, u8, bool) as f32.
pub fn read_f32(path: impl AsRef<Path>) -> Result<Array<f32>> {
    let path = path.as_ref();
    let npy = open(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let kind_size = numeric_dtype(path, &npy)?;
    let data: Vec<f32> = match kind_size.as_str() {
        "f4" => read_as!(npy, path, f32, |v| v),
        "f8" => read_as!(npy, path, f64, |v| v as f32),
        "i1" => read_as!(npy, path, i8, |v| v as f32),
        "i2" => read_as!(npy, path, i16, |v| v as f32),
        "i4" => read_as!(npy, path, i32, |v| v as f32),
        "i8" => read_as!(npy, path, i64, |v| v as f32),
        "u1" => read_as!(npy, path, u8, |v| v as f32),
        "u2" => read_as!(npy, path, u16, |v| v as f32),
        "u4" => read_as!(npy, path, u32, |v| v as f32),
        "u8" => read_as!(npy, path, u64, |v| v as f32),
        "b1" => read_as!(npy, path, bool, |v| v as u8 as f32),
        other => return Err(Error::format(path, format!("unsupported dtype {other}"))),
    };
    let expected: usize = shape.iter().product();
    if data.len() != expected {
        return Err(Error::format(
            path,
            format!(
                "expected {expected} values for shape {shape:?}, found {}",
                data.len()
            ),
        ));
    }
    Ok(Array { shape, data })
}

/// Checks the header of the `.npy` at `path` before anything reads it: the magic string, the element count fits
/// in memory arithmetic, and the file holds at least as many data bytes as the header announces (so a garbled
/// shape or a truncated file is an error naming the file, not a panic or a huge allocation). Headers it cannot
/// interpret are left to npyz.
pub fn check_header(path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut pre = [0u8; 12];
    let n = read_up_to(&mut f, &mut pre).map_err(|e| Error::io(path, e))?;
    if n < 10 || &pre[..6] != b"\x93NUMPY" {
        return Err(Error::format(
            path,
            "not a valid .npy file: bad magic string or file too short",
        ));
    }
    let (header_len, start) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as u64, 10u64),
        2 | 3 if n == 12 => (
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64,
            12u64,
        ),
        v => {
            return Err(Error::format(
                path,
                format!("not a valid .npy file: unknown format version {v}"),
            ))
        }
    };
    let data_start = start + header_len;
    if header_len > 1 << 20 || data_start > file_len {
        return Err(Error::format(
            path,
            "truncated .npy file: the header runs past the end of the file",
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    let mut f = BufReader::new(f);
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let header = String::from_utf8_lossy(&header);
    let Some(shape) = header_shape(&header) else {
        return Ok(());
    };
    let count = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let Some(count) = count.filter(|&c| c <= 1 << 40) else {
        return Err(Error::format(
            path,
            format!("garbled .npy header: shape {shape:?} is absurdly large"),
        ));
    };
    if let Some(item) = header_item_size(&header) {
        let need = count * item;
        let have = file_len - data_start;
        if have < need {
            return Err(Error::format(
                path,
                format!("truncated .npy file: shape {shape:?} needs {need} bytes of data, the file holds {have}"),
            ));
        }
    }
    Ok(())
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The `'shape': (a, b, ...)` tuple of a header dict, if it can be read.
fn header_shape(header: &str) -> Option<Vec<u64>> {
    let at = header.find("'shape'")?;
    let rest = &header[at..];
    let open = rest.find('(')?;
    let close = rest.find(')')?;
    let inner = rest.get(open + 1..close)?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>().ok())
        .collect()
}

/// The item size of a plain `'descr': '<i2'`-style dtype, if it is one.
fn header_item_size(header: &str) -> Option<u64> {
    let at = header.find("'descr'")?;
    let rest = header[at + 7..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let rest = rest.strip_prefix('\'')?;
    let descr = &rest[..rest.find('\'')?];
    let descr = descr.trim_start_matches(['<', '>', '|', '=']);
    let kind = descr.chars().next()?;
    if !"fiub".contains(kind) {
        return None;
    }
    descr[1..].parse().ok()
}

/// The position (row-major multi-index) of the first non-finite value, if any.
pub fn first_non_finite<T: Copy + Into<f64>>(
    data: &[T],
    shape: &[usize],
) -> Option<(Vec<usize>, f64)> {
    let i = data.iter().position(|v| !(*v).into().is_finite())?;
    let mut idx = vec![0; shape.len()];
    let mut rem = i;
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = rem % d.max(1);
        rem /= d.max(1);
    }
    Some((idx, data[i].into()))
}

/// Writes `data` with `shape` as a little-endian `.npy` of its own dtype (`<f4`, `<i8`, `<i2`, `|u1`, ...),
/// atomically (a temporary file renamed into place, so an interrupted write never leaves a truncated file).
pub fn write<T: npyz::AutoSerialize + Copy>(
    path: impl AsRef<Path>,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    let path = path.as_ref();
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy::write: shape {shape:?} does not match {} values",
        data.len()
    );
    let tmp = path.with_extension("npy.tmp");
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(&shape64)
            .writer(BufWriter::new(f))
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes f32 values (logits, attention masks) as `.npy`; see [`write()`].
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    write(path, shape, data)
}

/// Writes i64 values (class maps, confusion matrices) as `.npy`; see [`write()`].
pub fn write_i64(path: impl AsRef<Path>, shape: &[usize], data: &[i64]) -> Result<()> {
    write(path, shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sitsgpu_npy_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.5);
        // Truncate the file: the error names it.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy"), "{e}");
        let e = read_f32(dir.join("missing.npy")).unwrap_err().to_string();
        assert!(e.contains("missing.npy"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_parsing() {
        let h = "{'descr': '<i2', 'fortran_order': False, 'shape': (6, 10, 32, 32), }";
        assert_eq!(header_shape(h), Some(vec![6, 10, 32, 32]));
        assert_eq!(header_item_size(h), Some(2));
        assert_eq!(
            header_shape("{'descr': '<f8', 'shape': (), }"),
            Some(vec![])
        );
        assert_eq!(
            header_shape("{'descr': '<f8', 'shape': (3,), }"),
            Some(vec![3])
        );
        assert_eq!(
            header_item_size("{'descr': [('a', '<f4')], 'shape': (3,)}"),
            None
        );
    }
}
