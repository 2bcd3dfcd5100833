//! numpy arrays inside pickles, read and written without Python: the original L-TAE code normalises with
//! `pickle.load(open("S2-2017-T31TFM-meanstd.pkl"))`, a pickled `(mean, std)` tuple (spec §2.1), and utae-paps
//! saves its confusion matrices with `pickle.dump(numpy_array)`.
//!
//! # Reading ([`read_arrays`], [`array_from_value`])
//! The pickle is parsed by the safe reader [`crate::data::pickle`] (nothing is executed); what it yields is then
//! decoded as numpy would rebuild it:
//! * an array: `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` (numpy 2 spells the module
//!   `numpy._core.multiarray`), then `BUILD` with the state `(version, shape, dtype, is_fortran, raw)` (or the
//!   version-0 state without `version`), where `dtype` is `numpy.dtype(code, False, True)` with the `BUILD`
//!   state `(3, byteorder, …)`, byteorder `'<'`, `'>'`, `'|'` (not applicable) or `'='` (native);
//! * a numpy scalar: `numpy.core.multiarray.scalar(dtype, raw)` (a 0-d array);
//! * a Python float, int or bool (0-d), or nested lists/tuples of them (a rectangular array).
//!
//! Supported dtypes: f8, f4, i8, i4, i2, i1, u8, u4, u2, u1 and b1, either byte order; Fortran-ordered data is
//! transposed to C order. Values are returned as f64 (exact for all but i8/u8 beyond 2⁵³). Any other dtype
//! (strings, objects, complex, datetimes, records) is an error naming it and the file.
//!
//! # Writing ([`write_array`], [`write_tuple`], [`write_f64_tuple`])
//! float64 and int64 arrays, alone or in a tuple, as `pickle.dump(obj, f, protocol=3)` with numpy 2 writes
//! them, byte for byte (the dtype object and `b'b'` shared through the memo) except the module path
//! `numpy.core.multiarray`: numpy 1's spelling, which numpy 2 still loads, so numpy 1.x reads the files too.

use std::io::Write;
use std::path::Path;

use crate::data::pickle::{self, Value};
use crate::data::pickle_writer::{atomic_write, pickle as dumps, Py};
use crate::engine::error::{Error, Result};

/// A numpy array read from a pickle: shape (empty for a 0-d array or scalar) and the values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f64>,
}

/// Reads a pickle of one array-like value or of a tuple/list of them (the top-level tuple or list is taken as
/// the sequence of arrays: `pickle.dump((mean, std), f)` gives two arrays). Errors name the file.
pub fn read_arrays(path: impl AsRef<Path>) -> Result<Vec<NdArray>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (v, _) = pickle::load(&bytes).map_err(|e| Error::format(path, e.to_string()))?;
    let bad = |i: Option<usize>, m: String| {
        Error::format(
            path,
            match i {
                Some(i) => format!("item {i} of the pickled {}: {m}", v.kind()),
                None => m,
            },
        )
    };
    match &v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| array_from_value(x).map_err(|m| bad(Some(i), m)))
            .collect(),
        _ => Ok(vec![array_from_value(&v).map_err(|m| bad(None, m))?]),
    }
}

/// Decodes one pickled value as an array (see the module doc); the error says what is wrong.
pub fn array_from_value(v: &Value) -> std::result::Result<NdArray, String> {
    match v {
        Value::Float(x) => Ok(scalar(*x)),
        Value::Int(i) => Ok(scalar(*i as f64)),
        Value::Bool(b) => Ok(scalar(*b as u8 as f64)),
        Value::List(_) | Value::Tuple(_) => nested(v),
        Value::Object(o) => match o.callable.global_name() {
            Some((m, "_reconstruct")) if is_multiarray(m) => reconstructed(o.state.as_ref()),
            Some((m, "scalar")) if is_multiarray(m) => {
                let args = o.args.as_seq().unwrap_or(&[]);
                let [dtype, raw] = args else {
                    return Err(format!(
                        "numpy scalar with {} arguments, expected (dtype, bytes)",
                        args.len()
                    ));
                };
                let dt = Dtype::from_value(dtype)?;
                let data = dt.decode(raw_bytes(raw)?, 1)?;
                Ok(NdArray {
                    shape: vec![],
                    data,
                })
            }
            Some((m, n)) => Err(format!(
                "{m}.{n}(…) is not a numpy array, numpy scalar or number"
            )),
            None => Err("an object that is not a numpy array".into()),
        },
        other => Err(format!(
            "a {} is not a numpy array, numpy scalar or number",
            other.kind()
        )),
    }
}

fn scalar(x: f64) -> NdArray {
    NdArray {
        shape: vec![],
        data: vec![x],
    }
}

fn is_multiarray(module: &str) -> bool {
    matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray")
}

