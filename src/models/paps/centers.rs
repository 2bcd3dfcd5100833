//! Center extraction, boxes and the ragged layout of the instance masks (spec §6.3 steps 3, 5, 8, 9).
//!
//! **Centers.** In training with zones ("supmax"), for every sample and every zone id present, the pixel of
//! that zone with the highest heatmap value (the [`Tensor::segment_argmax`] op, ties to the first pixel in
//! row-major order, as torch_scatter's CPU scatter_max); every zone present yields one center, zone 0
//! included. Otherwise the local maxima: `heatmap == MaxPool3×3(heatmap)` (stride 1, padding that never wins;
//! exact float equality, so plateaus give several centers) **and** `heatmap > mean(heatmap)` where the mean is
//! over the **whole batch** (QUIRK: a sample's centers depend on the other samples of its batch). The mean is
//! computed in f64 from the f32 values and rounded to f32 (PyTorch's f32 sum may differ by an ulp).
//! Centers are enumerated in row-major (b, y, x) order (`torch.where`).
//!
//! **Boxes.** From the detached predicted size: `s = max(round_half_even(size), 1)` per axis, `half = s / 2`,
//! `start = center − half`, `stop = center + half + s mod 2`; the box is [start, stop) clamped to the image
//! (the original clamps both axes to H: identical on square patches), stored (x0, y0, x1, y1). The mask is
//! the part `valid_start = max(−start, 0) .. valid_stop = s − max(stop − H, 0)` of the shape resized to s.
//!
//! **Layout.** The masks of all centers are packed one after the other, grouped by crop size (h, w) so that
//! the mask CNN runs once per size; [`InstanceLayout`] maps center ↔ packed position.

use crate::engine::ops::paps::crop::Crop;
use crate::engine::ops::paps::segment_argmax::{Segments, NONE};
use crate::engine::Tensor;

/// One center: sample, row, column and confidence (the heatmap value there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Center {
    /// Sample.
    pub b: usize,
    /// Row.
    pub y: usize,
    /// Column.
    pub x: usize,
    /// Heatmap value at the center (f32).
    pub confidence: f32,
}

/// The center mask (B·H·W) and the centers of `heatmap` (B, 1, H, W): one per zone with `zones` (B·H·W zone
/// ids), the local maxima otherwise (module doc).
pub fn extract(heatmap: &Tensor, zones: Option<&[i64]>) -> (Vec<bool>, Vec<Center>) {
    let sh = heatmap.shape();
    let (b, h, w) = (sh[0], sh[2], sh[3]);
    let n = b * h * w;
    let values = heatmap.to_vec();
    let mut mask = vec![false; n];
    match zones {
        Some(z) => {
            assert_eq!(
                z.len(),
                n,
                "centers: expected {n} zone ids, got {}",
                z.len()
            );
            let keys: Vec<(usize, i64)> = (0..n).map(|i| (i / (h * w), z[i])).collect();
            let (seg, _) = Segments::group_by(&keys);
            for q in heatmap.segment_argmax(&seg) {
                if q != NONE {
                    mask[q as usize] = true;
                }
            }
        }
        None => {
            let pooled = heatmap.max_pool2d_same(3).to_vec();
            let mean = (values.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32;
            for i in 0..n {
                mask[i] = values[i] == pooled[i] && values[i] > mean;
            }
        }
    }
    let centers = (0..n)
        .filter(|&i| mask[i])
        .map(|i| Center {
            b: i / (h * w),
            y: (i / w) % h,
            x: i % w,
            confidence: values[i],
        })
        .collect();
    (mask, centers)
}

/// One instance's box and mask geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceBox {
    /// Sample.
    pub b: usize,
    /// Box (x0, y0, x1, y1), clamped to the image (the original's `instance_boxes`).
    pub xyxy: [usize; 4],
    /// Full (unclamped) box size (s_y, s_x).
    pub size: [usize; 2],
    /// The mask's first row and column inside the full box (`valid_start`).
    pub valid: [usize; 2],
}

impl InstanceBox {
    /// Rows of the clamped box.
    pub fn h(&self) -> usize {
        self.xyxy[3] - self.xyxy[1]
    }
    /// Columns of the clamped box.
    pub fn w(&self) -> usize {
        self.xyxy[2] - self.xyxy[0]
    }
}

