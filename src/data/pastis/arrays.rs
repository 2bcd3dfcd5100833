//! Reading the PASTIS arrays safely and assembling the instance target (spec §1.10).
//!
//! [`read_f64`] reads any numeric dtype exactly as f64 (annotation ids stay exact beyond 2^24), after
//! [`check_header`] (in `data::npy`) has looked at the header, so that a garbled shape or a truncated file is an
//! [`Error`] naming the file instead of a panic or a long read.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

pub(crate) use crate::data::npy::{check_header, first_non_finite};
use crate::engine::error::{Error, Result};

macro_rules! read_as {
    ($npy:expr, $path:expr, $ty:ty) => {{
        let v: Vec<$ty> = $npy
            .into_vec()
            .map_err(|e| Error::format($path, format!("truncated or unreadable data: {e}")))?;
        v.into_iter().map(|x| x as f64).collect()
    }};
}

/// Reads a numeric `.npy` (f4, f8, i1..i8, u1..u8, bool) as f64: shape and values (row-major).
pub(crate) fn read_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
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
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let code = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => {
            return Err(Error::format(
                path,
                format!("unsupported dtype {}", other.descr()),
            ))
        }
    };
    let data: Vec<f64> = match code.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => read_as!(npy, path, f32),
        "f8" => read_as!(npy, path, f64),
        "i1" => read_as!(npy, path, i8),
        "i2" => read_as!(npy, path, i16),
        "i4" => read_as!(npy, path, i32),
        "i8" => read_as!(npy, path, i64),
        "u1" => read_as!(npy, path, u8),
        "u2" => read_as!(npy, path, u16),
        "u4" => read_as!(npy, path, u32),
        "u8" => read_as!(npy, path, u64),
        "b1" => {
            let v: Vec<bool> = npy
                .into_vec()
                .map_err(|e| Error::format(path, format!("truncated or unreadable data: {e}")))?;
            v.into_iter().map(|b| b as u8 as f64).collect()
        }
        _ => return Err(Error::format(path, format!("unsupported dtype {code}"))),
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err(Error::format(
            path,
            format!("expected {shape:?} values, found {}", data.len()),
        ));
    }
    Ok((shape, data))
}

/// Checks that `shape` is `want` (`None` = any size) and names the file otherwise.
pub(crate) fn check_shape(
    path: &Path,
    what: &str,
    shape: &[usize],
    want: &[Option<usize>],
) -> Result<()> {
    let ok = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| w == *s));
    if ok {
        return Ok(());
    }
    let want: Vec<String> = want
        .iter()
        .map(|w| w.map_or("_".into(), |w| w.to_string()))
        .collect();
    Err(Error::format(
        path,
        format!(
            "{what}: expected shape ({}), found {shape:?}",
            want.join(", ")
        ),
    ))
}

/// Integer ids of an INSTANCES / ZONES map (the original compares them as numbers); errors on fractional or
/// non-finite values.
pub(crate) fn as_ids(path: &Path, data: &[f64], w: usize) -> Result<Vec<i64>> {
    data.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(Error::format(
                    path,
                    format!(
                        "value {v} at (y, x) = [{}, {}] is not an integer id",
                        i / w.max(1),
                        i % w.max(1)
                    ),
                ))
            }
        })
        .collect()
}

/// The (H, W, 7) float32 instance target of the original `__getitem__` (spec §1.10), from HEATMAP, INSTANCES,
/// ZONES and TARGET channel 0 (`semantic`, raw values), all (H, W) row-major:
/// 0 heatmap, 1 instance id, 2 zone id, 3-4 (rows, columns) spanned by the zone's instance, 5 class of the
/// zone's instance (class of its first pixel in row-major order), 6 pixel class. Built in f64 like the
/// original's `np.concatenate`, then cast to f32 (`.float()`).
pub(crate) fn instance_target(
    heatmap: &[f64],
    instances: &[i64],
    zones: &[i64],
    semantic: &[f64],
    h: usize,
    w: usize,
) -> Vec<f32> {
    struct Info {
        rows: usize,
        last_row: usize,
        cols: Vec<bool>,
        class: f64,
    }
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut infos: Vec<Info> = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let id = instances[y * w + x];
            if id == 0 {
                continue;
            }
            let k = *index.entry(id).or_insert_with(|| {
                infos.push(Info {
                    rows: 0,
                    last_row: usize::MAX,
                    cols: vec![false; w],
                    class: semantic[y * w + x],
                });
                infos.len() - 1
            });
            let info = &mut infos[k];
            if info.last_row != y {
                info.last_row = y;
                info.rows += 1;
            }
            info.cols[x] = true;
        }
    }
    let widths: Vec<usize> = infos
        .iter()
        .map(|i| i.cols.iter().filter(|&&c| c).count())
        .collect();
    let mut out = vec![0f32; h * w * 7];
    for p in 0..h * w {
        let (size_h, size_w, class) = match index.get(&zones[p]) {
            Some(&k) => (infos[k].rows as f64, widths[k] as f64, infos[k].class),
            None => (0.0, 0.0, 0.0),
        };
        let px = &mut out[p * 7..p * 7 + 7];
        let vals = [
            heatmap[p],
            instances[p] as f64,
            zones[p] as f64,
            size_h,
            size_w,
            class,
            semantic[p],
        ];
        for (o, v) in px.iter_mut().zip(vals) {
            *o = v as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_target_sizes_and_classes() {
        // 3 x 4 map. Instance 5 covers (0,0), (0,1), (2,1): rows {0, 2} -> h = 2, columns {0, 1} -> w = 2, its
        // first pixel (0,0) has class 7. Instance 9 covers (1,3): h = w = 1, class 3. Zone 4 is no instance.
        let instances = [5, 5, 0, 0, 0, 0, 0, 9, 0, 5, 0, 0];
        let zones = [5, 5, 5, 9, 5, 5, 9, 9, 4, 5, 9, 9];
        let semantic = [7.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 7.0, 0.0, 0.0];
        let heat: Vec<f64> = (0..12).map(|i| i as f64 / 16.0).collect();
        let t = instance_target(&heat, &instances, &zones, &semantic, 3, 4);
        let px = |p: usize| &t[p * 7..p * 7 + 7];
        assert_eq!(px(0), &[0.0, 5.0, 5.0, 2.0, 2.0, 7.0, 7.0]);
        assert_eq!(px(1), &[1.0 / 16.0, 5.0, 5.0, 2.0, 2.0, 7.0, 8.0]);
        assert_eq!(px(3), &[3.0 / 16.0, 0.0, 9.0, 1.0, 1.0, 3.0, 0.0]);
        assert_eq!(px(8), &[0.5, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
