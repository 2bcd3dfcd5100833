//! `sitsgpu map` with U-TAE + PaPs (the shared fixture `utae_paps_small`): the instance raster, its ids, the
//! class map and the parts, against `predict` window for window (the module doc of `main.rs`).

use super::*;

#[test]
fn paps_map_writes_instances_equal_to_predict_window_for_window() {
    if !gdal_or_skip("paps_map_writes_instances_equal_to_predict_window_for_window") {
        return;
    }
    let case = fixtures_root().join("utae_paps_small");
    assert!(
        case.join("weights.npz").exists(),
        "fixture utae_paps_small missing under {} (set SITSGPU_FIXTURES)",
        fixtures_root().display()
    );
    let tmp = TmpDir::new("map", "paps");
    // The fixture's U-TAE + PaPs (random weights that find parcels) as an official weight folder.
    let res = tmp.0.join("weights");
    std::fs::create_dir_all(res.join("Fold_1")).unwrap();
    std::fs::copy(case.join("conf.json"), res.join("conf.json")).unwrap();
    std::fs::copy(case.join("weights.npz"), res.join("Fold_1/model.npz")).unwrap();
    let mean = serde_json::json!((0..10)
        .map(|b| 1500.0 + 10.0 * b as f64)
        .collect::<Vec<_>>());
    let std = serde_json::json!(vec![900.0; 10]);
    let norm = tmp.0.join("NORM_S2_patch.json");
    write_norm(&norm, &mean, &std);
    let (h, w, p) = (72, 300, 32);
    let images = tmp.0.join("images");
    let scene = scene4(h, w, 30);
    scene.write(&images);
    let out = tmp.0.join("out/MAP.tif");
    let norm_s = norm.to_str().unwrap().to_string();
    let flags = [
        "--patch_size",
        "32",
        "--overlap",
        "8",
        "--batch_size",
        "1",
        "--cpu",
        "--norm",
        &norm_s,
        "--fold",
        "1",
    ];
    let o = map(&res, &images, &out, &flags);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("MAP_instances.tif"), "{stdout}");
    // GDAL reads the instance raster on the input's grid: uint32, nodata 0.
    let inst_path = tmp.0.join("out/MAP_instances.tif");
    let gi = gdalinfo(&images.join("S2_20180915.tif"));
    let gn = gdalinfo(&inst_path);
    assert_eq!(gn["coordinateSystem"]["wkt"], gi["coordinateSystem"]["wkt"]);
    assert_eq!(gn["geoTransform"], gi["geoTransform"]);
    assert_eq!(gn["size"], gi["size"]);
    assert_eq!(gn["bands"][0]["type"], "UInt32");
    assert_eq!(gn["bands"][0]["noDataValue"].as_f64(), Some(0.0));
    let ids_map = gdal_pixels(&inst_path, &tmp.0);
    let (_, _, classes) = read_raster(&out);
    assert!(classes.iter().all(|&c| c < 20.0), "no nodata pixel");

    let (ys, xs) = (positions(h, p, p - 8), positions(w, p, p - 8));
    let pp = (p * p) as f32;
    // Ids are unique over the scene: each names one window, and lies inside it.
    let mut distinct: Vec<u32> = ids_map
        .iter()
        .map(|&v| v as u32)
        .filter(|&v| v > 0)
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 10, "{} instances", distinct.len());
    for (i, &v) in ids_map.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        let k = (v / pp).floor() as usize;
        let (wy, wx) = (ys[k / xs.len()], xs[k % xs.len()]);
        let (y, x) = (i / w, i % w);
        assert!(
            (wy..wy + p).contains(&y) && (wx..wx + p).contains(&x),
            "id {v} at ({y}, {x}) outside its window ({wy}, {wx})"
        );
    }

    // predict on every window as a PASTIS patch.
    let data = tmp.0.join("patches");
    let ids = window_patches(&scene, (&ys, &xs, p), (&mean, &std), &data);
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
    let (mut matched, mut dropped, mut not_kept) = (0, 0, 0);
    for (k, &(id, y0, x0)) in ids.iter().enumerate() {
        let read = |name: &str| {
            npy::read_f32(pred.join(format!("{name}_{id}.npy")))
                .unwrap()
                .data
        };
        let (pi, ps) = (read("instance"), read("semantic"));
        let base = k as f32 * pp;
        // predict's instances of this window the map kept.
        let kept = |q: f32| ids_map.contains(&(base + q));
        let mut own: Vec<u32> = pi.iter().map(|&q| q as u32).filter(|&q| q > 0).collect();
        own.sort_unstable();
        own.dedup();
        not_kept += own.iter().filter(|&&q| !kept(q as f32)).count();
        for y in 0..p {
            for x in 0..p {
                let (sy, sx) = (y0 + y, x0 + x);
                if covering(&ys, &xs, p, sy, sx) != 1 {
                    continue;
                }
                let (m, q) = (ids_map[sy * w + sx], pi[y * p + x]);
                let at = format!("window {id} pixel ({y}, {x}): map id {m}, predict id {q}");
                if m != 0.0 {
                    // Only this window covers the pixel: its instance, as predict numbers it.
                    assert_eq!(m, base + q, "{at}");
                    assert_eq!(classes[sy * w + sx], ps[y * p + x], "{at}: class");
                    matched += 1;
                } else {
                    // No instance, or predict's instance belongs to another window (center outside this
                    // window's core): then none of its pixels is in the map, and the class is background.
                    assert!(q == 0.0 || !kept(q), "{at}");
                    assert_eq!(classes[sy * w + sx], 0.0, "{at}: class");
                    if q != 0.0 {
                        dropped += 1;
                    } else {
                        assert_eq!(ps[y * p + x], 0.0, "{at}: predict's class");
                    }
                }
            }
        }
    }
    assert!(matched > h * w / 4, "{matched} instance pixels matched");
    // Instances centred outside their window's core are left to the neighbour that sees them centred.
    assert!(not_kept > 0, "every instance of every window kept");
    eprintln!(
        "{matched} instance pixels equal to predict's, {dropped} of instances other windows own; \
         {not_kept} of predict's instances left to another window"
    );

    // Two parts mosaic to the single run, instance ids included, at a batch of 3 (batches are cut at the
    // end of a block's row of windows, so each window has the same batch mates in every run).
    let mut flags3 = flags.to_vec();
    flags3[5] = "3";
    assert_eq!(flags3[4], "--batch_size");
    let single = tmp.0.join("out/single3.tif");
    map(&res, &images, &single, &flags3);
    let classes = gdal_pixels(&single, &tmp.0);
    let ids_map = gdal_pixels(&tmp.0.join("out/single3_instances.tif"), &tmp.0);
    let part_paths: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let part = tmp.0.join(format!("out/part{i}.tif"));
            let mut args = flags3.clone();
            let which = format!("{i}/2");
            args.extend(["--part", &which]);
            map(&res, &images, &part, &args);
            part
        })
        .collect();
    let (_, mosaicked) = mosaic(&tmp.0.join("out"), "classes", &part_paths);
    assert_eq!(mosaicked, classes, "class parts differ from the single run");
    let inst_parts: Vec<PathBuf> = part_paths
        .iter()
        .map(|p| {
            p.with_file_name(format!(
                "{}_instances.tif",
                p.file_stem().unwrap().to_string_lossy()
            ))
        })
        .collect();
    let (gm, mosaicked) = mosaic(&tmp.0.join("out"), "instances", &inst_parts);
    assert_eq!(gm["geoTransform"], gi["geoTransform"]);
    assert_eq!(
        mosaicked, ids_map,
        "instance parts differ from the single run"
    );

    // PaPs has no per-pixel probabilities.
    let e = sitsgpu_err(&[
        &"map",
        &"--weight_folder",
        &res,
        &"--images",
        &images,
        &"--out",
        &out,
        &"--norm",
        &norm,
        &"--fold",
        &"1",
        &"--cpu",
        &"--probabilities",
    ]);
    assert!(e.contains("--probabilities"), "{e}");
}
