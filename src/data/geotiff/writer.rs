//! Streaming writer of tiled, deflate-compressed GeoTIFFs (uint8, uint32 or float32, one or more bands).
//!
//! The `tiff` crate's encoder writes strips; GIS tools want tiles (QGIS pans a 10,980² map without reading
//! it all), and a scene-sized map must not sit in memory. So this file writes the TIFF structure itself,
//! which is short: the 8-byte header (16 for BigTIFF) with a placeholder, the compressed tiles as they are
//! handed over, in any order ([`TiledWriter::write_tiles`]: a run of tiles of one row of tiles; the file
//! keeps one offset per tile, so a map computed block by block writes each block's tiles as soon as they
//! are final), or row of tiles by row of tiles ([`TiledWriter::write_tile_row`]), then the tag values and
//! the one image directory, whose offset is patched into the header. Values come as `f32` or `u32`
//! ([`Sample`]): instance ids past 2^24 do not survive a trip through `f32`. Tags written: the baseline ones for a tiled,
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

/// A value handed to the writer, stored as the file's sample type.
pub trait Sample: Copy {
    /// The value of a GDAL nodata (or 0) as this type, for the padding of edge tiles.
    fn from_f64(v: f64) -> Self;
    /// Appends the little-endian bytes of this value as a sample of type `ty` (uint8: rounded and clamped
    /// to 0..=255; uint32: rounded and clamped to 0..=2^32 - 1; float32: as it is).
    fn store(self, ty: SampleType, out: &mut Vec<u8>);
}

impl Sample for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn store(self, ty: SampleType, out: &mut Vec<u8>) {
        match ty {
            SampleType::U8 => out.push(self.round().clamp(0.0, 255.0) as u8),
            SampleType::U32 => out.extend_from_slice(
                &(self.round().clamp(0.0, u32::MAX as f32) as u32).to_le_bytes(),
            ),
            _ => out.extend_from_slice(&self.to_le_bytes()),
        }
    }
}

impl Sample for u32 {
    fn from_f64(v: f64) -> Self {
        v.round().clamp(0.0, u32::MAX as f64) as u32
    }
    fn store(self, ty: SampleType, out: &mut Vec<u8>) {
        match ty {
            SampleType::U8 => out.push(self.min(255) as u8),
            SampleType::U32 => out.extend_from_slice(&self.to_le_bytes()),
            _ => out.extend_from_slice(&(self as f32).to_le_bytes()),
        }
    }
}

/// Marks a tile not written yet.
const UNWRITTEN: u64 = u64::MAX;

/// A tiled GeoTIFF being written, tile by tile in any order.
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
    /// Rows handed to [`Self::write_tile_row`] so far.
    rows_done: usize,
    /// Tiles written so far.
    written: usize,
    /// File offset of each tile, row-major ([`UNWRITTEN`] until written).
    offsets: Vec<u64>,
    counts: Vec<u64>,
    pos: u64,
}

