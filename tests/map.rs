//! `sitsgpu map` end to end on a synthetic scene made by GDAL (int16, tiled, deflate, nodata): a tiny U-TAE
//! trained for a few steps (its `Fold_1/normalisation.json` travels with it), the map's georeferencing read
//! back by GDAL, the map equal to `predict` on every window written as a PASTIS patch (exactly, on the
//! pixels only that window covers), `--part 1/2` + `--part 2/2` mosaicked by `gdalbuildvrt` equal to the
//! single run, a scene smaller than a window, and the bad inputs (errors naming the file). CPU reference
//! path, batch 1, so that each window's logits do not depend on its batch; skips loudly without GDAL.

mod common;

use std::path::Path;

use common::gdal::{gdal, gdal_or_skip, gdalinfo, translate, write_envi};
use common::{read_json, sitsgpu, sitsgpu_err, sitsgpu_ok, TmpDir};
use sitsgpu::data::geotiff::GeoTiffReader;
use sitsgpu::data::npy;

const DATES: [&str; 4] = ["20180915", "2018-11-02", "20190310", "20190701"];
const NODATA: f32 = -9999.0;

/// The tiny U-TAE of the workflow tests, trained 3 steps on synthetic PASTIS data.
fn weight_folder(dir: &Path) -> std::path::PathBuf {
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
        &"3",
        &"--cpu",
    ]);
    res
}

/// Raw value of date t, band b, pixel (y, x): smooth, varied, int16.
fn value(t: usize, b: usize, y: usize, x: usize) -> f32 {
    ((y * 37 + x * 11 + b * 101 + t * 53) % 400) as f32 * 9.0 + 200.0 * t as f32
}

/// Writes the scene (h × w, 10 bands, one file per date) as tiled deflate int16 GeoTIFFs; date 2 is nodata
/// on the left `blank` columns.
fn write_scene(dir: &Path, h: usize, w: usize, blank: usize) -> Vec<Vec<f32>> {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = Vec::new();
    for (t, d) in DATES.iter().enumerate() {
        let mut data = vec![0f32; 10 * h * w];
        for b in 0..10 {
            for y in 0..h {
                for x in 0..w {
                    data[(b * h + y) * w + x] = if t == 2 && x < blank {
                        NODATA
                    } else {
                        value(t, b, y, x)
                    };
                }
            }
        }
        let raw = dir.join(format!("S2_{d}.raw"));
        write_envi(&raw, &data, w, h, 10, "Int16");
        let tif = dir.join(format!("S2_{d}.tif"));
        let (x1, y1) = (600000 + 10 * w, 5000000 - 10 * h);
        let (x1, y1) = (x1.to_string(), y1.to_string());
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
                "BLOCKXSIZE=16",
                "-co",
                "BLOCKYSIZE=16",
                "-co",
                "COMPRESS=DEFLATE",
            ],
        );
        std::fs::remove_file(&raw).unwrap();
        std::fs::remove_file(raw.with_extension("hdr")).unwrap();
        all.push(data);
    }
    all
}

fn read_u8(path: &Path) -> (usize, usize, Vec<f32>) {
    let mut r = GeoTiffReader::open(path).unwrap();
    let (h, w) = (r.info().height, r.info().width);
    (h, w, r.read_all().unwrap())
}

