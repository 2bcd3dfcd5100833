use super::meter::PanopticMeter;

/// One 4 × 4 sample: true ids, true classes, predicted ids, predicted classes (row-major).
fn add(m: &mut PanopticMeter, ti: [f32; 16], tc: [usize; 16], pi: [f32; 16], pc: [usize; 16]) {
    m.add(&pi, &pc, &ti, &tc, 16);
}

#[test]
fn perfect_prediction_and_one_pixel_shift() {
    // Instance 1 (class 2) = the left two columns, instance 2 (class 5) = the right two.
    let ti = [1., 1., 2., 2., 1., 1., 2., 2., 1., 1., 2., 2., 1., 1., 2., 2.];
    let tc = [2, 2, 5, 5, 2, 2, 5, 5, 2, 2, 5, 5, 2, 2, 5, 5];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, tc, ti, tc);
    assert_eq!(m.value(), (1.0, 1.0, 1.0));
    // Shifted: predicted instance 1 covers column 0 only (IoU 4/8 = 0.5: not > 0.5 → FP + FN); instance 2
    // covers columns 1-3 (IoU 8/12 = 2/3 → TP).
    let pi = [1., 2., 2., 2., 1., 2., 2., 2., 1., 2., 2., 2., 1., 2., 2., 2.];
    let pc = [2, 5, 5, 5, 2, 5, 5, 5, 2, 5, 5, 5, 2, 5, 5, 5];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, tc, pi, pc);
    let t = m.table();
    assert_eq!(&t[4..8], &[0.0, 1.0, 1.0, 0.0]); // class 2
    assert_eq!(&t[16..19], &[1.0, 0.0, 0.0]); // class 5
    assert!((t[19] - 2.0 / 3.0).abs() < 1e-7);
    // Two classes seen: SQ = (0 + 2/3) / 2, RQ = (0 + 1) / 2, PQ = (0 + 2/3) / 2.
    let (sq, rq, pq) = m.value();
    assert!((sq - 1.0 / 3.0).abs() < 1e-7 && rq == 0.5 && (pq - 1.0 / 3.0).abs() < 1e-7);
}

#[test]
fn void_objects_and_pixels_are_ignored() {
    // Two void instances (ids 3 and 4, class 19) and a crop instance 1 (class 7). Predictions: id 5 matches
    // void instance 3 (IoU 1) → deleted; id 6 overlaps void 4 on half its pixels → survives but loses its
    // void pixels; id 1 matches the crop.
    let ti = [3., 3., 4., 4., 3., 3., 4., 4., 1., 1., 1., 1., 1., 1., 1., 1.];
    let tc = [19, 19, 19, 19, 19, 19, 19, 19, 7, 7, 7, 7, 7, 7, 7, 7];
    let pi = [5., 5., 6., 6., 5., 5., 0., 0., 1., 1., 1., 1., 1., 1., 1., 1.];
    let pc = [4, 4, 9, 9, 4, 4, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, tc, pi, pc);
    let row = |c: usize| m.table()[(c - 1) * 4..c * 4].to_vec();
    assert_eq!(row(7), vec![1.0, 0.0, 0.0, 1.0]);
    // Id 5 was deleted (no FP in class 4); id 6's pixels were all void, so nothing is left of it either.
    assert_eq!(row(4), vec![0.0; 4]);
    assert_eq!(row(9), vec![0.0; 4]);
    assert_eq!(m.value(), (1.0, 1.0, 1.0));
    // The same prediction where id 6 also covers two non-void pixels: IoU with void 4 = 2/6, kept, and its
    // remaining class-9 pixels are a false positive.
    let pi2 = [5., 5., 6., 6., 5., 5., 0., 0., 6., 6., 1., 1., 1., 1., 1., 1.];
    let pc2 = [4, 4, 9, 9, 4, 4, 0, 0, 9, 9, 7, 7, 7, 7, 7, 7];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, tc, pi2, pc2);
    assert_eq!(m.table()[(9 - 1) * 4..9 * 4].to_vec(), vec![0.0, 1.0, 0.0, 0.0]);
    // Crop 1 (8 pixels) vs prediction 1 (6 pixels): IoU 6/8 > 0.5.
    assert_eq!(m.table()[(7 - 1) * 4], 1.0);
}

#[test]
fn empty_predictions_and_no_objects() {
    let ti = [1.; 16];
    let tc = [3; 16];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, tc, [0.; 16], [0; 16]);
    // One false negative in class 3, every other class unseen (NaN, excluded from the means).
    assert_eq!(m.table()[8..12].to_vec(), vec![0.0, 0.0, 1.0, 0.0]);
    assert_eq!(m.value(), (0.0, 0.0, 0.0));
    let (_, rq, _) = m.per_class();
    assert!(rq[0].is_nan());
    // Nothing at all: every class undefined, the means NaN (as the original's mean of an empty tensor).
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, [0.; 16], [0; 16], [0.; 16], [0; 16]);
    assert!(m.value().2.is_nan());
}

#[test]
fn one_candidate_and_plateau_ids() {
    // A single predicted instance with a non-consecutive id (pseudo-NMS ids are rank + 1) covering two true
    // instances of class 1 equally: IoU 8/16 with each, not > 0.5: FP 1, FN 2.
    let ti = [1., 1., 2., 2., 1., 1., 2., 2., 1., 1., 2., 2., 1., 1., 2., 2.];
    let mut m = PanopticMeter::new(20, 0, Some(19));
    add(&mut m, ti, [1; 16], [7.; 16], [1; 16]);
    assert_eq!(m.table()[0..4].to_vec(), vec![0.0, 1.0, 2.0, 0.0]);
    // Two batches accumulate; merge adds tables.
    let mut a = m.clone();
    a.merge(&m);
    assert_eq!(a.table()[0..4].to_vec(), vec![0.0, 2.0, 4.0, 0.0]);
}
