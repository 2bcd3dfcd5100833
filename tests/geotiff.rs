//! GeoTIFF reading and writing (`sitsgpu::data::geotiff`) against GDAL, the independent client: GDAL writes
//! inputs in every layout the issue names (int16 / uint16 / float32; stripped or tiled; uncompressed,
//! deflate, LZW with predictors; band- or pixel-interleaved; BigTIFF; PixelIsPoint) from raw values the test
//! knows, and our reader must return exactly those values, windows included (also windows reaching past the
//! scene). Our writer's files must read back in GDAL with the same CRS, geotransform, nodata, band types and
//! pixels. Skips loudly without GDAL (fails under `SITSGPU_REQUIRE_GDAL=1`).

mod common;

use std::path::Path;

use common::gdal::{gdal_or_skip, gdal_pixels, gdalinfo, translate, write_envi};
use common::TmpDir;
use sitsgpu::data::geotiff::writer::{write_all, TiledWriter};
use sitsgpu::data::geotiff::{GeoTiffReader, SampleType};

/// A deterministic test raster (bands, h, w) whose values fit `ty` and differ between bands and pixels.
fn values(w: usize, h: usize, bands: usize, ty: &str) -> Vec<f32> {
    (0..bands * h * w)
        .map(|i| {
            let v = ((i * 7919) % 4093) as f32;
            match ty {
                "Int16" => v - 2000.0,
                "UInt16" => v * 13.0,
                "Float32" => (v - 2000.0) * 0.37,
                _ => v % 251.0,
            }
        })
        .collect()
}

const SRS_ARGS: [&str; 8] = [
    "-a_srs",
    "EPSG:32631",
    "-a_ullr",
    "600000",
    "5000000",
    "600770",
    "4999470",
    "",
];

fn srs_args() -> Vec<&'static str> {
    SRS_ARGS[..7].to_vec()
}

/// (name, type, creation options) of every layout tried.
const LAYOUTS: &[(&str, &str, &[&str])] = &[
    ("i16_strip_none", "Int16", &[]),
    (
        "i16_strip_deflate_rows1",
        "Int16",
        &["-co", "COMPRESS=DEFLATE", "-co", "BLOCKYSIZE=1"],
    ),
    (
        "u16_tiled_deflate",
        "UInt16",
        &[
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=16",
            "-co",
            "BLOCKYSIZE=32",
            "-co",
            "COMPRESS=DEFLATE",
        ],
    ),
    (
        "u16_tiled_lzw_pred2",
        "UInt16",
        &[
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=32",
            "-co",
            "BLOCKYSIZE=16",
            "-co",
            "COMPRESS=LZW",
            "-co",
            "PREDICTOR=2",
        ],
    ),
    (
        "f32_tiled_lzw_pred3",
        "Float32",
        &[
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=16",
            "-co",
            "BLOCKYSIZE=16",
            "-co",
            "COMPRESS=LZW",
            "-co",
            "PREDICTOR=3",
        ],
    ),
    (
        "f32_strip_deflate",
        "Float32",
        &["-co", "COMPRESS=DEFLATE", "-co", "BLOCKYSIZE=7"],
    ),
    (
        "i16_bigtiff_tiled",
        "Int16",
        &[
            "-co",
            "BIGTIFF=YES",
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=16",
            "-co",
            "BLOCKYSIZE=16",
            "-co",
            "COMPRESS=DEFLATE",
        ],
    ),
    (
        "i16_planar_tiled",
        "Int16",
        &[
            "-co",
            "INTERLEAVE=BAND",
            "-co",
            "TILED=YES",
            "-co",
            "BLOCKXSIZE=16",
            "-co",
            "BLOCKYSIZE=16",
            "-co",
            "COMPRESS=DEFLATE",
        ],
    ),
    (
        "u16_planar_strip",
        "UInt16",
        &[
            "-co",
            "INTERLEAVE=BAND",
            "-co",
            "BLOCKYSIZE=5",
            "-co",
            "COMPRESS=LZW",
        ],
    ),
];

