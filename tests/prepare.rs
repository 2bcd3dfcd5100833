//! `sitsgpu prepare` end to end on a small scene made by GDAL (72 × 40 pixels, 10 bands, 3 dates, int16
//! tiled deflate with nodata; a Byte label raster and an Int32 parcel raster), patch size 16: 5 × 3 tiles,
//! the last column and row padded, the top-left tile without data on any date (skipped), one date without
//! data on another tile (dropped there). Checks: every patch's pixels equal the GeoTIFF window; TARGET,
//! metadata (ids, folds, dates, footprints) and NORM per fold equal a direct computation; the folder opens
//! with the crate's PASTIS loader for semantic and instance targets; the instance maps follow §1.12; `train`
//! runs a step on it; bad inputs give errors naming the file. Skips loudly without GDAL.

// Pixel loops index several arrays by the same pixel.
#![allow(clippy::needless_range_loop)]

mod common;

use std::path::Path;

use common::gdal::{gdal_or_skip, translate, write_envi};
use common::{read_json, sitsgpu_err, sitsgpu_ok, TmpDir};
use sitsgpu::data::npy;
use sitsgpu::data::pastis::{PastisDataset, PastisOptions, Target};

const DATES: [&str; 3] = ["20180915", "2019-03-10", "20190701"];
const NODATA: f32 = -9999.0;
const H: usize = 40;
const W: usize = 72;
const P: usize = 16;

/// Raw value of date t, band b, pixel (y, x), or nodata: the top-left tile on every date, tile (1, 1) on
/// date 1.
fn value(t: usize, b: usize, y: usize, x: usize) -> f32 {
    if (y < P && x < P) || (t == 1 && (P..2 * P).contains(&y) && (P..2 * P).contains(&x)) {
        return NODATA;
    }
    ((y * 37 + x * 11 + b * 101 + t * 53) % 400) as f32 * 9.0 + 200.0 * t as f32 - 500.0
}

/// Parcel id of pixel (y, x): 6 × 6 blocks, 0 (no parcel) on some.
fn parcel(y: usize, x: usize) -> u32 {
    let k = (y / 6) * 20 + x / 6;
    if k % 7 == 3 {
        0
    } else {
        100_000 + k as u32 * 13
    }
}

/// Class of pixel (y, x): 0 without a parcel, else one per parcel (some void).
fn class(y: usize, x: usize) -> u8 {
    match parcel(y, x) {
        0 => 0,
        id => [1, 2, 3, 5, 19][(id as usize / 13) % 5],
    }
}

fn geotiff(raw_dir: &Path, tif: &Path, data: &[f32], bands: usize, ty: &str, extra: &[&str]) {
    let raw = raw_dir.join(format!(
        "{}.raw",
        tif.file_stem().unwrap().to_string_lossy()
    ));
    write_envi(&raw, data, W, H, bands, ty);
    let (x1, y1) = (
        (600000 + 10 * W).to_string(),
        (5000000 - 10 * H).to_string(),
    );
    let mut args = vec![
        "-of",
        "GTiff",
        "-a_srs",
        "EPSG:32631",
        "-a_ullr",
        "600000",
        "5000000",
        &x1,
        &y1,
        "-co",
        "TILED=YES",
        "-co",
        "BLOCKXSIZE=16",
        "-co",
        "BLOCKYSIZE=16",
        "-co",
        "COMPRESS=DEFLATE",
    ];
    args.extend_from_slice(extra);
    translate(&raw, tif, &args);
    std::fs::remove_file(&raw).unwrap();
    std::fs::remove_file(raw.with_extension("hdr")).unwrap();
}

/// The images (one GeoTIFF per date), labels.tif and parcels.tif in `dir`.
fn write_scene(dir: &Path) {
    let images = dir.join("images");
    let raw = dir.join("raw");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&raw).unwrap();
    for (t, d) in DATES.iter().enumerate() {
        let mut data = vec![0f32; 10 * H * W];
        for b in 0..10 {
            for y in 0..H {
                for x in 0..W {
                    data[(b * H + y) * W + x] = value(t, b, y, x);
                }
            }
        }
        geotiff(
            &raw,
            &images.join(format!("S2_{d}.tif")),
            &data,
            10,
            "Int16",
            &["-a_nodata", "-9999"],
        );
    }
    let labels: Vec<f32> = (0..H * W).map(|i| class(i / W, i % W) as f32).collect();
    geotiff(&raw, &dir.join("labels.tif"), &labels, 1, "Byte", &[]);
    let ids: Vec<f32> = (0..H * W).map(|i| parcel(i / W, i % W) as f32).collect();
    geotiff(&raw, &dir.join("parcels.tif"), &ids, 1, "Int32", &[]);
}

