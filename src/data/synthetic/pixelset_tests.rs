//! Tests of the synthetic pixel-set generator: the loader reads the default layout (pickle normalisation
//! found), the statistics match the data, the out-of-subset class is filtered, same seed same bytes, foreign
//! folders are refused, and a nearest-class-mean classifier beats chance by far.

use std::collections::BTreeMap;

use super::*;
use crate::data::npy;
use crate::data::numpy_pickle::read_arrays;
use crate::data::pixelset::{kfold_splits, Draw, PixelSetDataset, PixelSetOptions};

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> TmpDir {
    let dir = std::env::temp_dir().join(format!("sitsgpu_synth_ps_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TmpDir(dir)
}

fn small(seed: u64) -> PixelSetSynthOptions {
    PixelSetSynthOptions {
        parcels: 24,
        seed,
        ..PixelSetSynthOptions::default()
    }
}

/// Every file of a folder, relative path → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn dates_of_2017() {
    assert_eq!(date_2017(0), 20170101);
    assert_eq!(date_2017(31), 20170201);
    assert_eq!(date_2017(58), 20170228);
    assert_eq!(date_2017(59), 20170301);
    assert_eq!(date_2017(SEASON - 1), 20171130);
}

#[test]
fn the_loader_reads_the_default_layout() {
    let dir = tmp("layout");
    let opts = PixelSetSynthOptions::default();
    let sum = write_pixelset(&dir.0, &opts).unwrap();
    println!("{sum}");
    assert_eq!(sum.ids.len(), 300);
    assert!(sum.ids.windows(2).all(|w| w[0] < w[1]));
    assert!(
        sum.ids.windows(2).any(|w| w[1] - w[0] != 13),
        "ids are not a plain progression"
    );
    // The S cases the loader distinguishes all occur.
    assert!(sum.sizes.contains(&0));
    assert!(sum.sizes.iter().any(|&s| s > 0 && s < 64));
    assert!(sum.sizes.iter().any(|&s| s > 64));
    assert!(sum.sizes.iter().all(|&s| s <= MAX_PIXELS));
    let typical = sum
        .sizes
        .iter()
        .filter(|&&s| (20..=300).contains(&s))
        .count();
    assert!(
        typical as f64 > 0.8 * 300.0,
        "{typical} parcels of 20..=300 pixels"
    );

    let ds = PixelSetDataset::open(&dir.0, PixelSetOptions::default()).unwrap();
    assert!(ds.norm_file().unwrap().ends_with(NORM_PICKLE));
    let outside = sum.labels.iter().filter(|&&l| l == OUTSIDE_CLASS).count();
    assert_eq!(ds.len(), 300 - outside);
    assert_eq!(ds.extra_size(), 4);
    let pos = ds.date_positions();
    assert_eq!(pos.len(), DATES);
    assert_eq!(pos[0], 0);
    assert!(pos.windows(2).all(|w| w[0] < w[1]) && pos[DATES - 1] <= 333);
    let b = ds
        .load_batch(&(0..ds.len()).collect::<Vec<_>>(), Draw::Fixed)
        .unwrap();
    assert_eq!(b.shape, [ds.len(), DATES, BANDS, 64]);
    assert!(b.pixels.iter().all(|v| v.is_finite()));
    // Normalised by the (T, C) statistics: overall roughly zero mean, unit spread.
    let n = b.pixels.len() as f64;
    let mean = b.pixels.iter().map(|&v| v as f64).sum::<f64>() / n;
    assert!(mean.abs() < 0.5, "{mean}");

    // Files as the original expects them: int16 (24, 10, S), S as in sizes.json, geomfeat[1] = S.
    let sizes = json(&dir.0.join("META/sizes.json"));
    let geom = json(&dir.0.join("META/geomfeat.json"));
    for (&id, &s) in sum.ids.iter().zip(&sum.sizes) {
        let f = std::io::BufReader::new(
            std::fs::File::open(dir.0.join(format!("DATA/{id}.npy"))).unwrap(),
        );
        let npy = npyz::NpyFile::new(f).unwrap();
        assert_eq!(npy.dtype().descr(), "'<i2'");
        assert_eq!(npy.shape(), &[24, 10, s as u64]);
        assert_eq!(sizes[id.to_string()].as_u64(), Some(s as u64));
        let g: Vec<f64> = geom[id.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(g[1], s as f64);
        assert!(
            g[0] > 0.0 && g[2] > 0.0 && g[2] <= 1.0 && g[3] > 0.0,
            "{id}: {g:?}"
        );
        if s > 0 {
            // perimeter / surface, with the surface close to S·100 m².
            let ratio = g[3] / (g[0] / (s as f64 * 100.0));
            assert!((0.7..1.4).contains(&ratio), "{id}: {g:?}");
        }
    }
    let dates = json(&dir.0.join("META/dates.json"));
    assert_eq!(dates["0"].as_u64(), Some(sum.dates[0] as u64));
    assert!(dates.get("24").is_none() && dates.get("23").is_some());
}

#[test]
fn meanstd_is_the_statistics_of_the_raw_pixels() {
    let dir = tmp("stats");
    let sum = write_pixelset(&dir.0, &small(5)).unwrap();
    // Two-pass float64 statistics over every pixel of every parcel (np.mean / np.std, ddof 0).
    let mut vals = vec![Vec::new(); DATES * BANDS];
    for (&id, &s) in sum.ids.iter().zip(&sum.sizes) {
        let a = npy::read_f32(dir.0.join(format!("DATA/{id}.npy"))).unwrap();
        for (tb, v) in vals.iter_mut().enumerate() {
            v.extend(a.data[tb * s..(tb + 1) * s].iter().map(|&x| x as f64));
        }
    }
    let pkl = read_arrays(dir.0.join(NORM_PICKLE)).unwrap();
    assert_eq!(pkl.len(), 2);
    assert_eq!(pkl[0].shape, vec![DATES, BANDS]);
    for (tb, v) in vals.iter().enumerate() {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
        assert!((pkl[0].data[tb] - m).abs() <= 1e-12 * m, "mean {tb}");
        assert!((pkl[1].data[tb] - sd).abs() <= 1e-9 * sd, "std {tb}");
    }
    // meanstd.json holds the same float64 values.
    let j = json(&dir.0.join(NORM_JSON));
    for (a, key) in pkl.iter().zip(["mean", "std"]) {
        let flat: Vec<f64> = j[key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect();
        assert_eq!(a.data, flat, "{key}");
    }
}

#[test]
fn the_loader_drops_the_class_outside_the_subset() {
    let dir = tmp("filter");
    let sum = write_pixelset(&dir.0, &small(2)).unwrap();
    let labels = json(&dir.0.join("META/labels.json"));
    let outside: Vec<u64> = sum
        .ids
        .iter()
        .zip(&sum.labels)
        .filter(|(_, &l)| l == OUTSIDE_CLASS)
        .map(|(&id, _)| id)
        .collect();
    assert!(!outside.is_empty());
    for id in &outside {
        assert_eq!(
            labels["label_44class"][id.to_string()].as_i64(),
            Some(OUTSIDE_CLASS)
        );
    }
    assert!(!SUB_CLASSES.contains(&OUTSIDE_CLASS));
    let ds = PixelSetDataset::open(&dir.0, PixelSetOptions::default()).unwrap();
    assert_eq!(ds.len(), sum.ids.len() - outside.len());
    assert!(ds.ids().iter().all(|id| !outside.contains(id)));
    // Training labels are the indices of the codes in the subset: 0..classes.
    let codes = small(2).codes();
    for (&id, &t) in ds.ids().iter().zip(ds.targets()) {
        let k = sum.ids.iter().position(|&x| x == id).unwrap();
        assert_eq!(codes[t], sum.labels[k]);
    }
    // Without the subset every parcel is kept, with its raw code.
    let all = PixelSetDataset::open(
        &dir.0,
        PixelSetOptions {
            sub_classes: None,
            ..PixelSetOptions::default()
        },
    )
    .unwrap();
    assert_eq!(all.len(), sum.ids.len());
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (a, b, c) = (tmp("det_a"), tmp("det_b"), tmp("det_c"));
    write_pixelset(&a.0, &small(7)).unwrap();
    write_pixelset(&b.0, &small(7)).unwrap();
    write_pixelset(&c.0, &small(8)).unwrap();
    let fa = files(&a.0);
    assert_eq!(fa, files(&b.0));
    assert_ne!(fa, files(&c.0));
    // Rewriting a previous output with fewer parcels replaces its DATA files and keeps the bytes of a fresh run.
    let big = PixelSetSynthOptions {
        parcels: 40,
        ..small(7)
    };
    write_pixelset(&b.0, &big).unwrap();
    write_pixelset(&b.0, &small(7)).unwrap();
    assert_eq!(fa, files(&b.0));
}

#[test]
fn refuses_a_foreign_folder() {
    let dir = tmp("foreign");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("notes.txt"), "mine").unwrap();
    let e = write_pixelset(&dir.0, &small(0)).unwrap_err().to_string();
    assert!(e.contains("refusing") && e.contains(MARKER), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.0.join("notes.txt")).unwrap(),
        "mine"
    );
    // A PASTIS synth output is not overwritten by a pixel-set one.
    let pastis = tmp("foreign_pastis");
    let o = crate::data::synthetic::SynthOptions {
        patches: 5,
        size: 8,
        ..Default::default()
    };
    crate::data::synthetic::write_pastis(&pastis.0, &o).unwrap();
    let e = write_pixelset(&pastis.0, &small(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"pastis\""), "{e}");
    // Nor the other way round.
    let ps = tmp("foreign_ps");
    write_pixelset(&ps.0, &small(0)).unwrap();
    let e = crate::data::synthetic::write_pastis(&ps.0, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"pixelset\""), "{e}");
}

