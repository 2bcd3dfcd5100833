//! Tests of the synthetic PASTIS generator: the loader reads every file, folds/dates/classes, NORM consistent with
//! the data, centerness, determinism, refusing foreign folders, and a learnability check without a GPU.

use std::collections::{BTreeSet, HashMap};

use super::patch::yyyymmdd;
use super::*;
use crate::data::npy;
use crate::data::pastis::{PastisDataset, PastisOptions, Target};

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn tmp(name: &str) -> TmpDir {
    let dir = std::env::temp_dir().join(format!("sitsgpu_synth_{}_{name}", std::process::id()));
    drop(TmpDir(dir.clone()));
    TmpDir(dir)
}

fn tiny(seed: u64) -> SynthOptions {
    SynthOptions {
        patches: 10,
        size: 16,
        seed,
        ..SynthOptions::default()
    }
}

fn read_i32(path: &Path) -> (Vec<usize>, Vec<i32>) {
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let npy = npyz::NpyFile::new(f).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<i32>().unwrap())
}

/// The dtype descr and shape of a `.npy`.
fn header(path: &Path) -> (String, Vec<u64>) {
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let npy = npyz::NpyFile::new(f).unwrap();
    (npy.dtype().descr(), npy.shape().to_vec())
}

#[test]
fn calendar_dates() {
    assert_eq!(yyyymmdd(0), 20180901);
    assert_eq!(yyyymmdd(30), 20181001);
    assert_eq!(yyyymmdd(122), 20190101);
    assert_eq!(yyyymmdd(SEASON_DAYS - 1), 20191031);
    for off in 0..SEASON_DAYS {
        let d = Date::from_yyyymmdd(yyyymmdd(off) as u64).unwrap();
        assert_eq!(d.days_since(FIRST_DAY), off as i64);
    }
}

#[test]
fn the_loader_reads_every_patch() {
    let dir = tmp("loader");
    let opts = tiny(3);
    let sum = write_pastis(&dir.0, &opts).unwrap();
    assert_eq!(sum.ids.len(), 10);
    assert_eq!(sum.fold_sizes, [2; 5]);
    println!("{sum}");

    let ds = PastisDataset::open(
        &dir.0,
        PastisOptions {
            target: Target::Instance,
            ..PastisOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ds.len(), 10);
    // IDs as written, not contiguous.
    assert_eq!(ds.ids(), &sum.ids[..]);
    assert!(ds.ids().windows(2).all(|w| w[1] - w[0] == 7));
    let mut lengths = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut class_pixels = [0u64; 20];
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        let t = s.shape[0];
        assert_eq!(s.shape, [t, 10, 16, 16]);
        assert!((opts.min_dates..=opts.max_dates).contains(&t));
        assert_eq!(s.dates.len(), t);
        assert!(s.dates.windows(2).all(|w| w[0] < w[1]), "{:?}", s.dates);
        assert!(s.dates[0] >= 0 && s.dates[t - 1] <= 425);
        assert!(s.data.iter().all(|v| v.is_finite()));
        assert!(s.instance.as_ref().unwrap().len() == 16 * 16 * 7);
        lengths.insert(t);
        for &c in &s.target {
            classes.insert(c);
            class_pixels[c as usize] += 1;
        }
    }
    assert_eq!(class_pixels, sum.class_pixels);
    assert!(lengths.len() > 1, "every patch has {lengths:?} dates");
    assert!(classes.contains(&0), "no background in {classes:?}");
    let crops: Vec<i64> = opts.crop_classes().iter().map(|&c| c as i64).collect();
    let seen = crops.iter().filter(|c| classes.contains(c)).count();
    assert!(seen >= 4, "crop classes {classes:?} of {crops:?}");
    assert!(classes
        .iter()
        .all(|c| *c == 0 || *c == 19 || crops.contains(c)));

    // A padded batch of every patch.
    let all: Vec<usize> = (0..ds.len()).collect();
    let batch = ds.load_batch(&all, 0.0).unwrap();
    drop(batch);

    // Five folds, two patches each.
    for f in 1..=5 {
        let ds = PastisDataset::open(
            &dir.0,
            PastisOptions {
                folds: Some(vec![f]),
                ..PastisOptions::default()
            },
        )
        .unwrap();
        assert_eq!(ds.len(), 2, "fold {f}");
    }

    // The released dtypes, and the metadata layout.
    let id = sum.ids[0];
    let h = |p: &str| header(&dir.0.join(p));
    let d = |s: &str| s.to_string();
    assert_eq!(h(&format!("DATA_S2/S2_{id}.npy")).0, d("'<i2'"));
    assert_eq!(
        h(&format!("ANNOTATIONS/TARGET_{id}.npy")),
        (d("'|u1'"), vec![3, 16, 16])
    );
    assert_eq!(
        h(&format!("ANNOTATIONS/ParcelIDs_{id}.npy")),
        (d("'<i4'"), vec![16, 16])
    );
    for (k, dt) in [
        ("HEATMAP", "'<f4'"),
        ("INSTANCES", "'<i4'"),
        ("ZONES", "'<i4'"),
    ] {
        let got = h(&format!("INSTANCE_ANNOTATIONS/{k}_{id}.npy"));
        assert_eq!(got, (d(dt), vec![16, 16]), "{k}");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("metadata.geojson")).unwrap())
            .unwrap();
    assert_eq!(meta["type"], "FeatureCollection");
    let f0 = &meta["features"][0];
    assert_eq!(f0["geometry"]["type"], "Polygon");
    assert_eq!(f0["properties"]["TILE"], "SYNTH");
    assert!(f0["properties"]["N_Parcel"].as_u64().unwrap() >= 1);
    let text = std::fs::read_to_string(dir.0.join("metadata.geojson")).unwrap();
    let (k1, k10) = (text.find("\"1\":").unwrap(), text.find("\"10\":").unwrap());
    assert!(k1 < k10, "dates-S2 keys in index order");
}

