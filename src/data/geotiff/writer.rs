//! Streaming writer of tiled, deflate-compressed GeoTIFFs (uint8 or float32, one or more bands).
//!
//! The `tiff` crate's encoder writes strips; GIS tools want tiles (QGIS pans a 10,980² map without reading
//! it all), and a scene-sized map must not sit in memory. So this file writes the TIFF structure itself,
//! which is short: the 8-byte header (16 for BigTIFF) with a placeholder, the compressed tiles as each row
//! of tiles is handed over ([`TiledWriter::write_tile_row`]), then the tag values and the one image
//! directory, whose offset is patched into the header. Tags written: the baseline ones for a tiled,
//! pixel-interleaved, zlib-deflated (Compression 8) image, SampleFormat, ExtraSamples for bands past the
//! first, and the GeoTIFF tags of [`super::GeoRef`] plus GDAL_NODATA, verbatim. BigTIFF is chosen when the
//! uncompressed image could pass 4 GiB (or when asked). The file is written under a temporary name and
//! renamed when [`TiledWriter::finish`] succeeds, so a failed run leaves no half map.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::write::ZlibEncoder;

use super::{
    GeoRef, SampleType, TAG_GDAL_NODATA, TAG_GEO_ASCII, TAG_GEO_DOUBLES, TAG_GEO_KEYS,
    TAG_PIXEL_SCALE, TAG_TIEPOINT, TAG_TRANSFORMATION,
};
use crate::engine::{Error, Result};

/// Tile side (pixels) of the files written.
pub const TILE: usize = 256;

/// A value of one directory entry.
enum Val {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Long8(Vec<u64>),
    Double(Vec<f64>),
    Ascii(String),
}

