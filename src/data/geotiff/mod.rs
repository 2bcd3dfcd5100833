//! GeoTIFF rasters: what a user's own imagery and labels come as, and what `sitsgpu map` writes.
//!
//! Reading goes through the pure-Rust `tiff` crate (stripped or tiled, chunky or planar, uncompressed /
//! deflate / LZW with or without a predictor, classic TIFF or BigTIFF) and converts samples (uint8, int16,
//! uint16, int32, uint32, float32, float64) to `f32`. The GeoTIFF part is handled here, explicitly:
//!
//! | tag | number | use |
//! | --- | --- | --- |
//! | ModelPixelScale | 33550 | (sx, sy, sz): pixel size; with a tiepoint gives the geotransform |
//! | ModelTiepoint | 33922 | (i, j, k, x, y, z): raster point (i, j) sits at model point (x, y) |
//! | ModelTransformation | 34264 | 4 × 4 raster → model matrix (rotated grids), instead of the two above |
//! | GeoKeyDirectory | 34735 | the CRS as GeoKeys (EPSG codes, raster type); kept verbatim |
//! | GeoDoubleParams | 34736 | doubles the keys point into; kept verbatim |
//! | GeoAsciiParams | 34737 | strings the keys point into (citations, WKT names); kept verbatim |
//! | GDAL_NODATA | 42113 | the nodata value, as ASCII |
//!
//! The CRS is never interpreted: the keys and their parameters travel unchanged from an input to the outputs
//! made on its grid, so GDAL and QGIS read the same CRS back; [`GeoRef::same_crs`] compares them between
//! dates. The geotransform follows GDAL's convention, `x = gt[0] + col·gt[1] + row·gt[2]`,
//! `y = gt[3] + col·gt[4] + row·gt[5]`, for the corner of pixel (row, col) (GDAL shifts PixelIsPoint rasters by
//! half a pixel; so does [`GeoRef::geotransform`]).
//!
//! A [`GeoTiffReader`] reads windows (rows × columns × bands) without reading the scene: only the strips or
//! tiles a window touches are decoded, and a bounded cache keeps the last ones so that overlapping sliding
//! windows do not decode them twice (sized to one window by [`GeoTiffReader::set_cache_window`], so its
//! memory does not grow with the raster unless the file's strips span the whole width).
//! [`writer::TiledWriter`] writes tiled, deflate-compressed uint8 / uint32 / float32 GeoTIFFs tile by tile,
//! in any order (memory: the tiles handed over), with the same georeferencing and nodata.

pub mod writer;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiff::decoder::{ifd::Value, Decoder, DecodingResult, Limits};
use tiff::tags::{PlanarConfiguration, SampleFormat, Tag};

use crate::engine::{Error, Result};

/// ModelPixelScaleTag.
pub const TAG_PIXEL_SCALE: u16 = 33550;
/// ModelTiepointTag.
pub const TAG_TIEPOINT: u16 = 33922;
/// ModelTransformationTag.
pub const TAG_TRANSFORMATION: u16 = 34264;
/// GeoKeyDirectoryTag.
pub const TAG_GEO_KEYS: u16 = 34735;
/// GeoDoubleParamsTag.
pub const TAG_GEO_DOUBLES: u16 = 34736;
/// GeoAsciiParamsTag.
pub const TAG_GEO_ASCII: u16 = 34737;
/// GDAL_NODATA.
pub const TAG_GDAL_NODATA: u16 = 42113;
/// GTRasterTypeGeoKey (1 PixelIsArea, 2 PixelIsPoint).
const KEY_RASTER_TYPE: u16 = 1025;

/// Sample type of a raster's bands (all bands share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleType {
    /// uint8.
    U8,
    /// int16.
    I16,
    /// uint16.
    U16,
    /// int32.
    I32,
    /// uint32.
    U32,
    /// float32.
    F32,
    /// float64.
    F64,
}