#[test]
fn norm_is_the_fold_average_of_patch_statistics() {
    let dir = tmp("norm");
    let sum = write_pastis(&dir.0, &tiny(1)).unwrap();
    let norm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("NORM_S2_patch.json")).unwrap())
            .unwrap();
    for f in 1..=5usize {
        let mut mean = [0f64; 10];
        let mut std = [0f64; 10];
        let ids: Vec<u64> = (0..sum.ids.len())
            .filter(|i| 1 + i % 5 == f)
            .map(|i| sum.ids[i])
            .collect();
        for id in &ids {
            let a = npy::read_f32(dir.0.join(format!("DATA_S2/S2_{id}.npy"))).unwrap();
            let [t, c, h, w] = [a.shape[0], a.shape[1], a.shape[2], a.shape[3]];
            for b in 0..c {
                let v: Vec<f64> = (0..t)
                    .flat_map(|ti| &a.data[(ti * c + b) * h * w..][..h * w])
                    .map(|&x| x as f64)
                    .collect();
                let n = v.len() as f64;
                let m = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
                mean[b] += m / ids.len() as f64;
                std[b] += var.sqrt() / ids.len() as f64;
            }
        }
        let entry = &norm[format!("Fold_{f}")];
        for b in 0..10 {
            let m = entry["mean"][b].as_f64().unwrap();
            let s = entry["std"][b].as_f64().unwrap();
            assert!(
                (m - mean[b]).abs() < 1e-9 * mean[b].abs(),
                "fold {f} band {b}"
            );
            assert!(
                (s - std[b]).abs() < 1e-9 * std[b].abs(),
                "fold {f} band {b}"
            );
            assert!(m > 100.0 && m < 10000.0 && s > 10.0);
        }
    }
    // The original layout: indent 4, Fold_1..Fold_5 with mean then std.
    let text = std::fs::read_to_string(dir.0.join("NORM_S2_patch.json")).unwrap();
    assert!(text.starts_with("{\n    \"Fold_1\": {\n        \"mean\": [\n"));
}