fn yyyymmdd(d: &str) -> u64 {
    d.replace('-', "").parse().unwrap()
}

#[test]
fn prepare_writes_the_pastis_layout_train_reads() {
    if !gdal_or_skip("prepare_writes_the_pastis_layout_train_reads") {
        return;
    }
    let tmp = TmpDir::new("prepare", "main");
    write_scene(&tmp.0);
    let out = tmp.0.join("dataset");
    let o = sitsgpu_ok(&[
        &"prepare",
        &"--images",
        &tmp.0.join("images"),
        &"--labels",
        &tmp.0.join("labels.tif"),
        &"--parcels",
        &tmp.0.join("parcels.tif"),
        &"--out",
        &out,
        &"--patch_size",
        &"16",
    ]);
    let said = common::text(&o);
    assert!(said.contains("wrote 14 patches"), "{said}");
    assert!(said.contains("1 tile(s) without data skipped"), "{said}");

    // metadata.geojson: ids, folds, dates, footprints.
    let meta = read_json(&out.join("metadata.geojson"));
    assert_eq!(
        meta["crs"]["properties"]["name"],
        "urn:ogc:def:crs:EPSG::32631"
    );
    let feats = meta["features"].as_array().unwrap();
    assert_eq!(feats.len(), 14);
    let (nx, ny) = (W.div_ceil(P), H.div_ceil(P));
    let mut per_fold: Vec<Vec<(Vec<f64>, Vec<f64>)>> = vec![Vec::new(); 5];
    let mut ids_seen = Vec::new();
    for f in feats {
        let pr = &f["properties"];
        let id = pr["ID_PATCH"].as_u64().unwrap() as usize;
        ids_seen.push(id);
        let (ty, tx) = ((id - 1) / nx, (id - 1) % nx);
        assert!(ty < ny && (ty, tx) != (0, 0));
        let fold = pr["Fold"].as_u64().unwrap() as usize;
        assert_eq!(fold, 1 + (tx + 2 * ty) % 5);
        assert_eq!(pr["TILE"], "images");
        let kept: Vec<usize> = if (ty, tx) == (1, 1) {
            vec![0, 2]
        } else {
            vec![0, 1, 2]
        };
        let dates = pr["dates-S2"].as_object().unwrap();
        assert_eq!(dates.len(), kept.len());
        for (k, &t) in kept.iter().enumerate() {
            assert_eq!(dates[&k.to_string()].as_u64(), Some(yyyymmdd(DATES[t])));
        }
        let (r, c) = (ty * P, tx * P);
        let x0 = 600000.0 + 10.0 * c as f64;
        let y0 = 5000000.0 - 10.0 * r as f64;
        let ring: Vec<[f64; 2]> = f["geometry"]["coordinates"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect();
        let side = 10.0 * P as f64;
        assert_eq!(
            ring,
            vec![
                [x0, y0],
                [x0 + side, y0],
                [x0 + side, y0 - side],
                [x0, y0 - side],
                [x0, y0]
            ]
        );

        // The pixels: the GeoTIFF window, int16, 0 where no data and past the scene.
        let s2_path = out.join(format!("DATA_S2/S2_{id}.npy"));
        assert_eq!(npy::read_header(&s2_path).unwrap().dtype, "i2");
        let s2 = npy::read_f32(&s2_path).unwrap();
        assert_eq!(s2.shape, vec![kept.len(), 10, P, P]);
        let target = npy::read_f32(out.join(format!("ANNOTATIONS/TARGET_{id}.npy"))).unwrap();
        assert_eq!(target.shape, vec![3, P, P]);
        let mut valid = vec![false; P * P];
        for (k, &t) in kept.iter().enumerate() {
            for b in 0..10 {
                for i in 0..P * P {
                    let (y, x) = (r + i / P, c + i % P);
                    let want = if y < H && x < W && value(t, b, y, x) != NODATA {
                        valid[i] = true;
                        value(t, b, y, x)
                    } else {
                        0.0
                    };
                    assert_eq!(
                        s2.data[(k * 10 + b) * P * P + i],
                        want,
                        "patch {id} t {t} b {b} px {i}"
                    );
                }
            }
        }
        for i in 0..P * P {
            let (y, x) = (r + i / P, c + i % P);
            let want = if valid[i] { class(y, x) } else { 19 } as f32;
            for ch in 0..3 {
                assert_eq!(
                    target.data[ch * P * P + i],
                    want,
                    "TARGET {id} ch {ch} px {i}"
                );
            }
        }

        // §1.12: INSTANCES relabels the parcel ids of non-background pixels 1..N in id order.
        let inst =
            npy::read_f32(out.join(format!("INSTANCE_ANNOTATIONS/INSTANCES_{id}.npy"))).unwrap();
        let heat =
            npy::read_f32(out.join(format!("INSTANCE_ANNOTATIONS/HEATMAP_{id}.npy"))).unwrap();
        let zones =
            npy::read_f32(out.join(format!("INSTANCE_ANNOTATIONS/ZONES_{id}.npy"))).unwrap();
        let mut distinct: Vec<u32> = (0..P * P)
            .filter(|&i| valid[i] && class(r + i / P, c + i % P) != 0)
            .map(|i| parcel(r + i / P, c + i % P))
            .collect();
        distinct.sort();
        distinct.dedup();
        for i in 0..P * P {
            let (y, x) = (r + i / P, c + i % P);
            let want = if valid[i] && class(y, x) != 0 {
                1 + distinct.iter().position(|&d| d == parcel(y, x)).unwrap()
            } else {
                0
            };
            assert_eq!(inst.data[i], want as f32, "INSTANCES {id} px {i}");
            assert!((0.0..=1.0).contains(&heat.data[i]));
            assert!(zones.data[i] >= 1.0 && zones.data[i] <= distinct.len() as f32);
        }
        assert_eq!(pr["N_Parcel"].as_u64(), Some(distinct.len() as u64));
        // Exactly 1.0 at each instance's center (one pixel per instance at least).
        let ones = heat.data.iter().filter(|&&v| v == 1.0).count();
        assert!(ones >= distinct.len(), "patch {id}: {ones} centers");

        // Per-patch statistics for NORM: mean and unbiased std of the stored values.
        let n = (kept.len() * P * P) as f64;
        let (mut m, mut s) = (vec![0f64; 10], vec![0f64; 10]);
        for b in 0..10 {
            let vals: Vec<f64> = (0..kept.len())
                .flat_map(|k| {
                    s2.data[(k * 10 + b) * P * P..][..P * P]
                        .iter()
                        .map(|&v| v as f64)
                })
                .collect();
            m[b] = vals.iter().sum::<f64>() / n;
            s[b] = (vals.iter().map(|v| (v - m[b]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        }
        per_fold[fold - 1].push((m, s));
    }
    ids_seen.sort();
    assert_eq!(ids_seen, (2..=15).collect::<Vec<_>>());
    let norm = read_json(&out.join("NORM_S2_patch.json"));
    for (f, patches) in per_fold.iter().enumerate() {
        assert!(!patches.is_empty());
        for b in 0..10 {
            let m = patches.iter().map(|p| p.0[b]).sum::<f64>() / patches.len() as f64;
            let s = patches.iter().map(|p| p.1[b]).sum::<f64>() / patches.len() as f64;
            let key = format!("Fold_{}", f + 1);
            let got_m = norm[&key]["mean"][b].as_f64().unwrap();
            let got_s = norm[&key]["std"][b].as_f64().unwrap();
            assert!(
                (got_m - m).abs() <= 1e-9 * m.abs().max(1.0),
                "{key} mean {b}"
            );
            assert!(
                (got_s - s).abs() <= 1e-9 * s.abs().max(1.0),
                "{key} std {b}"
            );
        }
    }

    // The crate's loader, semantic and instance targets.
    for target in [Target::Semantic, Target::Instance] {
        let ds = PastisDataset::open(
            &out,
            PastisOptions {
                target,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.len(), 14);
        ds.check(Some(20)).unwrap();
        for i in 0..ds.len() {
            let smp = ds.get(i).unwrap();
            assert_eq!(smp.shape[1..], [10, P, P]);
            assert_eq!(smp.target.len(), P * P);
            assert_eq!(smp.instance.is_some(), target == Target::Instance);
        }
    }

    // train runs a step on it.
    let res = tmp.0.join("res");
    sitsgpu_ok(&[
        &"train",
        &"--dataset_folder",
        &out,
        &"--res_dir",
        &res,
        &"--fold",
        &"1",
        &"--epochs",
        &"1",
        &"--batch_size",
        &"2",
        &"--encoder_widths",
        &"[8,8,8,16]",
        &"--decoder_widths",
        &"[8,8,8,16]",
        &"--out_conv",
        &"[8, 20]",
        &"--n_head",
        &"4",
        &"--d_model",
        &"16",
        &"--max_steps",
        &"1",
        &"--cpu",
    ]);
    assert!(res.join("Fold_1").exists());

    // A non-empty output folder is refused.
    let e = sitsgpu_err(&[
        &"prepare",
        &"--images",
        &tmp.0.join("images"),
        &"--labels",
        &tmp.0.join("labels.tif"),
        &"--out",
        &out,
        &"--patch_size",
        &"16",
    ]);
    assert!(e.contains("dataset") && e.contains("not empty"), "{e}");
}

#[test]
fn prepare_bad_inputs_name_the_file() {
    if !gdal_or_skip("prepare_bad_inputs_name_the_file") {
        return;
    }
    let tmp = TmpDir::new("prepare", "bad");
    write_scene(&tmp.0);
    let images = tmp.0.join("images");
    let run = |labels: &Path, parcels: Option<&Path>, out: &str| {
        let out = tmp.0.join(out);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"prepare",
            &"--images",
            &images,
            &"--labels",
            &labels,
            &"--out",
            &out,
            &"--patch_size",
            &"16",
        ];
        if let Some(p) = parcels.as_ref() {
            args.push(&"--parcels");
            args.push(p);
        }
        let e = sitsgpu_err(&args);
        assert!(!out.join("metadata.geojson").exists());
        e
    };
    // Missing labels file.
    let e = run(&tmp.0.join("nope.tif"), None, "o1");
    assert!(e.contains("nope.tif"), "{e}");
    // Labels on another grid (shifted by a pixel).
    let shifted = tmp.0.join("shifted.tif");
    translate(
        &tmp.0.join("labels.tif"),
        &shifted,
        &["-a_ullr", "600010", "5000000", "600730", "4999600"],
    );
    let e = run(&shifted, None, "o2");
    assert!(
        e.contains("shifted.tif") && e.contains("geotransform"),
        "{e}"
    );
    // Labels of another size.
    let small = tmp.0.join("small.tif");
    translate(
        &tmp.0.join("labels.tif"),
        &small,
        &["-srcwin", "0", "0", "64", "40"],
    );
    let e = run(&small, None, "o3");
    assert!(e.contains("small.tif") && e.contains("64 x 40"), "{e}");
    // A corrupt TIFF (parcels).
    let corrupt = tmp.0.join("corrupt.tif");
    let mut bytes = std::fs::read(tmp.0.join("parcels.tif")).unwrap();
    bytes.truncate(200);
    std::fs::write(&corrupt, bytes).unwrap();
    let e = run(&tmp.0.join("labels.tif"), Some(&corrupt), "o4");
    assert!(e.contains("corrupt.tif"), "{e}");
    // Labels that are not classes.
    let raw = tmp.0.join("raw");
    let bad: Vec<f32> = (0..H * W)
        .map(|i| if i == 20 * W + 30 { 300.0 } else { 1.0 })
        .collect();
    geotiff(&raw, &tmp.0.join("wide.tif"), &bad, 1, "Int16", &[]);
    let e = run(&tmp.0.join("wide.tif"), None, "o5");
    assert!(e.contains("wide.tif") && e.contains("300"), "{e}");
}