impl SampleType {
    /// GDAL's name of the type (`gdalinfo -json`'s `type`).
    pub fn gdal_name(self) -> &'static str {
        match self {
            SampleType::U8 => "Byte",
            SampleType::I16 => "Int16",
            SampleType::U16 => "UInt16",
            SampleType::I32 => "Int32",
            SampleType::U32 => "UInt32",
            SampleType::F32 => "Float32",
            SampleType::F64 => "Float64",
        }
    }
}

/// The georeferencing of a raster: the GeoTIFF tags as stored, and the geotransform they give.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoRef {
    /// ModelPixelScale (sx, sy, sz), if present.
    pub pixel_scale: Option<Vec<f64>>,
    /// ModelTiepoint (i, j, k, x, y, z)…, if present.
    pub tiepoint: Option<Vec<f64>>,
    /// ModelTransformation (16 values, row-major), if present.
    pub transformation: Option<Vec<f64>>,
    /// GeoKeyDirectory (header + keys), empty when the file has no CRS.
    pub geo_keys: Vec<u16>,
    /// GeoDoubleParams.
    pub geo_doubles: Vec<f64>,
    /// GeoAsciiParams (with its `|` separators).
    pub geo_ascii: String,
}

impl GeoRef {
    /// A north-up grid with `gt` (GDAL order; `gt[2] = gt[4] = 0`) and the CRS keys of `crs_from`.
    pub fn with_geotransform(crs_from: &GeoRef, gt: [f64; 6]) -> GeoRef {
        GeoRef {
            pixel_scale: Some(vec![gt[1], -gt[5], 0.0]),
            tiepoint: Some(vec![0.0, 0.0, 0.0, gt[0], gt[3], 0.0]),
            transformation: None,
            ..crs_from.clone()
        }
        .unshift_point()
    }

    /// Undoes GDAL's half-pixel shift for PixelIsPoint rasters (stored tiepoints are pixel centres there).
    fn unshift_point(mut self) -> GeoRef {
        if self.is_point() {
            if let (Some(t), Some(s)) = (self.tiepoint.as_mut(), self.pixel_scale.as_ref()) {
                t[3] += 0.5 * s[0];
                t[4] -= 0.5 * s[1];
            }
        }
        self
    }

    /// The value of a short GeoKey stored in the directory itself.
    pub fn key(&self, id: u16) -> Option<u16> {
        let k = &self.geo_keys;
        if k.len() < 4 {
            return None;
        }
        let n = k[3] as usize;
        (0..n).find_map(|i| {
            let e = k.get(4 + 4 * i..8 + 4 * i)?;
            (e[0] == id && e[1] == 0).then_some(e[3])
        })
    }

    fn is_point(&self) -> bool {
        self.key(KEY_RASTER_TYPE) == Some(2)
    }