#[test]
fn map_equals_predict_window_for_window_and_parts_equal_the_whole() {
    if !gdal_or_skip("map_equals_predict_window_for_window_and_parts_equal_the_whole") {
        return;
    }
    let tmp = TmpDir::new("map", "main");
    let res = weight_folder(&tmp.0);
    let norm = read_json(&res.join("Fold_1/normalisation.json"));
    let mean: Vec<f32> = norm["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (h, w, p) = (72, 88, 32);
    let images = tmp.0.join("images");
    let scene = write_scene(&images, h, w, 30);
    let out = tmp.0.join("out/MAP.tif");
    let o = sitsgpu_ok(&[
        &"map",
        &"--weight_folder",
        &res,
        &"--images",
        &images,
        &"--out",
        &out,
        &"--patch_size",
        &"32",
        &"--overlap",
        &"8",
        &"--batch_size",
        &"1",
        &"--cpu",
        &"--probabilities",
        &"--attention",
    ]);
    assert!(common::text(&o).contains("mapped"), "{}", common::text(&o));
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
    let (_, _, map) = read_u8(&out);
    assert!(
        map.iter().all(|&c| c < 20.0),
        "every pixel has data: no 255"
    );

    // Every window as a PASTIS patch: its kept dates, nodata pixels at the band mean (normalised to 0).
    let ys = [0usize, 24, 40];
    let xs = [0usize, 24, 48, 56];
    let data = tmp.0.join("patches");
    std::fs::create_dir_all(data.join("DATA_S2")).unwrap();
    let mut feats = Vec::new();
    let mut ids = Vec::new();
    for (iy, &y0) in ys.iter().enumerate() {
        for (ix, &x0) in xs.iter().enumerate() {
            let id = 100 + iy * 10 + ix;
            let kept: Vec<usize> = (0..DATES.len())
                .filter(|&t| !(t == 2 && x0 + p <= 30))
                .collect();
            let mut arr = Vec::new();
            for &t in &kept {
                for b in 0..10 {
                    for y in 0..p {
                        for x in 0..p {
                            let v = scene[t][(b * h + y0 + y) * w + x0 + x];
                            arr.push(if v == NODATA { mean[b] } else { v });
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
                    (
                        i.to_string(),
                        serde_json::json!(DATES[t].replace('-', "").parse::<u64>().unwrap()),
                    )
                })
                .collect();
            feats.push(serde_json::json!({"type": "Feature", "geometry": null,
                "properties": {"ID_PATCH": id, "Fold": 1 + (id % 5), "dates-S2": dates}}));
            ids.push((id, y0, x0, iy, ix));
        }
    }
    std::fs::write(
        data.join("metadata.geojson"),
        serde_json::json!({"type": "FeatureCollection", "features": feats}).to_string(),
    )
    .unwrap();
    let folds: serde_json::Map<String, serde_json::Value> = (1..=5)
        .map(|f| {
            (
                format!("Fold_{f}"),
                serde_json::json!({"mean": norm["mean"], "std": norm["std"]}),
            )
        })
        .collect();
    std::fs::write(
        data.join("NORM_S2_patch.json"),
        serde_json::Value::Object(folds).to_string(),
    )
    .unwrap();
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
    for &(id, y0, x0, iy, ix) in &ids {
        let pr = npy::read_f32(pred.join(format!("pred_{id}.npy")))
            .unwrap()
            .data;
        for y in 0..p {
            for x in 0..p {
                let (sy, sx) = (y0 + y, x0 + x);
                // Covered by this window only.
                let ny = ys.iter().filter(|&&s| s <= sy && sy < s + p).count();
                let nx = xs.iter().filter(|&&s| s <= sx && sx < s + p).count();
                let _ = (iy, ix);
                if ny == 1 && nx == 1 {
                    assert_eq!(
                        map[sy * w + sx],
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
    let mut parts = Vec::new();
    for i in 1..=2 {
        let part = tmp.0.join(format!("out/part{i}.tif"));
        sitsgpu_ok(&[
            &"map",
            &"--weight_folder",
            &res,
            &"--images",
            &images,
            &"--out",
            &part,
            &"--patch_size",
            &"32",
            &"--overlap",
            &"8",
            &"--batch_size",
            &"1",
            &"--cpu",
            &"--part",
            &format!("{i}/2"),
        ]);
        parts.push(part.to_str().unwrap().to_string());
    }
    let vrt = tmp.0.join("out/mosaic.vrt");
    let mut args = vec![vrt.to_str().unwrap()];
    args.extend(parts.iter().map(String::as_str));
    gdal("gdalbuildvrt", &args);
    let mosaic = tmp.0.join("out/mosaic.tif");
    translate(&vrt, &mosaic, &[]);
    let gm = gdalinfo(&mosaic);
    assert_eq!(gm["geoTransform"], gi["geoTransform"]);
    assert_eq!(
        read_u8(&mosaic).2,
        map,
        "parts mosaicked differ from the single run"
    );
}

#[test]
fn small_scene_is_padded_and_bad_inputs_name_the_file() {
    if !gdal_or_skip("small_scene_is_padded_and_bad_inputs_name_the_file") {
        return;
    }
    let tmp = TmpDir::new("map", "small");
    let res = weight_folder(&tmp.0);
    let images = tmp.0.join("images");
    write_scene(&images, 20, 27, 0);
    let out = tmp.0.join("small.tif");
    sitsgpu_ok(&[
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
    ]);
    let (h, w, m) = read_u8(&out);
    assert_eq!((h, w), (20, 27));
    assert!(m.iter().all(|&c| c < 20.0));
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
    write_scene(&bad, 20, 27, 0);
    let other = tmp.0.join("other");
    write_scene(&other, 21, 27, 0);
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
    let _ = sitsgpu(&[&"--version"]);
}
