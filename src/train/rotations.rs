//! The PASTIS rotations (spec §1.9): the five (training folds, validation fold, test fold) triples of
//! `train_semantic.py` and `train_panoptic.py`, which of them a run covers (`--fold`), and their three splits
//! opened and checked before a run writes anything — the part of the semantic and panoptic workflows'
//! preparation they share.

use crate::data::pastis::PastisDataset;
use crate::engine::{Error, Result};
use crate::train::drop_last::check_split;

/// The five rotations (train folds, validation fold, test fold), run k = 1..5 (spec §1.9).
pub const ROTATIONS: [([usize; 3], usize, usize); 5] = [
    ([1, 2, 3], 4, 5),
    ([2, 3, 4], 5, 1),
    ([3, 4, 5], 1, 2),
    ([4, 5, 1], 2, 3),
    ([5, 1, 2], 3, 4),
];

/// The PASTIS rotations a run covers: `--fold k` (1..5) alone, or all five.
pub fn pastis_folds(fold: Option<usize>) -> Result<Vec<usize>> {
    match fold {
        Some(k) if (1..=5).contains(&k) => Ok(vec![k]),
        Some(k) => Err(Error::Invalid(format!("--fold {k}: expected 1..5"))),
        None => Ok((1..=5).collect()),
    }
}

/// One rotation's splits.
pub struct Rotation {
    /// The three training folds.
    pub train: PastisDataset,
    /// The validation fold.
    pub val: PastisDataset,
    /// The test fold.
    pub test: PastisDataset,
}

/// How a run batches its splits, for the checks of [`open_rotations`].
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Patches per batch.
    pub batch_size: usize,
    /// `--keep_last_batch`: validation and test passes keep their last incomplete batch.
    pub keep_last_batch: bool,
    /// Whether any epoch validates (an unused validation split is not checked).
    pub validates: bool,
}

/// The splits of every rotation in `folds`, opened by `open` (a list of folds → a dataset), each checked to
/// give at least one batch ([`check_split`]), and every patch of the folds used checked
/// ([`PastisDataset::check`]: headers, frames against dates, non-finite values, classes below
/// `num_classes`).
pub fn open_rotations(
    folds: &[usize],
    batching: Batching,
    num_classes: usize,
    open: &dyn Fn(&[usize]) -> Result<PastisDataset>,
) -> Result<Vec<Rotation>> {
    let Batching {
        batch_size: b,
        keep_last_batch,
        validates,
    } = batching;
    let mut out = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for &k in folds {
        let (train_f, val_f, test_f) = ROTATIONS[k - 1];
        let r = Rotation {
            train: open(&train_f)?,
            val: open(&[val_f])?,
            test: open(&[test_f])?,
        };
        check_split(&r.train, &format!("Fold {k}: training"), b, false, true)?;
        if validates {
            check_split(
                &r.val,
                &format!("Fold {k}: validation"),
                b,
                keep_last_batch,
                false,
            )?;
        }
        check_split(
            &r.test,
            &format!("Fold {k}: test"),
            b,
            keep_last_batch,
            false,
        )?;
        out.push(r);
        for f in train_f.into_iter().chain([val_f, test_f]) {
            if !used.contains(&f) {
                used.push(f);
            }
        }
    }
    open(&used)?.check(Some(num_classes))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_match_the_spec() {
        assert_eq!(ROTATIONS[0], ([1, 2, 3], 4, 5));
        assert_eq!(ROTATIONS[4], ([5, 1, 2], 3, 4));
        assert_eq!(pastis_folds(None).unwrap(), vec![1, 2, 3, 4, 5]);
        assert!(pastis_folds(Some(6)).is_err());
    }
}
