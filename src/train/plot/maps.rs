//! Map figures: a title, titled panels side by side (input RGB, ground truth, prediction…) and a legend of
//! the classes present, with their names and [`palette`](super::palette) colours.
//!
//! ```text
//!   patch 10000: pixel accuracy 87.3 % (void excluded)
//!   input RGB, 2019-05-12   ground truth       prediction          ■ 0 Background
//!   ┌──────────────┐       ┌──────────────┐   ┌──────────────┐     ■ 1 Meadow
//!   │              │       │              │   │              │     ■ 3 Corn
//!   └──────────────┘       └──────────────┘   └──────────────┘     ▨ 19 Void label
//! ```
//!
//! Each map pixel is a `scale × scale` block (nearest neighbour: no blurring); void pixels are hatched grey.
//! Panels are given at output resolution, so a caller can draw on them first (the panoptic picture outlines
//! its instances).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::palette::{class_colour, ClassNames, VOID_CLASS, VOID_FILL, VOID_HATCH};
use super::{font, rgb, Canvas};
use crate::engine::Result;

/// Space around the figure, in pixels.
pub const MARGIN: usize = 12;
/// Height of the title band.
pub const TITLE_H: usize = 34;
/// Height of the panel-title band.
pub const SUBTITLE_H: usize = 26;
/// Gap between panels.
pub const GUTTER: usize = 12;
/// Width of the legend column.
pub const LEGEND_W: usize = 250;
/// Height of one legend row.
pub const LEGEND_ROW: usize = 20;

/// One panel: its title and its pixels, (h, w) output pixels row-major.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Shown above the panel.
    pub title: String,
    /// Output pixels, row-major.
    pub pixels: Vec<[u8; 3]>,
}

/// A whole figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The figure's title.
    pub title: String,
    /// Panels, left to right, all `panel_size`.
    pub panels: Vec<Panel>,
    /// (width, height) of every panel, in output pixels.
    pub panel_size: (usize, usize),
    /// Classes of the legend, in order (empty: no legend).
    pub legend: Vec<i64>,
    /// How the legend names them.
    pub names: ClassNames,
}

/// Panels are about this many output pixels on their longer side (PASTIS' 128-pixel patches at scale 3).
pub const PANEL_TARGET: usize = 384;

/// The block size of a map of H × W pixels: `PANEL_TARGET / max(H, W)`, at least 1.
pub fn scale_for(h: usize, w: usize) -> usize {
    (PANEL_TARGET / h.max(w).max(1)).max(1)
}

/// The colour of output pixel (x, y) of a class map drawn at `scale` (void hatched).
pub fn class_pixel(class: i64, x: usize, y: usize) -> [u8; 3] {
    match class {
        VOID_CLASS if (x + y).is_multiple_of(4) => VOID_HATCH,
        VOID_CLASS => VOID_FILL,
        c => class_colour(c),
    }
}

/// A class map (H, W) at `scale` as output pixels (H·scale, W·scale).
pub fn class_pixels(classes: &[i64], h: usize, w: usize, scale: usize) -> Vec<[u8; 3]> {
    let pw = w * scale;
    (0..h * scale * pw)
        .map(|i| {
            let (y, x) = (i / pw, i % pw);
            class_pixel(classes[(y / scale) * w + x / scale], x, y)
        })
        .collect()
}

/// Colours (H, W) at `scale` as output pixels (H·scale, W·scale), each a block.
pub fn upscale(colours: &[[u8; 3]], h: usize, w: usize, scale: usize) -> Vec<[u8; 3]> {
    let pw = w * scale;
    (0..h * scale * pw)
        .map(|i| colours[(i / pw / scale) * w + (i % pw) / scale])
        .collect()
}

/// The classes present in some maps, ascending.
pub fn classes_present<'a>(maps: impl IntoIterator<Item = &'a [i64]>) -> Vec<i64> {
    let set: std::collections::BTreeSet<i64> = maps.into_iter().flatten().copied().collect();
    set.into_iter().collect()
}

/// The share of non-void pixels of `truth` whose class `pred` got right, in percent (None: all void).
pub fn pixel_accuracy(truth: &[i64], pred: &[i64]) -> Option<f64> {
    let (mut right, mut all) = (0usize, 0usize);
    for (&t, &p) in truth.iter().zip(pred) {
        if t != VOID_CLASS {
            all += 1;
            right += usize::from(t == p);
        }
    }
    (all > 0).then(|| 100.0 * right as f64 / all as f64)
}

/// The colours of an RGB composite `rgb` (3, H, W), any range: each channel is stretched linearly between its
/// 2nd and 98th percentiles (non-finite values ignored) and clamped; one colour per pixel, row-major (H, W).
pub fn rgb_colours(rgb: &[f32], h: usize, w: usize) -> Vec<[u8; 3]> {
    let stretch: Vec<(f32, f32)> = (0..3)
        .map(|c| {
            let mut v: Vec<f32> = rgb[c * h * w..(c + 1) * h * w]
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f32::total_cmp);
            if v.is_empty() {
                return (0.0, 1.0);
            }
            (
                v[v.len() * 2 / 100],
                v[(v.len() * 98 / 100).min(v.len() - 1)],
            )
        })
        .collect();
    (0..h * w)
        .map(|i| {
            let mut colour = [0u8; 3];
            for c in 0..3 {
                let (lo, hi) = stretch[c];
                colour[c] = (((rgb[c * h * w + i] - lo) / (hi - lo).max(1e-6)).clamp(0.0, 1.0)
                    * 255.0) as u8;
            }
            colour
        })
        .collect()
}

