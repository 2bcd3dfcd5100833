//! Shapes: row-major, outermost first, in PyTorch order ((B, T, C, H, W) for image time series).
//!
//! A shape is a plain `Vec<usize>`; this file holds the arithmetic on it: element counts, strides,
//! broadcasting (NumPy/PyTorch rules: align on the right, sizes equal or 1), and the "(outer, axis, inner)"
//! view that every along-an-axis kernel (reduce, softmax, max) uses.

/// Number of elements (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major (C-order) strides, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The broadcast shape of `a` and `b`, or `None` if they do not broadcast.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i < r - a.len() {
            1
        } else {
            a[i - (r - a.len())]
        };
        let db = if i < r - b.len() {
            1
        } else {
            b[i - (r - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides that read a tensor of shape `from` as if it had the (broadcast) shape `to`: 0 on the axes where
/// `from` has size 1 (or is missing on the left).
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    assert!(
        from.len() <= to.len(),
        "broadcast_strides: {from:?} has more axes than {to:?}"
    );
    let s = strides(from);
    let off = to.len() - from.len();
    (0..to.len())
        .map(|i| {
            if i < off || from[i - off] == 1 {
                0
            } else {
                s[i - off]
            }
        })
        .collect()
}

/// `axis` as a non-negative index (negative counts from the end, as in PyTorch). Panics when out of range.
pub fn norm_axis(axis: isize, rank: usize, op: &str) -> usize {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    assert!(
        a >= 0 && (a as usize) < rank,
        "{op}: axis {axis} out of range for rank {rank}"
    );
    a as usize
}

/// The (outer, n, inner) sizes of `shape` around `axis`: element (o, i, k) sits at `(o * n + i) * inner + k`.
pub fn outer_axis_inner(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// Row-major coordinates of flat index `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d].max(1);
        i /= shape[d].max(1);
    }
    c
}

/// Merges adjacent axes that are contiguous in every stride list (keeps kernels' loops short).
/// Returns the merged shape and strides; axes of size 1 are dropped.
pub fn collapse(shape: &[usize], stride_sets: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); stride_sets.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && stride_sets.iter().enumerate().all(|(k, s)| {
                let last = *out_strides[k].last().unwrap();
                last == s[d] * shape[d]
            });
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for (k, s) in stride_sets.iter().enumerate() {
                *out_strides[k].last_mut().unwrap() = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (k, s) in stride_sets.iter().enumerate() {
                out_strides[k].push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_broadcast() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[2, 3], &[4]), None);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
        assert_eq!(outer_axis_inner(&[2, 3, 4, 5], 2), (6, 4, 5));
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
    }

    #[test]
    fn collapse_merges_contiguous_axes() {
        let (s, st) = collapse(&[2, 3, 4], &[strides(&[2, 3, 4])]);
        assert_eq!((s, st), (vec![24], vec![vec![1]]));
        // broadcasting the middle axis keeps three axes
        let (s, st) = collapse(&[2, 3, 4], &[vec![4, 0, 1]]);
        assert_eq!((s, st), (vec![2, 3, 4], vec![vec![4, 0, 1]]));
    }
}
