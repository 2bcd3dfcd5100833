//! Attention as pictures, as the papers show it: a grid of maps, one row per head and one column per date,
//! each map the head's weight of that date at every pixel — U-TAE's masks (`predict --save_attention`:
//! `attn_<ID>.png`) — and L-TAE's heads × dates matrix of a pixel-set model (`attention.png`, the mean
//! over the parcels). The colour map is viridis (perceptually uniform, readable in grey and by colour-blind
//! readers) from 0 to the largest weight shown, with a colour bar; the dates label the columns.
//!
//! ```text
//!   patch 10000: U-TAE attention, 4 heads × 6 dates (max 0.71)
//!             2018-09-17  2018-10-02  2018-10-27  …
//!   head 0    ▓▓▓▓        ░░░░        ▒▒▒▒
//!   head 1    …                                          ▮ 0.71
//!                                                        ▮
//!                                                        ▮ 0
//! ```

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{font, rgb, Canvas};
use crate::engine::Result;

/// Viridis at 9 stops (matplotlib's), interpolated linearly between them.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

/// The viridis colour of `v` in [0, 1] (clamped; NaN is the lowest colour).
pub fn viridis(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let x = v * (VIRIDIS.len() - 1) as f32;
    let i = (x as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|c| (a[c] as f32 + f * (b[c] as f32 - a[c] as f32)).round() as u8)
}

/// A heads × dates grid of maps of `rows × cols` pixels: `values` is (heads, dates, rows, cols) row-major;
/// `dates` labels the columns (one per date), `title` tops the picture.
pub struct AttentionGrid<'a> {
    /// The picture's title.
    pub title: String,
    /// Weights (heads, dates, rows, cols).
    pub values: &'a [f32],
    /// Heads.
    pub heads: usize,
    /// Column labels, one per date.
    pub dates: Vec<String>,
    /// Rows of each map (1 for L-TAE's heads × dates matrix).
    pub rows: usize,
    /// Columns of each map (1 for L-TAE's matrix).
    pub cols: usize,
}

const MARGIN: usize = 12;
const TITLE_H: usize = 34;
const HEADER_H: usize = 70;
const LABEL_W: usize = 70;
const GAP: usize = 4;
const BAR_W: usize = 90;

/// Cell size in output pixels: a map of `rows × cols` is upscaled (nearest neighbour) to about `target`
/// pixels on its longer side, at least 1 pixel per map pixel and at least 24 pixels per cell.
fn cell_scale(rows: usize, cols: usize, dates: usize) -> usize {
    let target = (1400 / dates.max(1)).clamp(24, 160);
    (target / rows.max(cols).max(1)).max(1)
}

/// Draws the grid; `path` names the picture in errors.
pub fn render_attention(path: &Path, g: &AttentionGrid) -> Result<Canvas> {
    let t = g.dates.len();
    let s = cell_scale(g.rows, g.cols, t);
    let (cw, ch) = ((g.cols * s).max(24), (g.rows * s).max(24));
    let (sx, sy) = (cw / g.cols.max(1), ch / g.rows.max(1));
    let w = MARGIN + LABEL_W + t * (cw + GAP) + BAR_W + MARGIN;
    let h = MARGIN + TITLE_H + HEADER_H + g.heads * (ch + GAP) + MARGIN;
    let mut c = Canvas::new(w.max(400), h.max(MARGIN + TITLE_H + HEADER_H + 120));
    let max = g
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    let norm = if max > 0.0 { max } else { 1.0 };
    let map = g.rows * g.cols;
    let top = MARGIN + TITLE_H + HEADER_H;
    for head in 0..g.heads {
        for d in 0..t {
            let (x0, y0) = (MARGIN + LABEL_W + d * (cw + GAP), top + head * (ch + GAP));
            for r in 0..g.rows {
                for q in 0..g.cols {
                    let v = g.values[(head * t + d) * map + r * g.cols + q];
                    c.fill((x0 + q * sx, y0 + r * sy), (sx, sy), viridis(v / norm));
                }
            }
        }
    }
    // The colour bar: 0 at the bottom, the maximum at the top.
    let (bx, bh) = (MARGIN + LABEL_W + t * (cw + GAP) + 10, 100usize);
    for y in 0..bh {
        c.fill(
            (bx, top + y),
            (14, 1),
            viridis(1.0 - y as f32 / (bh - 1) as f32),
        );
    }
    c.draw(path, |root| {
        let black = [0, 0, 0];
        root.draw_text(
            &g.title,
            &font(18, black, HPos::Left, VPos::Top),
            (MARGIN as i32, MARGIN as i32),
        )?;
        for (d, label) in g.dates.iter().enumerate() {
            let x = MARGIN + LABEL_W + d * (cw + GAP) + cw / 2;
            // Dates written upward, so that many fit side by side.
            let style =
                font(12, black, HPos::Left, VPos::Center).transform(FontTransform::Rotate270);
            root.draw_text(label, &style, (x as i32, (top - 6) as i32))?;
        }
        for head in 0..g.heads {
            let y = top + head * (ch + GAP) + ch / 2;
            root.draw_text(
                &format!("head {head}"),
                &font(13, black, HPos::Left, VPos::Center),
                (MARGIN as i32, y as i32),
            )?;
        }
        root.draw(&Rectangle::new(
            [
                (bx as i32 - 1, top as i32 - 1),
                (bx as i32 + 14, (top + bh) as i32),
            ],
            rgb([120, 120, 120]).stroke_width(1),
        ))?;
        for (y, label) in [(top, format!("{max:.2}")), (top + bh - 1, "0".to_string())] {
            root.draw_text(
                &label,
                &font(12, black, HPos::Left, VPos::Center),
                (bx as i32 + 20, y as i32),
            )?;
        }
        root.draw_text(
            "weight",
            &font(12, black, HPos::Left, VPos::Bottom),
            (bx as i32, top as i32 - 6),
        )?;
        Ok(())
    })?;
    Ok(c)
}

