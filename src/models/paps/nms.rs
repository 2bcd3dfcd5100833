//! The pseudo non-maximum suppression (spec §6.3 step 10), on the host: per sample, candidates by decreasing
//! confidence; a candidate below the `min_confidence` buffer stops the sample (strict "<": equal passes); its
//! mask binarised at `mask_threshold` (strict ">") is skipped when empty (its rank still counts), pasted whole
//! when it overlaps nothing assigned, pasted on its new pixels only when the new fraction exceeds `min_remain`
//! (strict), and dropped otherwise. Instance ids are rank + 1 (not consecutive); the semantic map holds the
//! candidate's class scores on its pixels (zeros elsewhere, so argmax gives class 0). Every comparison is in
//! f32 as the original's tensors. Ties of confidence keep center order (a stable sort; PyTorch's CPU sort of
//! distinct values agrees). A sample with one candidate is a one-element list (the original crashes, §6.3).

use crate::models::paps::{Center, Heads};

/// The panoptic prediction of a batch (host arrays).
#[derive(Debug, Clone, PartialEq)]
pub struct Panoptic {
    /// (B, H, W) instance id per pixel (rank + 1; 0 = none), as the original's float map.
    pub instance: Vec<f32>,
    /// (B, K, H, W) class scores per pixel.
    pub semantic: Vec<f32>,
    /// [B, H, W].
    pub dims: [usize; 3],
    /// K.
    pub num_classes: usize,
}

impl Panoptic {
    /// The predicted class per pixel (B·H·W): the first maximum of the K scores (class 0 where none).
    pub fn classes(&self) -> Vec<usize> {
        let [b, h, w] = self.dims;
        let (k, hw) = (self.num_classes, h * w);
        let mut out = vec![0; b * hw];
        for s in 0..b {
            for p in 0..hw {
                let mut best = 0;
                for c in 1..k {
                    if self.semantic[(s * k + c) * hw + p] > self.semantic[(s * k + best) * hw + p]
                    {
                        best = c;
                    }
                }
                out[s * hw + p] = best;
            }
        }
        out
    }
}

/// Runs the pseudo-NMS over the centers' masks (read back from `heads`; empty maps without heads).
pub fn pseudo_nms(
    heads: Option<&Heads>,
    centers: &[Center],
    [b, h, w]: [usize; 3],
    k: usize,
    min_confidence: f32,
    min_remain: f32,
    mask_threshold: f32,
) -> Panoptic {
    let hw = h * w;
    let mut instance = vec![0.0f32; b * hw];
    let mut semantic = vec![0.0f32; b * k * hw];
    if let Some(heads) = heads {
        let masks = heads.masks.to_vec();
        let sem = heads.semantic.to_vec();
        let layout = &heads.layout;
        for s in 0..b {
            let mut cand: Vec<usize> = (0..centers.len()).filter(|&m| centers[m].b == s).collect();
            cand.sort_by(|&i, &j| {
                centers[j]
                    .confidence
                    .partial_cmp(&centers[i].confidence)
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let pano = &mut instance[s * hw..(s + 1) * hw];
            for (n, &m) in cand.iter().enumerate() {
                if centers[m].confidence < min_confidence {
                    break;
                }
                let bx = &layout.boxes[m];
                let [x0, y0, x1, y1] = bx.xyxy;
                let mask = &masks[layout.range(m)];
                let pixels: Vec<usize> = (y0..y1)
                    .flat_map(|y| (x0..x1).map(move |x| (y, x)))
                    .zip(mask)
                    .filter(|(_, &v)| v > mask_threshold)
                    .map(|((y, x), _)| y * w + x)
                    .collect();
                if pixels.is_empty() {
                    continue;
                }
                let new: Vec<usize> = pixels.iter().copied().filter(|&p| pano[p] == 0.0).collect();
                let keep = if new.len() < pixels.len() {
                    (new.len() as f32 / pixels.len() as f32) > min_remain
                } else {
                    true
                };
                if !keep {
                    continue;
                }
                for &p in &new {
                    pano[p] = (n + 1) as f32;
                    for c in 0..k {
                        semantic[(s * k + c) * hw + p] = sem[m * k + c];
                    }
                }
            }
        }
    }
    Panoptic {
        instance,
        semantic,
        dims: [b, h, w],
        num_classes: k,
    }
}