#[test]
fn annotations_follow_the_centerness_recipe() {
    let dir = tmp("heatmap");
    let sum = write_pastis(&dir.0, &tiny(2)).unwrap();
    let mut void_seen = false;
    for &id in &sum.ids {
        let ann = |k: &str| dir.0.join(format!("INSTANCE_ANNOTATIONS/{k}_{id}.npy"));
        let (_, inst) = read_i32(&ann("INSTANCES"));
        let (_, zones) = read_i32(&ann("ZONES"));
        let heat = npy::read_f32(ann("HEATMAP")).unwrap().data;
        let target = npy::read_f32(dir.0.join(format!("ANNOTATIONS/TARGET_{id}.npy")))
            .unwrap()
            .data;
        let (_, raw) = read_i32(&dir.0.join(format!("ANNOTATIONS/ParcelIDs_{id}.npy")));
        let npix = 16 * 16;
        assert_eq!(&target[..npix], &target[npix..2 * npix]);
        assert_eq!(&target[..npix], &target[2 * npix..]);
        let n = *inst.iter().max().unwrap() as usize;
        assert!(n >= 1);
        // Ids 1..=n all present; one class per instance; background has none.
        let mut class_of: HashMap<i32, f32> = HashMap::new();
        for p in 0..npix {
            assert_eq!(inst[p] == 0, target[p] == 0.0, "pixel {p}");
            assert_eq!(inst[p] == 0, raw[p] == 0, "pixel {p}");
            if inst[p] != 0 {
                let c = *class_of.entry(inst[p]).or_insert(target[p]);
                assert_eq!(c, target[p], "instance {} has two classes", inst[p]);
            }
            assert!((1..=n as i32).contains(&zones[p]));
            assert!((0.0..=1.0).contains(&heat[p]));
        }
        assert_eq!(class_of.len(), n);
        void_seen |= class_of.values().any(|&c| c == 19.0);
        // Heatmap exactly 1 at each instance's centre (§1.12 enlarged box), which is in its own zone.
        for i in 1..=n as i32 {
            let pix: Vec<usize> = (0..npix).filter(|&p| inst[p] == i).collect();
            let rmin = pix.iter().map(|p| p / 16).min().unwrap().saturating_sub(1);
            let rmax = (pix.iter().map(|p| p / 16).max().unwrap() + 1).min(15);
            let cmin = pix.iter().map(|p| p % 16).min().unwrap().saturating_sub(1);
            let cmax = (pix.iter().map(|p| p % 16).max().unwrap() + 1).min(15);
            let c = (rmin + (rmax - rmin) / 2) * 16 + cmin + (cmax - cmin) / 2;
            assert_eq!(heat[c], 1.0, "patch {id} instance {i}");
        }
        let max = heat.iter().cloned().fold(0f32, f32::max);
        assert_eq!(max, 1.0);
    }
    // Seed 2 has void parcels (small parcels cut by the patch edge), each a whole instance.
    assert!(void_seen && sum.class_pixels[19] > 0, "{sum}");
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (a, b, c) = (tmp("seed_a"), tmp("seed_b"), tmp("seed_c"));
    let sa = write_pastis(&a.0, &tiny(7)).unwrap();
    write_pastis(&b.0, &tiny(7)).unwrap();
    write_pastis(&c.0, &tiny(8)).unwrap();
    let mut files = vec![
        "metadata.geojson".to_string(),
        "NORM_S2_patch.json".into(),
        MARKER.into(),
    ];
    for id in &sa.ids {
        for (sub, prefix) in PATCH_FILES {
            files.push(format!("{sub}/{prefix}{id}.npy"));
        }
    }
    let read = |d: &TmpDir, f: &str| std::fs::read(d.0.join(f)).unwrap();
    for f in &files {
        assert_eq!(read(&a, f), read(&b, f), "{f} differs for the same seed");
    }
    let s2 = format!("DATA_S2/S2_{}.npy", sa.ids[0]);
    assert_ne!(read(&a, &s2), read(&c, &s2));
    assert_ne!(read(&a, "metadata.geojson"), read(&c, "metadata.geojson"));
}

#[test]
fn refuses_a_foreign_folder_and_rewrites_its_own() {
    let dir = tmp("refuse");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("precious.txt"), "keep me").unwrap();
    let e = write_pastis(&dir.0, &tiny(0)).unwrap_err().to_string();
    assert!(e.contains(&dir.0.display().to_string()), "{e}");
    assert!(e.contains("not empty"), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.0.join("precious.txt")).unwrap(),
        "keep me"
    );
    assert!(!dir.0.join("DATA_S2").exists());

    // A file in place of the folder.
    let file = tmp("refuse_file");
    std::fs::write(&file.0, "x").unwrap();
    assert!(write_pastis(&file.0, &tiny(0)).is_err());

    // Its own output: rewritten, stale patches of a bigger run removed.
    let own = tmp("rewrite");
    let big = write_pastis(
        &own.0,
        &SynthOptions {
            patches: 12,
            ..tiny(0)
        },
    )
    .unwrap();
    let small = write_pastis(&own.0, &tiny(0)).unwrap();
    let last = big.ids.last().unwrap();
    assert!(!small.ids.contains(last));
    assert!(!own.0.join(format!("DATA_S2/S2_{last}.npy")).exists());
    let n = std::fs::read_dir(own.0.join("DATA_S2")).unwrap().count();
    assert_eq!(n, 10);
    PastisDataset::open(&own.0, PastisOptions::default()).unwrap();
}

#[test]
fn bad_options_are_refused() {
    let dir = tmp("bad_options");
    let bad = [
        SynthOptions {
            size: 12,
            ..tiny(0)
        },
        SynthOptions {
            patches: 4,
            ..tiny(0)
        },
        SynthOptions {
            min_dates: 0,
            ..tiny(0)
        },
        SynthOptions {
            min_dates: 21,
            ..tiny(0)
        },
        SynthOptions {
            max_dates: 427,
            ..tiny(0)
        },
        SynthOptions {
            classes: 19,
            ..tiny(0)
        },
    ];
    for o in bad {
        let e = write_pastis(&dir.0, &o).unwrap_err().to_string();
        assert!(e.starts_with("synth:"), "{e}");
    }
    assert!(!dir.0.exists());
    assert_eq!(SynthOptions::default().crop_classes(), vec![1, 2, 3, 5, 7]);
    assert_eq!(
        SynthOptions {
            classes: 18,
            ..tiny(0)
        }
        .crop_classes(),
        (1..=18).collect::<Vec<u8>>()
    );
}