/// Writes the grid as a PNG at `path`; the error names the file.
pub fn attention_png(path: &Path, g: &AttentionGrid) -> Result<()> {
    render_attention(path, g)?.write_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), VIRIDIS[0]);
        assert_eq!(viridis(1.0), VIRIDIS[8]);
        assert_eq!(viridis(f32::NAN), VIRIDIS[0]);
        assert_eq!(viridis(2.0), VIRIDIS[8]);
    }

    #[test]
    fn a_grid_of_masks_and_a_heads_by_dates_matrix_render() {
        let dir = std::env::temp_dir().join(format!("sitsgpu_attn_png_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // U-TAE: 2 heads × 3 dates of 4 × 4 masks.
        let values: Vec<f32> = (0..2 * 3 * 16).map(|i| (i % 7) as f32 / 7.0).collect();
        let g = AttentionGrid {
            title: "patch 1: U-TAE attention".into(),
            values: &values,
            heads: 2,
            dates: vec![
                "2018-09-17".into(),
                "2018-10-02".into(),
                "2018-10-27".into(),
            ],
            rows: 4,
            cols: 4,
        };
        let c = render_attention(&dir.join("a.png"), &g).unwrap();
        let s = cell_scale(4, 4, 3);
        assert!(c.w >= MARGIN + LABEL_W + 3 * (4 * s) + BAR_W);
        // The first head's first map: its top-left pixel has value 0 → viridis' first colour.
        let (x0, y0) = (MARGIN + LABEL_W, MARGIN + TITLE_H + HEADER_H);
        assert_eq!(c.get(x0, y0), VIRIDIS[0]);
        // Text (dark pixels) in the title band, and the picture is not blank.
        let dark = (0..c.w)
            .flat_map(|x| (MARGIN..MARGIN + 20).map(move |y| (x, y)))
            .filter(|&(x, y)| c.get(x, y).iter().all(|&v| v < 80))
            .count();
        assert!(dark > 20, "no title text");
        attention_png(&dir.join("a.png"), &g).unwrap();
        assert!(std::fs::metadata(dir.join("a.png")).unwrap().len() > 1000);
        // L-TAE: 3 heads × 5 dates, one value per cell.
        let m: Vec<f32> = (0..15).map(|i| i as f32 / 15.0).collect();
        let g = AttentionGrid {
            title: "L-TAE attention".into(),
            values: &m,
            heads: 3,
            dates: (0..5).map(|d| format!("day {}", 10 * d)).collect(),
            rows: 1,
            cols: 1,
        };
        let c = render_attention(&dir.join("b.png"), &g).unwrap();
        assert!(c.h > MARGIN + TITLE_H + HEADER_H + 3 * 24);
        std::fs::remove_dir_all(&dir).ok();
    }
}
