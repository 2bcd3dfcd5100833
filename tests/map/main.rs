//! `sitsgpu map` end to end on synthetic scenes made by GDAL (int16, tiled, deflate, nodata):
//!
//! - a tiny U-TAE trained for a few steps (its `Fold_1/normalisation.json` travels with it): the map's
//!   georeferencing read back by GDAL; the map equal to `predict` on every window written as a PASTIS patch
//!   (exactly, on the pixels only that window covers), across two column blocks (so through the spill);
//!   `--part 1/2` + `--part 2/2` mosaicked by `gdalbuildvrt` equal to the single run; a scene smaller than a
//!   window; the bad inputs (errors naming the file). CPU reference path, batch 1, so that each window's
//!   logits do not depend on its batch.
//! - U-TAE + PaPs (the shared fixture `utae_paps_small`): the instance raster read by GDAL (uint32, nodata 0,
//!   the input's grid), its ids unique over the scene and equal to `predict`'s instance of the window
//!   (`id mod p²`, window `id div p²`) on the pixels only that window covers, the class map `predict`'s
//!   panoptic semantic output there, parts mosaicking to the single run (instances included, at a batch
//!   of 3).
//! - the 512 × 384 × 10-band × 12-date scene on the GPU at batch 4, timed;
//! - memory flat in the scene's size: a scene and one 4× larger (same data, more nodata around it) report
//!   the same accumulator and tile-cache peaks, and (Linux) peak resident memory within 3 MiB.
//!
//! Skips loudly without GDAL (and the GPU test without a GPU).

#[path = "../common/mod.rs"]
mod common;
mod panoptic;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::gdal::{gdal, gdal_or_skip, gdal_pixels, gdalinfo, translate, write_envi};
use common::{fixtures_root, read_json, sitsgpu, sitsgpu_err, sitsgpu_ok, TmpDir};
use sitsgpu::data::geotiff::GeoTiffReader;
use sitsgpu::data::npy;
use sitsgpu::train::map::plan::positions;

const DATES: [&str; 4] = ["20180915", "2018-11-02", "20190310", "20190701"];
const NODATA: f32 = -9999.0;

/// Twelve dates, one a month from September 2018.
fn dates12() -> Vec<String> {
    (0..12)
        .map(|m| format!("{}{:02}15", 2018 + (m + 8) / 12, (m + 8) % 12 + 1))
        .collect()
}

/// The tiny U-TAE of the workflow tests (`widths` for encoder and decoder), trained 3 steps on synthetic
/// PASTIS data.
fn weight_folder(dir: &Path, widths: &str, out_conv: &str, heads: &str, d_model: &str) -> PathBuf {
    let data = dir.join("data");
    let res = dir.join("res");
    sitsgpu_ok(&[
        &"synth",
        &"--out",
        &data,
        &"--patches",
        &"10",
        &"--size",
        &"16",
        &"--min_dates",
        &"3",
        &"--max_dates",
        &"4",
    ]);
    sitsgpu_ok(&[
        &"train",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--fold",
        &"1",
        &"--epochs",
        &"1",
        &"--batch_size",
        &"2",
        &"--encoder_widths",
        &widths,
        &"--decoder_widths",
        &widths,
        &"--out_conv",
        &out_conv,
        &"--n_head",
        &heads,
        &"--d_model",
        &d_model,
        &"--max_steps",
        &"3",
        &"--cpu",
    ]);
    res
}

/// The workflow tests' tiny U-TAE.
fn tiny_utae(dir: &Path) -> PathBuf {
    weight_folder(dir, "[8,8,8,16]", "[8, 20]", "4", "16")
}

/// Raw value of date t, band b, pixel (y, x): smooth, varied, int16.
fn value(t: usize, b: usize, y: usize, x: usize) -> f32 {
    ((y * 37 + x * 11 + b * 101 + t * 53) % 400) as f32 * 9.0 + 200.0 * t as f32
}

