//! One picture per patch in the style of the U-TAE paper's Fig. 5, drawn as a [`plot::maps`] figure:
//!
//! ```text
//!   patch 10000: PQ 45.3 % (SQ 80.1, RQ 56.6)
//!   input RGB, 2019-05-12 | ground-truth parcels | predicted parcels | legend of the classes present
//! ```
//!
//! - RGB: the patch's composite (3, H, W) drawn by [`plot::rgb_colours`] (each channel stretched between its
//!   2nd and 98th percentiles), e.g. the middle date of the normalised input ([`middle_date_rgb`]);
//! - parcels: every pixel filled with the colour of its class ([`plot::class_colour`]: background 0 black);
//!   void pixels (class 19) hatched grey ([`VOID_FILL`] with diagonal [`VOID_HATCH`] lines); every pixel of an
//!   instance (id ≠ 0) whose neighbour across a side (up, down, left, right, or the image border) belongs to
//!   another id is outlined in [`OUTLINE`] white. Each map pixel is a `scale` × `scale` block and the outline
//!   is drawn on the block's sides facing the other id, one output pixel thick, so the interior keeps the class
//!   colour;
//! - without ground truth (a folder without annotations) there is no ground-truth panel and no PQ.
//!
//! [`middle_date_rgb`]: crate::train::semantic::predict::middle_date_rgb
//! [`VOID_FILL`]: plot::palette::VOID_FILL
//! [`VOID_HATCH`]: plot::palette::VOID_HATCH

use std::path::Path;

use crate::data::pastis::Date;
use crate::engine::Result;
use crate::train::panoptic::meter::PanopticMeter;
use crate::train::plot;
use crate::train::plot::maps::{class_pixel, classes_present, scale_for, upscale, Figure, Panel};
use crate::train::plot::ClassNames;
use crate::train::semantic::predict::rgb_title;

/// Colour of the instance outlines.
pub const OUTLINE: [u8; 3] = [255, 255, 255];

/// The parcels of one map, both (H, W) row-major: instance ids (0 = none) and pixel classes.
#[derive(Debug, Clone, Copy)]
pub struct Parcels<'a> {
    /// Instance ids (`pano_instance`, or INSTANCES / target channel 1).
    pub instance: &'a [i64],
    /// Classes (argmax of `pano_semantic`, or TARGET channel 0 / target channel 6).
    pub semantic: &'a [i64],
}

/// The parcels panel at `scale`: (H·scale, W·scale) output pixels (see the module doc).
pub fn parcels_pixels(p: Parcels, h: usize, w: usize, scale: usize) -> Vec<[u8; 3]> {
    let pw = w * scale;
    (0..h * scale * pw)
        .map(|i| parcel_pixel(p, h, w, scale, i % pw, i / pw))
        .collect()
}

/// The colour of output pixel (x, y) of a parcels panel (see the module doc).
fn parcel_pixel(p: Parcels, h: usize, w: usize, scale: usize, x: usize, y: usize) -> [u8; 3] {
    let (my, mx) = (y / scale, x / scale);
    let id = p.instance[my * w + mx];
    if id != 0 {
        let other = |yy: Option<usize>, xx: Option<usize>| match (yy, xx) {
            (Some(yy), Some(xx)) if yy < h && xx < w => p.instance[yy * w + xx] != id,
            _ => true, // the image border
        };
        let (sy, sx) = (y % scale, x % scale);
        let edge = (sy == 0 && other(my.checked_sub(1), Some(mx)))
            || (sy == scale - 1 && other(Some(my + 1), Some(mx)))
            || (sx == 0 && other(Some(my), mx.checked_sub(1)))
            || (sx == scale - 1 && other(Some(my), Some(mx + 1)));
        if edge {
            return OUTLINE;
        }
    }
    class_pixel(p.semantic[my * w + mx], x, y)
}

