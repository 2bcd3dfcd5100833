//! Tests of the pixel-set loader: parity with the original loader's output on the fixture, the numpy stream of
//! the pixel draw and the jitter (expected values from numpy 2.4.6, the snippet in each comment), the
//! deterministic draw, preloading, normalisation files and errors.

use super::*;
use crate::data::pixelset::norm::{NORM_JSON, NORM_PICKLE};

fn fixtures() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/datasets");
    p.join("s2agri_tiny").exists().then_some(p)
}

#[test]
fn matches_the_original_loader() {
    let Some(root) = fixtures() else {
        eprintln!("SKIPPED: no fixtures");
        return;
    };
    let ds = PixelSetDataset::open(root.join("s2agri_tiny"), PixelSetOptions::default()).unwrap();
    let lj = read_json(&root.join("loader_expected/loaders.json")).unwrap();
    let lj = &lj["s2agri_tiny"];
    let ids: Vec<u64> = lj["ids_in_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ds.ids(), &ids[..]);
    let tg: Vec<usize> = lj["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ds.targets(), &tg[..]);
    let pos: Vec<i64> = lj["date_positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ds.date_positions(), &pos[..]);
    let exp =
        crate::data::state_dict::read_npz(root.join("loader_expected/s2agri_tiny.npz")).unwrap();
    let f = |k: &str| -> Vec<f64> {
        let e = exp.get(k).unwrap_or_else(|| panic!("{k}"));
        match &e.values {
            crate::data::state_dict::Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
            crate::data::state_dict::Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    };
    // Every S <= 64 there, and the original ran without jitter: Draw::Fixed draws nothing.
    for (i, &id) in ids.iter().enumerate() {
        let s = ds.get(i, Draw::Fixed).unwrap();
        assert_eq!(
            s.mask.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            f(&format!("mask_{id}"))
        );
        let ex = f(&format!("extra_{id}"));
        for (a, b) in s.extra.iter().zip(&ex) {
            assert!(
                (*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0),
                "extra {id}: {a} vs {b}"
            );
        }
        assert_eq!(f(&format!("target_{id}")), vec![s.target as f64]);
        let st = f(&format!("input_stats_{id}"));
        let (t, c, np) = (24, 10, 64);
        assert_eq!(s.pixels.len(), t * c * np);
        for tc in 0..t * c {
            let row = &s.pixels[tc * np..(tc + 1) * np];
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            let sq: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
            let e = &st[tc * 3..tc * 3 + 3];
            assert!(
                (sum - e[0]).abs() <= 1e-5 * e[0].abs().max(1.0),
                "{id} sum {sum} vs {}",
                e[0]
            );
            assert!(
                (sq - e[1]).abs() <= 1e-5 * e[1].abs().max(1.0),
                "{id} sq {sq} vs {}",
                e[1]
            );
            assert_eq!(row[0], e[2] as f32, "{id} pixel 0");
        }
    }
}

#[test]
fn sampling_cases() {
    // npixel 3: parcel 1 has S = 5 (3 distinct pixels drawn, mask all ones), parcel 2 has S = 0 (zero
    // pixels, mask [1, 0, 0]); T = 2, C = 1, pixel s of parcel 1 holds the value 10·s + t, no normalisation.
    let dir = small_folder("sampling");
    let opts = small_opts(3, None);
    let ds = PixelSetDataset::open(&dir.0, opts).unwrap();
    assert_eq!(ds.targets(), &[1, 0]);
    assert_eq!(ds.date_positions(), &[0, 16]);
    let mut r = NumpyRandomState::new(7);
    let a = ds.get(0, Draw::Random(&mut r)).unwrap();
    assert_eq!(a.mask, vec![1.0; 6]);
    let mut picked: Vec<f32> = a.pixels[..3].to_vec();
    // the same pixels at both dates
    assert!(a.pixels[3..]
        .iter()
        .zip(&picked)
        .all(|(p1, p0)| *p1 == p0 + 1.0));
    picked.sort_by(f32::total_cmp);
    picked.dedup();
    assert_eq!(picked.len(), 3);
    let b = ds.get(1, Draw::Random(&mut r)).unwrap();
    assert_eq!(b.pixels, vec![0.0; 6]);
    assert_eq!(b.mask, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("sitsgpu-pixelset-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("DATA")).unwrap();
    std::fs::create_dir_all(dir.join("META")).unwrap();
    std::fs::write(dir.join("DATA/3.npy"), b"junk").unwrap();
    let e = PixelSetDataset::open(&dir, PixelSetOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels.json"), "{e}");
    std::fs::write(
        dir.join("META/labels.json"),
        r#"{"label_44class": {"3": 1}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("META/dates.json"), r#"{"0": 20170103}"#).unwrap();
    std::fs::write(
        dir.join("META/geomfeat.json"),
        r#"{"3": [1, 2], "4": [2, 3]}"#,
    )
    .unwrap();
    // The parcel files are checked when the folder is opened.
    let e = PixelSetDataset::open(&dir, PixelSetOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("3.npy") && e.contains("not a valid .npy"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A temporary folder, removed on drop.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A folder of two parcels, T = 2, C = 1, no extra features: parcel 1 has S = 5 pixels, pixel s holding
/// 10·s + t; parcel 2 has S = 0.
fn small_folder(tag: &str) -> TmpDir {
    let dir = std::env::temp_dir().join(format!("sitsgpu-pixelset-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("DATA")).unwrap();
    std::fs::create_dir_all(dir.join("META")).unwrap();
    let v: Vec<f32> = (0..2)
        .flat_map(|t| (0..5).map(move |s| (10 * s + t) as f32))
        .collect();
    npy::write_f32(dir.join("DATA/1.npy"), &[2, 1, 5], &v).unwrap();
    npy::write_f32(dir.join("DATA/2.npy"), &[2, 1, 0], &[]).unwrap();
    std::fs::write(
        dir.join("META/labels.json"),
        r#"{"label_44class": {"1": 3, "2": 1}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("META/dates.json"),
        r#"{"0": 20170103, "1": 20170119}"#,
    )
    .unwrap();
    TmpDir(dir)
}

fn small_opts(npixel: usize, jitter: Option<(f64, f64)>) -> PixelSetOptions {
    PixelSetOptions {
        npixel,
        extra_feature: None,
        jitter,
        ..PixelSetOptions::default()
    }
}

/// The pixel indices drawn for parcel 1 of [`small_folder`] (date 0 holds 10·index).
fn drawn(s: &PixelSetSample, npixel: usize) -> Vec<usize> {
    s.pixels[..npixel]
        .iter()
        .map(|&v| v as usize / 10)
        .collect()
}

#[test]
fn random_draw_is_numpy_choice() {
    // r = np.random.RandomState(3)
    // r.choice(list(range(5)), 3, replace=False) -> [3, 4, 1]; again -> [2, 1, 3]
    let dir = small_folder("choice");
    let ds = PixelSetDataset::open(&dir.0, small_opts(3, None)).unwrap();
    let mut r = NumpyRandomState::new(3);
    let a = ds.get(0, Draw::Random(&mut r)).unwrap();
    assert_eq!(drawn(&a, 3), [3, 4, 1]);
    // The S = 0 parcel draws nothing without jitter; the next draw continues the stream.
    ds.get(1, Draw::Random(&mut r)).unwrap();
    let b = ds.get(0, Draw::Random(&mut r)).unwrap();
    assert_eq!(drawn(&b, 3), [2, 1, 3]);
    // Date 1 holds the same pixels.
    assert_eq!(b.pixels[3..], [21.0, 11.0, 31.0]);
}

#[test]
fn fixed_draw_is_repeatable_and_seeded_by_the_parcel_id() {
    // np.random.RandomState(1).choice(list(range(5)), 3, replace=False) -> [2, 1, 4] (parcel id 1)
    let dir = small_folder("fixed");
    let ds = PixelSetDataset::open(&dir.0, small_opts(3, Some((0.01, 0.05)))).unwrap();
    let a = ds.get(0, Draw::Fixed).unwrap();
    let b = ds.get(0, Draw::Fixed).unwrap();
    assert_eq!(drawn(&a, 3), [2, 1, 4]);
    // No jitter under Draw::Fixed, even with opts.jitter set: exact raw values.
    assert_eq!(a.pixels, [20.0, 10.0, 40.0, 21.0, 11.0, 41.0]);
    assert_eq!(a.pixels, b.pixels);
    let e = ds.get(1, Draw::Fixed).unwrap();
    assert_eq!(e.pixels, vec![0.0; 6]);
}

#[test]
fn jitter_is_clipped_gaussian_noise_from_the_stream() {
    // An S = 0 parcel (zero pixels) of T = 24, C = 10, npixel 64: the sample is the jitter itself,
    // f32(clip(0.01·randn(24, 10, 64), -0.05, 0.05)).
    let dir = small_folder("jitter");
    npy::write_f32(dir.0.join("DATA/1.npy"), &[24, 10, 0], &[]).unwrap();
    npy::write_f32(dir.0.join("DATA/2.npy"), &[24, 10, 0], &[]).unwrap();
    let dates: serde_json::Map<String, serde_json::Value> = (0..24)
        .map(|i| (i.to_string(), serde_json::json!(20170103 + i)))
        .collect();
    std::fs::write(
        dir.0.join("META/dates.json"),
        serde_json::Value::Object(dates).to_string(),
    )
    .unwrap();
    let mut opts = small_opts(64, Some((0.01, 0.05)));
    opts.sub_classes = None;
    let ds = PixelSetDataset::open(&dir.0, opts).unwrap();
    let mut r = NumpyRandomState::new(0);
    let j = ds.get(1, Draw::Random(&mut r)).unwrap().pixels;
    assert_eq!(j.len(), 24 * 10 * 64);
    // By hand from the stream: the first value is f32(0.01·g0) with g0 the first standard normal of seed 0.
    let g0 = NumpyRandomState::new(0).standard_normal();
    assert_eq!(j[0], (0.01 * g0) as f32);
    // j = np.float32(np.clip(0.01 * np.random.RandomState(0).randn(24, 10, 64), -0.05, 0.05))
    // j[0, 0, 0] = 0.017640523612499237, j[23, 9, 63] = 0.011810633353888988,
    // mean -9.901941233126747e-05, std 0.009908243498281143 (float64 over the float32 values)
    assert_eq!(j[0] as f64, 0.017640523612499237);
    assert_eq!(j[24 * 10 * 64 - 1] as f64, 0.011810633353888988);
    let n = j.len() as f64;
    let mean = j.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (j.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!((mean - -9.901941233126747e-05).abs() < 1e-12, "{mean}");
    assert!((std - 0.009908243498281143).abs() < 1e-12, "{std}");
    // Statistics: σ 0.01 within 3 %, mean within 4 standard errors (0.01/√15360 ≈ 8e-5), nothing clipped at 5σ.
    assert!((std / 0.01 - 1.0).abs() < 0.03 && mean.abs() < 3.2e-4);
    assert!(j.iter().all(|&v| v.abs() < 0.05));
    // σ = 1, clip 0.05: almost everything is clipped, to exactly ±f32(0.05), and nothing beyond.
    // (np.abs(np.float32(np.clip(np.random.RandomState(0).randn(24, 10, 64), -.05, .05))) == np.float32(.05))
    // .mean() = 0.9575520833333333
    let mut opts = small_opts(64, Some((1.0, 0.05)));
    opts.sub_classes = None;
    let ds = PixelSetDataset::open(&dir.0, opts).unwrap();
    let j = ds
        .get(1, Draw::Random(&mut NumpyRandomState::new(0)))
        .unwrap()
        .pixels;
    let clipped = j.iter().filter(|&&v| v.abs() == 0.05f32).count();
    assert_eq!(clipped as f64 / j.len() as f64, 0.9575520833333333);
    assert!(j.iter().all(|&v| v.abs() <= 0.05f32));
}

#[test]
fn draw_normalisation_and_jitter_match_the_original_on_the_fixture() {
    // The body of PixelSetData.__getitem__ (pixels only, transcribed from dataset.py) run in sequence with
    // numpy 2.4.6 after np.random.seed(1), npixel 16, jitter (0.01, 0.05), the fixture's pickle:
    // ```text
    // norm = pickle.load(open(folder + '/S2-2017-T31TFM-meanstd.pkl', 'rb')); np.random.seed(1)
    // for pid in [5, 11, 19, 150, 333, 2048]:
    //     x0 = np.load(f'{folder}/DATA/{pid}.npy')
    //     ... (pixel sampling, normalisation, astype('float'), jitter exactly as dataset.py) ...
    //     x = np.float32(x); print(x.astype(np.float64).sum(), x[0,0,0], x[23,9,15], x[5,3,7])
    // print(np.random.random_sample())
    // ```
    // S = 30, 64, 2, 17, 64, 5: four parcels draw pixels (S > 16), all six draw jitter.
    let Some(root) = fixtures() else {
        eprintln!("SKIPPED: no fixtures");
        return;
    };
    let opts = PixelSetOptions {
        npixel: 16,
        ..PixelSetOptions::default()
    };
    let mut ds = PixelSetDataset::open(root.join("s2agri_tiny"), opts).unwrap();
    assert!(ds.norm_file().unwrap().ends_with(NORM_PICKLE));
    // (The float32 values printed as float64, compared exactly after widening.)
    let want: [(u64, f64, [f64; 3]); 6] = [
        (
            5,
            -30.280331505578943,
            [-1.8604165315628052, -1.918803095817566, 0.6257206797599792],
        ),
        (
            11,
            277.8709783013037,
            [0.06715498119592667, 1.0943350791931152, -0.2940611243247986],
        ),
        (
            19,
            -212.92183616601824,
            [1.1385313272476196, -0.1871190369129181, 0.8792446851730347],
        ),
        (
            150,
            -362.41666668700054,
            [
                -0.44618499279022217,
                0.4700288772583008,
                -2.3539011478424072,
            ],
        ),
        (
            333,
            9.591730265703518,
            [1.113663911819458, 0.4466043710708618, 0.6966257691383362],
        ),
        (
            2048,
            185.78197213017847,
            [-0.8798372149467468, -0.4392245411872864, -1.314611792564392],
        ),
    ];
    for preload in [false, true] {
        if preload {
            ds.preload().unwrap();
        }
        let mut r = NumpyRandomState::new(1);
        for (i, (id, sum, vals)) in want.iter().enumerate() {
            let s = ds.get(i, Draw::Random(&mut r)).unwrap();
            assert_eq!(s.id, *id);
            let at = |t: usize, c: usize, k: usize| s.pixels[(t * 10 + c) * 16 + k] as f64;
            assert_eq!(
                [at(0, 0, 0), at(23, 9, 15), at(5, 3, 7)],
                *vals,
                "parcel {id}"
            );
            let got: f64 = s.pixels.iter().map(|&v| v as f64).sum();
            assert!(
                (got - sum).abs() < 1e-9 * sum.abs().max(1.0),
                "parcel {id}: {got} vs {sum}"
            );
        }
        // The stream is where numpy's is: the same number of draws.
        assert_eq!(r.random_sample(), 0.035629372764733325);
    }
    // A batch consumes the stream sample by sample, in the order given.
    let mut r = NumpyRandomState::new(1);
    let b = ds.load_batch(&[0, 1], Draw::Random(&mut r)).unwrap();
    assert_eq!(b.shape, [2, 24, 10, 16]);
    assert_eq!(b.pixels[0] as f64, want[0].2[0]);
    assert_eq!(b.pixels[24 * 10 * 16] as f64, want[1].2[0]);
}

#[test]
fn normalisation_files() {
    let Some(root) = fixtures() else {
        eprintln!("SKIPPED: no fixtures");
        return;
    };
    let folder = root.join("s2agri_tiny");
    let with = |norm: Option<PathBuf>| {
        PixelSetDataset::open(
            &folder,
            PixelSetOptions {
                norm,
                ..PixelSetOptions::default()
            },
        )
    };
    // The pickle and the json hold the same float64 values: the same samples.
    let pkl = with(None).unwrap();
    let json = with(Some(folder.join(NORM_JSON))).unwrap();
    assert_eq!(json.norm_file(), Some(folder.join(NORM_JSON).as_path()));
    for i in 0..pkl.len() {
        assert_eq!(
            pkl.get(i, Draw::Fixed).unwrap().pixels,
            json.get(i, Draw::Fixed).unwrap().pixels
        );
    }
    // Explicit files that are missing, malformed or of an unknown kind are errors naming them.
    let dir = small_folder("norm");
    let e = with(Some(dir.0.join("nope.pkl"))).unwrap_err().to_string();
    assert!(e.contains("nope.pkl"), "{e}");
    let one = dir.0.join("one.pkl");
    crate::data::numpy_pickle::write_f64_tuple(&one, &[(&[2], &[1.0, 2.0])]).unwrap();
    let e = with(Some(one)).unwrap_err().to_string();
    assert!(
        e.contains("one.pkl") && e.contains("(mean, std) pair"),
        "{e}"
    );
    let shapes = dir.0.join("shapes.pkl");
    crate::data::numpy_pickle::write_f64_tuple(&shapes, &[(&[2], &[1.0, 2.0]), (&[1], &[1.0])])
        .unwrap();
    let e = with(Some(shapes)).unwrap_err().to_string();
    assert!(e.contains("shapes.pkl") && e.contains("shape"), "{e}");
    let txt = dir.0.join("norm.txt");
    std::fs::write(&txt, "1 2").unwrap();
    let e = with(Some(txt)).unwrap_err().to_string();
    assert!(e.contains("norm.txt") && e.contains(".pkl"), "{e}");
    // (T, C) statistics that do not fit the parcels: the error names the parcel file.
    let tc = dir.0.join("tc.pkl");
    let (z, one) = ([0.0; 6], [1.0; 6]);
    crate::data::numpy_pickle::write_f64_tuple(&tc, &[(&[2, 3], &z), (&[2, 3], &one)]).unwrap();
    let e = with(Some(tc.clone())).unwrap_err().to_string();
    assert!(e.contains("5.npy") && e.contains("(T, C) = (2, 3)"), "{e}");
    // A zero (or negative, or non-finite) std would divide by zero.
    crate::data::numpy_pickle::write_f64_tuple(&tc, &[(&[2, 3], &z), (&[2, 3], &z)]).unwrap();
    let e = with(Some(tc)).unwrap_err().to_string();
    assert!(
        e.contains("tc.pkl") && e.contains("not a positive number"),
        "{e}"
    );
    // A scalar (mean, std) pickle in the small folder (found by default): x = (x - 10) / 4.
    crate::data::numpy_pickle::write_f64_tuple(
        dir.0.join(NORM_PICKLE),
        &[(&[], &[10.0]), (&[], &[4.0])],
    )
    .unwrap();
    let ds = PixelSetDataset::open(&dir.0, small_opts(5, None)).unwrap();
    let s = ds.get(0, Draw::Fixed).unwrap();
    assert_eq!(s.pixels[..5], [-2.5, 0.0, 2.5, 5.0, 7.5]);
}

#[test]
fn bad_options_are_refused() {
    let dir = small_folder("opts");
    let e = PixelSetDataset::open(&dir.0, small_opts(0, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("npixel"), "{e}");
    let e = PixelSetDataset::open(&dir.0, small_opts(3, Some((0.01, -1.0))))
        .unwrap_err()
        .to_string();
    assert!(e.contains("jitter"), "{e}");
}

#[test]
fn malformed_meta_files_are_errors_naming_them() {
    // Each case breaks one file of the small folder; the error names that file and what is wrong.
    type Breaker = fn(&Path);
    let cases: [(&str, Breaker, &str); 6] = [
        (
            "dates.json",
            |d| {
                std::fs::write(
                    d.join("META/dates.json"),
                    r#"{"0": 20170103, "2": 20170119}"#,
                )
                .unwrap()
            },
            "missing key \"1\"",
        ),
        (
            "dates.json",
            |d| std::fs::write(d.join("META/dates.json"), r#"{"0": 20171340}"#).unwrap(),
            "YYYYMMDD",
        ),
        (
            "labels.json",
            |d| {
                std::fs::write(d.join("META/labels.json"), r#"{"label_44class": {"1": 3}}"#)
                    .unwrap()
            },
            "parcel 2",
        ),
        (
            "labels.json",
            |d| std::fs::write(d.join("META/labels.json"), r#"{"other": {}}"#).unwrap(),
            "label_44class",
        ),
        (
            "x7.npy",
            |d| std::fs::write(d.join("DATA/x7.npy"), b"").unwrap(),
            "integer ids",
        ),
        (
            "geomfeat.json",
            |d| {
                std::fs::write(
                    d.join("META/geomfeat.json"),
                    r#"{"1": [1, 2], "3": [2, 3]}"#,
                )
                .unwrap()
            },
            "parcel 2",
        ),
    ];
    for (i, (file, brk, what)) in cases.iter().enumerate() {
        let dir = small_folder(&format!("bad{i}"));
        brk(&dir.0);
        let opts = PixelSetOptions {
            extra_feature: (*file == "geomfeat.json").then(|| "geomfeat".to_string()),
            ..small_opts(3, None)
        };
        let e = PixelSetDataset::open(&dir.0, opts).unwrap_err().to_string();
        assert!(e.contains(file) && e.contains(what), "case {i}: {e}");
    }
    // Parcel arrays are checked when the folder is opened: not T × C × S, another number of dates than
    // dates.json, other bands than the other parcels, a NaN.
    for (shape, data, what) in [
        (vec![2, 3], vec![0.0; 6], "T x C x S"),
        (vec![3, 1, 1], vec![0.0; 3], "META/dates.json lists 2"),
        (vec![2, 2, 1], vec![0.0; 4], "2 bands, but parcel 1 has 1"),
        (
            vec![2, 1, 1],
            vec![0.0, f32::NAN],
            "NaN at (t, c, s) = (1, 0, 0)",
        ),
    ] {
        let dir = small_folder("bad-shape");
        npy::write_f32(dir.0.join("DATA/2.npy"), &shape, &data).unwrap();
        let e = PixelSetDataset::open(&dir.0, small_opts(3, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2.npy") && e.contains(what), "{e}");
    }
}
