//! PanopticMeter tests: the original meter's results on the fixture dataset (`expected/metric_checks.json`
//! of every panoptic case: ground truth as prediction, and ground truth shifted by one pixel), then hand-built
//! cases whose expected values are derived in the comments (void objects, empty predictions, one candidate,
//! IoU exactly 0.5, ties in the class scores, the running-total quirk), and the `test_tables.npy` round trip.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::data::json::read_json;
use crate::data::pastis::{PastisDataset, PastisOptions, Target};

const K: usize = 18;

fn class_row(m: &PanopticMeter, class: i64) -> [f32; 4] {
    let k = m.classes().iter().position(|&c| c == class).unwrap();
    m.table()[k]
}

/// Rows of every class except those listed are all zero.
fn assert_other_rows_zero(m: &PanopticMeter, listed: &[i64]) {
    for (k, &c) in m.classes().iter().enumerate() {
        if !listed.contains(&c) {
            assert_eq!(m.table()[k], [0.0; 4], "class {c}");
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

// ---------------------------------------------------------------------------------------------------------
// Fixture parity
// ---------------------------------------------------------------------------------------------------------

fn fixtures_root() -> PathBuf {
    std::env::var_os("SITSGPU_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"))
        })
}

/// The panoptic cases of the manifest that have `expected/metric_checks.json`; `None` after a loud skip line
/// when there are no fixtures.
fn metric_check_cases() -> Option<Vec<PathBuf>> {
    let root = fixtures_root();
    let manifest = root.join("manifest.json");
    if !manifest.is_file() {
        eprintln!(
            "!!!!! SKIPPED panoptic meter fixture parity: no fixtures at {} (set SITSGPU_FIXTURES) !!!!!",
            root.display()
        );
        return None;
    }
    let manifest = read_json(&manifest).unwrap();
    let cases = manifest["cases"]
        .as_object()
        .expect("manifest.json: cases")
        .iter()
        .filter(|(_, v)| v["kind"] == "panoptic")
        .map(|(name, _)| root.join(name))
        .filter(|dir| dir.join("expected/metric_checks.json").is_file())
        .collect();
    Some(cases)
}

/// `np.roll(a, 1, axis=-1)` of (B, H, W) maps: pixel (y, x) takes the value of (y, x − 1 mod W).
fn roll_x(maps: &[i64], w: usize) -> Vec<i64> {
    maps.chunks_exact(w)
        .flat_map(|row| (0..w).map(move |x| row[(x + w - 1) % w]))
        .collect()
}

/// One-hot scores (B, C, H, W) of a class map (B, H, W): argmax gives the map back.
fn one_hot(classes: &[i64], b: usize, c: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; b * c * n];
    for s in 0..b {
        for p in 0..n {
            out[(s * c + classes[s * n + p] as usize) * n + p] = 1.0;
        }
    }
    out
}

fn check_against(m: &PanopticMeter, expected: &Value, what: &str) {
    let rows = expected["per_class_TP_FP_FN_sumIoU"].as_array().unwrap();
    assert_eq!(rows.len(), K, "{what}");
    let table = m.table();
    for (k, row) in rows.iter().enumerate() {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for j in 0..3 {
            assert_eq!(
                table[k][j] as f64,
                row[j],
                "{what}: class {} column {j}",
                k + 1
            );
        }
        assert!(
            close(table[k][3] as f64, row[3]),
            "{what}: class {} sumIoU {} vs {}",
            k + 1,
            table[k][3],
            row[3]
        );
    }
    let v = m.value();
    for (name, got) in [("SQ", v.sq), ("RQ", v.rq), ("PQ", v.pq)] {
        let want = expected[name].as_f64().unwrap();
        assert!(close(got, want), "{what}: {name} {got} vs {want}");
    }
    eprintln!(
        "panoptic meter {what}: SQ {} RQ {} PQ {} (the original: {} {} {})",
        v.sq, v.rq, v.pq, expected["SQ"], expected["RQ"], expected["PQ"]
    );
}

