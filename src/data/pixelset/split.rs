//! The cross-validation split of the L-TAE train.py (`get_loaders`, spec §2.5), exactly.
//!
//! ```text
//! np.random.seed(rdm_seed)                      # main(), before the dataset is built
//! indices = list(range(len(dt))); np.random.shuffle(indices)
//! indices_seq = list(KFold(n_splits=kfold, shuffle=False).split(list(range(len(dt)))))
//! ntest = len(indices_seq[0][1])                # the FIRST fold's test size, for every fold
//! for trainval, test in indices_seq:
//!     trainval = [indices[i] for i in trainval]; test = [indices[i] for i in test]
//!     validation = trainval[-ntest:]; train = trainval[:-ntest]
//! ```
//! sklearn's unshuffled KFold cuts the positions 0..n into `kfold` contiguous blocks, the first `n % kfold` one
//! element longer. Consequences worth knowing (all reproduced): the validation set is the last `ntest` entries
//! of the shuffled list, the same for every fold whose test block does not reach into them (all folds but the
//! last, and but the last two when `n % kfold ≠ 0`); when `n % kfold ≠ 0` the validation set of a short fold
//! is longer than its test set; Python slicing makes the validation set the whole of `trainval` (and the
//! training set empty) when `ntest ≥ len(trainval)`.
//!
//! The stream must be fresh from `np.random.seed(rdm_seed)`: with `--preload` the original builds the preloaded
//! dataset (drawing pixels and jitter for every sample) *before* `get_loaders`, so its split differs from this
//! one; without `--preload` nothing draws in between.

use crate::data::numpy_random::NumpyRandomState;
use crate::engine::error::{Error, Result};

/// One fold: sample indices (positions in the dataset) of the three subsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training samples.
    pub train: Vec<usize>,
    /// Validation samples.
    pub val: Vec<usize>,
    /// Test samples.
    pub test: Vec<usize>,
}

/// The `kfold` folds of train.py `get_loaders` for `n` samples and `--rdm_seed seed` (see the module doc).
/// Errors for `kfold < 2` or `n < kfold` (sklearn refuses both).
pub fn kfold_splits(n: usize, kfold: usize, seed: u32) -> Result<Vec<Split>> {
    if kfold < 2 {
        return Err(Error::Invalid(format!(
            "k-fold split: kfold = {kfold}, at least 2 folds are needed (sklearn's KFold)"
        )));
    }
    if n < kfold {
        return Err(Error::Invalid(format!(
            "k-fold split: {n} samples cannot be cut into {kfold} folds (need at least one per fold)"
        )));
    }
    let mut indices: Vec<usize> = (0..n).collect();
    NumpyRandomState::new(seed).shuffle(&mut indices);
    // KFold blocks over positions: the first n % kfold blocks have one more element.
    let size = |k: usize| n / kfold + usize::from(k < n % kfold);
    let ntest = size(0);
    let mut start = 0;
    let mut out = Vec::with_capacity(kfold);
    for k in 0..kfold {
        let end = start + size(k);
        let test = indices[start..end].to_vec();
        let trainval: Vec<usize> = indices[..start]
            .iter()
            .chain(&indices[end..])
            .copied()
            .collect();
        // Python slicing: trainval[-ntest:] is all of it when ntest >= len; trainval[:-ntest] is then empty.
        let cut = trainval.len().saturating_sub(ntest);
        out.push(Split {
            train: trainval[..cut].to_vec(),
            val: trainval[cut..].to_vec(),
            test,
        });
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_loaders` with the data loaders left out, run with numpy 2.4.6 and scikit-learn 1.9.1:
    /// ```text
    /// import numpy as np; from sklearn.model_selection import KFold
    /// def split(n, kfold, seed):
    ///     np.random.seed(seed); indices = list(range(n)); np.random.shuffle(indices)
    ///     seq = list(KFold(n_splits=kfold, shuffle=False).split(list(range(n)))); ntest = len(seq[0][1])
    ///     for trainval, test in seq:
    ///         trainval = [indices[i] for i in trainval]; test = [indices[i] for i in test]
    ///         print(trainval[:-ntest], trainval[-ntest:], test)
    /// ```
    fn fold(train: &[usize], val: &[usize], test: &[usize]) -> Split {
        Split {
            train: train.to_vec(),
            val: val.to_vec(),
            test: test.to_vec(),
        }
    }

    #[test]
    fn matches_train_py_for_23_samples() {
        // split(23, 5, 1); the shuffled indices are [20, 17, 3, 13, 19, 16, 10, 4, 2, 18, 6, 7, 1, 14, 0, 15,
        // 22, 21, 9, 8, 12, 11, 5]; blocks of 5, 5, 5, 4, 4 and ntest = 5.
        let want = vec![
            fold(
                &[16, 10, 4, 2, 18, 6, 7, 1, 14, 0, 15, 22, 21],
                &[9, 8, 12, 11, 5],
                &[20, 17, 3, 13, 19],
            ),
            fold(
                &[20, 17, 3, 13, 19, 6, 7, 1, 14, 0, 15, 22, 21],
                &[9, 8, 12, 11, 5],
                &[16, 10, 4, 2, 18],
            ),
            fold(
                &[20, 17, 3, 13, 19, 16, 10, 4, 2, 18, 15, 22, 21],
                &[9, 8, 12, 11, 5],
                &[6, 7, 1, 14, 0],
            ),
            fold(
                &[20, 17, 3, 13, 19, 16, 10, 4, 2, 18, 6, 7, 1, 14],
                &[0, 8, 12, 11, 5],
                &[15, 22, 21, 9],
            ),
            fold(
                &[20, 17, 3, 13, 19, 16, 10, 4, 2, 18, 6, 7, 1, 14],
                &[0, 15, 22, 21, 9],
                &[8, 12, 11, 5],
            ),
        ];
        assert_eq!(kfold_splits(23, 5, 1).unwrap(), want);
    }

    #[test]
    fn small_cases_follow_python_slicing() {
        // split(10, 5, 1): shuffled [2, 9, 6, 4, 0, 3, 1, 7, 8, 5].
        let s = kfold_splits(10, 5, 1).unwrap();
        assert_eq!(s[0], fold(&[6, 4, 0, 3, 1, 7], &[8, 5], &[2, 9]));
        assert_eq!(s[4], fold(&[2, 9, 6, 4, 0, 3], &[1, 7], &[8, 5]));
        // split(3, 2, 0): shuffled [2, 1, 0], blocks of 2 and 1, ntest = 2: the training sets are empty.
        let s = kfold_splits(3, 2, 0).unwrap();
        assert_eq!(s, vec![fold(&[], &[0], &[2, 1]), fold(&[], &[2, 1], &[0])]);
        // Every fold covers every sample exactly once.
        for f in kfold_splits(23, 5, 1).unwrap() {
            let mut all: Vec<usize> = [f.train, f.val, f.test].concat();
            all.sort_unstable();
            assert_eq!(all, (0..23).collect::<Vec<_>>());
        }
    }

    #[test]
    fn bad_fold_counts_are_errors() {
        let e = kfold_splits(10, 1, 1).unwrap_err().to_string();
        assert!(e.contains("kfold = 1"), "{e}");
        let e = kfold_splits(3, 5, 1).unwrap_err().to_string();
        assert!(e.contains("3 samples") && e.contains("5 folds"), "{e}");
    }
}
