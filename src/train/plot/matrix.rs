//! Test-result pictures: the confusion matrix (`conf_mat.png`, beside `conf_mat.*`) and, for pixel sets, the
//! F1 score of each class (`per_class_f1.png`).
//!
//! The matrix is row-normalised: cell (t, p) is the share of the pixels (parcels) of true class t that were
//! predicted p, in percent, written in the cell (one decimal below 10 %, blank when 0); the cell colour goes
//! from white (0 %) to dark blue (100 %). Rows are the true classes with their names, columns the predicted
//! class ids; each row ends with its count. The ignored class (PASTIS void) is left out, as the metrics do.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::palette::{class_colour, text_on, ClassNames};
use super::{font, rgb, Canvas};
use crate::engine::Result;

const MARGIN: usize = 12;
const TITLE_H: usize = 36;
const LABEL_W: usize = 230;
const HEADER_H: usize = 44;
const TOTAL_W: usize = 90;
const DARK: [u8; 3] = [8, 48, 107];

/// Which pictures a test writes, and how they name the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestPictures {
    /// PASTIS (semantic): `conf_mat.png` with the PASTIS class names.
    Semantic,
    /// Pixel sets: `conf_mat.png` and `per_class_f1.png`, classes by number.
    PixelSet,
}

impl TestPictures {
    /// How the pictures name the classes.
    pub fn names(self) -> ClassNames {
        match self {
            TestPictures::Semantic => ClassNames::Pastis,
            TestPictures::PixelSet => ClassNames::Numbered,
        }
    }
}

/// The shade of a share in 0..=1: white → [`DARK`].
fn shade(share: f64) -> [u8; 3] {
    let s = share.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (255.0 + (DARK[i] as f64 - 255.0) * s).round() as u8)
}

/// The confusion-matrix picture of `counts` (K, K) row-major (rows true, columns predicted), class `ignore`
/// left out, `cell` pixels per cell; `path` names it in errors.
pub fn render_confusion(
    path: &Path,
    title: &str,
    counts: &[u64],
    k: usize,
    ignore: Option<usize>,
    names: ClassNames,
    cell: usize,
) -> Result<Canvas> {
    let keep: Vec<usize> = (0..k).filter(|&c| Some(c) != ignore).collect();
    let n = keep.len();
    let (x0, y0) = (MARGIN + LABEL_W, MARGIN + TITLE_H + HEADER_H);
    let w = x0 + n * cell + TOTAL_W + MARGIN;
    let h = y0 + n * cell + MARGIN;
    let mut c = Canvas::new(w.max(2 * MARGIN + 360), h);
    let rows: Vec<(u64, Vec<f64>)> = keep
        .iter()
        .map(|&t| {
            let total: u64 = keep.iter().map(|&p| counts[t * k + p]).sum();
            let shares = keep
                .iter()
                .map(|&p| counts[t * k + p] as f64 / (total.max(1)) as f64)
                .collect();
            (total, shares)
        })
        .collect();
    for (r, (_, shares)) in rows.iter().enumerate() {
        for (q, &s) in shares.iter().enumerate() {
            c.fill((x0 + q * cell, y0 + r * cell), (cell, cell), shade(s));
        }
    }
    let value_size = (cell as u32 * 11 / 32).clamp(8, 13);
    c.draw(path, |root| {
        let black = [0, 0, 0];
        root.draw_text(
            title,
            &font(18, black, HPos::Left, VPos::Top),
            (MARGIN as i32, MARGIN as i32),
        )?;
        root.draw_text(
            "predicted class",
            &font(14, black, HPos::Center, VPos::Top),
            ((x0 + n * cell / 2) as i32, (MARGIN + TITLE_H) as i32),
        )?;
        root.draw_text(
            "true class",
            &font(14, black, HPos::Left, VPos::Bottom),
            (MARGIN as i32, y0 as i32 - 4),
        )?;
        root.draw_text(
            "count",
            &font(13, black, HPos::Left, VPos::Bottom),
            ((x0 + n * cell + 8) as i32, y0 as i32 - 4),
        )?;
        for (q, &p) in keep.iter().enumerate() {
            root.draw_text(
                &p.to_string(),
                &font(12, black, HPos::Center, VPos::Bottom),
                ((x0 + q * cell + cell / 2) as i32, y0 as i32 - 4),
            )?;
        }
        for (r, &t) in keep.iter().enumerate() {
            let yc = (y0 + r * cell + cell / 2) as i32;
            // A swatch of the class colour, then its label.
            root.draw(&Rectangle::new(
                [(MARGIN as i32, yc - 5), (MARGIN as i32 + 10, yc + 5)],
                rgb(class_colour(t as i64)).filled(),
            ))?;
            root.draw_text(
                &names.label(t as i64),
                &font(13, black, HPos::Left, VPos::Center),
                (MARGIN as i32 + 16, yc),
            )?;
            let (total, shares) = &rows[r];
            for (q, &s) in shares.iter().enumerate() {
                if s > 0.0 {
                    let v = 100.0 * s;
                    let text = if v < 10.0 {
                        format!("{v:.1}")
                    } else {
                        format!("{v:.0}")
                    };
                    root.draw_text(
                        &text,
                        &font(value_size, text_on(shade(s)), HPos::Center, VPos::Center),
                        ((x0 + q * cell + cell / 2) as i32, yc),
                    )?;
                }
            }
            root.draw_text(
                &total.to_string(),
                &font(12, black, HPos::Left, VPos::Center),
                ((x0 + n * cell + 8) as i32, yc),
            )?;
        }
        root.draw(&Rectangle::new(
            [
                (x0 as i32 - 1, y0 as i32 - 1),
                ((x0 + n * cell) as i32, (y0 + n * cell) as i32),
            ],
            rgb([120, 120, 120]).stroke_width(1),
        ))?;
        Ok(())
    })?;
    Ok(c)
}