    /// GDAL's geotransform (top-left corner of pixel (0, 0), pixel size, rotation terms); the identity grid
    /// `[0, 1, 0, 0, 0, 1]` when the file has no georeferencing.
    pub fn geotransform(&self) -> [f64; 6] {
        let mut gt = if let Some(m) = self.transformation.as_ref().filter(|m| m.len() >= 16) {
            [m[3], m[0], m[1], m[7], m[4], m[5]]
        } else if let (Some(s), Some(t)) = (&self.pixel_scale, &self.tiepoint) {
            if s.len() >= 2 && t.len() >= 6 {
                [
                    t[3] - t[0] * s[0],
                    s[0],
                    0.0,
                    t[4] + t[1] * s[1],
                    0.0,
                    -s[1],
                ]
            } else {
                [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            }
        } else {
            [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        };
        if self.is_point() {
            gt[0] -= 0.5 * gt[1] + 0.5 * gt[2];
            gt[3] -= 0.5 * gt[4] + 0.5 * gt[5];
        }
        gt
    }

    /// The same CRS (GeoKeys and their parameters identical).
    pub fn same_crs(&self, other: &GeoRef) -> bool {
        self.geo_keys == other.geo_keys
            && self.geo_doubles == other.geo_doubles
            && self.geo_ascii == other.geo_ascii
    }

    /// The grid of rows `row0..` of this one (same CRS, geotransform moved down `row0` rows and right `col0`
    /// columns), for an output covering part of the input.
    pub fn offset(&self, row0: usize, col0: usize) -> GeoRef {
        if row0 == 0 && col0 == 0 {
            return self.clone();
        }
        let (r, c) = (row0 as f64, col0 as f64);
        let mut out = self.clone();
        if let Some(m) = out.transformation.as_mut().filter(|m| m.len() >= 16) {
            m[3] += m[0] * c + m[1] * r;
            m[7] += m[4] * c + m[5] * r;
        } else if let Some(t) = out.tiepoint.as_mut().filter(|t| t.len() >= 6) {
            // The tiepoint's raster coordinates are relative to the image origin, which moves.
            t[0] -= c;
            t[1] -= r;
        }
        out
    }
}

/// What a GeoTIFF holds, read from its first image directory.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoTiffInfo {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bands (samples per pixel).
    pub bands: usize,
    /// Sample type.
    pub sample: SampleType,
    /// Georeferencing.
    pub georef: GeoRef,
    /// GDAL_NODATA, if set.
    pub nodata: Option<f64>,
}

impl GeoTiffInfo {
    /// The nodata value as it compares against samples converted to `f32` (NaN for a NaN nodata).
    pub fn nodata_f32(&self) -> Option<f32> {
        self.nodata.map(|v| v as f32)
    }
}

/// A decoded chunk's samples, (rows, cols, samples_in_chunk) row-major, kept in the file's own type where
/// that is narrower than `f32` (an int16 scene's cache takes half the memory), converted when copied out.
enum Samples {
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    /// Every other type, as `f32`.
    F32(Vec<f32>),
}

impl Samples {
    /// Bytes held.
    fn bytes(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::I16(v) => 2 * v.len(),
            Samples::U16(v) => 2 * v.len(),
            Samples::F32(v) => 4 * v.len(),
        }
    }
}

/// A decoded chunk, shared with the cache.
type Chunk = Arc<Samples>;

/// A GeoTIFF opened for window reads.
pub struct GeoTiffReader {
    path: PathBuf,
    decoder: Decoder<BufReader<File>>,
    info: GeoTiffInfo,
    planar: bool,
    chunk_w: usize,
    chunk_h: usize,
    across: usize,
    down: usize,
    cache: HashMap<u32, Chunk>,
    order: VecDeque<u32>,
    cache_chunks: usize,
    /// Bytes held by the cache now, and at most so far.
    cache_bytes: usize,
    peak_bytes: usize,
}

fn tiff_err(path: &Path, e: tiff::TiffError) -> Error {
    Error::format(path, format!("not a readable TIFF: {e}"))
}

/// A numeric tag value as f64 (None for text, rationals, offsets).
fn num(v: Value) -> Option<f64> {
    Some(match v {
        Value::Byte(x) => x.into(),
        Value::Short(x) => x.into(),
        Value::SignedByte(x) => x.into(),
        Value::SignedShort(x) => x.into(),
        Value::Signed(x) => x.into(),
        Value::Unsigned(x) => x.into(),
        Value::SignedBig(x) => x as f64,
        Value::UnsignedBig(x) => x as f64,
        Value::Float(x) => x.into(),
        Value::Double(x) => x,
        _ => return None,
    })
}

/// A numeric tag (one value or a list) as f64s.
fn f64_vec(v: Value) -> Option<Vec<f64>> {
    match v {
        Value::List(l) => l.into_iter().map(num).collect(),
        x => num(x).map(|x| vec![x]),
    }
}

