//! Every picture the project writes, as PNG: drawn with `plotters` (bitmap backend) into an RGB buffer, with
//! text in DejaVu Sans embedded in the binary (`assets/fonts/`, no system font lookup), and encoded by the
//! `png` crate.
//!
//! | File | Written by | Drawn by |
//! | --- | --- | --- |
//! | `Fold_k/curves.png` | every training run | [`curves::training_curves`]: loss panel + metric panel |
//! | `Fold_k/conf_mat.png` | every test (training or `evaluate`) | [`matrix::confusion_png`] |
//! | `Fold_k/per_class_f1.png` | pixel-set tests | [`matrix::f1_bars_png`] |
//! | `grid_<ID>.png`, `pred_<ID>.png` | semantic `predict` | [`maps::figure_png`] |
//! | `panoptic_<ID>.png` | panoptic `predict` | [`crate::train::panoptic::picture`] on [`maps`] |
//! | `attn_<ID>.png`, `attention.png` | `predict --save_attention` (U-TAE, pixel-set L-TAE / TAE) | [`attention::attention_png`]: heads × dates |
//!
//! Classes have one colour and one name everywhere ([`palette`]).

pub mod attention;
pub mod curves;
pub mod maps;
pub mod matrix;
pub mod palette;

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::engine::{Error, Result};

pub use curves::{training_curves, CurveKind};
pub use maps::rgb_colours;
pub use palette::{class_colour, ClassNames};

/// The embedded font (DejaVu Sans; licence in `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under; every text style of this module uses it.
pub const FAMILY: &str = "sans-serif";

/// The result of a drawing closure (plotters' errors boxed; [`Canvas::draw`] names the file).
pub type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// Registers the embedded font with plotters, once per process.
fn register_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok =
        *OK.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "the embedded font (assets/fonts/DejaVuSans.ttf) could not be parsed".into(),
        ))
    }
}

/// An RGB picture being drawn: `w × h` pixels, 3 bytes each, row-major, white to start with.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// (h, w, 3) bytes.
    pub px: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = 3 * (y * self.w + x);
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The colour of one pixel.
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.w + x);
        [self.px[i], self.px[i + 1], self.px[i + 2]]
    }

    /// Fills the rectangle of top-left (x, y) and size w × h (clipped).
    pub fn fill(&mut self, (x, y): (usize, usize), (w, h): (usize, usize), c: [u8; 3]) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                self.set(xx, yy, c);
            }
        }
    }

    /// Draws on the canvas with plotters (text, charts); `what` names the picture in errors.
    pub fn draw(
        &mut self,
        what: &Path,
        f: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Drawn,
    ) -> Result<()> {
        register_font()?;
        let fail = |e: Box<dyn std::error::Error>| Error::io(what, format!("drawing failed: {e}"));
        let root = BitMapBackend::with_buffer(&mut self.px, (self.w as u32, self.h as u32))
            .into_drawing_area();
        f(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.into()))
    }

    /// Writes the canvas as an 8-bit RGB PNG; the error names the file.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        write_rgb(path, self.w, self.h, &self.px)
    }
}

/// A plotters colour from RGB bytes.
pub fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A text style of the embedded font: `size` pixels, colour `c`, anchored at `(h, v)` of the text box.
pub fn font(size: u32, c: [u8; 3], h: HPos, v: VPos) -> TextStyle<'static> {
    (FAMILY, size)
        .into_font()
        .color(&rgb(c))
        .pos(Pos::new(h, v))
}

/// Writes `px` (H × W × 3 bytes, row-major RGB) as an 8-bit RGB PNG of width `w` and height `h`.
pub fn write_rgb(path: &Path, w: usize, h: usize, px: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // Flat-coloured figures: the strongest deflate and per-row filter choice make them several times smaller.
    enc.set_compression(png::Compression::Best);
    enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut wr = enc.write_header().map_err(|e| Error::io(path, e))?;
    wr.write_image_data(px).map_err(|e| Error::io(path, e))
}

/// Test support: checks a picture for what every test of this module asks (the size, not blank, some dark
/// text pixels in the band of rows `text_rows`). Panics with a message naming `what`.
#[cfg(test)]
pub(crate) fn assert_readable(
    what: &str,
    c: &Canvas,
    size: (usize, usize),
    text_rows: std::ops::Range<usize>,
) {
    assert_eq!((c.w, c.h), size, "{what}: size");
    assert_eq!(c.px.len(), c.w * c.h * 3, "{what}: buffer");
    let distinct: std::collections::HashSet<[u8; 3]> =
        c.px.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    assert!(
        distinct.len() > 4,
        "{what}: blank ({} colours)",
        distinct.len()
    );
    let dark = text_rows
        .flat_map(|y| (0..c.w).map(move |x| (x, y)))
        .filter(|&(x, y)| c.get(x, y).iter().all(|&v| v < 100))
        .count();
    assert!(
        dark > 20,
        "{what}: no text in the title rows ({dark} dark pixels)"
    );
}
