//! Semantic-segmentation metrics exactly as utae-paps computes them (spec §7.1).
//!
//! - [`ConfusionMatrix`]: K × K counts, rows = true class, columns = predicted class, over every pixel.
//! - [`ConfusionMatrix::miou_acc`] — the per-epoch / per-fold meter (`IoU.get_miou_acc`): the ignored class's
//!   row **and** column are zeroed, IoU_c = TP / (TP + FP + FN), mIoU = mean over the classes with a non-empty
//!   union (NaN skipped; background included), OA = trace / total; both in percent.
//! - [`overall`] — the 5-fold summary (`confusion_matrix_analysis`): the ignored row and column are deleted,
//!   then per-class IoU, precision, recall, F1, their micro and macro averages, and the accuracy, as fractions.

use serde_json::{json, Map, Value};

/// A K × K confusion matrix (rows: true class, columns: predicted class).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    /// Number of classes K.
    pub k: usize,
    /// Counts, row-major (K, K).
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix.
    pub fn new(k: usize) -> Self {
        ConfusionMatrix {
            k,
            counts: vec![0; k * k],
        }
    }

    /// Adds pixels: `pred[i]` predicted for true class `truth[i]`. Panics on a class outside 0..K (the
    /// original's bincount would silently misplace it).
    pub fn add(&mut self, pred: &[i64], truth: &[i64]) {
        assert_eq!(
            pred.len(),
            truth.len(),
            "ConfusionMatrix::add: {} predictions for {} labels",
            pred.len(),
            truth.len()
        );
        for (&p, &t) in pred.iter().zip(truth) {
            assert!(
                (0..self.k as i64).contains(&p) && (0..self.k as i64).contains(&t),
                "ConfusionMatrix::add: class out of 0..{}: pred {p}, true {t}",
                self.k
            );
            self.counts[t as usize * self.k + p as usize] += 1;
        }
    }

    /// Adds another matrix (summing folds).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.k, other.k, "ConfusionMatrix::merge: sizes differ");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn at(&self, t: usize, p: usize) -> f64 {
        self.counts[t * self.k + p] as f64
    }

    /// (mIoU %, OA %) with the `ignore` class's row and column zeroed (utae-paps `IoU.get_miou_acc` with
    /// `ignore_index = -1`, i.e. class K - 1). NaN when nothing is left.
    pub fn miou_acc(&self, ignore: Option<usize>) -> (f64, f64) {
        let mut m = self.clone();
        if let Some(ig) = ignore {
            for j in 0..self.k {
                m.counts[ig * self.k + j] = 0;
                m.counts[j * self.k + ig] = 0;
            }
        }
        let (mut sum_iou, mut n_iou, mut trace, mut total) = (0.0, 0usize, 0.0, 0.0);
        for c in 0..self.k {
            let tp = m.at(c, c);
            let row: f64 = (0..self.k).map(|j| m.at(c, j)).sum();
            let col: f64 = (0..self.k).map(|i| m.at(i, c)).sum();
            let union = row + col - tp;
            if union > 0.0 {
                sum_iou += tp / union;
                n_iou += 1;
            }
            trace += tp;
            total += row;
        }
        let miou = if n_iou > 0 {
            100.0 * sum_iou / n_iou as f64
        } else {
            f64::NAN
        };
        (miou, 100.0 * trace / total)
    }

    /// The matrix as nested JSON arrays (for `conf_mat.json`).
    pub fn to_json(&self) -> Value {
        Value::Array(
            (0..self.k)
                .map(|t| json!(self.counts[t * self.k..(t + 1) * self.k]))
                .collect(),
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn nan_mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n > 0 {
        s / n as f64
    } else {
        f64::NAN
    }
}

/// The overall analysis (`confusion_matrix_analysis` after deleting the `ignore` class): `(per_class,
/// overall)` JSON objects with IoU, Precision, Recall, F1-score per class, micro_* and MACRO_* averages and
/// Accuracy, as fractions.
pub fn overall(m: &ConfusionMatrix, ignore: Option<usize>) -> (Value, Value) {
    let keep: Vec<usize> = (0..m.k).filter(|&c| Some(c) != ignore).collect();
    let at = |t: usize, p: usize| m.at(keep[t], keep[p]);
    let n = keep.len();
    let (mut per_class, mut rows) = (Map::new(), Vec::new());
    let (mut tp_all, mut fp_all, mut fn_all, mut trace, mut total) = (0.0, 0.0, 0.0, 0.0, 0.0);
    #[allow(clippy::needless_range_loop)] // c indexes rows and columns of the kept sub-matrix
    for c in 0..n {
        let tp = at(c, c);
        let fp: f64 = (0..n).map(|i| at(i, c)).sum::<f64>() - tp;
        let fneg: f64 = (0..n).map(|j| at(c, j)).sum::<f64>() - tp;
        let r = [
            ratio(tp, tp + fp + fneg),
            ratio(tp, tp + fp),
            ratio(tp, tp + fneg),
            ratio(2.0 * tp, 2.0 * tp + fp + fneg),
        ];
        per_class.insert(
            keep[c].to_string(),
            json!({"IoU": r[0], "Precision": r[1], "Recall": r[2], "F1-score": r[3]}),
        );
        rows.push(r);
        tp_all += tp;
        fp_all += fp;
        fn_all += fneg;
        trace += tp;
        total += tp + fneg;
    }
    let macro_of = |i: usize| nan_mean(rows.iter().map(|r| r[i]));
    let overall = json!({
        "micro_IoU": ratio(tp_all, tp_all + fp_all + fn_all),
        "micro_Precision": ratio(tp_all, tp_all + fp_all),
        "micro_Recall": ratio(tp_all, tp_all + fn_all),
        "micro_F1-score": ratio(2.0 * tp_all, 2.0 * tp_all + fp_all + fn_all),
        "MACRO_IoU": macro_of(0),
        "MACRO_Precision": macro_of(1),
        "MACRO_Recall": macro_of(2),
        "MACRO_F1-score": macro_of(3),
        "Accuracy": ratio(trace, total),
    });
    (Value::Object(per_class), overall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miou_zeroes_the_void_row_and_column() {
        // K = 3, void = 2. True 0 predicted (0, 0, 1, 2); true 1 predicted (1, 1, 0); true 2 predicted (0).
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 0, 1, 2, 1, 1, 0, 0], &[0, 0, 0, 0, 1, 1, 1, 2]);
        // After zeroing row/col 2: [[2, 1], [1, 2]] → IoU_0 = 2 / (3 + 3 - 2) = 1/2, IoU_1 = 1/2, class 2 empty.
        // mIoU = 50 %, OA = 4 / 6.
        let (miou, acc) = m.miou_acc(Some(2));
        assert!((miou - 50.0).abs() < 1e-12, "{miou}");
        assert!((acc - 400.0 / 6.0).abs() < 1e-12, "{acc}");
    }

    #[test]
    fn overall_deletes_the_void_class() {
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 0, 1, 2, 1, 1, 0, 0], &[0, 0, 0, 0, 1, 1, 1, 2]);
        let (per, ov) = overall(&m, Some(2));
        assert!(per.get("2").is_none());
        // Same 2 × 2 matrix: precision_0 = 2/3, recall_0 = 2/3, F1 = 4/6, accuracy = 4/6, MACRO_IoU = 1/2.
        assert!((ov["Accuracy"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert!((ov["MACRO_IoU"].as_f64().unwrap() - 0.5).abs() < 1e-12);
        assert!((per["0"]["Precision"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn miou_skips_empty_classes_and_keeps_background() {
        // K = 4, void = 3; class 2 never occurs (NaN, skipped), background 0 counts like any class.
        // Truth (0, 0, 1, 1, 1), prediction (0, 1, 1, 1, 0): [[1, 1], [1, 2]].
        let mut m = ConfusionMatrix::new(4);
        m.add(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 1]);
        // IoU_0 = 1 / (2 + 2 - 1) = 1/3, IoU_1 = 2 / (3 + 3 - 2) = 1/2 → mIoU = 5/12; OA = 3/5.
        let (miou, acc) = m.miou_acc(Some(3));
        assert!((miou - 500.0 / 12.0).abs() < 1e-12, "{miou}");
        assert!((acc - 60.0).abs() < 1e-12, "{acc}");
        // A pixel predicted void is removed from its true class's row too (column zeroed): same numbers.
        m.add(&[3], &[1]);
        assert_eq!(m.miou_acc(Some(3)), (miou, acc));
        // Without an ignored class the void class is an ordinary one: IoU_3 = 0 now counts.
        let (miou_all, acc_all) = m.miou_acc(None);
        // Class 1 row is (1, 2, 0, 1): IoU_1 = 2 / (4 + 3 - 2) = 2/5; IoU_0 = 1/3; IoU_3 = 0 / 1.
        let want = 100.0 * (1.0 / 3.0 + 2.0 / 5.0 + 0.0) / 3.0;
        assert!((miou_all - want).abs() < 1e-12, "{miou_all} vs {want}");
        assert!((acc_all - 50.0).abs() < 1e-12, "{acc_all}");
    }

    #[test]
    fn miou_of_only_void_pixels_is_nan() {
        // Every pixel true void: nothing left after zeroing (the original's nanmean of all-NaN and 0/0).
        let mut m = ConfusionMatrix::new(20);
        m.add(&[0, 5, 19], &[19, 19, 19]);
        let (miou, acc) = m.miou_acc(Some(19));
        assert!(miou.is_nan() && acc.is_nan(), "{miou} {acc}");
        // Merging two halves gives the matrix of the whole.
        let (mut a, mut b, mut whole) = (
            ConfusionMatrix::new(3),
            ConfusionMatrix::new(3),
            ConfusionMatrix::new(3),
        );
        a.add(&[0, 1], &[0, 2]);
        b.add(&[2], &[2]);
        whole.add(&[0, 1, 2], &[0, 2, 2]);
        a.merge(&b);
        assert_eq!(a, whole);
    }

    #[test]
    #[should_panic(expected = "class out of 0..20")]
    fn add_rejects_a_class_outside_the_matrix() {
        ConfusionMatrix::new(20).add(&[0], &[20]);
    }

    #[test]
    fn overall_skips_nan_classes_in_macro_averages() {
        // K = 3, nothing ignored (the pixel-set overall): truth (0, 0, 1, 2), everything predicted 0.
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 0, 0, 0], &[0, 0, 1, 2]);
        let (per, ov) = overall(&m, None);
        let f = |v: &Value| v.as_f64().unwrap();
        // Class 0: TP 2, FP 2, FN 0 → IoU 1/2, precision 1/2, recall 1, F1 2/3.
        assert!((f(&per["0"]["IoU"]) - 0.5).abs() < 1e-12);
        assert!((f(&per["0"]["F1-score"]) - 2.0 / 3.0).abs() < 1e-12);
        // Classes 1 and 2: never predicted → precision NaN (serialised as null), IoU / recall / F1 = 0.
        assert!(per["1"]["Precision"].is_null() && per["2"]["Precision"].is_null());
        assert_eq!(f(&per["2"]["IoU"]), 0.0);
        // MACRO: NaN skipped for precision (1/2), zeros kept elsewhere.
        assert!((f(&ov["MACRO_Precision"]) - 0.5).abs() < 1e-12);
        assert!((f(&ov["MACRO_Recall"]) - 1.0 / 3.0).abs() < 1e-12);
        assert!((f(&ov["MACRO_IoU"]) - 0.5 / 3.0).abs() < 1e-12);
        // micro: TP 2, FP 2, FN 2.
        assert!((f(&ov["micro_IoU"]) - 2.0 / 6.0).abs() < 1e-12);
        assert!((f(&ov["micro_Precision"]) - 0.5).abs() < 1e-12);
        assert!((f(&ov["Accuracy"]) - 0.5).abs() < 1e-12);
        assert_eq!(per.as_object().unwrap().len(), 3);
    }

    #[test]
    fn overall_deletes_the_void_row_and_column_of_20_classes() {
        // A pixel of class 4 predicted void and a void pixel predicted 4 vanish; 19 classes reported.
        let mut m = ConfusionMatrix::new(20);
        m.add(&[4, 4, 19, 4, 0], &[4, 4, 4, 19, 0]);
        let (per, ov) = overall(&m, Some(19));
        assert_eq!(per.as_object().unwrap().len(), 19);
        assert!(per.get("19").is_none());
        assert_eq!(ov["Accuracy"].as_f64(), Some(1.0));
        assert_eq!(per["4"]["Recall"].as_f64(), Some(1.0));
        // Classes absent from the matrix: IoU NaN, skipped by MACRO_IoU (only 0 and 4 count, both 1).
        assert!(per["7"]["IoU"].is_null());
        assert_eq!(ov["MACRO_IoU"].as_f64(), Some(1.0));
        // The per-epoch meter agrees (percent).
        assert_eq!(m.miou_acc(Some(19)), (100.0, 100.0));
    }
}