/// The figure of one patch: `rgb` (3, H, W) any range, its `date`, the ground truth when there is one and the
/// prediction; the title gives the patch's PQ (SQ, RQ), in percent, from a [`PanopticMeter`] over this patch
/// alone. Panics when a slice does not hold H·W values (3·H·W for `rgb`).
pub fn figure(
    id: u64,
    rgb: &[f32],
    date: Option<Date>,
    truth: Option<Parcels>,
    pred: Parcels,
    (h, w): (usize, usize),
) -> Figure {
    assert_eq!(
        rgb.len(),
        3 * h * w,
        "panoptic picture: rgb must be (3, H, W) = (3, {h}, {w})"
    );
    for (name, p) in [("truth", truth), ("prediction", Some(pred))] {
        if let Some(p) = p {
            assert!(
                p.instance.len() == h * w && p.semantic.len() == h * w,
                "panoptic picture: {name} maps must be (H, W) = ({h}, {w}), got {} ids and {} classes",
                p.instance.len(),
                p.semantic.len()
            );
        }
    }
    let scale = scale_for(h, w);
    let mut panels = vec![Panel {
        title: rgb_title(date),
        pixels: upscale(&plot::rgb_colours(rgb, h, w), h, w, scale),
    }];
    let title = match truth {
        Some(t) => {
            panels.push(Panel {
                title: "ground-truth parcels".into(),
                pixels: parcels_pixels(t, h, w, scale),
            });
            let mut meter = PanopticMeter::pastis();
            meter.add(
                [1, h, w],
                pred.instance,
                pred.semantic,
                t.instance,
                t.semantic,
            );
            let v = meter.value();
            if v.pq.is_nan() {
                format!("patch {id}: no parcel to score (PQ undefined)")
            } else {
                format!(
                    "patch {id}: PQ {:.1} % (SQ {:.1}, RQ {:.1})",
                    100.0 * v.pq,
                    100.0 * v.sq,
                    100.0 * v.rq
                )
            }
        }
        None => format!("patch {id}: predicted parcels (no ground truth in this folder)"),
    };
    panels.push(Panel {
        title: "predicted parcels".into(),
        pixels: parcels_pixels(pred, h, w, scale),
    });
    Figure {
        title,
        panels,
        panel_size: (w * scale, h * scale),
        legend: classes_present(truth.map(|t| t.semantic).into_iter().chain([pred.semantic])),
        names: ClassNames::Pastis,
    }
}

