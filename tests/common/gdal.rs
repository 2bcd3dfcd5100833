//! GDAL as the independent client of the GeoTIFF tests: it makes inputs in every layout (from raw ENVI
//! files whose values the test knows) and reads our outputs back. Without `gdalinfo` on PATH the tests skip
//! loudly, unless `SITSGPU_REQUIRE_GDAL=1` (CI), where they fail.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// True when the GDAL command-line tools are there; otherwise a loud skip line (or a panic under
/// `SITSGPU_REQUIRE_GDAL=1`).
pub fn gdal_or_skip(test: &str) -> bool {
    let ok = Command::new("gdalinfo")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("SITSGPU_REQUIRE_GDAL").as_deref() != Ok("1"),
            "{test}: SITSGPU_REQUIRE_GDAL=1 but gdalinfo is not on PATH (apt-get install -y gdal-bin)"
        );
        eprintln!("SKIPPED {test}: GDAL not installed (apt-get install -y gdal-bin)");
    }
    ok
}

/// Runs a GDAL tool, panicking with its output on failure.
pub fn gdal(tool: &str, args: &[&str]) -> String {
    let o = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        o.status.success(),
        "{tool} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// ENVI data type code of a GDAL type name.
fn envi_code(ty: &str) -> u32 {
    match ty {
        "Byte" => 1,
        "Int16" => 2,
        "Int32" => 3,
        "Float32" => 4,
        "UInt16" => 12,
        "UInt32" => 13,
        other => panic!("envi_code: no ENVI code for {other}"),
    }
}

/// Writes `data` (bands, height, width) as a raw band-sequential ENVI file of type `ty` (a GDAL type
/// name) with its `.hdr`, for `gdal_translate` to turn into any GeoTIFF layout.
pub fn write_envi(path: &Path, data: &[f32], w: usize, h: usize, bands: usize, ty: &str) {
    let mut raw = Vec::new();
    for &v in data {
        match ty {
            "Byte" => raw.push(v as u8),
            "Int16" => raw.extend_from_slice(&(v as i16).to_le_bytes()),
            "UInt16" => raw.extend_from_slice(&(v as u16).to_le_bytes()),
            "Int32" => raw.extend_from_slice(&(v as i32).to_le_bytes()),
            "UInt32" => raw.extend_from_slice(&(v as u32).to_le_bytes()),
            "Float32" => raw.extend_from_slice(&v.to_le_bytes()),
            other => panic!("write_envi: {other}"),
        }
    }
    std::fs::write(path, raw).unwrap();
    let hdr = format!(
        "ENVI\nsamples = {w}\nlines = {h}\nbands = {bands}\nheader offset = 0\nfile type = ENVI Standard\n\
         data type = {}\ninterleave = bsq\nbyte order = 0\n",
        envi_code(ty)
    );
    std::fs::write(path.with_extension("hdr"), hdr).unwrap();
}

/// Every pixel of `tif` as GDAL reads it, (bands, height, width) as f32 (through a raw ENVI copy).
pub fn gdal_pixels(tif: &Path, dir: &Path) -> Vec<f32> {
    let info = gdalinfo(tif);
    let ty = info["bands"][0]["type"].as_str().unwrap().to_string();
    let out = dir.join(format!(
        "{}.raw",
        tif.file_stem().unwrap().to_string_lossy()
    ));
    gdal(
        "gdal_translate",
        &[
            "-q",
            "-of",
            "ENVI",
            "-co",
            "INTERLEAVE=BSQ",
            tif.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let raw = std::fs::read(&out).unwrap();
    match ty.as_str() {
        "Byte" => raw.iter().map(|&b| b as f32).collect(),
        "Int16" => raw
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "UInt16" => raw
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f32)
            .collect(),
        "Float32" => raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        // Exact up to 2^24.
        "UInt32" => raw
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        other => panic!("gdal_pixels: {other}"),
    }
}

/// `gdalinfo -json`.
pub fn gdalinfo(tif: &Path) -> Value {
    serde_json::from_str(&gdal("gdalinfo", &["-json", tif.to_str().unwrap()])).unwrap()
}

/// `gdal_translate -q <args> src dst`.
pub fn translate(src: &Path, dst: &Path, args: &[&str]) {
    let mut all = vec!["-q"];
    all.extend_from_slice(args);
    all.push(src.to_str().unwrap());
    all.push(dst.to_str().unwrap());
    gdal("gdal_translate", &all);
}