impl GeoTiffReader {
    /// Opens `path` and reads its header and GeoTIFF tags (no pixels).
    pub fn open(path: &Path) -> Result<GeoTiffReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut d = Decoder::new(BufReader::new(file))
            .map_err(|e| tiff_err(path, e))?
            .with_limits(Limits::unlimited());
        let (w, h) = d.dimensions().map_err(|e| tiff_err(path, e))?;
        let samples: u16 = d
            .find_tag_unsigned(Tag::SamplesPerPixel)
            .map_err(|e| tiff_err(path, e))?
            .unwrap_or(1);
        let bits: Vec<u16> = d
            .find_tag_unsigned_vec(Tag::BitsPerSample)
            .map_err(|e| tiff_err(path, e))?
            .unwrap_or_else(|| vec![1]);
        let format: Vec<u16> = d
            .find_tag_unsigned_vec(Tag::SampleFormat)
            .map_err(|e| tiff_err(path, e))?
            .unwrap_or_else(|| vec![1]);
        if bits.iter().any(|&b| b != bits[0]) || format.iter().any(|&f| f != format[0]) {
            return Err(Error::format(
                path,
                format!("bands of different types (BitsPerSample {bits:?}, SampleFormat {format:?}) are not supported"),
            ));
        }
        let sample = match (SampleFormat::from_u16(format[0]), bits[0]) {
            (Some(SampleFormat::Uint), 8) => SampleType::U8,
            (Some(SampleFormat::Int), 16) => SampleType::I16,
            (Some(SampleFormat::Uint), 16) => SampleType::U16,
            (Some(SampleFormat::Int), 32) => SampleType::I32,
            (Some(SampleFormat::Uint), 32) => SampleType::U32,
            (Some(SampleFormat::IEEEFP), 32) => SampleType::F32,
            (Some(SampleFormat::IEEEFP), 64) => SampleType::F64,
            (f, b) => {
                return Err(Error::format(
                    path,
                    format!("unsupported sample type: {b}-bit {f:?} (supported: uint8, int16, uint16, int32, uint32, float32, float64)"),
                ))
            }
        };
        let planar = d
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .map_err(|e| tiff_err(path, e))?
            .and_then(PlanarConfiguration::from_u16)
            == Some(PlanarConfiguration::Planar);
        let mut tag = |t: u16| d.find_tag(Tag::Unknown(t)).map_err(|e| tiff_err(path, e));
        let pixel_scale = tag(TAG_PIXEL_SCALE)?.and_then(f64_vec);
        let tiepoint = tag(TAG_TIEPOINT)?.and_then(f64_vec);
        let transformation = tag(TAG_TRANSFORMATION)?.and_then(f64_vec);
        let geo_keys = match tag(TAG_GEO_KEYS)? {
            Some(v) => f64_vec(v)
                .ok_or_else(|| Error::format(path, "GeoKeyDirectory is not a list of shorts"))?
                .into_iter()
                .map(|x| x as u16)
                .collect(),
            None => Vec::new(),
        };
        let geo_doubles = tag(TAG_GEO_DOUBLES)?.and_then(f64_vec).unwrap_or_default();
        let ascii = |v: Option<Value>| match v {
            Some(Value::Ascii(s)) => s,
            _ => String::new(),
        };
        let geo_ascii = ascii(tag(TAG_GEO_ASCII)?);
        let nodata_text = ascii(tag(TAG_GDAL_NODATA)?);
        let nodata = match nodata_text.trim().trim_end_matches('\0') {
            "" => None,
            t => Some(
                t.parse::<f64>()
                    .ok()
                    .or(match t.to_ascii_lowercase().as_str() {
                        "nan" | "-nan" => Some(f64::NAN),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        Error::format(path, format!("GDAL_NODATA {t:?} is not a number"))
                    })?,
            ),
        };
        let (chunk_w, chunk_h) = d.chunk_dimensions();
        let (chunk_w, chunk_h) = (chunk_w as usize, chunk_h.min(h) as usize);
        if chunk_w == 0 || chunk_h == 0 {
            return Err(Error::format(path, "zero-sized strips or tiles"));
        }
        let across = (w as usize).div_ceil(chunk_w);
        let down = (h as usize).div_ceil(chunk_h);
        Ok(GeoTiffReader {
            path: path.to_path_buf(),
            decoder: d,
            info: GeoTiffInfo {
                width: w as usize,
                height: h as usize,
                bands: samples as usize,
                sample,
                georef: GeoRef {
                    pixel_scale,
                    tiepoint,
                    transformation,
                    geo_keys,
                    geo_doubles,
                    geo_ascii,
                },
                nodata,
            },
            planar,
            chunk_w,
            chunk_h,
            across,
            down,
            cache: HashMap::new(),
            order: VecDeque::new(),
            cache_chunks: 2 * across,
            cache_bytes: 0,
            peak_bytes: 0,
        })
    }

    /// The file's header and georeferencing.
    pub fn info(&self) -> &GeoTiffInfo {
        &self.info
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Strip or tile size (columns, rows).
    pub fn chunk_size(&self) -> (usize, usize) {
        (self.chunk_w, self.chunk_h)
    }

    /// Keeps up to `rows` rows of strips/tiles (of every band) decoded, so that windows sliding along a
    /// row of the scene decode each chunk once. Default: 2 rows.
    pub fn set_cache_rows(&mut self, rows: usize) {
        let planes = if self.planar { self.info.bands } else { 1 };
        self.cache_chunks = rows.max(1) * self.across * planes;
    }

    /// Keeps the strips/tiles of one window of `rows` × `cols` pixels (of every band) decoded: windows
    /// sliding down a column of windows `cols` wide decode each chunk once, and the cache holds no more
    /// than such a window's chunks, whatever the raster's size (unless its strips span the whole width).
    pub fn set_cache_window(&mut self, rows: usize, cols: usize) {
        let planes = if self.planar { self.info.bands } else { 1 };
        let across = (cols.div_ceil(self.chunk_w) + 1).min(self.across);
        self.cache_chunks = self.chunk_rows_for(rows).min(self.down) * across * planes;
    }

    /// The most bytes the decoded-chunk cache held so far (chunks are kept as uint8, int16 or uint16 when the
    /// file's samples are, else as `f32`).
    pub fn peak_cache_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Rows of chunks a window of `rows` rows can touch.
    pub fn chunk_rows_for(&self, rows: usize) -> usize {
        rows.div_ceil(self.chunk_h) + 1
    }

    fn chunk(&mut self, index: u32) -> Result<Chunk> {
        if let Some(c) = self.cache.get(&index) {
            return Ok(c.clone());
        }
        let path = &self.path;
        let data = self
            .decoder
            .read_chunk(index)
            .map_err(|e| Error::format(path, format!("cannot decode strip/tile {index}: {e}")))?;
        let v = match data {
            DecodingResult::U8(v) => Samples::U8(v),
            DecodingResult::I16(v) => Samples::I16(v),
            DecodingResult::U16(v) => Samples::U16(v),
            DecodingResult::I32(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
            DecodingResult::U32(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
            DecodingResult::F32(v) => Samples::F32(v),
            DecodingResult::F64(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
            _ => return Err(Error::format(path, "unsupported sample type")),
        };
        let c = Arc::new(v);
        while self.order.len() >= self.cache_chunks.max(1) {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.cache.remove(&old) {
                self.cache_bytes -= gone.bytes();
            }
        }
        self.cache_bytes += c.bytes();
        self.peak_bytes = self.peak_bytes.max(self.cache_bytes);
        self.cache.insert(index, c.clone());
        self.order.push_back(index);
        Ok(c)
    }

    /// Reads bands `bands` (0-based) of the window of `rows` × `cols` pixels whose top-left pixel is
    /// (`row0`, `col0`) into (bands.len(), rows, cols) `f32`, row-major. The window may extend past the
    /// scene (or start before it): pixels outside read `fill`.
    pub fn read_window(
        &mut self,
        row0: i64,
        col0: i64,
        rows: usize,
        cols: usize,
        bands: &[usize],
        fill: f32,
    ) -> Result<Vec<f32>> {
        let nb = self.info.bands;
        if let Some(&b) = bands.iter().find(|&&b| b >= nb) {
            return Err(Error::format(
                &self.path,
                format!("band {} asked for, the file has {nb} band(s)", b + 1),
            ));
        }
        let mut out = vec![fill; bands.len() * rows * cols];
        let (h, w) = (self.info.height as i64, self.info.width as i64);
        let r_lo = row0.max(0);
        let r_hi = (row0 + rows as i64).min(h);
        let c_lo = col0.max(0);
        let c_hi = (col0 + cols as i64).min(w);
        if r_lo >= r_hi || c_lo >= c_hi {
            return Ok(out);
        }
        let (cw, ch) = (self.chunk_w as i64, self.chunk_h as i64);
        let per_plane = (self.across * self.down) as u32;
        for cy in (r_lo / ch)..=((r_hi - 1) / ch) {
            for cx in (c_lo / cw)..=((c_hi - 1) / cw) {
                let unit = (cy as usize * self.across + cx as usize) as u32;
                // Rows and columns of this chunk inside the window.
                let (y0, y1) = ((cy * ch).max(r_lo), ((cy + 1) * ch).min(r_hi));
                let (x0, x1) = ((cx * cw).max(c_lo), ((cx + 1) * cw).min(c_hi));
                // Decoded chunks are cut to the image: the last column of tiles is narrower.
                let data_w = cw.min(w - cx * cw) as usize;
                let spc = if self.planar { 1 } else { nb };
                if self.planar {
                    for (bi, &b) in bands.iter().enumerate() {
                        let c = self.chunk(unit + b as u32 * per_plane)?;
                        copy_rows(
                            &c,
                            data_w,
                            spc,
                            0,
                            (cy * ch, cx * cw),
                            (y0, y1, x0, x1),
                            &mut out[bi * rows * cols..][..rows * cols],
                            (row0, col0, cols),
                        );
                    }
                } else {
                    let c = self.chunk(unit)?;
                    for (bi, &b) in bands.iter().enumerate() {
                        copy_rows(
                            &c,
                            data_w,
                            spc,
                            b,
                            (cy * ch, cx * cw),
                            (y0, y1, x0, x1),
                            &mut out[bi * rows * cols..][..rows * cols],
                            (row0, col0, cols),
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Reads the whole raster, every band: (bands, height, width).
    pub fn read_all(&mut self) -> Result<Vec<f32>> {
        let bands: Vec<usize> = (0..self.info.bands).collect();
        let (h, w) = (self.info.height, self.info.width);
        self.read_window(0, 0, h, w, &bands, 0.0)
    }
}

/// Copies sample `s` of rows y0..y1, columns x0..x1 (scene coordinates) of a decoded chunk whose top-left
/// pixel is `origin` and whose rows are `data_w` pixels of `spc` samples, into a window (rows, cols) whose
/// top-left pixel is (win.0, win.1).
#[allow(clippy::too_many_arguments)]
fn copy_rows(
    chunk: &Samples,
    data_w: usize,
    spc: usize,
    s: usize,
    origin: (i64, i64),
    rect: (i64, i64, i64, i64),
    out: &mut [f32],
    win: (i64, i64, usize),
) {
    let layout = (data_w, spc, s, origin);
    match chunk {
        Samples::U8(v) => copy_rows_of(v, layout, rect, out, win),
        Samples::I16(v) => copy_rows_of(v, layout, rect, out, win),
        Samples::U16(v) => copy_rows_of(v, layout, rect, out, win),
        Samples::F32(v) => copy_rows_of(v, layout, rect, out, win),
    }
}

/// [`copy_rows`] for one sample type.
fn copy_rows_of<T: Copy + Into<f32>>(
    chunk: &[T],
    (data_w, spc, s, origin): (usize, usize, usize, (i64, i64)),
    (y0, y1, x0, x1): (i64, i64, i64, i64),
    out: &mut [f32],
    (wr, wc, cols): (i64, i64, usize),
) {
    for y in y0..y1 {
        let src_row = (y - origin.0) as usize * data_w;
        let dst_row = (y - wr) as usize * cols;
        for x in x0..x1 {
            let src = (src_row + (x - origin.1) as usize) * spc + s;
            out[dst_row + (x - wc) as usize] = chunk.get(src).map_or(f32::NAN, |&v| v.into());
        }
    }
}
