//! PASTIS loader tests: parity with what the original loader yields on `datasets/pastis_tiny`
//! (`datasets/loader_expected`), collation, the background reader, and one test per kind of bad input.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use super::*;

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

/// The fixture folder and the expected-values archive, or `None` (with a skip line) when absent.
fn fixture() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let root = fixtures_root();
    let folder = root.join("datasets/pastis_tiny");
    let npz = root.join("datasets/loader_expected/pastis_tiny.npz");
    let json = root.join("datasets/loader_expected/loaders.json");
    if !(folder.is_dir() && npz.is_file() && json.is_file()) {
        eprintln!(
            "SKIPPED pastis fixture parity: no fixtures at {} (set SITSGPU_FIXTURES)",
            root.display()
        );
        return None;
    }
    Some((folder, npz, json))
}

type Npz = npyz::npz::NpzArchive<BufReader<std::fs::File>>;

/// Reads array `name` of the archive as f64 (any plain numeric dtype), with its shape.
fn npz_f64(npz: &mut Npz, name: &str) -> (Vec<usize>, Vec<f64>) {
    let npy = npz
        .by_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("fixture npz has no array {name}"));
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let code = npy.dtype().descr().trim_matches('\'').to_string();
    let data: Vec<f64> = match code.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        "f8" => npy.into_vec::<f64>().unwrap(),
        "i8" => npy
            .into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        "i4" => npy
            .into_vec::<i32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("fixture array {name}: unexpected dtype {other}"),
    };
    (shape, data)
}

