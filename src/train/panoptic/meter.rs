//! The panoptic metrics of utae-paps (`src/panoptic/metrics.py: PanopticMeter`, spec §6.7-6.9), with the
//! 27.06.2022 void-object fix (§6.9), quirks kept.
//!
//! Per class c of `classes` (every id but background 0 and void 19: 1..=18 on PASTIS) the meter accumulates
//! over all batches TP_c, FP_c, FN_c and the sum of the IoUs of the true positives. One call of
//! [`PanopticMeter::add`] is one batch (B, H, W), in the original's order:
//! 1. **void objects** (per sample with void pixels): for each true instance id v ≠ 0 found under the void mask
//!    (area a_v = its pixels *under the void mask*), ascending, and each predicted id q ≠ 0 still present
//!    (area a_q = all its pixels): inter = #(true == v ∧ pred == q) over the full maps; IoU = inter /
//!    (a_v + a_q − inter) in float32; IoU > 0.5 deletes q (its pixels set to 0);
//! 2. **void pixels**: predicted instance and class set to 0 wherever the true class is void;
//! 3. for each class c and sample: n_pred += #distinct values of (pred instance × [pred class == c]) − 1,
//!    n_true += #distinct values of (true instance × [true class == c]) − 1 (**QUIRK:** the −1 drops the zero
//!    of the masked-out pixels even when there is none, e.g. a sample entirely covered by class-c instances);
//!    for each true id v ≠ 0 (a_v counted inside the true class-c mask) and predicted id q ≠ 0 (a_q counted
//!    inside the predicted class-c mask): inter = #(true == v ∧ pred == q) over the **full** maps (**QUIRK:**
//!    not restricted to class c), IoU as above; IoU > 0.5 (strict: exactly 0.5 is no match) → TP += 1 and the
//!    IoU is kept; the pairs are skipped while the batch's running n_pred or n_true is still 0 (which only
//!    matters with the −1 quirk). Per batch: TP_c += TP, FP_c += n_pred − TP, FN_c += n_true − TP, sumIoU_c += float32 sum of
//!    the kept IoUs.
//!
//! [`PanopticMeter::value`]: per class SQ_c = sumIoU_c / TP_c (NaN or ±inf → 0), RQ_c = TP_c / (TP_c + ½FP_c +
//! ½FN_c), PQ_c = SQ_c·RQ_c, in float32; SQ, RQ, PQ = means over the classes whose PQ is not NaN (a class never
//! seen, TP = FP = FN = 0, is left out; no class at all → NaN), as fractions. [`PanopticMeter::table`] is the
//! original `get_table()`: K × 4 float32 rows [TP, FP, FN, sumIoU], saved by `test_panoptic.py` as
//! `test_tables.npy` ([`PanopticMeter::write_table`], read back by [`read_table`]).
//!
//! Ids and classes are taken as integers. The original compares float32 values (the instance target and
//! `pano_instance` are float32 tensors): [`PanopticMeter::add_outputs`] converts them exactly, so ids that
//! float32 cannot tell apart (beyond 2^24) are merged there as in the original. The per-pair loops of the
//! original (O(instances² · H·W)) become one pass per sample that counts every (true id, predicted id) overlap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::data::npy;
use crate::engine::{Error, Result};
use crate::train::semantic::predict::argmax_classes;

/// The IoU above which a prediction matches a true instance (and a void object deletes a prediction).
pub const IOU_THRESHOLD: f32 = 0.5;

/// Number of channels of the PaPs instance target (spec §1.10): heatmap, instance, zone, h, w, object class,
/// pixel class.
pub const TARGET_CHANNELS: usize = 7;

/// The mean SQ, RQ and PQ of [`PanopticMeter::value`] (fractions; float32 results widened to f64, as Python's
/// `.item()` would give them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanopticValue {
    /// Segmentation quality: mean IoU of the matches.
    pub sq: f64,
    /// Recognition quality: F1 of the detection.
    pub rq: f64,
    /// Panoptic quality = SQ · RQ per class, averaged.
    pub pq: f64,
}

/// Per-class SQ, RQ, PQ (`value(per_class=True)`), one entry per class of [`PanopticMeter::classes`].
#[derive(Debug, Clone, PartialEq)]
pub struct PanopticPerClass {
    /// SQ_c (0 where TP_c = 0).
    pub sq: Vec<f64>,
    /// RQ_c (NaN where TP_c = FP_c = FN_c = 0).
    pub rq: Vec<f64>,
    /// PQ_c = SQ_c · RQ_c.
    pub pq: Vec<f64>,
}