#[test]
fn bad_options_are_refused() {
    for (o, what) in [
        (
            PixelSetSynthOptions {
                parcels: 9,
                ..Default::default()
            },
            "parcels = 9",
        ),
        (
            PixelSetSynthOptions {
                classes: 0,
                ..Default::default()
            },
            "classes = 0",
        ),
        (
            PixelSetSynthOptions {
                classes: 19,
                ..Default::default()
            },
            "classes = 19",
        ),
    ] {
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
        let dir = tmp("bad");
        assert!(write_pixelset(&dir.0, &o).is_err());
        assert!(!dir.0.exists(), "nothing written for invalid options");
    }
}

/// Per-parcel temporal mean spectrum: the mean over dates and real pixels of each normalised band.
fn features(ds: &PixelSetDataset) -> Vec<Vec<f64>> {
    (0..ds.len())
        .map(|i| {
            let s = ds.get(i, Draw::Fixed).unwrap();
            let np = 64;
            let mut f = [0.0; BANDS];
            let mut n = 0.0;
            for t in 0..DATES {
                for k in 0..np {
                    if s.mask[t * np + k] == 0.0 {
                        continue;
                    }
                    n += 1.0;
                    for (b, fb) in f.iter_mut().enumerate() {
                        *fb += s.pixels[(t * BANDS + b) * np + k] as f64;
                    }
                }
            }
            f.iter().map(|v| v / n).collect()
        })
        .collect()
}

