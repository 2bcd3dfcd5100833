//! PASTIS loader tests: parity with what the original loader yields on `datasets/pastis_tiny`
//! (`datasets/loader_expected`) and collation. Bad-input tests are in `tests_bad_input.rs`.

use std::io::BufReader;
use std::path::PathBuf;

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

/// A minimal `.npz` reader for the fixture checks (a zip of `.npy` members), keeping f64 arrays exact.
struct Npz(zip::ZipArchive<BufReader<std::fs::File>>);

impl Npz {
    fn open(path: &std::path::Path) -> std::io::Result<Npz> {
        let f = BufReader::new(std::fs::File::open(path)?);
        zip::ZipArchive::new(f)
            .map(Npz)
            .map_err(std::io::Error::other)
    }

    fn by_name(
        &mut self,
        name: &str,
    ) -> std::io::Result<Option<npyz::NpyFile<std::io::Cursor<Vec<u8>>>>> {
        use std::io::Read;
        let mut member = match self.0.by_name(&format!("{name}.npy")) {
            Ok(m) => m,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes)?;
        npyz::NpyFile::new(std::io::Cursor::new(bytes)).map(Some)
    }
}

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
    let mut npz = Npz::open(&npz_path).unwrap();

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
    let mut npz = Npz::open(&npz_path).unwrap();
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