/// The original meter over the case's dataset in its eval batches, (a) with the ground truth as prediction and
/// (b) with the ground truth rolled by one pixel along x (`np.roll(·, 1, axis=-1)` of both the instance and the
/// class maps: the only one-pixel shift that reproduces the fixture's table exactly; a zero-filled shift or a
/// shift along y does not).
#[test]
fn meter_matches_the_original_on_the_fixture_metric_checks() {
    let Some(cases) = metric_check_cases() else {
        return;
    };
    assert!(
        !cases.is_empty(),
        "no panoptic case with expected/metric_checks.json in the manifest"
    );
    for case in cases {
        let conf = read_json(&case.join("conf.json")).unwrap();
        let checks = read_json(&case.join("expected/metric_checks.json")).unwrap();
        let folder: &Path = &case.join(conf["dataset_folder"].as_str().unwrap());
        let ds = PastisDataset::open(
            folder,
            PastisOptions {
                target: Target::Instance,
                ..PastisOptions::default()
            },
        )
        .unwrap();
        let batches: Vec<Vec<u64>> =
            serde_json::from_value(conf["reference"]["eval_batches"].clone()).unwrap();
        let c = conf["num_classes"].as_u64().unwrap() as usize;
        let (mut exact, mut shifted) = (PanopticMeter::pastis(), PanopticMeter::pastis());
        for ids in &batches {
            let samples: Vec<_> = ids
                .iter()
                .map(|id| {
                    ds.get(ds.ids().iter().position(|x| x == id).unwrap())
                        .unwrap()
                })
                .collect();
            let [_, _, h, w] = samples[0].shape;
            let (b, n) = (samples.len(), h * w);
            let target: Vec<f32> = samples
                .iter()
                .flat_map(|s| s.instance.clone().unwrap())
                .collect();
            let channel = |k: usize| -> Vec<i64> {
                target
                    .iter()
                    .skip(k)
                    .step_by(7)
                    .map(|&v| v as i64)
                    .collect()
            };
            let (inst, sem) = (channel(1), channel(6));
            let as_f32 = |v: &[i64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            exact.add_outputs([b, h, w], &as_f32(&inst), &one_hot(&sem, b, c, n), &target);
            let (inst_r, sem_r) = (roll_x(&inst, w), roll_x(&sem, w));
            shifted.add_outputs(
                [b, h, w],
                &as_f32(&inst_r),
                &one_hot(&sem_r, b, c, n),
                &target,
            );
        }
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        check_against(
            &exact,
            &checks["gt_as_prediction"],
            &format!("{name} gt_as_prediction"),
        );
        check_against(
            &shifted,
            &checks["gt_shifted_1px"],
            &format!("{name} gt_shifted_1px"),
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Hand-built cases
// ---------------------------------------------------------------------------------------------------------

/// Three void parcels, one prediction on each:
/// ```text
///       true instance            true class                   predicted instance (class)
///   1 1 2 2 5 5 3 3        19 19 19 19 19 19 5 5        10 10 11 11 14 14 12 12
///   1 1 2 2 5 5 3 3        19 19 19 19 19 19 5 5        10 10 11  0  0  0 12 12
///   4 4 4 0 0 0 0 0         7  7  7  0  0  0 0 0        13 13 13 11 14 14  0  0
///   4 4 4 0 0 0 0 0         7  7  7  0  0  0 0 0        13 13 13  0 14 14  0  0
/// ```
/// classes of the predictions: 10 → 5, 11 → 7, 12 → 5, 13 → 7, 14 → 5.
/// Void objects (area under the void mask): 1 (4), 2 (4), 5 (4). Prediction areas: 10: 4, 11: 4 (three on
/// void 2, one at (2, 3)), 12: 4, 13: 6, 14: 6 (two on void 5, four below).
/// - void 1 vs 10: inter 4, IoU 4 / (4 + 4 − 4) = 1 > 0.5 → 10 deleted;
/// - void 2 vs 11: inter 3, IoU 3 / (4 + 4 − 3) = 0.6 > 0.5 → 11 deleted (also its pixel (2, 3));
/// - void 5 vs 14: inter 2, IoU 2 / (4 + 6 − 2) = 0.25 → 14 kept; its two void pixels are cleared, so 14 is
///   the four pixels (2..4, 4..6), class 5.
///
/// Class 5: true {3: 4}, predicted {12: 4, 14: 4}; 3 vs 12: IoU 4 / 4 = 1 → TP; 3 vs 14: inter 0.
///   TP 1, FP 2 − 1 = 1, FN 1 − 1 = 0, sumIoU 1 → SQ 1, RQ 1 / (1 + 0.5) = 2/3, PQ 2/3.
/// Class 7: true {4: 6}, predicted {13: 6}: IoU 1 → TP 1, FP 0, FN 0 → SQ = RQ = PQ = 1.
/// Other classes: nothing → PQ NaN → left out. Means: SQ (1 + 1) / 2 = 1, RQ (2/3 + 1) / 2 = 5/6, PQ 5/6.
///
/// (Before the 2022 fix nothing is deleted here: 11 would keep its pixel (2, 3) and be a false positive of
/// class 7; 10, entirely on void, vanishes with the void pixels either way.)
#[test]
fn void_objects_delete_the_predictions_they_cover_by_more_than_half() {
    let it = [
        1, 1, 2, 2, 5, 5, 3, 3, //
        1, 1, 2, 2, 5, 5, 3, 3, //
        4, 4, 4, 0, 0, 0, 0, 0, //
        4, 4, 4, 0, 0, 0, 0, 0,
    ];
    let st = [
        19, 19, 19, 19, 19, 19, 5, 5, //
        19, 19, 19, 19, 19, 19, 5, 5, //
        7, 7, 7, 0, 0, 0, 0, 0, //
        7, 7, 7, 0, 0, 0, 0, 0,
    ];
    let ip = [
        10, 10, 11, 11, 14, 14, 12, 12, //
        10, 10, 11, 0, 0, 0, 12, 12, //
        13, 13, 13, 11, 14, 14, 0, 0, //
        13, 13, 13, 0, 14, 14, 0, 0,
    ];
    let class_of = |q: i64| match q {
        10 | 12 | 14 => 5,
        11 | 13 => 7,
        _ => 0,
    };
    let sp: Vec<i64> = ip.iter().map(|&q| class_of(q)).collect();
    let mut m = PanopticMeter::pastis();
    m.add([1, 4, 8], &ip, &sp, &it, &st);
    assert_eq!(class_row(&m, 5), [1.0, 1.0, 0.0, 1.0]);
    assert_eq!(class_row(&m, 7), [1.0, 0.0, 0.0, 1.0]);
    assert_other_rows_zero(&m, &[5, 7]);
    let v = m.value();
    assert!(
        close(v.sq, 1.0) && close(v.rq, 5.0 / 6.0) && close(v.pq, 5.0 / 6.0),
        "{v:?}"
    );
    let p = m.per_class();
    assert!(close(p.rq[4], 2.0 / 3.0) && p.rq[0].is_nan() && p.sq[0] == 0.0);
}

/// Nothing predicted. Truth (2 × 4): instance 1 (class 3) on the left half, instance 2 (class 4) on the right.
/// Class 3: true ids {0, 1} → n_true 1; predicted {0} → n_pred 0 → TP 0, FP 0, FN 1; SQ = 0 / 0 → 0,
/// RQ = 0 / (0 + 0 + 0.5) = 0, PQ 0. Class 4 likewise. The others are NaN and left out: SQ = RQ = PQ = 0.
/// An empty meter (or one that saw neither truth nor prediction) has no class to average: NaN.
#[test]
fn empty_predictions_are_all_false_negatives_and_an_empty_meter_is_nan() {
    let it = [1, 1, 2, 2, 1, 1, 2, 2];
    let st = [3, 3, 4, 4, 3, 3, 4, 4];
    let zeros = [0i64; 8];
    let mut m = PanopticMeter::pastis();
    m.add([1, 2, 4], &zeros, &zeros, &it, &st);
    assert_eq!(class_row(&m, 3), [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(class_row(&m, 4), [0.0, 0.0, 1.0, 0.0]);
    assert_other_rows_zero(&m, &[3, 4]);
    assert_eq!(
        m.value(),
        PanopticValue {
            sq: 0.0,
            rq: 0.0,
            pq: 0.0
        }
    );
    let mut empty = PanopticMeter::pastis();
    let v = empty.value();
    assert!(v.sq.is_nan() && v.rq.is_nan() && v.pq.is_nan());
    empty.add([1, 2, 4], &zeros, &zeros, &zeros, &zeros);
    assert!(empty.value().pq.is_nan());
}

/// One candidate, one parcel (3 × 3, class 2):
/// ```text
///   true   1 1 1      predicted   7 7 7
///          1 1 1                  7 7 0
///          0 0 0                  7 0 0
/// ```
/// a_v = 6, a_q = 6, inter = 5 → IoU = 5 / (6 + 6 − 5) = 5/7 > 0.5 → TP 1, FP 0, FN 0; SQ = PQ = 5/7 (the
/// float32 quotient), RQ 1.
#[test]
fn one_candidate_matching_one_parcel() {
    let it = [1, 1, 1, 1, 1, 1, 0, 0, 0];
    let st: Vec<i64> = it.iter().map(|&v| 2 * v).collect();
    let ip = [7, 7, 7, 7, 7, 0, 7, 0, 0];
    let sp: Vec<i64> = ip.iter().map(|&q| if q == 7 { 2 } else { 0 }).collect();
    let mut m = PanopticMeter::pastis();
    m.add([1, 3, 3], &ip, &sp, &it, &st);
    assert_eq!(class_row(&m, 2), [1.0, 0.0, 0.0, 5.0f32 / 7.0]);
    assert_other_rows_zero(&m, &[2]);
    let v = m.value();
    assert_eq!(
        (v.sq, v.rq, v.pq),
        ((5.0f32 / 7.0) as f64, 1.0, (5.0f32 / 7.0) as f64)
    );
}

/// IoU exactly 0.5 is no match (strict ">"). Truth 1 × 5: instance 1 (class 6) on pixels 0-1.
/// - prediction 3 on pixels 0-3: a_v 2, a_q 4, inter 2 → 2 / (2 + 4 − 2) = 0.5 → no TP: FP 1, FN 1;
///   SQ 0, RQ 0 / (0 + 0.5 + 0.5) = 0, PQ 0;
/// - prediction 3 on pixels 0-2: 2 / (2 + 3 − 2) = 2/3 > 0.5 → TP 1, sumIoU 2/3.
#[test]
fn iou_of_exactly_one_half_is_not_a_match() {
    let it = [1, 1, 0, 0, 0];
    let st = [6, 6, 0, 0, 0];
    let mut m = PanopticMeter::pastis();
    m.add([1, 1, 5], &[3, 3, 3, 3, 0], &[6, 6, 6, 6, 0], &it, &st);
    assert_eq!(class_row(&m, 6), [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(m.value().pq, 0.0);
    let mut m = PanopticMeter::pastis();
    m.add([1, 1, 5], &[3, 3, 3, 0, 0], &[6, 6, 6, 0, 0], &it, &st);
    assert_eq!(class_row(&m, 6), [1.0, 0.0, 0.0, 2.0f32 / 3.0]);
}

/// Ties in the class scores and inter over the full maps ([`PanopticMeter::add_outputs`], 1 × 4, C = 20).
/// Truth: instance 1 (class 5) on pixels 0-1. pano_instance [4, 4, 0, 9]; scores: pixel 0 has 1.0 for both
/// classes 2 and 5 (tie → the first, 2), pixel 1 has 1.0 for class 5, pixels 2-3 all zero (→ class 0, so id 9
/// counts nowhere).
/// - class 2: true {0} → n_true 0; predicted ids × mask = [4, 0, 0, 0] → {0, 4}, n_pred 1; no pair (n_true 0)
///   → TP 0, FP 1, FN 0: SQ 0, RQ 0, PQ 0;
/// - class 5: true {0: 2, 1: 2}, predicted [0, 4, 0, 0] → {0: 3, 4: 1}; a_v 2, a_q 1 (inside the predicted
///   class-5 mask), but inter counts true == 1 ∧ pred == 4 over the full map = 2 (pixels 0 and 1), so
///   IoU = 2 / (2 + 1 − 2) = 2 (the original's quirk: above 1) → TP 1, sumIoU 2: SQ 2, RQ 1, PQ 2.
///
/// Means: SQ (0 + 2) / 2 = 1, RQ (0 + 1) / 2 = 0.5, PQ (0 + 2) / 2 = 1.
#[test]
fn score_ties_go_to_the_first_class_and_overlaps_use_the_full_maps() {
    let (c, n) = (20, 4);
    let mut scores = vec![0f32; c * n];
    scores[2 * n] = 1.0;
    scores[5 * n] = 1.0;
    scores[5 * n + 1] = 1.0;
    let (it, st) = ([1, 1, 0, 0], [5, 5, 0, 0]);
    let target: Vec<f32> = (0..n)
        .flat_map(|p| [0.0, it[p] as f32, 0.0, 0.0, 0.0, 0.0, st[p] as f32])
        .collect();
    let mut m = PanopticMeter::pastis();
    m.add_outputs([1, 1, 4], &[4.0, 4.0, 0.0, 9.0], &scores, &target);
    assert_eq!(class_row(&m, 2), [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(class_row(&m, 5), [1.0, 0.0, 0.0, 2.0]);
    assert_other_rows_zero(&m, &[2, 5]);
    assert_eq!(
        m.value(),
        PanopticValue {
            sq: 1.0,
            rq: 0.5,
            pq: 1.0
        }
    );
}

/// The "− 1 for the masked zeros" quirk and the running totals of a batch. Sample A (1 × 2): instance 1 of
/// class 1 covers everything, predicted as id 5 of class 1. Sample B (1 × 2): instance 2 (class 1) on pixel 0,
/// predicted as id 6 on pixel 0.
/// - batch [A, B]: A: true {1} → n_true += 1 − 1 = 0, predicted {5} → n_pred += 0; both running totals 0 →
///   A's pairs are skipped. B: true {0, 2}, predicted {0, 6} → totals 1, 1; 2 vs 6: IoU 1 / (1 + 1 − 1) = 1 →
///   TP 1. Class 1: TP 1, FP 0, FN 0, sumIoU 1.
/// - batch [B, A]: B as above (TP 1, totals 1, 1); A adds 0 to the totals, which are no longer 0, so its pair
///   is compared: 1 vs 5: inter 2, IoU 2 / (2 + 2 − 2) = 1 → TP 2. FP = 1 − 2 = −1, FN = −1, sumIoU 2:
///   SQ 1, RQ = 2 / (2 − 0.5 − 0.5) = 2, PQ 2.
#[test]
fn instances_covering_a_whole_sample_follow_the_original_counting() {
    let mut ab = PanopticMeter::pastis();
    ab.add(
        [2, 1, 2],
        &[5, 5, 6, 0],
        &[1, 1, 1, 0],
        &[1, 1, 2, 0],
        &[1, 1, 1, 0],
    );
    assert_eq!(class_row(&ab, 1), [1.0, 0.0, 0.0, 1.0]);
    let mut ba = PanopticMeter::pastis();
    ba.add(
        [2, 1, 2],
        &[6, 0, 5, 5],
        &[1, 0, 1, 1],
        &[2, 0, 1, 1],
        &[1, 0, 1, 1],
    );
    assert_eq!(class_row(&ba, 1), [2.0, -1.0, -1.0, 2.0]);
    let v = ba.value();
    assert_eq!((v.sq, v.rq, v.pq), (1.0, 2.0, 2.0));
}

/// `test_tables.npy`: float32 (18, 4) written and read back; a meter rebuilt from it gives the same values;
/// merging two meters sums their counts; a table of the wrong shape is an error naming the file.
#[test]
fn tables_round_trip_and_merge() {
    let dir = std::env::temp_dir().join(format!("sitsgpu_pano_meter_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = PanopticMeter::pastis();
    m.add(
        [1, 3, 3],
        &[7, 7, 7, 7, 7, 0, 7, 0, 0],
        &[2, 2, 2, 2, 2, 0, 2, 0, 0],
        &[1, 1, 1, 1, 1, 1, 0, 0, 0],
        &[2, 2, 2, 2, 2, 2, 0, 0, 0],
    );
    let path = dir.join("test_tables.npy");
    m.write_table(&path).unwrap();
    let header = npy::read_header(&path).unwrap();
    assert_eq!((header.shape, header.dtype.as_str()), (vec![18, 4], "f4"));
    let table = read_table(&path).unwrap();
    assert_eq!(table, m.table());
    let back = PanopticMeter::pastis().with_table(&table).unwrap();
    assert_eq!(back, m);
    let mut sum = back.clone();
    sum.merge(&m);
    assert_eq!(class_row(&sum, 2), [2.0, 0.0, 0.0, 2.0 * (5.0f32 / 7.0)]);
    assert_eq!(sum.value(), m.value());
    npy::write_f32(dir.join("bad.npy"), &[18, 3], &[0.0; 54]).unwrap();
    let e = read_table(dir.join("bad.npy")).unwrap_err().to_string();
    assert!(e.contains("bad.npy") && e.contains("(K, 4)"), "{e}");
    assert!(PanopticMeter::pastis().with_table(&table[..17]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