#[test]
fn reader_matches_gdal_in_every_layout() {
    if !gdal_or_skip("reader_matches_gdal_in_every_layout") {
        return;
    }
    let dir = TmpDir::new("geotiff", "layouts");
    let (w, h, nb) = (77, 53, 4);
    for &(name, ty, opts) in LAYOUTS {
        let data = values(w, h, nb, ty);
        let raw = dir.0.join(format!("{name}.raw"));
        write_envi(&raw, &data, w, h, nb, ty);
        let tif = dir.0.join(format!("{name}.tif"));
        let mut args = srs_args();
        let nodata = if ty == "UInt16" { "65535" } else { "-9999" };
        args.extend_from_slice(&["-a_nodata", nodata, "-of", "GTiff"]);
        args.extend_from_slice(opts);
        translate(&raw, &tif, &args);
        let mut r = GeoTiffReader::open(&tif).unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = r.info().clone();
        assert_eq!((info.width, info.height, info.bands), (w, h, nb), "{name}");
        assert_eq!(info.sample.gdal_name(), ty, "{name}");
        // Every pixel, against GDAL's own reading of the file (and the values written).
        let all = r.read_all().unwrap();
        let gdal = gdal_pixels(&tif, &dir.0);
        assert_eq!(all, gdal, "{name}: pixels differ from GDAL's");
        assert_eq!(all, data, "{name}: pixels differ from the values written");
        // Windows inside, across chunk borders, and past every edge (filled).
        for &(r0, c0, rows, cols) in &[
            (0i64, 0i64, 16usize, 16usize),
            (5, 9, 20, 33),
            (40, 60, 30, 30),
            (-3, -4, 10, 12),
        ] {
            let bands = [3usize, 0];
            let win = r.read_window(r0, c0, rows, cols, &bands, -1.5).unwrap();
            for (bi, &b) in bands.iter().enumerate() {
                for y in 0..rows {
                    for x in 0..cols {
                        let (sy, sx) = (r0 + y as i64, c0 + x as i64);
                        let want = if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                            -1.5
                        } else {
                            data[(b * h + sy as usize) * w + sx as usize]
                        };
                        assert_eq!(
                            win[(bi * rows + y) * cols + x],
                            want,
                            "{name} window ({r0},{c0}) band {b} pixel ({y},{x})"
                        );
                    }
                }
            }
        }
        // Georeferencing as GDAL reads it.
        let gi = gdalinfo(&tif);
        let gt: Vec<f64> = gi["geoTransform"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(
            info.georef.geotransform().to_vec(),
            gt,
            "{name}: geotransform"
        );
        assert_eq!(
            info.nodata,
            gi["bands"][0]["noDataValue"].as_f64(),
            "{name}: nodata"
        );
        assert_eq!(
            info.georef.key(3072),
            Some(32631),
            "{name}: ProjectedCSTypeGeoKey"
        );
    }
}

