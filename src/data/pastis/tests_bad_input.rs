//! PASTIS loader bad-input tests: tiny folders written to a temporary directory, each broken in one way; every
//! error must name the file at fault and say what is wrong, and nothing may panic.

use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use super::*;

const H: usize = 4;
const W: usize = 5;

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_i16(path: &Path, shape: &[usize], data: &[i16]) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<i16>::new()
        .default_dtype()
        .shape(&shape)
        .writer(f)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Writes a version 1.0 `.npy` with this header dict and 64 data bytes.
fn raw_npy(path: &Path, dict: &str) {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[0u8; 64]);
    std::fs::write(path, b).unwrap();
}

/// Patch 7: Fold 1, T = 3, dates as an object. Patch 20: Fold 2, T = 2, dates as a JSON string.
fn metadata() -> String {
    r#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "properties": {"ID_PATCH": 20, "Fold": 2,
        "dates-S2": "{\"0\": 20181001, \"1\": 20180915}"}, "geometry": null},
      {"type": "Feature", "properties": {"ID_PATCH": 7, "Fold": 1,
        "dates-S2": {"0": 20180902, "1": 20181003, "2": 20190228}}, "geometry": null}
    ]}"#
    .to_string()
}

fn norm_json() -> String {
    let folds: Vec<String> = (1..=5)
        .map(|f| {
            let mean: Vec<String> = (0..10)
                .map(|c| format!("{}", 100.0 * f as f64 + c as f64 + 0.1))
                .collect();
            let std: Vec<String> = (0..10)
                .map(|c| format!("{}", 10.0 + f as f64 + c as f64 * 0.5))
                .collect();
            format!(
                "\"Fold_{f}\": {{\"mean\": [{}], \"std\": [{}]}}",
                mean.join(", "),
                std.join(", ")
            )
        })
        .collect();
    format!("{{{}}}", folds.join(", "))
}

/// A valid tiny PASTIS folder (both target kinds), unique per test name.
fn tiny(name: &str) -> TmpDir {
    let dir = std::env::temp_dir().join(format!("sitsgpu_pastis_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["DATA_S2", "ANNOTATIONS", "INSTANCE_ANNOTATIONS"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("metadata.geojson"), metadata()).unwrap();
    std::fs::write(dir.join("NORM_S2_patch.json"), norm_json()).unwrap();
    for (id, t) in [(7u64, 3usize), (20, 2)] {
        let data: Vec<i16> = (0..t * 10 * H * W)
            .map(|k| 500 + (k % 97) as i16 + id as i16)
            .collect();
        write_i16(
            &dir.join(format!("DATA_S2/S2_{id}.npy")),
            &[t, 10, H, W],
            &data,
        );
        let target: Vec<f32> = (0..3 * H * W).map(|k| (k % 20) as f32).collect();
        npy::write_f32(
            dir.join(format!("ANNOTATIONS/TARGET_{id}.npy")),
            &[3, H, W],
            &target,
        )
        .unwrap();
        let inst: Vec<f32> = (0..H * W).map(|k| (k / 7) as f32).collect();
        npy::write_f32(
            dir.join(format!("INSTANCE_ANNOTATIONS/INSTANCES_{id}.npy")),
            &[H, W],
            &inst,
        )
        .unwrap();
        npy::write_f32(
            dir.join(format!("INSTANCE_ANNOTATIONS/ZONES_{id}.npy")),
            &[H, W],
            &inst,
        )
        .unwrap();
        let heat: Vec<f32> = (0..H * W).map(|k| k as f32 / 32.0).collect();
        npy::write_f32(
            dir.join(format!("INSTANCE_ANNOTATIONS/HEATMAP_{id}.npy")),
            &[H, W],
            &heat,
        )
        .unwrap();
    }
    TmpDir(dir)
}

fn instance_opts() -> PastisOptions {
    PastisOptions {
        target: Target::Instance,
        ..PastisOptions::default()
    }
}

/// Opens and reads every sample; the first error as text.
fn load_err(dir: &Path, opts: PastisOptions) -> String {
    let ds = match PastisDataset::open(dir, opts) {
        Ok(ds) => ds,
        Err(e) => return e.to_string(),
    };
    for i in 0..ds.len() {
        if let Err(e) = ds.get(i) {
            return e.to_string();
        }
    }
    panic!("expected an error reading {}", dir.display());
}

fn assert_names(e: &str, file: &str, what: &str) {
    assert!(e.contains(file), "error does not name {file}: {e}");
    assert!(e.contains(what), "error does not say {what:?}: {e}");
}

#[test]
fn tiny_folder_reads() {
    let d = tiny("ok");
    let ds = PastisDataset::open(&d.0, instance_opts()).unwrap();
    assert_eq!(ds.ids(), &[7, 20]);
    let s = ds.get(1).unwrap();
    // 20180915 -> 14, 20181001 -> 30: sorted ascending whatever the JSON order.
    assert_eq!(s.dates, vec![14, 30]);
    assert_eq!(ds.get(0).unwrap().dates, vec![1, 32, 180]);
    // Normalisation over all folds: the f64 average of the five vectors, cast to f32.
    let (mean, std) = ds.norm().unwrap();
    let norm: serde_json::Value = serde_json::from_str(&norm_json()).unwrap();
    let sum: f64 = (1..=5)
        .map(|f| norm[format!("Fold_{f}")]["mean"][3].as_f64().unwrap())
        .sum();
    assert_eq!(mean[3], (sum / 5.0) as f32);
    let raw = 500.0 + 20.0; // first S2 value of patch 20
    assert_eq!(s.data[0], (raw - mean[0]) / std[0]);
    assert_eq!(s.instance.as_ref().unwrap().len(), H * W * 7);
    // Folds [2]: only patch 20.
    let opts = PastisOptions {
        folds: Some(vec![2]),
        norm: false,
        ..PastisOptions::default()
    };
    let ds = PastisDataset::open(&d.0, opts).unwrap();
    assert_eq!(ds.ids(), &[20]);
    assert_eq!(ds.get(0).unwrap().data[0], 520.0);
    let batches: Vec<_> = ds.batches(vec![0, 0, 0], 2).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].as_ref().unwrap().ids, vec![20]);
}