/// A run of packed masks of one crop size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// Packed offset of the run.
    pub offset: usize,
    /// Masks in the run.
    pub count: usize,
    /// Rows of each.
    pub h: usize,
    /// Columns of each.
    pub w: usize,
}

/// Boxes of the M centers and where their masks lie in the packed vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLayout {
    /// Per center (center order).
    pub boxes: Vec<InstanceBox>,
    /// Packed position → center index (sorted by crop size (h, w), then center order).
    pub order: Vec<usize>,
    /// Per center: offset of its mask in the packed vector.
    pub offsets: Vec<usize>,
    /// Total packed length.
    pub total: usize,
}

/// Largest box side: beyond it the original would try to resize a shape to an image of more than 2^40 pixels
/// and run out of memory; a size that large (a diverged size head) is clamped here.
pub const MAX_SIDE: i64 = 1 << 20;

/// Round half to even of an f32, then clamped to ≥ 1 (`size.round().long().clamp_min(1)`; NaN → 1).
fn box_side(v: f32) -> i64 {
    (v.round_ties_even() as i64).clamp(1, MAX_SIDE)
}

impl InstanceLayout {
    /// Boxes from the centers and their predicted sizes (M·2 values, (height, width)), in an H × W image.
    pub fn new(centers: &[Center], size: &[f32], h: usize, w: usize) -> InstanceLayout {
        let boxes: Vec<InstanceBox> = centers
            .iter()
            .enumerate()
            .map(|(m, c)| {
                let (sy, sx) = (box_side(size[2 * m]), box_side(size[2 * m + 1]));
                let axis = |pos: usize, s: i64, lim: usize| {
                    let start = pos as i64 - s / 2;
                    let stop = pos as i64 + s / 2 + s % 2;
                    let lim = lim as i64;
                    let (a, b) = (start.clamp(0, lim), stop.clamp(0, lim));
                    (a as usize, b as usize, (-start).max(0) as usize)
                };
                let (y0, y1, vy) = axis(c.y, sy, h);
                let (x0, x1, vx) = axis(c.x, sx, w);
                InstanceBox {
                    b: c.b,
                    xyxy: [x0, y0, x1, y1],
                    size: [sy as usize, sx as usize],
                    valid: [vy, vx],
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by_key(|&m| (boxes[m].h(), boxes[m].w(), m));
        let mut offsets = vec![0; boxes.len()];
        let mut total = 0;
        for &m in &order {
            offsets[m] = total;
            total += boxes[m].h() * boxes[m].w();
        }
        InstanceLayout {
            boxes,
            order,
            offsets,
            total,
        }
    }

    /// Packed range of center m's mask.
    pub fn range(&self, m: usize) -> std::ops::Range<usize> {
        let b = &self.boxes[m];
        self.offsets[m]..self.offsets[m] + b.h() * b.w()
    }

    /// The resize-and-crop of every shape, in packed order (shapes reordered by `order`).
    pub fn shape_crops(&self) -> Vec<Crop> {
        self.order
            .iter()
            .enumerate()
            .map(|(k, &m)| {
                let b = &self.boxes[m];
                Crop {
                    src: k,
                    y0: b.valid[0],
                    x0: b.valid[1],
                    h: b.h(),
                    w: b.w(),
                    full_h: b.size[0],
                    full_w: b.size[1],
                }
            })
            .collect()
    }

    /// The saliency crop of every center (plane = sample), in packed order.
    pub fn saliency_crops(&self) -> Vec<Crop> {
        self.order
            .iter()
            .map(|&m| {
                let b = &self.boxes[m];
                Crop {
                    src: b.b,
                    y0: b.xyxy[1],
                    x0: b.xyxy[0],
                    h: b.h(),
                    w: b.w(),
                    full_h: 0,
                    full_w: 0,
                }
            })
            .collect()
    }

    /// Runs of equal crop size in packed order.
    pub fn groups(&self) -> Vec<Group> {
        let mut out: Vec<Group> = Vec::new();
        for &m in &self.order {
            let (h, w) = (self.boxes[m].h(), self.boxes[m].w());
            match out.last_mut() {
                Some(g) if g.h == h && g.w == w => g.count += 1,
                _ => out.push(Group {
                    offset: self.offsets[m],
                    count: 1,
                    h,
                    w,
                }),
            }
        }
        out
    }
}