/// Writes the confusion-matrix picture (34-pixel cells) at `path`; the error names the file.
pub fn confusion_png(
    path: &Path,
    title: &str,
    counts: &[u64],
    k: usize,
    ignore: Option<usize>,
    names: ClassNames,
) -> Result<()> {
    render_confusion(path, title, counts, k, ignore, names, 34)?.write_png(path)
}

/// The bar chart of per-class F1 scores (`f1`: (class, F1 in 0..=1, NaN when the class has no sample and no
/// prediction)), `bar` pixels per row; `path` names it in errors.
pub fn render_f1_bars(
    path: &Path,
    title: &str,
    f1: &[(i64, f64)],
    names: ClassNames,
    bar: usize,
) -> Result<Canvas> {
    let bar_w = 420;
    let (x0, y0) = (MARGIN + LABEL_W, MARGIN + TITLE_H + 8);
    let w = x0 + bar_w + 70 + MARGIN;
    let h = y0 + f1.len() * bar + 40 + MARGIN;
    let mut c = Canvas::new(w, h);
    for (r, &(class, v)) in f1.iter().enumerate() {
        if v.is_finite() {
            let len = (v.clamp(0.0, 1.0) * bar_w as f64).round() as usize;
            c.fill((x0, y0 + r * bar + 2), (len, bar - 4), class_colour(class));
        }
    }
    c.draw(path, |root| {
        let black = [0, 0, 0];
        let grid = rgb([200, 200, 200]);
        root.draw_text(
            title,
            &font(18, black, HPos::Left, VPos::Top),
            (MARGIN as i32, MARGIN as i32),
        )?;
        let bottom = (y0 + f1.len() * bar) as i32;
        for i in 0..=5 {
            let x = (x0 + i * bar_w / 5) as i32;
            root.draw(&PathElement::new(vec![(x, y0 as i32), (x, bottom)], grid))?;
            root.draw_text(
                &format!("{:.1}", i as f64 / 5.0),
                &font(13, black, HPos::Center, VPos::Top),
                (x, bottom + 4),
            )?;
        }
        root.draw_text(
            "F1 score (test)",
            &font(14, black, HPos::Center, VPos::Top),
            ((x0 + bar_w / 2) as i32, bottom + 20),
        )?;
        for (r, &(class, v)) in f1.iter().enumerate() {
            let yc = (y0 + r * bar + bar / 2) as i32;
            root.draw_text(
                &names.label(class),
                &font(13, black, HPos::Left, VPos::Center),
                (MARGIN as i32, yc),
            )?;
            let (text, end) = if v.is_finite() {
                (
                    format!("{v:.2}"),
                    x0 + (v.clamp(0.0, 1.0) * bar_w as f64) as usize,
                )
            } else {
                ("n/a".to_string(), x0)
            };
            root.draw_text(
                &text,
                &font(12, black, HPos::Left, VPos::Center),
                (end as i32 + 5, yc),
            )?;
        }
        root.draw(&PathElement::new(
            vec![(x0 as i32, y0 as i32), (x0 as i32, bottom)],
            rgb(black),
        ))?;
        Ok(())
    })?;
    Ok(c)
}

/// Writes the per-class F1 bar chart (22-pixel rows) at `path`; the error names the file.
pub fn f1_bars_png(path: &Path, title: &str, f1: &[(i64, f64)], names: ClassNames) -> Result<()> {
    render_f1_bars(path, title, f1, names, 22)?.write_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_cells_are_row_shares() {
        // 3 classes, class 2 ignored: row 0 = (3, 1 | 5) → 75 %, 25 %; row 1 = (0, 4 | 0) → 0 %, 100 %.
        let counts = [3, 1, 5, 0, 4, 0, 7, 7, 7];
        let c = render_confusion(
            Path::new("conf_mat.png"),
            "Fold_1: test",
            &counts,
            3,
            Some(2),
            ClassNames::Pastis,
            30,
        )
        .unwrap();
        let w = (MARGIN + LABEL_W + 2 * 30 + TOTAL_W + MARGIN).max(2 * MARGIN + 360);
        let h = MARGIN + TITLE_H + HEADER_H + 2 * 30 + MARGIN;
        super::super::assert_readable("confusion matrix", &c, (w, h), MARGIN..MARGIN + TITLE_H);
        let (x0, y0) = (MARGIN + LABEL_W, MARGIN + TITLE_H + HEADER_H);
        // Cell corners (away from the value text): (1, 0) is 0 % → white, (1, 1) is 100 % → dark blue.
        assert_eq!(c.get(x0 + 2, y0 + 30 + 2), [255, 255, 255]);
        assert_eq!(c.get(x0 + 30 + 2, y0 + 30 + 2), DARK);
        assert_eq!(c.get(x0 + 2, y0 + 2), shade(0.75));
    }

    #[test]
    fn f1_bars_have_class_colours_and_text() {
        let f1 = [(0, 0.5), (1, 1.0), (2, f64::NAN)];
        let c = render_f1_bars(
            Path::new("f1.png"),
            "Fold_1: test F1",
            &f1,
            ClassNames::Numbered,
            20,
        )
        .unwrap();
        let (x0, y0) = (MARGIN + LABEL_W, MARGIN + TITLE_H + 8);
        let size = (x0 + 420 + 70 + MARGIN, y0 + 3 * 20 + 40 + MARGIN);
        super::super::assert_readable("F1 bars", &c, size, MARGIN..MARGIN + TITLE_H);
        // Row 1's bar (F1 = 1) runs the full width in class 1's colour.
        assert_eq!(c.get(x0 + 400, y0 + 20 + 10), class_colour(1));
    }
}