/// Writes the picture of [`figure`] as an 8-bit RGB PNG at `path`; the error names the file.
pub fn panoptic_png(
    path: &Path,
    id: u64,
    rgb: &[f32],
    date: Option<Date>,
    truth: Option<Parcels>,
    pred: Parcels,
    hw: (usize, usize),
) -> Result<()> {
    plot::maps::figure_png(path, &figure(id, rgb, date, truth, pred, hw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::plot::maps::{figure_size, panel_origin, render_figure};
    use crate::train::plot::palette::{VOID_FILL, VOID_HATCH};

    /// 4 × 4 maps (scale 96: panels of 384 × 384 output pixels).
    /// ```text
    ///   truth ids      truth classes    predicted ids    predicted classes
    ///   1 1 0 0        3 3 0 0          5 5 5 0          3 3 3 0
    ///   1 1 0 0        3 3 0 0          5 5 5 0          3 3 3 0
    ///   2 2 0 0       19 19 0 0         0 0 0 0          0 0 0 0
    ///   2 2 0 0       19 19 0 0         0 0 0 0          0 0 0 0
    /// ```
    /// RGB: channel 0 = 0..15 (pixel index), channels 1 and 2 = 0; with 16 values the 2nd and 98th percentiles
    /// are items 16·2/100 = 0 and 16·98/100 = 15, so red = (i − 0) / 15 · 255: pixel 0 → 0, pixel 15 → 255.
    #[test]
    fn picture_colours_outlines_title_and_png_round_trip() {
        let (h, w) = (4, 4);
        let s = scale_for(h, w);
        assert_eq!(s, 96);
        let mut rgb = vec![0f32; 3 * 16];
        for (i, v) in rgb[..16].iter_mut().enumerate() {
            *v = i as f32;
        }
        let ti = [1, 1, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0];
        let ts = [3, 3, 0, 0, 3, 3, 0, 0, 19, 19, 0, 0, 19, 19, 0, 0];
        let pi = [5, 5, 5, 0, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let ps = [3, 3, 3, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let truth = Parcels {
            instance: &ti,
            semantic: &ts,
        };
        let pred = Parcels {
            instance: &pi,
            semantic: &ps,
        };
        let fig = figure(12, &rgb, Date::new(2019, 5, 12), Some(truth), pred, (h, w));
        // Instance 5 (6 pixels) against instance 1 (4 pixels) of class 3: IoU 4/6 ≤ 0.5? No: 4 / 6 = 0.667 >
        // 0.5 → one TP of class 3, SQ 66.7; class 3 RQ = 1 / (1 + 0 + 0) = 1 → PQ 66.7 (the void parcel 2 is
        // not scored).
        assert_eq!(fig.title, "patch 12: PQ 66.7 % (SQ 66.7, RQ 100.0)");
        assert_eq!(fig.panels[0].title, "input RGB, 2019-05-12");
        assert_eq!(fig.legend, vec![0, 3, 19]);
        let path = std::path::PathBuf::from("panoptic_12.png");
        let c = render_figure(&path, &fig).unwrap();
        plot::assert_readable("panoptic picture", &c, figure_size(&fig), 12..46);
        let at = |panel: usize, x: usize, y: usize| -> [u8; 3] {
            let (x0, y0) = panel_origin(&fig, panel);
            c.get(x0 + x, y0 + y)
        };
        // RGB panel: map pixel 0 is black, map pixel 15 (the bottom-right block) pure red.
        assert_eq!(at(0, 10, 10), [0, 0, 0]);
        assert_eq!(at(0, 380, 380), [255, 0, 0]);
        // Truth: instance 1 occupies map (0..2, 0..2) = output (0..192, 0..192); inside → class 3 colour.
        assert_eq!(at(1, 50, 50), plot::class_colour(3));
        // Left side of map pixel (0, 0) = the image border → outline; right side of map pixel (0, 1) (output
        // x = 191) faces background → outline; bottom side (output y = 191) faces instance 2 → outline.
        assert_eq!(at(1, 0, 50), OUTLINE);
        assert_eq!(at(1, 191, 50), OUTLINE);
        assert_eq!(at(1, 50, 191), OUTLINE);
        // Background (id 0, class 0) is black, never outlined: output (200, 50) is map pixel (0, 2).
        assert_eq!(at(1, 200, 50), [0, 0, 0]);
        // Void instance 2 (map rows 2-3): (x + y) divisible by 4 → hatch, otherwise fill.
        assert_eq!(at(1, 51, 250), VOID_FILL);
        assert_eq!(at(1, 50, 254), VOID_HATCH);
        // Prediction: instance 5 over map columns 0-2; output x = 191 is now inside, x = 287 its right side.
        assert_eq!(at(2, 191, 50), plot::class_colour(3));
        assert_eq!(at(2, 287, 50), OUTLINE);

        // Without ground truth: two panels, no PQ; the PNG decodes to the figure's size.
        let dir = std::env::temp_dir().join(format!("sitsgpu_pano_pic_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("panoptic_12.png");
        panoptic_png(&path, 12, &rgb, None, None, pred, (h, w)).unwrap();
        let fig = figure(12, &rgb, None, None, pred, (h, w));
        assert_eq!(fig.panels.len(), 2);
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!(
            (info.width as usize, info.height as usize),
            figure_size(&fig)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
