//! Sliding windows and their blending for `sitsgpu map`: where the windows go ([`positions`]), how much each
//! counts at each of its pixels ([`weight_1d`]), the row-band accumulator that sums weighted logits and
//! writes rows once final ([`Accumulator`]), and the PNG preview with a class legend ([`Preview`]).

use std::collections::VecDeque;
use std::path::Path;

use crate::data::geotiff::writer::TiledWriter;
use crate::engine::Result;
use crate::train::plot;

/// Window starts along an axis of `n` pixels: every `stride` from 0, the last moved back to end at `n`
/// (one window at 0 when `n <= p`: the scene is padded past its edge).
pub fn positions(n: usize, p: usize, stride: usize) -> Vec<usize> {
    if n <= p {
        return vec![0];
    }
    let mut v: Vec<usize> = (0..)
        .map(|k| k * stride)
        .take_while(|&s| s + p < n)
        .collect();
    v.push(n - p);
    v.dedup();
    v
}

/// Weight of pixel `u` (0..p) of window `k` along an axis with window starts `pos`: 1, ramping linearly
/// towards a side where the neighbouring window overlaps by `ov` pixels, `(d + 1) / (ov + 1)` at distance
/// `d` from that side, so never 0; 1 up to a scene edge. Exactly 1 wherever no other window reaches.
pub fn weight_1d(pos: &[usize], k: usize, p: usize, u: usize) -> f32 {
    let mut w = 1.0f32;
    if k > 0 {
        let ov = (pos[k - 1] + p).saturating_sub(pos[k]);
        if u < ov {
            w = w.min((u + 1) as f32 / (ov + 1) as f32);
        }
    }
    if k + 1 < pos.len() {
        let ov = (pos[k] + p).saturating_sub(pos[k + 1]);
        if u + ov >= p {
            w = w.min((p - u) as f32 / (ov + 1) as f32);
        }
    }
    w
}

/// U-TAE's attention of window `i` of a batch, `a` of shape (heads, B, T_batch, h, w), as (heads · n_dates,
/// p, p): nearest upsampling to the window, each kept date at its scene index, 0 for the others.
pub fn attention_full(
    a: &[f32],
    shape: &[usize],
    i: usize,
    kept: &[usize],
    n_dates: usize,
    p: usize,
) -> Vec<f32> {
    let (heads, b, t, ah, aw) = (shape[0], shape[1], shape[2], shape[3], shape[4]);
    let mut out = vec![0.0f32; heads * n_dates * p * p];
    for hd in 0..heads {
        for (tk, &ts) in kept.iter().enumerate().take(t) {
            let src = &a[((hd * b + i) * t + tk) * ah * aw..][..ah * aw];
            let dst = &mut out[(hd * n_dates + ts) * p * p..][..p * p];
            for y in 0..p {
                for x in 0..p {
                    dst[y * p + x] = src[(y * ah / p) * aw + x * aw / p];
                }
            }
        }
    }
    out
}

/// One scene row being summed: channels (classes, then extras) × width, the summed weights, validity.
struct Row {
    vals: Vec<f32>,
    wsum: Vec<f32>,
    valid: Vec<bool>,
}

/// Weighted sums of window outputs over a band of rows `[row0, row1)` of a scene `width` wide, written out
/// one row of tiles at a time as rows become final.
pub struct Accumulator {
    width: usize,
    row1: usize,
    classes: usize,
    extra: usize,
    ys: Vec<usize>,
    xs: Vec<usize>,
    p: usize,
    /// Scene row of `rows[0]`.
    first: usize,
    rows: VecDeque<Row>,
}

impl Accumulator {
    /// An accumulator for output rows `row0..row1` (scene rows), `classes` logits and `extra` other
    /// channels, windows at `ys` × `xs` of side `p`.
    pub fn new(
        width: usize,
        row0: usize,
        row1: usize,
        classes: usize,
        extra: usize,
        (ys, xs): (&[usize], &[usize]),
        p: usize,
    ) -> Accumulator {
        Accumulator {
            width,
            row1,
            classes,
            extra,
            ys: ys.to_vec(),
            xs: xs.to_vec(),
            p,
            first: row0,
            rows: VecDeque::new(),
        }
    }

    /// Adds window (y, x)'s logits (classes, p, p), extras (extra, p, p) and valid mask (p, p).
    pub fn add(
        &mut self,
        y: usize,
        x: usize,
        logits: &[f32],
        extras: Option<&[f32]>,
        valid: &[bool],
    ) {
        let (p, ch) = (self.p, self.classes + self.extra);
        let ky = self.ys.binary_search(&y).unwrap_or(0);
        let kx = self.xs.binary_search(&x).unwrap_or(0);
        let wx: Vec<f32> = (0..p).map(|u| weight_1d(&self.xs, kx, p, u)).collect();
        for v in 0..p {
            let r = y + v;
            if r < self.first || r >= self.row1 {
                continue;
            }
            while self.first + self.rows.len() <= r {
                self.rows.push_back(Row {
                    vals: vec![0.0; ch * self.width],
                    wsum: vec![0.0; self.width],
                    valid: vec![false; self.width],
                });
            }
            let wy = weight_1d(&self.ys, ky, p, v);
            let row = &mut self.rows[r - self.first];
            for u in 0..p.min(self.width - x) {
                let c = x + u;
                let wgt = wy * wx[u];
                row.wsum[c] += wgt;
                row.valid[c] |= valid[v * p + u];
                for k in 0..self.classes {
                    row.vals[k * self.width + c] += wgt * logits[(k * p + v) * p + u];
                }
                if let Some(e) = extras {
                    for k in 0..self.extra {
                        row.vals[(self.classes + k) * self.width + c] +=
                            wgt * e[(k * p + v) * p + u];
                    }
                }
            }
        }
    }