#[test]
fn a_nearest_class_mean_classifier_beats_chance_on_a_held_out_fold() {
    let dir = tmp("learnable");
    let opts = PixelSetSynthOptions::default();
    write_pixelset(&dir.0, &opts).unwrap();
    let ds = PixelSetDataset::open(&dir.0, PixelSetOptions::default()).unwrap();
    let x = features(&ds);
    let y = ds.targets();
    let split = &kfold_splits(ds.len(), 5, 1).unwrap()[0];
    let k = opts.classes;
    let mut means = vec![(vec![0.0; BANDS], 0.0); k];
    for &i in split.train.iter().chain(&split.val) {
        for (m, v) in means[y[i]].0.iter_mut().zip(&x[i]) {
            *m += v;
        }
        means[y[i]].1 += 1.0;
    }
    let (mut hit, mut tot) = (vec![0.0; k], vec![0.0; k]);
    for &i in &split.test {
        let pred = (0..k)
            .min_by(|&a, &b| {
                let d = |c: usize| -> f64 {
                    x[i].iter()
                        .zip(&means[c].0)
                        .map(|(v, m)| (v - m / means[c].1).powi(2))
                        .sum()
                };
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        tot[y[i]] += 1.0;
        hit[y[i]] += (pred == y[i]) as u8 as f64;
    }
    let recalls: Vec<f64> = (0..k)
        .filter(|&c| tot[c] > 0.0)
        .map(|c| hit[c] / tot[c])
        .collect();
    let balanced = recalls.iter().sum::<f64>() / recalls.len() as f64;
    let chance = 1.0 / k as f64;
    println!("nearest class mean, balanced accuracy {balanced:.3} (chance {chance:.3}), recalls {recalls:?}");
    assert!(
        balanced > 3.0 * chance,
        "balanced accuracy {balanced:.3}, chance {chance:.3}"
    );
}
