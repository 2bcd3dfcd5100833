//! `.npy` arrays through the npyz crate: read any numeric dtype as f32 (or i64), write f32, with errors that
//! name the file and what is wrong (truncated data, unsupported dtype, Fortran order).

use std::io::{BufReader, BufWriter};

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
    let ts = match npy.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => {
            return Err(Error::format(
                path,
                format!("unsupported dtype {}", other.descr()),
            ))
        }
    };
    let code = ts.to_string();
    let kind_size = code.trim_start_matches(['<', '>', '|', '=']).to_string();
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
        _ => return Err(Error::format(path, format!("unsupported dtype {code}"))),
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
}