    /// Writes every whole row of tiles above scene row `final_row` (all rows at the end).
    pub fn flush(
        &mut self,
        final_row: usize,
        classes_out: &mut TiledWriter,
        mut probs_out: Option<&mut TiledWriter>,
        mut extra_out: Option<&mut TiledWriter>,
        preview: &mut Preview,
    ) -> Result<()> {
        let final_row = final_row.min(self.row1);
        loop {
            let n = classes_out.next_rows();
            if n == 0 || self.first + n > final_row {
                return Ok(());
            }
            let (w, k) = (self.width, self.classes);
            let mut cls = vec![255.0f32; n * w];
            let mut probs = vec![0.0f32; if probs_out.is_some() { k * n * w } else { 0 }];
            let mut extra = vec![
                0.0f32;
                if extra_out.is_some() {
                    self.extra * n * w
                } else {
                    0
                }
            ];
            for v in 0..n {
                let row = self.rows.pop_front();
                let Some(row) = row else { continue };
                for c in 0..w {
                    let ws = row.wsum[c];
                    if ws <= 0.0 {
                        continue;
                    }
                    let mut best = 0;
                    let mut m = f32::NEG_INFINITY;
                    let logit = |j: usize| row.vals[j * w + c] / ws;
                    for j in 0..k {
                        if logit(j) > m {
                            m = logit(j);
                            best = j;
                        }
                    }
                    if row.valid[c] {
                        cls[v * w + c] = best as f32;
                    }
                    if !probs.is_empty() {
                        let z: f32 = (0..k).map(|j| (logit(j) - m).exp()).sum();
                        for j in 0..k {
                            probs[(j * n + v) * w + c] = (logit(j) - m).exp() / z;
                        }
                    }
                    for j in 0..extra.len() / (n * w) {
                        extra[(j * n + v) * w + c] = row.vals[(k + j) * w + c] / ws;
                    }
                }
            }
            preview.add_rows(&cls, n);
            classes_out.write_tile_row(&cls)?;
            if let Some(o) = probs_out.as_deref_mut() {
                o.write_tile_row(&probs)?;
            }
            if let Some(o) = extra_out.as_deref_mut() {
                o.write_tile_row(&extra)?;
            }
            self.first += n;
        }
    }
}

/// A downsampled class map (at most 1024 pixels a side) drawn as a PNG with a legend.
pub struct Preview {
    width: usize,
    step: usize,
    pw: usize,
    px: Vec<u8>,
    row: usize,
}

impl Preview {
    /// A preview of a `width` × `height` map.
    pub fn new(width: usize, height: usize) -> Preview {
        let step = width.max(height).div_ceil(1024).max(1);
        Preview {
            width,
            step,
            pw: width.div_ceil(step),
            px: Vec::new(),
            row: 0,
        }
    }

    /// Adds the next `n` rows of classes (255 = nodata).
    pub fn add_rows(&mut self, cls: &[f32], n: usize) {
        for v in 0..n {
            if (self.row + v).is_multiple_of(self.step) {
                self.px
                    .extend((0..self.pw).map(|i| cls[v * self.width + i * self.step] as u8));
            }
        }
        self.row += n;
    }

    /// Writes the PNG: the map in the classes' colours (the palette of every picture, [`plot::palette`];
    /// nodata grey), titled, with a legend of the classes present and their PASTIS names
    /// ([`plot::maps::figure_png`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        let ph = self.px.len() / self.pw.max(1);
        let mut present: Vec<i64> = self
            .px
            .iter()
            .filter(|&&c| c != 255)
            .map(|&c| c as i64)
            .collect();
        present.sort_unstable();
        present.dedup();
        let pixels = self
            .px
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if c == 255 {
                    [128, 128, 128]
                } else {
                    plot::maps::class_pixel(c as i64, i % self.pw.max(1), i / self.pw.max(1))
                }
            })
            .collect();
        let title = if self.step > 1 {
            format!(
                "class map (1 preview pixel = {0} × {0} map pixels)",
                self.step
            )
        } else {
            "class map".to_string()
        };
        let fig = plot::maps::Figure {
            title: "sitsgpu map".into(),
            panels: vec![plot::maps::Panel { title, pixels }],
            panel_size: (self.pw, ph),
            legend: present,
            names: plot::ClassNames::Pastis,
        };
        plot::maps::figure_png(path, &fig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_cover_the_axis_and_end_at_its_edge() {
        assert_eq!(positions(100, 128, 96), vec![0]);
        assert_eq!(positions(128, 128, 96), vec![0]);
        assert_eq!(positions(300, 128, 96), vec![0, 96, 172]);
        assert_eq!(positions(320, 128, 96), vec![0, 96, 192]);
    }

    #[test]
    fn weights_are_one_in_the_core_and_positive_in_overlaps() {
        let pos = positions(320, 128, 96);
        for k in 0..pos.len() {
            for u in 0..128 {
                let w = weight_1d(&pos, k, 128, u);
                assert!(w > 0.0 && w <= 1.0);
                // Covered by this window only: exactly 1.
                let others = (0..pos.len())
                    .any(|j| j != k && pos[j] <= pos[k] + u && pos[k] + u < pos[j] + 128);
                if !others {
                    assert_eq!(w, 1.0, "k {k} u {u}");
                }
            }
        }
        // Symmetric ramps: the two windows of an overlap weigh 1/33 .. 32/33.
        assert_eq!(weight_1d(&pos, 1, 128, 0), 1.0 / 33.0);
        assert_eq!(weight_1d(&pos, 0, 128, 127), 1.0 / 33.0);
    }
}