/// A synthetic scene: one 10-band int16 GeoTIFF per date, tiled `tile` × `tile`, deflated, nodata -9999
/// where `nodata(t, y, x)`.
struct Scene<'a> {
    dates: Vec<String>,
    h: usize,
    w: usize,
    tile: usize,
    nodata: &'a dyn Fn(usize, usize, usize) -> bool,
    /// The values (default [`value`]).
    value: fn(usize, usize, usize, usize) -> f32,
}

impl Scene<'_> {
    fn pixel(&self, t: usize, b: usize, y: usize, x: usize) -> f32 {
        if (self.nodata)(t, y, x) {
            NODATA
        } else {
            (self.value)(t, b, y, x)
        }
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let (h, w) = (self.h, self.w);
        for (t, d) in self.dates.iter().enumerate() {
            let mut data = vec![0f32; 10 * h * w];
            for b in 0..10 {
                for y in 0..h {
                    for x in 0..w {
                        data[(b * h + y) * w + x] = self.pixel(t, b, y, x);
                    }
                }
            }
            let raw = dir.join(format!("S2_{d}.raw"));
            write_envi(&raw, &data, w, h, 10, "Int16");
            let tif = dir.join(format!("S2_{d}.tif"));
            let (x1, y1) = (600000 + 10 * w, 5000000 - 10 * h);
            let (x1, y1, tile) = (x1.to_string(), y1.to_string(), self.tile.to_string());
            translate(
                &raw,
                &tif,
                &[
                    "-of",
                    "GTiff",
                    "-a_srs",
                    "EPSG:32631",
                    "-a_ullr",
                    "600000",
                    "5000000",
                    &x1,
                    &y1,
                    "-a_nodata",
                    "-9999",
                    "-co",
                    "TILED=YES",
                    "-co",
                    &format!("BLOCKXSIZE={tile}"),
                    "-co",
                    &format!("BLOCKYSIZE={tile}"),
                    "-co",
                    "COMPRESS=DEFLATE",
                ],
            );
            std::fs::remove_file(&raw).unwrap();
            std::fs::remove_file(raw.with_extension("hdr")).unwrap();
        }
    }
}

/// The four-date scene of the comparisons: date 2 is nodata on the left `blank` columns.
fn scene4(h: usize, w: usize, blank: usize) -> Scene<'static> {
    let nodata: &'static dyn Fn(usize, usize, usize) -> bool = match blank {
        0 => &|_, _, _| false,
        30 => &|t, _, x| t == 2 && x < 30,
        _ => panic!("scene4: blank {blank}"),
    };
    Scene {
        dates: DATES.iter().map(|d| d.to_string()).collect(),
        h,
        w,
        tile: 16,
        nodata,
        value,
    }
}

/// Runs `sitsgpu map` with `args` after `--weight_folder res --images images --out out`.
fn map(res: &Path, images: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"map",
        &"--weight_folder",
        &res,
        &"--images",
        &images,
        &"--out",
        &out,
    ];
    for a in args {
        all.push(a);
    }
    sitsgpu_ok(&all)
}

fn read_raster(path: &Path) -> (usize, usize, Vec<f32>) {
    let mut r = GeoTiffReader::open(path).unwrap();
    let (h, w) = (r.info().height, r.info().width);
    (h, w, r.read_all().unwrap())
}