/// Nested lists/tuples of numbers: the shape from the nesting, which must be rectangular.
fn nested(v: &Value) -> std::result::Result<NdArray, String> {
    match v {
        Value::List(items) | Value::Tuple(items) => {
            let parts = items
                .iter()
                .map(nested)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let inner = parts.first().map_or(vec![], |p| p.shape.clone());
            if parts.iter().any(|p| p.shape != inner) {
                return Err("nested lists of different lengths (not a rectangular array)".into());
            }
            let mut shape = vec![items.len()];
            shape.extend(inner);
            Ok(NdArray {
                shape,
                data: parts.into_iter().flat_map(|p| p.data).collect(),
            })
        }
        Value::Float(_) | Value::Int(_) | Value::Bool(_) => array_from_value(v),
        other => Err(format!("a {} inside a list of numbers", other.kind())),
    }
}

/// The array of `_reconstruct(…)` from its `BUILD` state.
fn reconstructed(state: Option<&Value>) -> std::result::Result<NdArray, String> {
    let state = state
        .and_then(Value::as_seq)
        .ok_or("numpy array without its (version, shape, dtype, is_fortran, data) state")?;
    let (shape, dtype, fortran, raw) = match state {
        [_, s, d, f, r] | [s, d, f, r] => (s, d, f, r),
        _ => {
            return Err(format!(
            "numpy array state with {} items, expected (version, shape, dtype, is_fortran, data)",
            state.len()
        ))
        }
    };
    let shape: Vec<usize> = shape
        .as_seq()
        .ok_or("array shape is not a tuple")?
        .iter()
        .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or("array shape has a dimension that is not a non-negative integer")?;
    let dt = Dtype::from_value(dtype)?;
    let fortran = fortran.as_int().ok_or("is_fortran is not a bool")? != 0;
    let n: usize = shape.iter().product();
    let data = dt.decode(raw_bytes(raw)?, n)?;
    let data = if fortran && shape.len() > 1 {
        fortran_to_c(&shape, &data)
    } else {
        data
    };
    Ok(NdArray { shape, data })
}

/// The raw data of an array: `bytes` (or a Python 2 `str`, which the reader keeps as text when it is valid UTF-8:
/// its UTF-8 encoding is the original bytes).
fn raw_bytes(v: &Value) -> std::result::Result<&[u8], String> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Str(s) => Ok(s.as_bytes()),
        Value::List(_) => Err("array data is a list (an object-dtype array)".into()),
        other => Err(format!("array data is a {}, not bytes", other.kind())),
    }
}