#[test]
fn bad_folder_and_options() {
    let d = tiny("opts");
    let missing = d.0.join("nope");
    let e = PastisDataset::open(&missing, PastisOptions::default())
        .unwrap_err()
        .to_string();
    assert_names(&e, "nope", "does not exist");
    let e = PastisDataset::open(
        &d.0,
        PastisOptions {
            folds: Some(vec![1, 6]),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert_names(&e, &d.0.display().to_string(), "unknown fold 6");
    let e = PastisDataset::open(
        &d.0,
        PastisOptions {
            sats: vec!["S1A".into()],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("S2"), "{e}");
    // An index out of range and batch_size 0 are errors, not panics.
    let ds = PastisDataset::open(&d.0, PastisOptions::default()).unwrap();
    assert!(ds.get(2).unwrap_err().to_string().contains("out of range"));
    let mut it = ds.batches(vec![0, 5], 1);
    assert!(it.next().unwrap().is_ok());
    assert!(it
        .next()
        .unwrap()
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(it.next().is_none());
    assert!(ds.batches(vec![0], 0).next().unwrap().is_err());
    // Dropping a reader early stops it.
    let mut it = ds.batches((0..100).map(|i| i % 2).collect(), 1);
    it.next().unwrap().unwrap();
    drop(it);
}

#[test]
fn bad_metadata() {
    let d = tiny("meta");
    let meta = d.0.join("metadata.geojson");
    let cases: Vec<(String, &str)> = vec![
        ("{\"features\": [".into(), "not valid JSON"),
        ("{\"type\": \"FeatureCollection\"}".into(), "features"),
        (
            metadata().replace("\"ID_PATCH\": 7", "\"ID_PATCH\": \"seven\""),
            "\"ID_PATCH\"",
        ),
        (
            metadata().replace("\"ID_PATCH\": 7", "\"ID_PATCH\": 20"),
            "duplicate",
        ),
        (metadata().replace("\"Fold\": 1", "\"Fold\": 9"), "\"Fold\""),
        (
            metadata().replace(", \"Fold\": 1", ""),
            "\"Fold\" is missing",
        ),
        (metadata().replace("20190228", "20190230"), "\"dates-S2\""),
        (
            metadata().replace("20190228", "\"2019-02-28\""),
            "\"dates-S2\"",
        ),
        (metadata().replace("20190228", "20200601"), "[-200, 599]"),
        (
            metadata().replace("20181001, ", "20181001 "),
            "not valid JSON",
        ),
        (
            metadata().replace(
                "\"dates-S2\": {\"0\": 20180902, \"1\": 20181003, \"2\": 20190228}",
                "\"dates-S2\": 5",
            ),
            "\"dates-S2\"",
        ),
        (
            metadata().replace(
                "\"dates-S2\": {\"0\": 20180902, \"1\": 20181003, \"2\": 20190228}",
                "\"dates-S2\": {}",
            ),
            "empty",
        ),
    ];
    for (text, what) in cases {
        std::fs::write(&meta, &text).unwrap();
        let e = load_err(&d.0, PastisOptions::default());
        assert_names(&e, "metadata.geojson", what);
    }
    std::fs::remove_file(&meta).unwrap();
    assert_names(
        &load_err(&d.0, PastisOptions::default()),
        "metadata.geojson",
        "",
    );
}

#[test]
fn bad_norm() {
    let d = tiny("norm");
    let norm = d.0.join("NORM_S2_patch.json");
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "not valid JSON"),
        (norm_json().replace("Fold_3", "Fold_X"), "unknown fold 3"),
        (norm_json().replacen("100.1, ", "", 1), "has 9 values"),
        (
            norm_json().replacen("100.1", "\"a\"", 1),
            "not a finite number",
        ),
        (
            norm_json().replace("\"std\": [", "\"std\": [-1000, "),
            "has 11 values",
        ),
    ];
    for (text, what) in cases {
        std::fs::write(&norm, &text).unwrap();
        assert_names(
            &load_err(&d.0, PastisOptions::default()),
            "NORM_S2_patch.json",
            what,
        );
    }
    // A zero std (averaged) would divide by zero.
    let zero: String = {
        let mut v: serde_json::Value = serde_json::from_str(&norm_json()).unwrap();
        for f in 1..=5 {
            v[format!("Fold_{f}")]["std"][4] = serde_json::json!(0.0);
        }
        v.to_string()
    };
    std::fs::write(&norm, zero).unwrap();
    assert_names(
        &load_err(&d.0, PastisOptions::default()),
        "NORM_S2_patch.json",
        "std of band 4",
    );
    // Without normalisation the file is not read at all.
    std::fs::remove_file(&norm).unwrap();
    assert!(PastisDataset::open(
        &d.0,
        PastisOptions {
            norm: false,
            ..Default::default()
        }
    )
    .is_ok());
    assert_names(
        &load_err(&d.0, PastisOptions::default()),
        "NORM_S2_patch.json",
        "",
    );
}

#[test]
fn missing_patch_files() {
    for (file, opts) in [
        ("DATA_S2/S2_20.npy", PastisOptions::default()),
        ("ANNOTATIONS/TARGET_7.npy", PastisOptions::default()),
        ("INSTANCE_ANNOTATIONS/ZONES_20.npy", instance_opts()),
    ] {
        let d = tiny(&format!("missing_{}", file.replace('/', "_")));
        std::fs::remove_file(d.0.join(file)).unwrap();
        let e = PastisDataset::open(&d.0, opts).unwrap_err().to_string();
        assert_names(
            &e,
            file.rsplit('/').next().unwrap(),
            "listed in metadata.geojson",
        );
    }
    // Instance files are not needed for the semantic target.
    let d = tiny("missing_semantic_ok");
    std::fs::remove_file(d.0.join("INSTANCE_ANNOTATIONS/HEATMAP_7.npy")).unwrap();
    PastisDataset::open(&d.0, PastisOptions::default())
        .unwrap()
        .get(0)
        .unwrap();
}

#[test]
fn an_unlabeled_folder_reads_without_annotations() {
    let d = tiny("unlabeled");
    std::fs::remove_dir_all(d.0.join("ANNOTATIONS")).unwrap();
    std::fs::remove_dir_all(d.0.join("INSTANCE_ANNOTATIONS")).unwrap();
    // The semantic target (training, evaluation) names the first missing label file.
    let e = PastisDataset::open(&d.0, PastisOptions::default())
        .unwrap_err()
        .to_string();
    assert_names(&e, "TARGET_7.npy", "does not exist");
    // Unlabeled: the series and dates only, an empty target, and batches without targets.
    let opts = PastisOptions {
        target: Target::Unlabeled,
        ..PastisOptions::default()
    };
    let ds = PastisDataset::open(&d.0, opts).unwrap();
    let s = ds.get(0).unwrap();
    assert_eq!((s.shape, s.target.len()), ([3, 10, H, W], 0));
    assert!(s.instance.is_none());
    let b = ds.load_batch(&[0, 1], 0.0).unwrap();
    assert_eq!((b.ids, b.targets.len()), (vec![7, 20], 0));
}

#[test]
fn bad_arrays() {
    let s2 = |id: u64| format!("DATA_S2/S2_{id}.npy");
    type Case = (&'static str, String, Box<dyn Fn(&Path)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "truncated",
            s2(7),
            Box::new(|p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() - 3]).unwrap();
            }),
            "truncated",
        ),
        (
            "garbage",
            s2(7),
            Box::new(|p| std::fs::write(p, b"hello, not an array").unwrap()),
            "not a valid .npy",
        ),
        (
            "empty",
            s2(20),
            Box::new(|p| std::fs::write(p, b"").unwrap()),
            "not a valid .npy",
        ),
        (
            "huge_shape",
            s2(7),
            Box::new(|p| {
                raw_npy(p, "{'descr': '<i2', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9), }")
            }),
            "absurdly large",
        ),
        (
            "three_d",
            s2(7),
            Box::new(|p| write_i16(p, &[30, H, W], &vec![1; 30 * H * W])),
            "expected shape (_, 10, _, _)",
        ),
        (
            "bands",
            s2(7),
            Box::new(|p| write_i16(p, &[3, 4, H, W], &vec![1; 12 * H * W])),
            "found [3, 4, 4, 5]",
        ),
        (
            "frames",
            s2(20),
            Box::new(|p| write_i16(p, &[3, 10, H, W], &vec![1; 30 * H * W])),
            "2 distinct dates",
        ),
        (
            "nan",
            s2(20),
            Box::new(|p| {
                let mut v = vec![1.0f32; 20 * H * W];
                v[H * W + 6] = f32::NAN;
                npy::write_f32(p, &[2, 10, H, W], &v).unwrap();
            }),
            "non-finite value NaN at (t, c, y, x) = (0, 1, 1, 1)",
        ),
        (
            "inf",
            s2(20),
            Box::new(|p| {
                let mut v = vec![1.0f32; 20 * H * W];
                v[19 * H * W] = f32::INFINITY;
                npy::write_f32(p, &[2, 10, H, W], &v).unwrap();
            }),
            "non-finite value inf",
        ),
        (
            "target_2d",
            "ANNOTATIONS/TARGET_7.npy".into(),
            Box::new(|p| npy::write_f32(p, &[H, W], &[0.0; H * W]).unwrap()),
            "TARGET (3, H, W)",
        ),
        (
            "target_size",
            "ANNOTATIONS/TARGET_20.npy".into(),
            Box::new(|p| npy::write_f32(p, &[3, H, W + 1], &vec![0.0; 3 * H * (W + 1)]).unwrap()),
            "expected shape (_, 4, 5)",
        ),
        (
            "heatmap_shape",
            "INSTANCE_ANNOTATIONS/HEATMAP_7.npy".into(),
            Box::new(|p| npy::write_f32(p, &[1, H, W], &[0.0; H * W]).unwrap()),
            "HEATMAP (H, W)",
        ),
        (
            "instances_fraction",
            "INSTANCE_ANNOTATIONS/INSTANCES_7.npy".into(),
            Box::new(|p| npy::write_f32(p, &[H, W], &[0.5; H * W]).unwrap()),
            "not an integer id",
        ),
        (
            "heatmap_nan",
            "INSTANCE_ANNOTATIONS/HEATMAP_20.npy".into(),
            Box::new(|p| npy::write_f32(p, &[H, W], &[f32::NAN; H * W]).unwrap()),
            "non-finite",
        ),
    ];
    for (name, file, corrupt, what) in cases {
        let d = tiny(&format!("arr_{name}"));
        corrupt(&d.0.join(&file));
        let e = load_err(&d.0, instance_opts());
        assert_names(&e, file.rsplit('/').next().unwrap(), what);
        // The background reader reports the same error, once, then ends.
        let ds = PastisDataset::open(&d.0, instance_opts()).unwrap();
        let got: Vec<_> = ds.batches(vec![0, 1], 2).collect();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].as_ref().unwrap_err().to_string(), e, "{name}");
    }
}

#[test]
fn batches_report_unstackable_patches() {
    let d = tiny("stack");
    // Patch 20 with 6 x 5 frames (its own annotations resized to match): readable alone, not with patch 7.
    write_i16(
        &d.0.join("DATA_S2/S2_20.npy"),
        &[2, 10, 6, W],
        &vec![3; 20 * 6 * W],
    );
    npy::write_f32(
        d.0.join("ANNOTATIONS/TARGET_20.npy"),
        &[3, 6, W],
        &vec![1.0; 3 * 6 * W],
    )
    .unwrap();
    let ds = PastisDataset::open(&d.0, PastisOptions::default()).unwrap();
    ds.get(1).unwrap();
    let e = ds
        .batches(vec![0, 1], 2)
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert_names(&e, "S2_20.npy", "cannot be batched with patch 7");
}