/// The accumulated panoptic counts of an epoch or a test fold.
#[derive(Debug, Clone, PartialEq)]
pub struct PanopticMeter {
    void_label: Option<i64>,
    iou_threshold: f32,
    classes: Vec<i64>,
    /// Per class [TP, FP, FN] (exact integers; the original keeps them in float32).
    counts: Vec<[i64; 3]>,
    /// Per class, the float32 sum of the IoUs of the true positives (`cumulative_ious`).
    sum_iou: Vec<f32>,
}

impl PanopticMeter {
    /// `PanopticMeter(num_classes, background_label, void_label, iou_threshold)`: the evaluated classes are
    /// 0..num_classes without the background and the void label.
    pub fn new(
        num_classes: usize,
        background_label: i64,
        void_label: Option<i64>,
        iou_threshold: f32,
    ) -> Self {
        let classes: Vec<i64> = (0..num_classes as i64)
            .filter(|&c| c != background_label && Some(c) != void_label)
            .collect();
        PanopticMeter {
            void_label,
            iou_threshold,
            counts: vec![[0; 3]; classes.len()],
            sum_iou: vec![0.0; classes.len()],
            classes,
        }
    }

    /// The meter of `train_panoptic.py` / `test_panoptic.py` on PASTIS: 20 classes, background 0, void 19,
    /// IoU threshold 0.5 (classes 1..=18 evaluated).
    pub fn pastis() -> Self {
        PanopticMeter::new(20, 0, Some(19), IOU_THRESHOLD)
    }

    /// The evaluated class ids, in table order.
    pub fn classes(&self) -> &[i64] {
        &self.classes
    }

    /// Per class [TP, FP, FN].
    pub fn counts(&self) -> &[[i64; 3]] {
        &self.counts
    }

    /// Per class, the sum of the IoUs of the true positives (float32, as accumulated by the original).
    pub fn sum_iou(&self) -> &[f32] {
        &self.sum_iou
    }

