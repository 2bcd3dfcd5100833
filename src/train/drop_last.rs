//! Incomplete batches in the semantic workflow: the original's `drop_last=True`, kept for parity but never
//! silent (README § Training and evaluating on PASTIS).
//!
//! train_semantic.py and test_semantic.py build every loader with `drop_last=True`: up to `batch_size - 1`
//! patches of each split are never seen (a different random subset each training epoch and each validation,
//! since the loaders shuffle). Here:
//! - [`check_split`], before anything runs: a split too small to give one batch is an error naming
//!   `metadata.geojson` (nothing would be trained on or evaluated: the original printed `loss 0.0000 OA NaN
//!   mIoU NaN` and wrote `test_metrics.json` with nulls); a split that loses patches each epoch or validation
//!   says how many in a warning;
//! - [`eval_order`], for a test pass: the seeded shuffle cut to whole batches, the patches left out named in a
//!   warning;
//! - `keep_last` (`--keep_last_batch`) keeps the last incomplete batch of validation and test passes. Training
//!   batches are always whole.
//!
//! Pixel sets need none of this: the L-TAE train.py does not drop incomplete batches.

use crate::data::pastis::PastisDataset;
use crate::engine::{Error, Result};
use crate::train::state::epoch_order;

/// The batches a pass over `ds` gives: training always drops the incomplete last batch (the original's
/// `drop_last=True`, a different random subset each epoch); evaluation drops it too unless `keep_last`. An
/// error naming `metadata.geojson` when nothing at all would be trained on or evaluated, a warning saying how
/// many patches each pass leaves out otherwise.
pub fn check_split(
    ds: &PastisDataset,
    what: &str,
    batch_size: usize,
    keep_last: bool,
    training: bool,
) -> Result<()> {
    let (n, b) = (ds.len(), batch_size.max(1));
    let metadata = ds.folder().join("metadata.geojson");
    let folds = ds.options().folds.clone().unwrap_or_default();
    let folds = folds
        .iter()
        .map(|f| format!("fold {f}"))
        .collect::<Vec<_>>()
        .join(", ");
    if n < b && !keep_last {
        return Err(Error::format(
            metadata,
            format!(
                "{what} split ({folds}) holds {n} patch{}, fewer than --batch_size {b}: nothing would be {} \
                 (incomplete batches are dropped, as the original's drop_last); {}",
                if n == 1 { "" } else { "es" },
                if training { "trained on" } else { "evaluated" },
                if training {
                    "use a smaller --batch_size"
                } else {
                    "pass --keep_last_batch to keep the last incomplete batch, or use a smaller --batch_size"
                }
            ),
        ));
    }
    let dropped = if keep_last { 0 } else { n % b };
    if dropped > 0 && training {
        eprintln!(
            "warning: {what} split ({folds}): {dropped} of its {n} patches are left out of each epoch, a different \
             random subset every epoch (incomplete batches are dropped, as the original's drop_last)"
        );
    } else if dropped > 0 && what.ends_with("validation") {
        eprintln!(
            "warning: {what} split ({folds}): {dropped} of its {n} patches are left out of each validation, a \
             different random subset every epoch (drop_last, as the original); --keep_last_batch keeps them"
        );
    }
    Ok(())
}

/// The order of an evaluation pass: the seeded shuffle of `ds`, cut to whole batches unless `keep_last` (the
/// original's `drop_last`); with `warn`, a warning names the patches left out.
pub fn eval_order(
    ds: &PastisDataset,
    batch_size: usize,
    seed: u64,
    keep_last: bool,
    warn: Option<&str>,
) -> Vec<usize> {
    let mut order = epoch_order(ds.len(), batch_size, seed, false);
    let whole = order.len() / batch_size.max(1) * batch_size.max(1);
    if !keep_last && whole < order.len() {
        if let Some(what) = warn {
            let ids: Vec<String> = order[whole..]
                .iter()
                .map(|&i| ds.ids()[i].to_string())
                .collect();
            eprintln!(
                "warning: {what}: patch{} {} not evaluated: {} patches do not fill batches of {} (the original's \
                 drop_last); --keep_last_batch evaluates them",
                if ids.len() == 1 { "" } else { "es" },
                ids.join(", "),
                order.len(),
                batch_size
            );
        }
        order.truncate(whole);
    }
    order
}