/// A number printed by `map` after `key` (`accumulator peak 123 bytes`).
fn reported(stdout: &str, key: &str) -> Option<f64> {
    let rest = &stdout[stdout.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Every window of `scene` (side `p`, starts `ys` × `xs`) as a PASTIS patch in `data` (its kept dates,
/// nodata pixels at the band mean, so normalised to 0), with `NORM_S2_patch.json` holding `mean` and `std`
/// for every fold. Returns (ID, first row, first column) of each window, row-major.
fn window_patches(
    scene: &Scene,
    (ys, xs, p): (&[usize], &[usize], usize),
    (mean, std): (&serde_json::Value, &serde_json::Value),
    data: &Path,
) -> Vec<(usize, usize, usize)> {
    std::fs::create_dir_all(data.join("DATA_S2")).unwrap();
    let m: Vec<f32> = mean
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let mut feats = Vec::new();
    let mut ids = Vec::new();
    for (iy, &y0) in ys.iter().enumerate() {
        for (ix, &x0) in xs.iter().enumerate() {
            let id = 1000 + iy * 100 + ix;
            let kept: Vec<usize> = (0..scene.dates.len())
                .filter(|&t| (0..p * p).any(|i| !(scene.nodata)(t, y0 + i / p, x0 + i % p)))
                .collect();
            let mut arr = Vec::new();
            for &t in &kept {
                for (b, &mb) in m.iter().enumerate() {
                    for y in 0..p {
                        for x in 0..p {
                            let v = scene.pixel(t, b, y0 + y, x0 + x);
                            arr.push(if v == NODATA { mb } else { v });
                        }
                    }
                }
            }
            npy::write_f32(
                data.join(format!("DATA_S2/S2_{id}.npy")),
                &[kept.len(), 10, p, p],
                &arr,
            )
            .unwrap();
            let dates: serde_json::Map<String, serde_json::Value> = kept
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let d = scene.dates[t].replace('-', "").parse::<u64>().unwrap();
                    (i.to_string(), serde_json::json!(d))
                })
                .collect();
            feats.push(serde_json::json!({"type": "Feature", "geometry": null,
                "properties": {"ID_PATCH": id, "Fold": 1 + (id % 5), "dates-S2": dates}}));
            ids.push((id, y0, x0));
        }
    }
    std::fs::write(
        data.join("metadata.geojson"),
        serde_json::json!({"type": "FeatureCollection", "features": feats}).to_string(),
    )
    .unwrap();
    write_norm(&data.join("NORM_S2_patch.json"), mean, std);
    ids
}

/// A `NORM_S2_patch.json` with the same statistics for the five folds.
fn write_norm(path: &Path, mean: &serde_json::Value, std: &serde_json::Value) {
    let folds: serde_json::Map<String, serde_json::Value> = (1..=5)
        .map(|f| {
            (
                format!("Fold_{f}"),
                serde_json::json!({"mean": mean, "std": std}),
            )
        })
        .collect();
    std::fs::write(path, serde_json::Value::Object(folds).to_string()).unwrap();
}

/// Windows covering scene pixel (y, x).
fn covering(ys: &[usize], xs: &[usize], p: usize, y: usize, x: usize) -> usize {
    let ny = ys.iter().filter(|&&s| s <= y && y < s + p).count();
    let nx = xs.iter().filter(|&&s| s <= x && x < s + p).count();
    ny * nx
}

/// `gdalbuildvrt` of `parts`, translated to a GeoTIFF: (gdalinfo, pixels as GDAL reads them).
fn mosaic(dir: &Path, name: &str, parts: &[PathBuf]) -> (serde_json::Value, Vec<f32>) {
    let vrt = dir.join(format!("{name}.vrt"));
    let mut args = vec![vrt.to_str().unwrap()];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    gdal("gdalbuildvrt", &args);
    let tif = dir.join(format!("{name}.tif"));
    translate(&vrt, &tif, &[]);
    (gdalinfo(&tif), gdal_pixels(&tif, dir))
}

#[test]
fn map_equals_predict_window_for_window_and_parts_equal_the_whole() {
    if !gdal_or_skip("map_equals_predict_window_for_window_and_parts_equal_the_whole") {
        return;
    }
    let tmp = TmpDir::new("map", "main");
    let res = tiny_utae(&tmp.0);
    let norm = read_json(&res.join("Fold_1/normalisation.json"));
    // Two column blocks (256 columns each for 32-pixel windows on 16-pixel tiles): the spill is crossed.
    let (h, w, p) = (72, 300, 32);
    let images = tmp.0.join("images");
    let scene = scene4(h, w, 30);
    scene.write(&images);
    let out = tmp.0.join("out/MAP.tif");
    let flags = [
        "--patch_size",
        "32",
        "--overlap",
        "8",
        "--batch_size",
        "1",
        "--cpu",
    ];
    let mut args = flags.to_vec();
    args.extend(["--probabilities", "--attention"]);
    let o = map(&res, &images, &out, &args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("mapped 39 windows"), "{stdout}");
    assert!(stdout.contains("2 block(s)"), "{stdout}");
    // Georeferencing as GDAL reads it: the input's.
    let gi = gdalinfo(&images.join("S2_20180915.tif"));
    let go = gdalinfo(&out);
    assert_eq!(go["coordinateSystem"]["wkt"], gi["coordinateSystem"]["wkt"]);
    assert_eq!(go["geoTransform"], gi["geoTransform"]);
    assert_eq!(go["size"], gi["size"]);
    assert_eq!(go["bands"][0]["type"], "Byte");
    assert_eq!(go["bands"][0]["noDataValue"].as_f64(), Some(255.0));
    let gp = gdalinfo(&tmp.0.join("out/MAP_probabilities.tif"));
    assert_eq!(gp["bands"].as_array().unwrap().len(), 20);
    let ga = gdalinfo(&tmp.0.join("out/MAP_attention.tif"));
    assert_eq!(ga["bands"].as_array().unwrap().len(), 4 * DATES.len());
    assert!(tmp.0.join("out/MAP.png").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.0.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".spill") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let (_, _, classes) = read_raster(&out);
    assert!(
        classes.iter().all(|&c| c < 20.0),
        "every pixel has data: no 255"
    );

    // Every window as a PASTIS patch, run through predict.
    let (ys, xs) = (positions(h, p, p - 8), positions(w, p, p - 8));
    let data = tmp.0.join("patches");
    let ids = window_patches(&scene, (&ys, &xs, p), (&norm["mean"], &norm["std"]), &data);
    let pred = tmp.0.join("pred");
    sitsgpu_ok(&[
        &"predict",
        &"--dataset_folder",
        &data,
        &"--weights",
        &res.join("Fold_1/model.npz"),
        &"--out",
        &pred,
        &"--batch_size",
        &"1",
        &"--cpu",
    ]);
    let mut compared = 0;
    for &(id, y0, x0) in &ids {
        let pr = npy::read_f32(pred.join(format!("pred_{id}.npy")))
            .unwrap()
            .data;
        for y in 0..p {
            for x in 0..p {
                let (sy, sx) = (y0 + y, x0 + x);
                if covering(&ys, &xs, p, sy, sx) == 1 {
                    assert_eq!(
                        classes[sy * w + sx],
                        pr[y * p + x],
                        "window {id} pixel ({y}, {x})"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > h * w / 3, "{compared} pixels compared");

    // Two parts, mosaicked by GDAL, equal the single run.
    let parts: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let part = tmp.0.join(format!("out/part{i}.tif"));
            let mut args = flags.to_vec();
            let which = format!("{i}/2");
            args.extend(["--part", &which]);
            map(&res, &images, &part, &args);
            part
        })
        .collect();
    let (gm, mosaicked) = mosaic(&tmp.0.join("out"), "mosaic", &parts);
    assert_eq!(gm["geoTransform"], gi["geoTransform"]);
    assert_eq!(
        mosaicked, classes,
        "parts mosaicked differ from the single run"
    );
}

#[test]
fn a_512_by_384_scene_of_12_dates_maps_on_the_gpu() {
    if !gdal_or_skip("a_512_by_384_scene_of_12_dates_maps_on_the_gpu")
        || sitsgpu::engine::testing::gpu_or_skip("a_512_by_384_scene_of_12_dates_maps_on_the_gpu")
            .is_none()
    {
        return;
    }
    let tmp = TmpDir::new("map", "large");
    // A smaller U-TAE still: the time goes to its convolutions.
    let res = weight_folder(&tmp.0, "[4,4,4,8]", "[4, 20]", "2", "8");
    let images = tmp.0.join("images");
    // A cloud (nodata) on date 5 over the top-left corner.
    let cloud = |t: usize, y: usize, x: usize| t == 5 && y < 100 && x < 150;
    let scene = Scene {
        dates: dates12(),
        h: 384,
        w: 512,
        tile: 256,
        nodata: &cloud,
        value,
    };
    scene.write(&images);
    let out = tmp.0.join("MAP.tif");
    let t0 = Instant::now();
    let o = map(&res, &images, &out, &["--batch_size", "4"]);
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!("{stdout}the 512 x 384 x 10-band x 12-date scene: {secs:.1} s");
    assert!(stdout.contains("mapped 20 windows"), "{stdout}");
    let go = gdalinfo(&out);
    assert_eq!(
        go["geoTransform"],
        gdalinfo(&images.join("S2_20180915.tif"))["geoTransform"]
    );
    let (h, w, classes) = read_raster(&out);
    assert_eq!((h, w), (384, 512));
    assert!(
        classes.iter().all(|&c| c < 20.0),
        "every pixel has data: no 255"
    );
}

#[test]
fn memory_is_flat_in_the_scene_size() {
    if !gdal_or_skip("memory_is_flat_in_the_scene_size") {
        return;
    }
    let tmp = TmpDir::new("map", "flat");
    let res = weight_folder(&tmp.0, "[4,4,4,8]", "[4, 20]", "2", "8");
    // The same 48 x 48 pixels of data in the top-left corner, nodata around them.
    let corner = |_: usize, y: usize, x: usize| y >= 48 || x >= 48;
    let mut peaks = Vec::new();
    // The longer side of both is at least 1024: the preview (at most 1024 pixels a side) is the same size.
    for (h, w) in [(512, 1024), (1024, 2048)] {
        let images = tmp.0.join(format!("images{w}"));
        Scene {
            dates: DATES.iter().map(|d| d.to_string()).collect(),
            h,
            w,
            tile: 16,
            nodata: &corner,
            value,
        }
        .write(&images);
        let out = tmp.0.join(format!("map{w}.tif"));
        let o = map(
            &res,
            &images,
            &out,
            &[
                "--patch_size",
                "32",
                "--overlap",
                "16",
                "--batch_size",
                "4",
                "--cpu",
            ],
        );
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        eprintln!("{h} x {w}:\n{stdout}");
        let (_, _, classes) = read_raster(&out);
        for (i, &c) in classes.iter().enumerate() {
            let data = i / w < 48 && i % w < 48;
            assert_eq!(c < 20.0, data, "pixel ({}, {}): class {c}", i / w, i % w);
        }
        let get =
            |key: &str| reported(&stdout, key).unwrap_or_else(|| panic!("no {key:?} in\n{stdout}"));
        peaks.push((
            get("accumulator peak"),
            get("tile caches peak"),
            reported(&stdout, "peak resident"),
            get("memory:"),
        ));
    }
    let (a, b) = (peaks[0], peaks[1]);
    assert_eq!((a.3, b.3), (4.0, 8.0), "blocks");
    assert_eq!(a.0, b.0, "accumulator peak of a 4x larger scene");
    assert_eq!(a.1, b.1, "tile caches peak of a 4x larger scene");
    if let (Some(ra), Some(rb)) = (a.2, b.2) {
        assert!(
            rb <= ra + 3.0,
            "peak resident memory {ra} MiB, {rb} MiB for a 4x larger scene"
        );
    }
}

#[test]
fn small_scene_is_padded_and_bad_inputs_name_the_file() {
    if !gdal_or_skip("small_scene_is_padded_and_bad_inputs_name_the_file") {
        return;
    }
    let tmp = TmpDir::new("map", "small");
    let res = tiny_utae(&tmp.0);
    let images = tmp.0.join("images");
    scene4(20, 27, 0).write(&images);
    let out = tmp.0.join("small.tif");
    map(&res, &images, &out, &["--patch_size", "32", "--cpu"]);
    let (h, w, m) = read_raster(&out);
    assert_eq!((h, w), (20, 27));
    assert!(m.iter().all(|&c| c < 20.0));
    // --precision mixed: products on half-precision operands; the classes barely move (a rounding of 2^-11
    // flips only pixels whose two best scores are that close).
    let out_mixed = tmp.0.join("small_mixed.tif");
    map(
        &res,
        &images,
        &out_mixed,
        &["--patch_size", "32", "--cpu", "--precision", "mixed"],
    );
    let (hm, wm, mm) = read_raster(&out_mixed);
    assert_eq!((hm, wm), (20, 27));
    let moved = m.iter().zip(&mm).filter(|(a, b)| a != b).count();
    assert!(
        moved * 50 <= m.len(),
        "{moved} of {} pixels changed class in mixed",
        m.len()
    );
    let run = |images: &Path, extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"map",
            &"--weight_folder",
            &res,
            &"--images",
            &images,
            &"--out",
            &out,
            &"--patch_size",
            &"32",
            &"--cpu",
        ];
        for e in extra {
            args.push(e);
        }
        sitsgpu_err(&args)
    };
    // No dates.
    let empty = tmp.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(run(&empty, &[]).contains("no dates"));
    // Another grid on one date.
    let bad = tmp.0.join("bad_grid");
    scene4(20, 27, 0).write(&bad);
    let other = tmp.0.join("other");
    scene4(21, 27, 0).write(&other);
    std::fs::copy(other.join("S2_20190310.tif"), bad.join("S2_20190310.tif")).unwrap();
    let e = run(&bad, &[]);
    assert!(e.contains("S2_20190310.tif") && e.contains("grid"), "{e}");
    // A corrupt file.
    std::fs::write(bad.join("S2_20190310.tif"), b"II*\0garbage").unwrap();
    let e = run(&bad, &[]);
    assert!(e.contains("S2_20190310.tif"), "{e}");
    // Missing bands.
    let e = run(&images, &["--bands", "1,2,3,4,5,6,7,8,9,11"]);
    assert!(e.contains("S2_") && e.contains("band 11"), "{e}");
    // A file without a date in its name.
    std::fs::copy(images.join("S2_20190310.tif"), images.join("scene.tif")).unwrap();
    let e = run(&images, &[]);
    assert!(e.contains("scene.tif") && e.contains("no date"), "{e}");
    std::fs::remove_file(images.join("scene.tif")).unwrap();
    // An official folder without its normalisation.
    std::fs::remove_file(res.join("Fold_1/normalisation.json")).unwrap();
    let e = run(&images, &[]);
    assert!(
        e.contains("normalisation.json") && e.contains("--norm"),
        "{e}"
    );
    // A pixel-set model: parcels from a vector file are out of scope, said plainly.
    let ps = tmp.0.join("pixelset");
    std::fs::create_dir_all(ps.join("Fold_1")).unwrap();
    std::fs::write(
        ps.join("conf.json"),
        r#"{"model": "pse_ltae", "mlp1": [10, 32, 64]}"#,
    )
    .unwrap();
    let e = sitsgpu_err(&[
        &"map",
        &"--weight_folder",
        &ps,
        &"--images",
        &images,
        &"--out",
        &out,
    ]);
    assert!(
        e.contains("conf.json") && e.contains("pixel-set") && e.contains("out of scope"),
        "{e}"
    );
    let _ = sitsgpu(&[&"--version"]);
}
