//! `PanopticMeter` (spec §6.7-6.9, utae-paps' `src/panoptic/metrics.py` with the 27.06.2022 fix): per class
//! c ∈ {1..K−1} \ {void} the true positives, false positives, false negatives and the sum of the IoUs of the
//! true positives, accumulated over batches; SQ, RQ, PQ per class and their means.
//!
//! Per batch (`add`), on the predicted instance map and the argmax of the predicted class scores:
//! 1. void objects: for each sample, each true instance id v ≠ 0 with pixels of true class void (area a_v =
//!    its void pixels) and each predicted id q ≠ 0 (area a_q = all its pixels, recounted for every v since
//!    earlier deletions change it): if |v ∩ q| / (a_v + a_q − |v ∩ q|) > 0.5 (full masks for the
//!    intersection), q is deleted (its pixels get id 0);
//! 2. void pixels get predicted id 0 and class 0;
//! 3. per class c and sample: n_pred += distinct non-zero ids among pixels predicted c, n_true += distinct
//!    non-zero true ids among pixels of true class c; every pair (v, q) of them with areas counted inside the
//!    class regions and the intersection over the full masks, IoU > 0.5 (strict), is a true positive (IoU >
//!    0.5 makes matches unique). FP = n_pred − TP, FN = n_true − TP.
//!
//! `value`: SQ_c = ΣIoU_c / TP_c (0 when TP_c = 0), RQ_c = TP_c / (TP_c + FP_c/2 + FN_c/2), PQ_c = SQ_c·RQ_c;
//! the means are over the classes whose PQ is defined (TP + FP + FN > 0). Arithmetic in f32 as the
//! original's tensors (IoUs, their per-batch sums, the accumulators).

/// The panoptic quality meter.
#[derive(Debug, Clone, PartialEq)]
pub struct PanopticMeter {
    /// The evaluated classes (all but background and void).
    pub class_list: Vec<usize>,
    void_label: Option<usize>,
    /// Per evaluated class: TP, FP, FN.
    pub counts: Vec<[f32; 3]>,
    /// Per evaluated class: sum of the true positives' IoUs.
    pub cumulative_ious: Vec<f32>,
}

/// Distinct values of `ids` (sorted) with their counts.
fn unique_counts(ids: impl Iterator<Item = f32>) -> Vec<(f32, usize)> {
    let mut v: Vec<f32> = ids.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let mut out: Vec<(f32, usize)> = Vec::new();
    for x in v {
        match out.last_mut() {
            Some((y, n)) if *y == x => *n += 1,
            _ => out.push((x, 1)),
        }
    }
    out
}

impl PanopticMeter {
    /// A meter for `num_classes` classes without `background` and `void` (the original's defaults 0, 19).
    pub fn new(num_classes: usize, background: usize, void_label: Option<usize>) -> Self {
        let class_list: Vec<usize> = (0..num_classes)
            .filter(|&c| c != background && Some(c) != void_label)
            .collect();
        let n = class_list.len();
        PanopticMeter {
            class_list,
            void_label,
            counts: vec![[0.0; 3]; n],
            cumulative_ious: vec![0.0; n],
        }
    }

