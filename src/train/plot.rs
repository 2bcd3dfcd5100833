//! Training curves as a PNG (no plotting dependency: lines drawn into an RGB buffer, encoded with the `png`
//! crate). Left panel: loss per epoch (train blue, validation orange); right panel: mIoU per epoch (same
//! colours). Axes run from 0 to the maximum of each panel; grid lines every tenth of the range.

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