impl Val {
    /// (TIFF type code, count, little-endian bytes).
    fn encode(&self) -> (u16, u64, Vec<u8>) {
        match self {
            Val::Short(v) => (
                3,
                v.len() as u64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Val::Long(v) => (
                4,
                v.len() as u64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Val::Long8(v) => (
                16,
                v.len() as u64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Val::Double(v) => (
                12,
                v.len() as u64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Val::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                (2, b.len() as u64, b)
            }
        }
    }
}

/// GDAL_NODATA's text for `v` (`255`, `-9999`, `nan`, `0.5`).
pub fn nodata_text(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A tiled GeoTIFF being written, one row of tiles at a time.
pub struct TiledWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<File>,
    big: bool,
    width: usize,
    height: usize,
    bands: usize,
    sample: SampleType,
    georef: GeoRef,
    nodata: Option<f64>,
    across: usize,
    rows_done: usize,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    pos: u64,
}

impl TiledWriter {
    /// Starts `path` (written as `path.tmp` until [`Self::finish`]): `width` × `height` pixels, `bands`
    /// bands of `sample` (uint8 or float32), on the grid and CRS of `georef`, with `nodata`; BigTIFF when
    /// `force_big` or when the image could pass 4 GiB.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        bands: usize,
        sample: SampleType,
        georef: &GeoRef,
        nodata: Option<f64>,
        force_big: bool,
    ) -> Result<TiledWriter> {
        if !matches!(sample, SampleType::U8 | SampleType::F32) {
            return Err(Error::Invalid(format!(
                "{}: only uint8 and float32 GeoTIFFs are written, not {}",
                path.display(),
                sample.gdal_name()
            )));
        }
        if width == 0 || height == 0 || bands == 0 {
            return Err(Error::Invalid(format!(
                "{}: empty raster ({width} x {height} x {bands})",
                path.display()
            )));
        }
        let bytes = if sample == SampleType::U8 { 1 } else { 4 };
        let big = force_big || (width * height * bands * bytes) as u64 > 3 << 30;
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        let tmp = PathBuf::from(name);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = TiledWriter {
            path: path.to_path_buf(),
            tmp,
            file: BufWriter::new(file),
            big,
            width,
            height,
            bands,
            sample,
            georef: georef.clone(),
            nodata,
            across: width.div_ceil(TILE),
            rows_done: 0,
            offsets: Vec::new(),
            counts: Vec::new(),
            pos: 0,
        };
        let header: Vec<u8> = if big {
            [
                b"II".as_slice(),
                &43u16.to_le_bytes(),
                &8u16.to_le_bytes(),
                &0u16.to_le_bytes(),
                &0u64.to_le_bytes(),
            ]
            .concat()
        } else {
            [b"II".as_slice(), &42u16.to_le_bytes(), &0u32.to_le_bytes()].concat()
        };
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.file
            .write_all(b)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Rows the next [`Self::write_tile_row`] takes (a tile's height, less at the bottom).
    pub fn next_rows(&self) -> usize {
        TILE.min(self.height - self.rows_done.min(self.height))
    }

    /// Writes the next row of tiles from `data`, (bands, [`Self::next_rows`], width) row-major. float32
    /// values are stored as they are; uint8 values are rounded and clamped to 0..=255.
    pub fn write_tile_row(&mut self, data: &[f32]) -> Result<()> {
        let rows = self.next_rows();
        if rows == 0 || data.len() != self.bands * rows * self.width {
            return Err(Error::Invalid(format!(
                "{}: tile row of {} values given, {} expected",
                self.path.display(),
                data.len(),
                self.bands * rows * self.width
            )));
        }
        let fill = self.nodata.unwrap_or(0.0) as f32;
        let plane = rows * self.width;
        for tx in 0..self.across {
            // One tile, pixel-interleaved, padded to TILE × TILE with the nodata value.
            let mut raw: Vec<u8> = Vec::with_capacity(TILE * TILE * self.bands * 4);
            for y in 0..TILE {
                for x in 0..TILE {
                    let col = tx * TILE + x;
                    for b in 0..self.bands {
                        let v = if y < rows && col < self.width {
                            data[b * plane + y * self.width + col]
                        } else {
                            fill
                        };
                        match self.sample {
                            SampleType::U8 => raw.push(v.round().clamp(0.0, 255.0) as u8),
                            _ => raw.extend_from_slice(&v.to_le_bytes()),
                        }
                    }
                }
            }
            let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            z.write_all(&raw).map_err(|e| Error::io(&self.tmp, e))?;
            let packed = z.finish().map_err(|e| Error::io(&self.tmp, e))?;
            self.offsets.push(self.pos);
            self.counts.push(packed.len() as u64);
            self.put(&packed)?;
        }
        self.rows_done += rows;
        Ok(())
    }

    /// Writes the tags and the directory, and renames the file into place. Every row must have been written.
    pub fn finish(mut self) -> Result<()> {
        if self.rows_done != self.height {
            return Err(Error::Invalid(format!(
                "{}: {} of {} rows written",
                self.path.display(),
                self.rows_done,
                self.height
            )));
        }
        let nb = self.bands;
        let (bits, format) = match self.sample {
            SampleType::U8 => (8u16, 1u16),
            _ => (32, 3),
        };
        let mut tags: Vec<(u16, Val)> = vec![
            (256, Val::Long(vec![self.width as u32])),
            (257, Val::Long(vec![self.height as u32])),
            (258, Val::Short(vec![bits; nb])),
            (259, Val::Short(vec![8])),
            (262, Val::Short(vec![1])),
            (277, Val::Short(vec![nb as u16])),
            (284, Val::Short(vec![1])),
            (322, Val::Long(vec![TILE as u32])),
            (323, Val::Long(vec![TILE as u32])),
        ];
        if self.big {
            tags.push((324, Val::Long8(self.offsets.clone())));
            tags.push((325, Val::Long8(self.counts.clone())));
        } else {
            let to32 = |v: &[u64]| v.iter().map(|&x| x as u32).collect();
            tags.push((324, Val::Long(to32(&self.offsets))));
            tags.push((325, Val::Long(to32(&self.counts))));
        }
        if nb > 1 {
            tags.push((338, Val::Short(vec![0; nb - 1])));
        }
        tags.push((339, Val::Short(vec![format; nb])));
        let g = self.georef.clone();
        if let Some(v) = g.pixel_scale {
            tags.push((TAG_PIXEL_SCALE, Val::Double(v)));
        }
        if let Some(v) = g.tiepoint {
            tags.push((TAG_TIEPOINT, Val::Double(v)));
        }
        if let Some(v) = g.transformation {
            tags.push((TAG_TRANSFORMATION, Val::Double(v)));
        }
        if !g.geo_keys.is_empty() {
            tags.push((TAG_GEO_KEYS, Val::Short(g.geo_keys)));
        }
        if !g.geo_doubles.is_empty() {
            tags.push((TAG_GEO_DOUBLES, Val::Double(g.geo_doubles)));
        }
        if !g.geo_ascii.is_empty() {
            tags.push((TAG_GEO_ASCII, Val::Ascii(g.geo_ascii)));
        }
        if let Some(v) = self.nodata {
            tags.push((TAG_GDAL_NODATA, Val::Ascii(nodata_text(v))));
        }
        tags.sort_by_key(|t| t.0);
        // Values too long for their entry go before the directory, word-aligned.
        let inline = if self.big { 8 } else { 4 };
        let mut entries = Vec::new();
        for (tag, val) in &tags {
            let (ty, count, bytes) = val.encode();
            let field = if bytes.len() <= inline {
                let mut b = bytes.clone();
                b.resize(inline, 0);
                b
            } else {
                if self.pos % 2 == 1 {
                    self.put(&[0])?;
                }
                let at = self.pos;
                self.put(&bytes)?;
                if self.big {
                    at.to_le_bytes().to_vec()
                } else {
                    (at as u32).to_le_bytes().to_vec()
                }
            };
            entries.push((*tag, ty, count, field));
        }
        if self.pos % 2 == 1 {
            self.put(&[0])?;
        }
        let ifd = self.pos;
        if !self.big && ifd > u32::MAX as u64 {
            return Err(Error::Invalid(format!(
                "{}: past 4 GiB in a classic TIFF",
                self.path.display()
            )));
        }
        let mut dir = Vec::new();
        if self.big {
            dir.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        } else {
            dir.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        }
        for (tag, ty, count, field) in entries {
            dir.extend_from_slice(&tag.to_le_bytes());
            dir.extend_from_slice(&ty.to_le_bytes());
            if self.big {
                dir.extend_from_slice(&count.to_le_bytes());
            } else {
                dir.extend_from_slice(&(count as u32).to_le_bytes());
            }
            dir.extend_from_slice(&field);
        }
        dir.extend_from_slice(&vec![0u8; inline]);
        self.put(&dir)?;
        let (at, ptr) = if self.big {
            (8, ifd.to_le_bytes().to_vec())
        } else {
            (4, (ifd as u32).to_le_bytes().to_vec())
        };
        let tmp = self.tmp.clone();
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&ptr))
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&tmp, e))?;
        drop(self.file);
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes a whole (bands, height, width) raster at once (small outputs, tests).
#[allow(clippy::too_many_arguments)]
pub fn write_all(
    path: &Path,
    data: &[f32],
    width: usize,
    height: usize,
    bands: usize,
    sample: SampleType,
    georef: &GeoRef,
    nodata: Option<f64>,
) -> Result<()> {
    let mut w = TiledWriter::create(path, width, height, bands, sample, georef, nodata, false)?;
    while w.next_rows() > 0 {
        let (r0, rows) = (w.rows_done, w.next_rows());
        let mut part = Vec::with_capacity(bands * rows * width);
        for b in 0..bands {
            part.extend_from_slice(&data[(b * height + r0) * width..][..rows * width]);
        }
        w.write_tile_row(&part)?;
    }
    w.finish()
}