    /// Adds a batch: predicted instance ids (B·H·W), predicted classes (B·H·W), the true instance ids and
    /// pixel classes (B·H·W each), `hw` pixels per sample.
    pub fn add(
        &mut self,
        pred_instance: &[f32],
        pred_class: &[usize],
        true_instance: &[f32],
        true_class: &[usize],
        hw: usize,
    ) {
        let n = pred_instance.len();
        assert!(
            pred_class.len() == n && true_instance.len() == n && true_class.len() == n && hw > 0,
            "PanopticMeter::add: expected four maps of equal length, got {n}, {}, {}, {}",
            pred_class.len(),
            true_instance.len(),
            true_class.len()
        );
        let mut inst = pred_instance.to_vec();
        let mut cls = pred_class.to_vec();
        let b = n / hw;
        if let Some(void) = self.void_label {
            for s in 0..b {
                let r = s * hw..(s + 1) * hw;
                let is_void: Vec<bool> = true_class[r.clone()].iter().map(|&c| c == void).collect();
                if !is_void.iter().any(|&v| v) {
                    continue;
                }
                let tv = &true_instance[r.clone()];
                let void_ids =
                    unique_counts(tv.iter().zip(&is_void).map(|(&t, &v)| if v { t } else { 0.0 }));
                for (v_id, v_area) in void_ids {
                    if v_id == 0.0 {
                        continue;
                    }
                    let preds = unique_counts(inst[r.clone()].iter().copied());
                    for (q_id, q_area) in preds {
                        if q_id == 0.0 {
                            continue;
                        }
                        let pi = &mut inst[r.clone()];
                        let inter = tv.iter().zip(pi.iter()).filter(|(&t, &p)| t == v_id && p == q_id).count();
                        let iou = inter as f32 / (v_area + q_area - inter) as f32;
                        if iou > 0.5 {
                            pi.iter_mut().filter(|p| **p == q_id).for_each(|p| *p = 0.0);
                        }
                    }
                }
                for p in r.filter(|&p| is_void[p - s * hw]) {
                    inst[p] = 0.0;
                    cls[p] = 0;
                }
            }
        }
        for (i, &c) in self.class_list.iter().enumerate() {
            let (mut tp, mut n_pred, mut n_true) = (0usize, 0usize, 0usize);
            let mut ious: Vec<f32> = Vec::new();
            for s in 0..b {
                let r = s * hw..(s + 1) * hw;
                let (ti, tc, pi, pc) = (&true_instance[r.clone()], &true_class[r.clone()], &inst[r.clone()], &cls[r]);
                let trues = unique_counts(ti.iter().zip(tc).map(|(&t, &k)| if k == c { t } else { 0.0 }));
                let preds = unique_counts(pi.iter().zip(pc).map(|(&p, &k)| if k == c { p } else { 0.0 }));
                let nonzero = |u: &[(f32, usize)]| u.iter().filter(|(id, _)| *id != 0.0).count();
                n_pred += nonzero(&preds);
                n_true += nonzero(&trues);
                for &(t_id, t_area) in trues.iter().filter(|(id, _)| *id != 0.0) {
                    for &(q_id, q_area) in preds.iter().filter(|(id, _)| *id != 0.0) {
                        let inter = ti.iter().zip(pi).filter(|(&t, &p)| t == t_id && p == q_id).count();
                        let iou = inter as f32 / (t_area + q_area - inter) as f32;
                        if iou > 0.5 {
                            tp += 1;
                            ious.push(iou);
                        }
                    }
                }
            }
            let k = &mut self.counts[i];
            k[0] += tp as f32;
            k[1] += (n_pred - tp) as f32;
            k[2] += (n_true - tp) as f32;
            if !ious.is_empty() {
                self.cumulative_ious[i] += ious.iter().sum::<f32>();
            }
        }
    }

    /// Per class (SQ, RQ, PQ); RQ and PQ are NaN for a class never seen.
    pub fn per_class(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut sq = Vec::new();
        let mut rq = Vec::new();
        let mut pq = Vec::new();
        for (k, &iou) in self.counts.iter().zip(&self.cumulative_ious) {
            let s = iou / k[0];
            let s = if s.is_finite() { s } else { 0.0 };
            let r = k[0] / (k[0] + 0.5 * k[1] + 0.5 * k[2]);
            sq.push(s);
            rq.push(r);
            pq.push(s * r);
        }
        (sq, rq, pq)
    }

    /// (SQ, RQ, PQ): the means over the classes whose PQ is defined (NaN when none is).
    pub fn value(&self) -> (f32, f32, f32) {
        let (sq, rq, pq) = self.per_class();
        let keep: Vec<usize> = (0..pq.len()).filter(|&i| !pq[i].is_nan()).collect();
        let mean = |v: &[f32]| keep.iter().map(|&i| v[i]).sum::<f32>() / keep.len() as f32;
        (mean(&sq), mean(&rq), mean(&pq))
    }

    /// The (classes, 4) table [TP, FP, FN, ΣIoU] (`get_table`, saved as `test_tables.npy`), row-major.
    pub fn table(&self) -> Vec<f32> {
        self.counts
            .iter()
            .zip(&self.cumulative_ious)
            .flat_map(|(k, &s)| [k[0], k[1], k[2], s])
            .collect()
    }

    /// Adds another meter's counts (tables summed over folds).
    pub fn merge(&mut self, other: &PanopticMeter) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for j in 0..3 {
                a[j] += b[j];
            }
        }
        for (a, b) in self.cumulative_ious.iter_mut().zip(&other.cumulative_ious) {
            *a += b;
        }
    }
}
