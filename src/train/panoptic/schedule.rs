//! The two things `train_panoptic.py` changes between epochs: the learning rate (`MultiStepLR(milestones=[60,
//! 80], gamma=0.3)`, stepped once per epoch after training; spec §8.2) and the pseudo-NMS confidence threshold
//! (`tune_threshold`, after each validation; spec §6.6).

/// The MultiStepLR milestones of train_panoptic.py.
pub const MILESTONES: [usize; 2] = [60, 80];
/// The MultiStepLR factor of train_panoptic.py.
pub const GAMMA: f64 = 0.3;

/// The learning rate of epoch `epoch` (1-based): `lr` times [`GAMMA`] once for each milestone m < epoch —
/// 0.01 for epochs 1-60, 0.003 for 61-80, 0.0009 from 81 on — multiplied in the order PyTorch does.
pub fn lr_at(lr: f64, epoch: usize) -> f64 {
    MILESTONES
        .iter()
        .filter(|&&m| epoch > m)
        .fold(lr, |lr, _| lr * GAMMA)
}

/// `tune_threshold`: from the (confidence, IoU) pairs of the shape loss (**QUIRK:** the original passes those
/// of the last validation batch only), with t = IoU > 0.5, for ct = 0, 0.01, …, 0.99 (numpy's arange, f64):
/// TP = #(p > ct ∧ t), FP = #(p > ct ∧ ¬t), FN = #(p < ct ∧ t) (a confidence equal to ct counts nowhere),
/// F = TP / (TP + ½(FP + FN)); the first ct with a strictly greater F than the best so far (starting at F = 0,
/// ct = 0) wins. Comparisons in f64 (the confidences are f32 values, exact in f64). No pair, or no F above 0:
/// 0.
pub fn tune_threshold(confidences: &[f32], ious: &[f32]) -> f32 {
    let (mut best_f, mut best_ct) = (0.0f64, 0.0f64);
    for i in 0..100 {
        let ct = i as f64 * 0.01;
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for (&p, &iou) in confidences.iter().zip(ious) {
            let (p, t) = (p as f64, iou > 0.5);
            tp += (p > ct && t) as usize;
            fp += (p > ct && !t) as usize;
            fn_ += (p < ct && t) as usize;
        }
        let f = tp as f64 / (tp as f64 + 0.5 * (fp + fn_) as f64);
        if f > best_f {
            best_f = f;
            best_ct = ct;
        }
    }
    best_ct as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learning_rate_steps_at_60_and_80() {
        assert_eq!(lr_at(0.01, 1), 0.01);
        assert_eq!(lr_at(0.01, 60), 0.01);
        assert_eq!(lr_at(0.01, 61), 0.01 * 0.3);
        assert_eq!(lr_at(0.01, 80), 0.01 * 0.3);
        assert_eq!(lr_at(0.01, 81), 0.01 * 0.3 * 0.3);
        assert_eq!(lr_at(0.01, 100), 0.01 * 0.3 * 0.3);
    }

    #[test]
    fn the_threshold_is_the_first_best_f_score() {
        // Good masks (IoU > 0.5) at confidences 0.9 and 0.8, bad ones at 0.3 and 0.2 (IoU exactly 0.5 is bad).
        // ct = 0: TP 2, FP 2, F = 2/3; ct = 0.01..0.20: the same (0.2f32 > 0.2 in f64); ct = 0.21..0.30: FP 1,
        // F = 0.8; from ct = 0.31: FP 0, F = 1 (numpy 2.4 gives the same: 0.0, 0.21, 0.31).
        let ct = tune_threshold(&[0.9, 0.3, 0.8, 0.2], &[0.7, 0.1, 0.6, 0.5]);
        assert!((ct - 0.31).abs() < 1e-6, "{ct}");
        // Nothing good: F = 0 everywhere, the threshold stays 0; no pair at all: 0.
        assert_eq!(tune_threshold(&[0.9, 0.5], &[0.2, 0.5]), 0.0);
        assert_eq!(tune_threshold(&[], &[]), 0.0);
    }
}