/// Reorders column-major data of `shape` into row-major order.
fn fortran_to_c(shape: &[usize], data: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..data.len() {
        // Column-major offset of the current C-order index.
        let (mut off, mut stride) = (0, 1);
        for (i, &d) in idx.iter().zip(shape) {
            off += i * stride;
            stride *= d;
        }
        out.push(data[off]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// A numeric dtype: kind (`f`, `i`, `u`, `b`), item size, byte order.
struct Dtype {
    code: String,
    big_endian: bool,
}

impl Dtype {
    /// `numpy.dtype(code, False, True)` with its `BUILD` state `(version, byteorder, …)`.
    fn from_value(v: &Value) -> std::result::Result<Dtype, String> {
        let Value::Object(o) = v else {
            return Err(format!("dtype is a {}, not a numpy.dtype", v.kind()));
        };
        if o.callable.global_name() != Some(("numpy", "dtype")) {
            return Err("dtype is not a numpy.dtype".into());
        }
        let code = match o.args.as_seq().and_then(|a| a.first()) {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err("numpy.dtype without its type code".into()),
        };
        let order = o
            .state
            .as_ref()
            .and_then(Value::as_seq)
            .and_then(|s| s.get(1))
            .and_then(Value::as_str)
            .unwrap_or("|");
        let big_endian = match order {
            ">" => true,
            "<" | "|" => false,
            "=" => cfg!(target_endian = "big"),
            other => return Err(format!("dtype {code}: unknown byte order {other:?}")),
        };
        Ok(Dtype { code, big_endian })
    }

    /// Decodes `n` values of this dtype from `raw`.
    fn decode(&self, raw: &[u8], n: usize) -> std::result::Result<Vec<f64>, String> {
        let size = match self.code.as_str() {
            "f8" | "i8" | "u8" => 8,
            "f4" | "i4" | "u4" => 4,
            "i2" | "u2" => 2,
            "i1" | "u1" | "b1" => 1,
            other => {
                return Err(format!(
                    "unsupported dtype {other:?} (supported: f8, f4, i8, i4, i2, i1, u8, u4, u2, u1, b1)"
                ))
            }
        };
        if raw.len() != n * size {
            return Err(format!(
                "dtype {}: {} data bytes for {n} values of {size} bytes (expected {})",
                self.code,
                raw.len(),
                n * size
            ));
        }
        let code = self.code.as_str();
        Ok(raw
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                if self.big_endian {
                    b[..size].reverse();
                }
                let u = u64::from_le_bytes(b);
                // Sign extension of a `size`-byte two's-complement integer.
                let shift = 64 - 8 * size as u32;
                match code {
                    "f8" => f64::from_bits(u),
                    "f4" => f32::from_bits(u as u32) as f64,
                    "i8" | "i4" | "i2" | "i1" => (((u << shift) as i64) >> shift) as f64,
                    "b1" => (u != 0) as u8 as f64,
                    _ => u as f64,
                }
            })
            .collect())
    }
}

// ---- Writing ----

/// The values of an array to write.
#[derive(Debug, Clone, Copy)]
pub enum NumpyData<'a> {
    /// float64 (`<f8`).
    F64(&'a [f64]),
    /// int64 (`<i8`).
    I64(&'a [i64]),
}

/// An array to write: shape (C order) and values.
#[derive(Debug, Clone, Copy)]
pub struct NumpyArray<'a> {
    /// Shape, outermost first (empty: a 0-d array).
    pub shape: &'a [usize],
    /// The values, row-major.
    pub data: NumpyData<'a>,
}

impl<'a> NumpyArray<'a> {
    /// A float64 array; panics when `shape` does not hold `data.len()` values.
    pub fn f64(shape: &'a [usize], data: &'a [f64]) -> Self {
        Self::checked(shape, NumpyData::F64(data), data.len())
    }

    /// An int64 array; panics when `shape` does not hold `data.len()` values.
    pub fn i64(shape: &'a [usize], data: &'a [i64]) -> Self {
        Self::checked(shape, NumpyData::I64(data), data.len())
    }

    fn checked(shape: &'a [usize], data: NumpyData<'a>, n: usize) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            n,
            "NumpyArray: shape {shape:?} does not hold {n} values"
        );
        NumpyArray { shape, data }
    }

    /// `ndarray.__reduce__` of this array (see the module doc).
    fn to_py(self) -> Py {
        let (code, raw): (&str, Vec<u8>) = match self.data {
            NumpyData::F64(v) => ("f8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            NumpyData::I64(v) => ("i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        let dtype = Py::Build(
            Box::new(Py::Reduce(
                "numpy",
                "dtype",
                vec![Py::str(code), Py::Bool(false), Py::Bool(true)],
            )),
            Box::new(Py::Tuple(vec![
                Py::Int(3),
                // The same (interned) str in every dtype: a memo hit after the first.
                Py::Const("<"),
                Py::None,
                Py::None,
                Py::None,
                Py::Int(-1),
                Py::Int(-1),
                Py::Int(0),
            ])),
        );
        Py::Build(
            Box::new(Py::Reduce(
                "numpy.core.multiarray",
                "_reconstruct",
                vec![
                    Py::Global("numpy", "ndarray"),
                    Py::Tuple(vec![Py::Int(0)]),
                    Py::Shared("b'b'".into(), Box::new(Py::Bytes(b"b".to_vec()))),
                ],
            )),
            Box::new(Py::Tuple(vec![
                Py::Int(1),
                Py::Tuple(self.shape.iter().map(|&d| Py::Int(d as i64)).collect()),
                Py::Shared(format!("dtype {code}"), Box::new(dtype)),
                Py::Bool(false),
                Py::Bytes(raw),
            ])),
        )
    }
}

/// The bytes of `pickle.dumps(array, protocol=3)`.
pub(crate) fn array_bytes(a: &NumpyArray) -> Vec<u8> {
    dumps(&a.to_py(), 3)
}

/// The bytes of `pickle.dumps(tuple(arrays), protocol=3)`.
pub(crate) fn tuple_bytes(arrays: &[NumpyArray]) -> Vec<u8> {
    dumps(&Py::Tuple(arrays.iter().map(|a| a.to_py()).collect()), 3)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| w.write_all(bytes).map_err(|e| e.to_string()))
}

/// Writes one array as `pickle.dump(array, f, protocol=3)` does. Errors name the file.
pub fn write_array(path: impl AsRef<Path>, array: &NumpyArray) -> Result<()> {
    write_bytes(path.as_ref(), &array_bytes(array))
}

/// Writes a tuple of arrays as `pickle.dump((a, b, …), f, protocol=3)` does. Errors name the file.
pub fn write_tuple(path: impl AsRef<Path>, arrays: &[NumpyArray]) -> Result<()> {
    write_bytes(path.as_ref(), &tuple_bytes(arrays))
}

/// Writes a tuple of float64 arrays `(shape, values)`, e.g. `pickle.dump((mean, std), f)`. Errors name the file.
pub fn write_f64_tuple(path: impl AsRef<Path>, arrays: &[(&[usize], &[f64])]) -> Result<()> {
    let arrays: Vec<NumpyArray> = arrays
        .iter()
        .map(|&(shape, data)| NumpyArray::f64(shape, data))
        .collect();
    write_tuple(path, &arrays)
}

#[cfg(test)]
#[path = "numpy_pickle_tests.rs"]
mod tests;