impl TiledWriter {
    /// Starts `path` (written as `path.tmp` until [`Self::finish`]): `width` × `height` pixels, `bands`
    /// bands of `sample` (uint8, uint32 or float32), on the grid and CRS of `georef`, with `nodata`; BigTIFF when
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
        if !matches!(sample, SampleType::U8 | SampleType::U32 | SampleType::F32) {
            return Err(Error::Invalid(format!(
                "{}: only uint8, uint32 and float32 GeoTIFFs are written, not {}",
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
        let tiles = width.div_ceil(TILE) * height.div_ceil(TILE);
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
            written: 0,
            offsets: vec![UNWRITTEN; tiles],
            counts: vec![0; tiles],
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

    /// Writes the next row of tiles from `data`, (bands, [`Self::next_rows`], width) row-major, values
    /// stored as [`Sample::store`] says.
    pub fn write_tile_row<T: Sample>(&mut self, data: &[T]) -> Result<()> {
        if self.next_rows() == 0 {
            return Err(Error::Invalid(format!(
                "{}: every row of tiles is written already",
                self.path.display()
            )));
        }
        self.write_tiles(self.rows_done / TILE, 0, self.width, data)?;
        self.rows_done += self.next_rows();
        Ok(())
    }

    /// Rows of tile row `ty` (a tile's height, less at the bottom).
    pub fn tile_rows(&self, ty: usize) -> usize {
        TILE.min(self.height.saturating_sub(ty * TILE))
    }

    /// Writes the tiles of tile row `ty` that cover columns `tx0·TILE .. tx0·TILE + cols` from `data`,
    /// (bands, [`Self::tile_rows`], cols) row-major; `cols` covers whole tiles (ends at a multiple of the
    /// tile or at the image's right edge). Tiles may come in any order, each once.
    pub fn write_tiles<T: Sample>(
        &mut self,
        ty: usize,
        tx0: usize,
        cols: usize,
        data: &[T],
    ) -> Result<()> {
        let rows = self.tile_rows(ty);
        let c0 = tx0 * TILE;
        let name = self.path.display().to_string();
        let bad = |what: String| Error::Invalid(format!("{name}: {what}"));
        if rows == 0 || cols == 0 || c0 + cols > self.width {
            return Err(bad(format!(
                "tiles ({ty}, {tx0}..) of {cols} columns are outside the {} x {} image",
                self.width, self.height
            )));
        }
        if !cols.is_multiple_of(TILE) && c0 + cols != self.width {
            return Err(bad(format!(
                "{cols} columns from tile column {tx0}: not whole tiles"
            )));
        }
        if data.len() != self.bands * rows * cols {
            return Err(bad(format!(
                "{} values given for tiles of {} bands x {rows} rows x {cols} columns",
                data.len(),
                self.bands
            )));
        }
        let fill = T::from_f64(self.nodata.unwrap_or(0.0));
        let plane = rows * cols;
        for tx in tx0..tx0 + cols.div_ceil(TILE) {
            let index = ty * self.across + tx;
            if self.offsets[index] != UNWRITTEN {
                return Err(bad(format!("tile ({ty}, {tx}) written twice")));
            }
            // One tile, pixel-interleaved, padded to TILE × TILE with the nodata value.
            let mut raw: Vec<u8> = Vec::with_capacity(TILE * TILE * self.bands * 4);
            for y in 0..TILE {
                for x in 0..TILE {
                    let col = (tx - tx0) * TILE + x;
                    for b in 0..self.bands {
                        let v = if y < rows && col < cols {
                            data[b * plane + y * cols + col]
                        } else {
                            fill
                        };
                        v.store(self.sample, &mut raw);
                    }
                }
            }
            let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            z.write_all(&raw).map_err(|e| Error::io(&self.tmp, e))?;
            let packed = z.finish().map_err(|e| Error::io(&self.tmp, e))?;
            self.offsets[index] = self.pos;
            self.counts[index] = packed.len() as u64;
            self.put(&packed)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Writes the tags and the directory, and renames the file into place. Every row must have been written.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.offsets.len() {
            return Err(Error::Invalid(format!(
                "{}: {} of {} tiles written",
                self.path.display(),
                self.written,
                self.offsets.len()
            )));
        }
        let nb = self.bands;
        let (bits, format) = match self.sample {
            SampleType::U8 => (8u16, 1u16),
            SampleType::U32 => (32, 1),
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
pub fn write_all<T: Sample>(
    path: &Path,
    data: &[T],
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

#[cfg(test)]
mod tests {
    use super::*;
    use tiff::decoder::{Decoder, DecodingResult};

    /// The pixels of a one-band file as the `tiff` crate decodes them.
    fn decode(path: &Path) -> DecodingResult {
        let f = File::open(path).unwrap();
        Decoder::new(std::io::BufReader::new(f))
            .unwrap()
            .read_image()
            .unwrap()
    }

    #[test]
    fn tiles_in_any_order_and_uint32_ids_past_two_to_the_24() {
        let dir = std::env::temp_dir().join(format!("sitsgpu-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (300, 270);
        // Values no f32 holds exactly.
        let want: Vec<u32> = (0..w * h).map(|i| (1 << 25) + 3 * i as u32 + 1).collect();
        let path = dir.join("ids.tif");
        let mut wr = TiledWriter::create(
            &path,
            w,
            h,
            1,
            SampleType::U32,
            &GeoRef::default(),
            Some(0.0),
            false,
        )
        .unwrap();
        // Bottom-right first, then the rest of each tile row, bottom row first.
        for (ty, tx0, cols) in [(1, 1, w - TILE), (1, 0, TILE), (0, 0, w)] {
            let rows = wr.tile_rows(ty);
            let mut part = Vec::new();
            for y in 0..rows {
                let r = ty * TILE + y;
                part.extend_from_slice(&want[r * w + tx0 * TILE..][..cols]);
            }
            wr.write_tiles(ty, tx0, cols, &part).unwrap();
        }
        // A tile twice, and a run that is not whole tiles, are errors.
        let e = wr.write_tiles(0, 1, w - TILE, &vec![0u32; TILE * (w - TILE)]);
        assert!(e.unwrap_err().to_string().contains("twice"));
        let e = wr.write_tiles(0, 0, 10, &[0u32; 10 * TILE]);
        assert!(e.unwrap_err().to_string().contains("whole tiles"));
        wr.finish().unwrap();
        match decode(&path) {
            DecodingResult::U32(v) => assert_eq!(v, want),
            _ => panic!("not a uint32 file"),
        }
        // A file with a missing tile is never finished.
        let path = dir.join("missing.tif");
        let mut wr = TiledWriter::create(
            &path,
            w,
            h,
            1,
            SampleType::U8,
            &GeoRef::default(),
            None,
            false,
        )
        .unwrap();
        wr.write_tiles(0, 0, w, &vec![1.0f32; TILE * w]).unwrap();
        let e = wr.finish().unwrap_err().to_string();
        assert!(e.contains("2 of 4 tiles"), "{e}");
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