/// Where panel `k` starts (top-left corner of its pixels) in the figure.
pub fn panel_origin(fig: &Figure, k: usize) -> (usize, usize) {
    (
        MARGIN + k * (fig.panel_size.0 + GUTTER),
        MARGIN + TITLE_H + SUBTITLE_H,
    )
}

/// The figure's size: panels, legend column, title bands; tall enough for the legend.
pub fn figure_size(fig: &Figure) -> (usize, usize) {
    let (pw, ph) = fig.panel_size;
    let n = fig.panels.len();
    let legend_w = if fig.legend.is_empty() { 0 } else { LEGEND_W };
    let w = MARGIN + n * (pw + GUTTER) + legend_w + MARGIN;
    let body = ph.max(LEGEND_ROW * fig.legend.len());
    (
        w.max(2 * MARGIN + 300),
        MARGIN + TITLE_H + SUBTITLE_H + body + MARGIN,
    )
}

/// Draws the figure (`path` names it in errors).
pub fn render_figure(path: &Path, fig: &Figure) -> Result<Canvas> {
    let (w, h) = figure_size(fig);
    let (pw, ph) = fig.panel_size;
    let mut c = Canvas::new(w, h);
    for (k, p) in fig.panels.iter().enumerate() {
        let (x0, y0) = panel_origin(fig, k);
        for (i, &col) in p.pixels.iter().enumerate().take(pw * ph) {
            c.set(x0 + i % pw, y0 + i / pw, col);
        }
    }
    let legend_x = MARGIN + fig.panels.len() * (pw + GUTTER);
    let top = MARGIN + TITLE_H + SUBTITLE_H;
    for (r, &class) in fig.legend.iter().enumerate() {
        let y = top + r * LEGEND_ROW + 3;
        for dy in 0..14 {
            for dx in 0..14 {
                c.set(legend_x + dx, y + dy, class_pixel(class, dx, dy));
            }
        }
    }
    c.draw(path, |root| {
        let black = [0, 0, 0];
        root.draw_text(
            &fig.title,
            &font(20, black, HPos::Left, VPos::Top),
            (MARGIN as i32, MARGIN as i32),
        )?;
        for (k, p) in fig.panels.iter().enumerate() {
            let (x0, y0) = panel_origin(fig, k);
            root.draw_text(
                &p.title,
                &font(15, black, HPos::Left, VPos::Bottom),
                (x0 as i32, y0 as i32 - 5),
            )?;
            // A thin frame, so a dark panel edge still reads as the panel's border.
            root.draw(&Rectangle::new(
                [
                    (x0 as i32 - 1, y0 as i32 - 1),
                    ((x0 + pw) as i32, (y0 + ph) as i32),
                ],
                rgb([150, 150, 150]).stroke_width(1),
            ))?;
        }
        if !fig.legend.is_empty() {
            root.draw_text(
                "classes",
                &font(15, black, HPos::Left, VPos::Bottom),
                (legend_x as i32, top as i32 - 5),
            )?;
        }
        for (r, &class) in fig.legend.iter().enumerate() {
            let y = top + r * LEGEND_ROW + 3;
            root.draw(&Rectangle::new(
                [
                    (legend_x as i32, y as i32),
                    (legend_x as i32 + 13, y as i32 + 13),
                ],
                rgb([120, 120, 120]).stroke_width(1),
            ))?;
            root.draw_text(
                &fig.names.label(class),
                &font(14, black, HPos::Left, VPos::Center),
                (legend_x as i32 + 20, y as i32 + 7),
            )?;
        }
        Ok(())
    })?;
    Ok(c)
}

/// Writes the figure as a PNG at `path`; the error names the file.
pub fn figure_png(path: &Path, fig: &Figure) -> Result<()> {
    render_figure(path, fig)?.write_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_has_its_panels_legend_and_title() {
        // 4 × 4 maps at scale 3: panels of 12 × 12 output pixels.
        let truth: Vec<i64> = (0..16).map(|i| if i < 8 { 1 } else { 19 }).collect();
        let pred: Vec<i64> = (0..16).map(|i| if i < 12 { 1 } else { 3 }).collect();
        assert_eq!(pixel_accuracy(&truth, &pred), Some(100.0));
        let fig = Figure {
            title: "patch 1: pixel accuracy 100.0 %".into(),
            panels: vec![
                Panel {
                    title: "ground truth".into(),
                    pixels: class_pixels(&truth, 4, 4, 3),
                },
                Panel {
                    title: "prediction".into(),
                    pixels: class_pixels(&pred, 4, 4, 3),
                },
            ],
            panel_size: (12, 12),
            legend: classes_present([truth.as_slice(), pred.as_slice()]),
            names: ClassNames::Pastis,
        };
        assert_eq!(fig.legend, vec![1, 3, 19]);
        let c = render_figure(Path::new("fig.png"), &fig).unwrap();
        let size = figure_size(&fig);
        super::super::assert_readable("map figure", &c, size, MARGIN..MARGIN + TITLE_H);
        // Map pixels are blocks: output (0..3, 0..3) of panel 1 is class 1's colour; its last row is class 3.
        let (x0, y0) = panel_origin(&fig, 1);
        assert_eq!(c.get(x0 + 2, y0 + 2), class_colour(1));
        assert_eq!(c.get(x0 + 11, y0 + 11), class_colour(3));
        // The legend's first swatch is class 1.
        let lx = MARGIN + 2 * (12 + GUTTER);
        assert_eq!(c.get(lx + 5, y0 + 8), class_colour(1));
    }
}