    /// Forgets everything added (a new epoch).
    pub fn reset(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = [0; 3]);
        self.sum_iou.iter_mut().for_each(|s| *s = 0.0);
    }

    /// Adds one batch of maps, all (B, H, W) row-major with `shape` = [B, H, W]: the predicted instance ids
    /// (0 = none) and classes, the true instance ids (0 = none; void parcels are instances) and pixel classes.
    /// Panics when a slice does not hold B·H·W values.
    pub fn add(
        &mut self,
        shape: [usize; 3],
        pred_instance: &[i64],
        pred_semantic: &[i64],
        true_instance: &[i64],
        true_semantic: &[i64],
    ) {
        let [b, h, w] = shape;
        let n = h * w;
        for (name, len) in [
            ("pred_instance", pred_instance.len()),
            ("pred_semantic", pred_semantic.len()),
            ("true_instance", true_instance.len()),
            ("true_semantic", true_semantic.len()),
        ] {
            assert_eq!(
                len,
                b * n,
                "PanopticMeter::add: {name} has {len} values, expected B·H·W = {b}·{h}·{w}"
            );
        }
        let mut tp = vec![0i64; self.classes.len()];
        let mut n_pred = vec![0i64; self.classes.len()];
        let mut n_true = vec![0i64; self.classes.len()];
        let mut ious: Vec<Vec<f32>> = vec![Vec::new(); self.classes.len()];
        for s in 0..b {
            let r = s * n..(s + 1) * n;
            let mut ip = pred_instance[r.clone()].to_vec();
            let mut sp = pred_semantic[r.clone()].to_vec();
            let (it, st) = (&true_instance[r.clone()], &true_semantic[r]);
            if let Some(void) = self.void_label {
                self.drop_void(&mut ip, &mut sp, it, st, void);
            }
            // Every (true id, predicted id) overlap over the full maps (the original's `inter`).
            let mut inter: HashMap<(i64, i64), i64> = HashMap::new();
            for (&v, &q) in it.iter().zip(&ip) {
                *inter.entry((v, q)).or_insert(0) += 1;
            }
            for (k, &c) in self.classes.iter().enumerate() {
                // torch.unique(instance * class_mask, return_counts=True): sorted values with their counts.
                let masked = |ids: &[i64], cls: &[i64]| -> BTreeMap<i64, i64> {
                    let mut m = BTreeMap::new();
                    for (&id, &cl) in ids.iter().zip(cls) {
                        *m.entry(if cl == c { id } else { 0 }).or_insert(0) += 1;
                    }
                    m
                };
                let trues = masked(it, st);
                let preds = masked(&ip, &sp);
                n_pred[k] += preds.len() as i64 - 1;
                n_true[k] += trues.len() as i64 - 1;
                if n_pred[k] == 0 || n_true[k] == 0 {
                    continue; // running totals over the batch's samples so far, as the original
                }
                for (&v, &a_v) in trues.iter().filter(|(&v, _)| v != 0) {
                    for (&q, &a_q) in preds.iter().filter(|(&q, _)| q != 0) {
                        let i = inter.get(&(v, q)).copied().unwrap_or(0);
                        let iou = iou_f32(i, a_v, a_q);
                        if iou > self.iou_threshold {
                            tp[k] += 1;
                            ious[k].push(iou);
                        }
                    }
                }
            }
        }
        for k in 0..self.classes.len() {
            let c = &mut self.counts[k];
            c[0] += tp[k];
            c[1] += n_pred[k] - tp[k];
            c[2] += n_true[k] - tp[k];
            if !ious[k].is_empty() {
                // `torch.stack(ious).sum()` in float32, then added to the float32 accumulator.
                self.sum_iou[k] += ious[k].iter().fold(0f32, |a, &x| a + x);
            }
        }
    }

    /// Steps 1-2 on one sample: deletes the predictions that match a void object, then clears the void pixels.
    fn drop_void(&self, ip: &mut [i64], sp: &mut [i64], it: &[i64], st: &[i64], void: i64) {
        let is_void: Vec<bool> = st.iter().map(|&c| c == void).collect();
        if !is_void.iter().any(|&v| v) {
            return;
        }
        // torch.unique(instance_true * void_mask): void objects and their area under the void mask.
        let mut void_objects: BTreeMap<i64, i64> = BTreeMap::new();
        for (&v, &m) in it.iter().zip(&is_void) {
            if m && v != 0 {
                *void_objects.entry(v).or_insert(0) += 1;
            }
        }
        let mut pred_area: BTreeMap<i64, i64> = BTreeMap::new();
        let mut inter: HashMap<(i64, i64), i64> = HashMap::new();
        for (&v, &q) in it.iter().zip(ip.iter()) {
            *pred_area.entry(q).or_insert(0) += 1;
            *inter.entry((v, q)).or_insert(0) += 1;
        }
        let mut deleted: BTreeSet<i64> = BTreeSet::new();
        for (&v, &a_v) in &void_objects {
            for (&q, &a_q) in &pred_area {
                if q == 0 || deleted.contains(&q) {
                    continue; // a deleted prediction is no longer among torch.unique's values
                }
                let i = inter.get(&(v, q)).copied().unwrap_or(0);
                if iou_f32(i, a_v, a_q) > self.iou_threshold {
                    deleted.insert(q);
                }
            }
        }
        // The original also zeroes the class of the deleted ids, but after zeroing the ids (no effect).
        for ((q, c), &m) in ip.iter_mut().zip(sp.iter_mut()).zip(&is_void) {
            if m {
                *q = 0;
                *c = 0;
            } else if deleted.contains(q) {
                *q = 0;
            }
        }
    }

    /// Adds one batch of raw PaPs outputs against the instance target, as the original `add(predictions,
    /// target)`: `pano_instance` (B, H, W) float ids, `pano_semantic` (B, C, H, W) per-class scores (argmax
    /// over C, first maximum on ties as `torch.argmax`), `target` (B, H, W, 7) float32 (channel 1 = instance
    /// ids, channel 6 = pixel classes; spec §1.10). Panics on inconsistent lengths.
    pub fn add_outputs(
        &mut self,
        shape: [usize; 3],
        pano_instance: &[f32],
        pano_semantic: &[f32],
        target: &[f32],
    ) {
        let [b, h, w] = shape;
        let n = h * w;
        assert_eq!(
            target.len(),
            b * n * TARGET_CHANNELS,
            "PanopticMeter::add_outputs: target has {} values, expected B·H·W·7 = {b}·{h}·{w}·7",
            target.len()
        );
        assert!(
            b > 0 && n > 0 && pano_semantic.len().is_multiple_of(b * n) && pano_semantic.len() >= b * n,
            "PanopticMeter::add_outputs: pano_semantic has {} values, expected B·C·H·W with B·H·W = {b}·{h}·{w}",
            pano_semantic.len()
        );
        let c = pano_semantic.len() / (b * n);
        let pred_semantic: Vec<i64> = pano_semantic
            .chunks_exact(c * n)
            .flat_map(|s| argmax_classes(s, c))
            .collect();
        let ids = |v: &[f32]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let channel = |k: usize| -> Vec<i64> {
            target
                .iter()
                .skip(k)
                .step_by(TARGET_CHANNELS)
                .map(|&x| x as i64)
                .collect()
        };
        self.add(
            shape,
            &ids(pano_instance),
            &pred_semantic,
            &channel(1),
            &channel(6),
        );
    }

    /// Per-class SQ, RQ, PQ in float32 (`value(per_class=True)`).
    pub fn per_class(&self) -> PanopticPerClass {
        let mut out = PanopticPerClass {
            sq: Vec::new(),
            rq: Vec::new(),
            pq: Vec::new(),
        };
        for (c, &s) in self.counts.iter().zip(&self.sum_iou) {
            let [tp, fp, fn_] = c.map(|x| x as f32);
            let sq = s / tp;
            let sq = if sq.is_finite() { sq } else { 0.0 };
            let rq = tp / (tp + 0.5 * fp + 0.5 * fn_);
            out.sq.push(sq as f64);
            out.rq.push(rq as f64);
            out.pq.push((sq * rq) as f64);
        }
        out
    }

    /// Mean SQ, RQ, PQ over the classes whose PQ is not NaN (`value()`); NaN when there is none.
    pub fn value(&self) -> PanopticValue {
        let p = self.per_class();
        let keep: Vec<usize> = (0..p.pq.len()).filter(|&k| !p.pq[k].is_nan()).collect();
        let mean = |v: &[f64]| -> f64 {
            let s: f64 = keep.iter().map(|&k| v[k]).sum();
            (s / keep.len() as f64) as f32 as f64
        };
        PanopticValue {
            sq: mean(&p.sq),
            rq: mean(&p.rq),
            pq: mean(&p.pq),
        }
    }

    /// `get_table()`: per class [TP, FP, FN, sumIoU] as float32, in [`classes`](Self::classes) order.
    pub fn table(&self) -> Vec<[f32; 4]> {
        self.counts
            .iter()
            .zip(&self.sum_iou)
            .map(|(c, &s)| [c[0] as f32, c[1] as f32, c[2] as f32, s])
            .collect()
    }

    /// Writes [`table`](Self::table) as `test_tables.npy`: float32 (K, 4), as `np.save` of the original.
    pub fn write_table(&self, path: impl AsRef<Path>) -> Result<()> {
        let flat: Vec<f32> = self.table().concat();
        npy::write_f32(path, &[self.classes.len(), 4], &flat)
    }

    /// A meter holding the counts of a table (as [`read_table`] returns), e.g. to sum the folds' tables.
    /// Errors when the table has not one row per class of `self` or its counts are not whole numbers.
    pub fn with_table(mut self, table: &[[f32; 4]]) -> Result<Self> {
        if table.len() != self.classes.len() {
            return Err(Error::Invalid(format!(
                "panoptic table: {} rows, expected one per class ({})",
                table.len(),
                self.classes.len()
            )));
        }
        for (k, row) in table.iter().enumerate() {
            if row[..3].iter().any(|x| !x.is_finite() || x.fract() != 0.0) {
                return Err(Error::Invalid(format!(
                    "panoptic table: row {k} {row:?}: TP, FP, FN must be whole numbers"
                )));
            }
            self.counts[k] = [row[0] as i64, row[1] as i64, row[2] as i64];
            self.sum_iou[k] = row[3];
        }
        Ok(self)
    }

    /// Adds another meter's counts (same classes), e.g. the five folds into one overall value.
    pub fn merge(&mut self, other: &PanopticMeter) {
        assert_eq!(
            self.classes, other.classes,
            "PanopticMeter::merge: different classes"
        );
        for k in 0..self.classes.len() {
            for j in 0..3 {
                self.counts[k][j] += other.counts[k][j];
            }
            self.sum_iou[k] += other.sum_iou[k];
        }
    }
}

/// `inter.float() / (a_true + a_pred − inter).float()`: integer arithmetic, then one float32 division.
fn iou_f32(inter: i64, a_true: i64, a_pred: i64) -> f32 {
    inter as f32 / (a_true + a_pred - inter) as f32
}

/// Reads a `test_tables.npy` (float32 (K, 4): TP, FP, FN, sumIoU per class); the error names the file.
pub fn read_table(path: impl AsRef<Path>) -> Result<Vec<[f32; 4]>> {
    let path = path.as_ref();
    let a = npy::read_f32(path)?;
    if a.shape.len() != 2 || a.shape[1] != 4 {
        return Err(Error::format(
            path,
            format!(
                "panoptic table: expected shape (K, 4) [TP, FP, FN, sumIoU], found {:?}",
                a.shape
            ),
        ));
    }
    Ok(a.data
        .chunks_exact(4)
        .map(|r| [r[0], r[1], r[2], r[3]])
        .collect())
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
