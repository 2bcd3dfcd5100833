//! Pictures as PNG (no plotting dependency: pixels drawn into an RGB buffer, encoded with the `png` crate):
//! - training curves: left panel loss per epoch (train blue, validation orange), right panel mIoU per epoch
//!   (same colours); axes from 0 to each panel's maximum, grid lines every tenth of the range;
//! - class maps in the official PASTIS colours (spec §1.7), and input RGB | ground truth | prediction grids.

use std::path::Path;

use serde_json::{Map, Value};

use crate::engine::{Error, Result};

const W: usize = 800;
const H: usize = 320;
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = 3 * (y as usize * W + x as usize);
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (
                (x0 + t * (x1 - x0)).round() as i64,
                (y0 + t * (y1 - y0)).round() as i64,
            );
            for d in 0..2 {
                self.set(x, y + d, c);
            }
        }
    }
}

/// Draws series (epoch, value) into the panel whose left edge is `left`.
/// A series of (epoch, value) points and its colour.
type Series = (Vec<(f64, f64)>, [u8; 3]);

fn panel(cv: &mut Canvas, left: usize, series: &[Series]) {
    let (x0, x1, y0, y1) = (
        left as f64 + 30.0,
        left as f64 + 370.0,
        H as f64 - 30.0,
        20.0,
    );
    let max_x = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_y = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(1e-9f64, f64::max);
    for g in 0..=10 {
        let y = y0 + (y1 - y0) * g as f64 / 10.0;
        cv.line((x0, y), (x1, y), [225, 225, 225]);
    }
    cv.line((x0, y0), (x1, y0), [0, 0, 0]);
    cv.line((x0, y0), (x0, y1), [0, 0, 0]);
    for (s, c) in series {
        let pts: Vec<(f64, f64)> = s
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(e, v)| (x0 + (x1 - x0) * e / max_x, y0 + (y1 - y0) * v / max_y))
            .collect();
        for w in pts.windows(2) {
            cv.line(w[0], w[1], *c);
        }
        for &p in &pts {
            for dx in -2..=2 {
                for dy in -2..=2 {
                    cv.set(p.0 as i64 + dx, p.1 as i64 + dy, *c);
                }
            }
        }
    }
}

/// Writes the curves of a trainlog ({epoch: {train_loss, val_loss, train_IoU, val_IoU, …}}) to `path`.
pub fn training_curves(path: &Path, trainlog: &Map<String, Value>) -> Result<()> {
    let mut epochs: Vec<(f64, &Value)> = trainlog
        .iter()
        .filter_map(|(k, v)| k.parse::<f64>().ok().map(|e| (e, v)))
        .collect();
    epochs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let series = |key: &str| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|(e, v)| v.get(key).and_then(Value::as_f64).map(|x| (*e, x)))
            .collect()
    };
    let mut cv = Canvas {
        px: vec![255; W * H * 3],
    };
    panel(
        &mut cv,
        0,
        &[(series("train_loss"), BLUE), (series("val_loss"), ORANGE)],
    );
    panel(
        &mut cv,
        400,
        &[(series("train_IoU"), BLUE), (series("val_IoU"), ORANGE)],
    );
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| Error::io(path, e))?;
    w.write_image_data(&cv.px).map_err(|e| Error::io(path, e))
}

/// matplotlib's `tab20` colours (RGB).
const TAB20: [[u8; 3]; 20] = [
    [31, 119, 180],
    [174, 199, 232],
    [255, 127, 14],
    [255, 187, 120],
    [44, 160, 44],
    [152, 223, 138],
    [214, 39, 40],
    [255, 152, 150],
    [148, 103, 189],
    [197, 176, 213],
    [140, 86, 75],
    [196, 156, 148],
    [227, 119, 194],
    [247, 182, 210],
    [127, 127, 127],
    [199, 199, 199],
    [188, 189, 34],
    [219, 219, 141],
    [23, 190, 207],
    [158, 218, 229],
];

/// The official PASTIS colour of a class (spec §1.7): 0 black, 1..18 `tab20` colours 1..18, 19 white.
pub fn class_colour(c: i64) -> [u8; 3] {
    match c {
        0 => [0, 0, 0],
        1..=18 => TAB20[c as usize],
        _ => [255, 255, 255],
    }
}

/// Writes `px` (H × W × 3 bytes, row-major RGB) as an 8-bit RGB PNG of width `w` and height `h`.
pub fn write_rgb(path: &Path, w: usize, h: usize, px: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(|e| Error::io(path, e))?;
    wr.write_image_data(px).map_err(|e| Error::io(path, e))
}

/// A class map (H × W) as a PNG in the official colours, each pixel drawn as a `scale` × `scale` block.
pub fn class_map_png(path: &Path, classes: &[i64], h: usize, w: usize, scale: usize) -> Result<()> {
    let (ww, hh) = (w * scale, h * scale);
    let mut px = vec![0u8; ww * hh * 3];
    for y in 0..hh {
        for x in 0..ww {
            let c = class_colour(classes[(y / scale) * w + x / scale]);
            px[3 * (y * ww + x)..3 * (y * ww + x) + 3].copy_from_slice(&c);
        }
    }
    write_rgb(path, ww, hh, &px)
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

/// Input RGB | ground truth | prediction, side by side. `rgb` (3, H, W) any range, drawn by [`rgb_colours`].
/// `truth` may be absent (the panel is then grey).
pub fn grid_png(
    path: &Path,
    rgb: &[f32],
    truth: Option<&[i64]>,
    pred: &[i64],
    h: usize,
    w: usize,
    scale: usize,
) -> Result<()> {
    let (pw, ph) = (w * scale, h * scale);
    let ww = 3 * pw + 2 * 4;
    let mut px = vec![255u8; ww * ph * 3];
    let rgb = rgb_colours(rgb, h, w);
    for y in 0..ph {
        for x in 0..pw {
            let i = (y / scale) * w + x / scale;
            let panels = [
                rgb[i],
                truth.map(|t| class_colour(t[i])).unwrap_or([128, 128, 128]),
                class_colour(pred[i]),
            ];
            for (k, col) in panels.iter().enumerate() {
                let xx = k * (pw + 4) + x;
                px[3 * (y * ww + xx)..3 * (y * ww + xx) + 3].copy_from_slice(col);
            }
        }
    }
    write_rgb(path, ww, ph, &px)
}