#[test]
fn pixel_is_point_and_no_crs() {
    if !gdal_or_skip("pixel_is_point_and_no_crs") {
        return;
    }
    let dir = TmpDir::new("geotiff", "point");
    let data = values(20, 10, 1, "Int16");
    let raw = dir.0.join("p.raw");
    write_envi(&raw, &data, 20, 10, 1, "Int16");
    let tif = dir.0.join("p.tif");
    let mut args = srs_args();
    args.extend_from_slice(&["-mo", "AREA_OR_POINT=Point"]);
    translate(&raw, &tif, &args);
    let r = GeoTiffReader::open(&tif).unwrap();
    let gi = gdalinfo(&tif);
    let gt: Vec<f64> = gi["geoTransform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(r.info().georef.geotransform().to_vec(), gt);
    // Our copy keeps the keys, so GDAL reads the same grid back.
    let out = dir.0.join("copy.tif");
    write_all(
        &out,
        &data,
        20,
        10,
        1,
        SampleType::F32,
        &r.info().georef,
        None,
    )
    .unwrap();
    let go = gdalinfo(&out);
    assert_eq!(go["geoTransform"], gi["geoTransform"]);
    assert_eq!(go["metadata"][""]["AREA_OR_POINT"], "Point");
    // No georeferencing at all: the identity grid, and an output without GeoTIFF tags.
    let plain = dir.0.join("plain.tif");
    translate(&raw, &plain, &["-of", "GTiff"]);
    let r = GeoTiffReader::open(&plain).unwrap();
    assert_eq!(
        r.info().georef.geotransform(),
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert!(r.info().nodata.is_none());
}

/// Our writer, read back by GDAL: same CRS, geotransform, nodata, types, pixels; tiled and deflated.
fn check_written(dir: &Path, src: &Path, out: &Path, want: &[f32], ty: &str, nodata: Option<f64>) {
    let gi = gdalinfo(src);
    let go = gdalinfo(out);
    assert_eq!(
        go["coordinateSystem"]["wkt"],
        gi["coordinateSystem"]["wkt"],
        "{}: CRS",
        out.display()
    );
    assert_eq!(
        go["geoTransform"],
        gi["geoTransform"],
        "{}: geotransform",
        out.display()
    );
    assert_eq!(go["size"], gi["size"], "{}: size", out.display());
    assert_eq!(go["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"], "DEFLATE");
    for b in go["bands"].as_array().unwrap() {
        assert_eq!(b["type"], ty);
        assert_eq!(b["block"], serde_json::json!([256, 256]));
        assert_eq!(b["noDataValue"].as_f64(), nodata);
    }
    assert_eq!(gdal_pixels(out, dir), want, "{}: pixels", out.display());
}

#[test]
fn writer_round_trips_through_gdal() {
    if !gdal_or_skip("writer_round_trips_through_gdal") {
        return;
    }
    let dir = TmpDir::new("geotiff", "writer");
    // Larger than one tile both ways, not a multiple of the tile.
    let (w, h) = (300, 270);
    let data = values(w, h, 3, "Int16");
    let raw = dir.0.join("src.raw");
    write_envi(&raw, &data, w, h, 3, "Int16");
    let src = dir.0.join("src.tif");
    let mut args = srs_args();
    args.extend_from_slice(&["-co", "TILED=YES", "-co", "COMPRESS=DEFLATE"]);
    translate(&raw, &src, &args);
    let georef = GeoTiffReader::open(&src).unwrap().info().georef.clone();
    // uint8, one band, nodata 255.
    let classes: Vec<f32> = data[..w * h].iter().map(|v| v.abs() % 20.0).collect();
    let out = dir.0.join("classes.tif");
    write_all(
        &out,
        &classes,
        w,
        h,
        1,
        SampleType::U8,
        &georef,
        Some(255.0),
    )
    .unwrap();
    check_written(&dir.0, &src, &out, &classes, "Byte", Some(255.0));
    // float32, three bands, NaN nodata; and BigTIFF.
    let out = dir.0.join("probs.tif");
    write_all(
        &out,
        &data,
        w,
        h,
        3,
        SampleType::F32,
        &georef,
        Some(-9999.0),
    )
    .unwrap();
    check_written(&dir.0, &src, &out, &data, "Float32", Some(-9999.0));
    let out = dir.0.join("big.tif");
    let mut wr = TiledWriter::create(&out, w, h, 1, SampleType::F32, &georef, None, true).unwrap();
    let mut r0 = 0;
    while wr.next_rows() > 0 {
        let rows = wr.next_rows();
        wr.write_tile_row(&data[r0 * w..(r0 + rows) * w]).unwrap();
        r0 += rows;
    }
    wr.finish().unwrap();
    assert_eq!(
        &std::fs::read(&out).unwrap()[..4],
        b"II+\0",
        "BigTIFF magic"
    );
    check_written(&dir.0, &src, &out, &data[..w * h], "Float32", None);
    // Our reader reads our files too, and an offset grid (a part of the map) moves the geotransform.
    let mut r = GeoTiffReader::open(&out).unwrap();
    assert_eq!(r.read_all().unwrap(), data[..w * h].to_vec());
    let part = dir.0.join("part.tif");
    write_all(
        &part,
        &classes[100 * w..],
        w,
        h - 100,
        1,
        SampleType::U8,
        &georef.offset(100, 0),
        Some(255.0),
    )
    .unwrap();
    let gp = gdalinfo(&part);
    let gt = georef.geotransform();
    let want = [gt[0], gt[1], 0.0, gt[3] + 100.0 * gt[5], 0.0, gt[5]];
    let got: Vec<f64> = gp["geoTransform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn corrupt_and_unsupported_files_are_errors_naming_the_file() {
    let dir = TmpDir::new("geotiff", "corrupt");
    let p = dir.0.join("garbage.tif");
    std::fs::write(&p, b"this is not a tiff at all").unwrap();
    let e = GeoTiffReader::open(&p)
        .err()
        .expect("garbage must fail")
        .to_string();
    assert!(e.contains("garbage.tif"), "{e}");
    let missing = dir.0.join("missing.tif");
    let e = GeoTiffReader::open(&missing).err().unwrap().to_string();
    assert!(e.contains("missing.tif"), "{e}");
    // A valid file cut short: the header reads, the pixels do not.
    let data: Vec<f32> = (0..64 * 64).map(|i| (i % 200) as f32).collect();
    let good = dir.0.join("good.tif");
    write_all(
        &good,
        &data,
        64,
        64,
        1,
        SampleType::F32,
        &Default::default(),
        None,
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.0.join("cut.tif");
    // Keep the header and directory (at the end) but zero the compressed tile.
    let mut b = bytes.clone();
    for x in &mut b[16..200] {
        *x = 0x5a;
    }
    std::fs::write(&cut, &b).unwrap();
    let e = GeoTiffReader::open(&cut)
        .and_then(|mut r| r.read_all())
        .expect_err("corrupt tile")
        .to_string();
    assert!(e.contains("cut.tif"), "{e}");
    let trunc = dir.0.join("trunc.tif");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let e = GeoTiffReader::open(&trunc)
        .and_then(|mut r| r.read_all())
        .expect_err("truncated")
        .to_string();
    assert!(e.contains("trunc.tif"), "{e}");
}