/// Per-pixel features: the means of the normalised bands over `bins` equal slices of the season (a bin
/// without acquisition takes the whole-series mean), band-major; `bins = 1` is the temporal mean. Void
/// pixels are left out.
fn pixel_features(ds: &PastisDataset, bins: usize) -> (Vec<Vec<f64>>, Vec<usize>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        let [t, c, h, w] = s.shape;
        let bin = |ti: usize| (s.dates[ti] as usize * bins / SEASON_DAYS).min(bins - 1);
        for p in 0..h * w {
            let class = s.target[p] as usize;
            if class == 19 {
                continue;
            }
            let mut f = Vec::with_capacity(c * bins);
            for b in 0..c {
                let v = |ti: usize| s.data[(ti * c + b) * h * w + p] as f64;
                let all = (0..t).map(v).sum::<f64>() / t as f64;
                for k in 0..bins {
                    let (sum, n) = (0..t)
                        .filter(|&ti| bin(ti) == k)
                        .fold((0.0, 0), |(s, n), ti| (s + v(ti), n + 1));
                    f.push(if n > 0 { sum / n as f64 } else { all });
                }
            }
            x.push(f);
            y.push(class);
        }
    }
    (x, y)
}

/// Nearest-class-mean on `bins`-slice features, trained on folds 1..=4, tested on fold 5: (balanced
/// accuracy, per-class recalls, number of classes trained).
fn nearest_class_mean(dir: &Path, bins: usize) -> (f64, Vec<f64>, usize) {
    let open = |folds: Vec<usize>| {
        PastisDataset::open(
            dir,
            PastisOptions {
                folds: Some(folds),
                ..PastisOptions::default()
            },
        )
        .unwrap()
    };
    let (xtr, ytr) = pixel_features(&open(vec![1, 2, 3, 4]), bins);
    let (xte, yte) = pixel_features(&open(vec![5]), bins);
    let dim = xtr[0].len();
    let mut sums = vec![(vec![0f64; dim], 0usize); 20];
    for (f, &c) in xtr.iter().zip(&ytr) {
        for (s, v) in sums[c].0.iter_mut().zip(f) {
            *s += v;
        }
        sums[c].1 += 1;
    }
    let means: Vec<(usize, Vec<f64>)> = sums
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(c, (s, n))| (c, s.iter().map(|v| v / *n as f64).collect()))
        .collect();
    let mut hit = [0usize; 20];
    let mut tot = [0usize; 20];
    for (f, &c) in xte.iter().zip(&yte) {
        let pred = means
            .iter()
            .map(|(cl, m)| {
                let d: f64 = f.iter().zip(m).map(|(a, b)| (a - b).powi(2)).sum();
                (d, *cl)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
            .1;
        tot[c] += 1;
        hit[c] += (pred == c) as usize;
    }
    let recalls: Vec<f64> = (0..20)
        .filter(|&c| tot[c] > 0)
        .map(|c| hit[c] as f64 / tot[c] as f64)
        .collect();
    let balanced = recalls.iter().sum::<f64>() / recalls.len() as f64;
    (balanced, recalls, means.len())
}

#[test]
fn a_nearest_class_mean_classifier_beats_chance_on_a_held_out_fold() {
    let dir = tmp("learnable");
    let opts = SynthOptions {
        patches: 20,
        size: 32,
        seed: 11,
        ..SynthOptions::default()
    };
    write_pastis(&dir.0, &opts).unwrap();
    // Temporal means only (the crude check), then five seasonal slices (the phenology a U-TAE sees).
    let (mean_acc, recalls, k) = nearest_class_mean(&dir.0, 1);
    assert_eq!(k, opts.classes + 1, "classes trained");
    let chance = 1.0 / k as f64;
    let (season_acc, season_recalls, _) = nearest_class_mean(&dir.0, 5);
    println!(
        "nearest class mean on fold 5, balanced accuracy (chance {chance:.3}): temporal mean \
         {mean_acc:.3} {recalls:.2?}; 5 seasonal slices {season_acc:.3} {season_recalls:.2?}"
    );
    assert!(recalls.len() >= 4, "too few classes in the test fold");
    assert!(mean_acc > 2.0 * chance, "temporal mean: {mean_acc}");
    assert!(season_acc > 3.0 * chance, "seasonal slices: {season_acc}");
}