#[test]
fn fixture_semantic_parity() {
    let Some((folder, npz_path, json_path)) = fixture() else {
        return;
    };
    let ds = PastisDataset::open(&folder, PastisOptions::default()).unwrap();
    let mut npz = npyz::npz::NpzArchive::open(&npz_path).unwrap();

    let loaders: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let want_ids: Vec<u64> = loaders["pastis_tiny"]["ids_in_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ds.ids(), want_ids.as_slice());
    assert_eq!(ds.len(), 4);

    // Normalisation constants: bit-identical float32.
    let (mean, std) = ds.norm().unwrap();
    let (_, want_mean) = npz_f64(&mut npz, "norm_mean");
    let (_, want_std) = npz_f64(&mut npz, "norm_std");
    assert_eq!(
        mean.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        want_mean
    );
    assert_eq!(std.iter().map(|&v| v as f64).collect::<Vec<_>>(), want_std);

    let mut worst = 0f64;
    for (i, &id) in ds.ids().iter().enumerate() {
        let s = ds.get(i).unwrap();
        assert_eq!(s.id, id);
        let (_, dates) = npz_f64(&mut npz, &format!("dates_{id}"));
        assert_eq!(
            s.dates,
            dates.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            "dates of {id}"
        );
        assert!(!s.scalar_date);

        let [t, c, h, w] = s.shape;
        let (shape, stats) = npz_f64(&mut npz, &format!("input_stats_{id}"));
        assert_eq!(shape, vec![t, c, 3], "input_stats_{id} shape");
        for (k, plane) in s.data.chunks_exact(h * w).enumerate() {
            let sum: f64 = plane.iter().map(|&v| v as f64).sum();
            let sumsq: f64 = plane.iter().map(|&v| (v as f64) * (v as f64)).sum();
            let want = &stats[k * 3..k * 3 + 3];
            for (got, want) in [(sum, want[0]), (sumsq, want[1])] {
                let err = (got - want).abs() / want.abs().max(1.0);
                worst = worst.max(err);
                assert!(
                    err <= 1e-6,
                    "patch {id} frame {} band {}: {got} vs {want}",
                    k / c,
                    k % c
                );
            }
            // The value at pixel (0, 0) is one float32: exactly the original's.
            assert_eq!(
                plane[0] as f64,
                want[2],
                "patch {id} frame {} band {} at (0,0)",
                k / c,
                k % c
            );
        }

        let (shape, target) = npz_f64(&mut npz, &format!("semantic_target_{id}"));
        assert_eq!(shape, vec![h, w]);
        assert_eq!(
            s.target,
            target.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            "target of {id}"
        );
        assert!(s.instance.is_none());
    }
    eprintln!("pastis fixture parity: worst relative error of the input sums {worst:.2e}");
}

#[test]
fn fixture_instance_parity() {
    let Some((folder, npz_path, _)) = fixture() else {
        return;
    };
    let opts = PastisOptions {
        target: Target::Instance,
        ..PastisOptions::default()
    };
    let ds = PastisDataset::open(&folder, opts).unwrap();
    let mut npz = npyz::npz::NpzArchive::open(&npz_path).unwrap();
    for (i, &id) in ds.ids().iter().enumerate() {
        let s = ds.get(i).unwrap();
        let (shape, want) = npz_f64(&mut npz, &format!("instance_target_{id}"));
        assert_eq!(shape, vec![s.shape[2], s.shape[3], 7]);
        let got: Vec<f64> = s.instance.unwrap().iter().map(|&v| v as f64).collect();
        assert_eq!(got, want, "instance target of {id}");
    }
}

#[test]
fn fixture_batches_folds_and_mono_date() {
    let Some((folder, _, _)) = fixture() else {
        return;
    };
    let ds = PastisDataset::open(&folder, PastisOptions::default()).unwrap();
    // The reference batching: (12, 305) and (4100, 77777), T = 6, 4, 8, 5.
    let batches: Vec<Batch> = ds
        .batches((0..4).collect(), 2)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].ids, vec![12, 305]);
    assert_eq!(batches[1].ids, vec![4100, 77777]);
    assert_eq!(batches[0].shape, [2, 6, 10, 32, 32]);
    assert_eq!(batches[1].shape, [2, 8, 10, 32, 32]);
    let mask = |b: &Batch| b.pad_mask.iter().map(|&m| m as u8).collect::<Vec<_>>();
    assert_eq!(mask(&batches[0]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(
        mask(&batches[1]),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    );
    assert_eq!(batches[0], ds.load_batch(&[0, 1], 0.0).unwrap());

    // Folds: per-fold patches in the order the folds are given; norm averaged over those folds only.
    let opts = PastisOptions {
        folds: Some(vec![3, 1]),
        ..PastisOptions::default()
    };
    let sub = PastisDataset::open(&folder, opts).unwrap();
    assert_eq!(sub.ids(), &[77777, 305]); // fold 3 = {77777}, fold 1 = {305}
    let norm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("NORM_S2_patch.json")).unwrap())
            .unwrap();
    let m = |f: &str, c: usize| norm[f]["mean"][c].as_f64().unwrap();
    for c in 0..10 {
        assert_eq!(
            sub.norm().unwrap().0[c],
            ((m("Fold_3", c) + m("Fold_1", c)) / 2.0) as f32
        );
    }

    // Mono-date: by index, and by the closest date (patch 12: offsets -12, 60, 73, 130, 218, 395).
    let full = ds.get(0).unwrap();
    assert_eq!(full.dates, vec![-12, 60, 73, 130, 218, 395]);
    let frame = 10 * 32 * 32;
    for (mono, k) in [
        (MonoDate::Index(2), 2),
        (MonoDate::parse("2018-11-06").unwrap(), 1), // day 66: |66-60| = 6 < |66-73| = 7
        (MonoDate::parse("2018-11-06").unwrap(), 1),
        (MonoDate::parse("2018-08-01").unwrap(), 0),
    ] {
        let opts = PastisOptions {
            mono_date: Some(mono),
            ..PastisOptions::default()
        };
        let s = PastisDataset::open(&folder, opts).unwrap().get(0).unwrap();
        assert_eq!(s.shape, [1, 10, 32, 32]);
        assert_eq!(s.dates, vec![full.dates[k]]);
        assert!(s.scalar_date);
        assert_eq!(s.data, full.data[k * frame..(k + 1) * frame]);
    }
    let opts = PastisOptions {
        mono_date: Some(MonoDate::Index(6)),
        ..PastisOptions::default()
    };
    let e = PastisDataset::open(&folder, opts)
        .unwrap()
        .get(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("S2_12.npy") && e.contains("mono_date"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------
// Collation
// ---------------------------------------------------------------------------------------------------------

fn sample(id: u64, t: usize, dates: Vec<i64>) -> PastisSample {
    let (c, h, w) = (2, 2, 3);
    PastisSample {
        id,
        data: (0..t * c * h * w)
            .map(|k| 1.0 + k as f32 + id as f32 * 1000.0)
            .collect(),
        shape: [t, c, h, w],
        dates,
        scalar_date: false,
        target: (0..h * w).map(|k| k as i64 + id as i64).collect(),
        instance: None,
    }
}

#[test]
fn collate_pads_at_the_end_with_zeros() {
    let a = sample(1, 6, vec![-12, 0, 3, 10, 50, 90]);
    let b = sample(2, 4, vec![0, 5, 6, 7]); // day 0 is a real date here: only the data says what is padding
    let batch = collate(&[a.clone(), b.clone()], 0.0);
    assert_eq!(batch.shape, [2, 6, 2, 2, 3]);
    let frame = 12;
    assert_eq!(&batch.x[..6 * frame], a.data.as_slice());
    assert_eq!(&batch.x[6 * frame..10 * frame], b.data.as_slice());
    assert!(batch.x[10 * frame..].iter().all(|&v| v == 0.0));
    assert_eq!(batch.x.len(), 12 * frame);
    assert_eq!(
        batch.dates,
        vec![-12.0, 0.0, 3.0, 10.0, 50.0, 90.0, 0.0, 5.0, 6.0, 7.0, 0.0, 0.0]
    );
    assert_eq!(batch.dates_shape, vec![2, 6]);
    let mut want_mask = vec![false; 12];
    want_mask[10] = true;
    want_mask[11] = true;
    assert_eq!(batch.pad_mask, want_mask);
    assert_eq!(batch.targets, [a.target.clone(), b.target.clone()].concat());
    assert_eq!(batch.ids, vec![1, 2]);
    assert!(batch.instance.is_none());

    // The mask comes from the data: a real frame equal to the pad value is masked too (as in the original).
    let mut z = sample(3, 4, vec![1, 2, 3, 4]);
    z.data[frame..2 * frame].fill(0.0);
    let batch = collate(&[z, b.clone()], 0.0);
    assert_eq!(batch.shape[1], 4);
    assert_eq!(
        batch.pad_mask,
        vec![false, true, false, false, false, false, false, false]
    );

    // Another pad value: frames and dates padded with it (dates truncated to an integer, as int64 in torch).
    let batch = collate(&[b.clone(), a.clone()], -1.5);
    assert!(batch.x[4 * frame..6 * frame].iter().all(|&v| v == -1.5));
    assert_eq!(&batch.dates[4..6], &[-1.0, -1.0]);
    assert_eq!(batch.pad_mask.iter().filter(|&&m| m).count(), 2);

    // Scalar (mono-date) dates stack to (B,).
    let mut m1 = sample(4, 1, vec![30]);
    let mut m2 = sample(5, 1, vec![-3]);
    m1.scalar_date = true;
    m2.scalar_date = true;
    let batch = collate(&[m1, m2], 0.0);
    assert_eq!(
        (batch.dates, batch.dates_shape),
        (vec![30.0, -3.0], vec![2])
    );
}

#[test]
#[should_panic(expected = "collate: expected frames of shape")]
fn collate_rejects_mixed_frame_shapes() {
    let mut b = sample(2, 4, vec![0, 1, 2, 3]);
    b.shape = [4, 2, 3, 2];
    collate(&[sample(1, 6, vec![0, 1, 2, 3, 4, 5]), b], 0.0);
}

// ---------------------------------------------------------------------------------------------------------
// Bad input: tiny folders written to a temporary directory
// ---------------------------------------------------------------------------------------------------------

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
    while (10 + header.len() + 1) % 64 != 0 {
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
            "non-finite value NaN at (t, c, y, x) = [0, 1, 1, 1]",
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
            Box::new(|p| npy::write_f32(p, &[H, W], &vec![0.0; H * W]).unwrap()),
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
            Box::new(|p| npy::write_f32(p, &[1, H, W], &vec![0.0; H * W]).unwrap()),
            "HEATMAP (H, W)",
        ),
        (
            "instances_fraction",
            "INSTANCE_ANNOTATIONS/INSTANCES_7.npy".into(),
            Box::new(|p| npy::write_f32(p, &[H, W], &vec![0.5; H * W]).unwrap()),
            "not an integer id",
        ),
        (
            "heatmap_nan",
            "INSTANCE_ANNOTATIONS/HEATMAP_20.npy".into(),
            Box::new(|p| npy::write_f32(p, &[H, W], &vec![f32::NAN; H * W]).unwrap()),
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
