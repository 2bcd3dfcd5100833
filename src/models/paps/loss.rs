//! `PaPsLoss` (spec §6.4): centerness (CornerNet, α = 0, β), relative-L1 size, class cross-entropy without
//! void, and the shape loss's closed form, summed with weights `l_*`, from the instance target (B, H, W, 7):
//! heatmap, instance id, zone id, size (2), object class, pixel class.
//!
//! - centerness over all B·H·W pixels, always computed (warm-up too): `−(Σ_pos log(p + ε) +
//!   Σ_neg (1 − g)^β log(1 − p + ε)) / N_pos` (positives: target exactly 1.0; without any, `−Σ_neg`);
//! - size, class and shape only after warm-up and with centers: size = mean over centers of the summed
//!   relative L1 of (h, w) against the target at the center pixel; class = mean cross-entropy of the centers
//!   whose object class is not void; shape = mean over the collected pixels of softplus((1 − 2p)(2y − 1)),
//!   collected per sample for every instance id present (0 included, sorted) and every center in the zone of
//!   that id, the true mask (instance == id) cropped to the center's box;
//!   QUIRK (aliasing, spec §6.4): the original appends its target as `true_mask[y0:y1, x0:x1].reshape(-1, 1)`
//!   and then zeroes that box of `true_mask` in place to count the true pixels outside it; `reshape` returns a
//!   view whenever the crop is contiguous — a box one row high, one column wide, or spanning the full width —
//!   so such boxes are supervised as all-background (y = 0 on every pixel), whatever the instance holds.
//!   With the official initialisation nearly every box starts 1 × 1, so this decides the first steps;
//! - side products for the threshold tuning (§6.6): per collected center its confidence and the IoU of its
//!   mask > 0.4 with the true instance, where the union also counts the true pixels outside the box.
//!
//! Where the original would produce NaN or crash the term is 0 instead: every center void (the class mean of
//! an empty set), no collected center (an empty concatenation). The terms are the `paps_loss_terms` op.

use crate::engine::ops::paps::paps_loss::Term;
use crate::engine::{no_grad, Tensor};
use crate::models::paps::PapsOutput;

/// Channels of the instance target (spec §1.10).
pub const TARGET_CHANNELS: usize = 7;

/// `PaPsLoss`' parameters (train_panoptic.py's flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PapsLossConfig {
    /// Weight of the centerness loss.
    pub l_center: f32,
    /// Weight of the size loss.
    pub l_size: f32,
    /// Weight of the shape loss.
    pub l_shape: f32,
    /// Weight of the class loss.
    pub l_class: f32,
    /// β of the centerness loss.
    pub beta: f32,
    /// Void class, ignored by the class loss.
    pub void_label: i64,
    /// Binary threshold of the IoU side product.
    pub binary_threshold: f32,
}

impl Default for PapsLossConfig {
    fn default() -> Self {
        PapsLossConfig {
            l_center: 1.0,
            l_size: 1.0,
            l_shape: 1.0,
            l_class: 1.0,
            beta: 4.0,
            void_label: 19,
            binary_threshold: 0.4,
        }
    }
}

/// ε of every term.
pub const EPS: f32 = 1e-8;

/// The loss and its parts.
pub struct PapsLossValue {
    /// The weighted sum (one element, differentiable).
    pub total: Tensor,
    /// Centerness, size, shape, class values (0 when not computed), as the original's `criterion.value`.
    pub parts: [f32; 4],
    /// Confidence of each collected center (tuning).
    pub confidences: Vec<f32>,
    /// IoU of each collected center's mask with its instance (tuning).
    pub ious: Vec<f32>,
}

/// The loss of `out` against the instance target `target` (B·H·W·7).
pub fn paps_loss(out: &PapsOutput, target: &[f32], cfg: &PapsLossConfig) -> PapsLossValue {
    let sh = out.heatmap.shape();
    let (b, h, w) = (sh[0], sh[2], sh[3]);
    let (n, hw) = (b * h * w, h * w);
    assert_eq!(
        target.len(),
        n * TARGET_CHANNELS,
        "paps_loss: expected a ({b}, {h}, {w}, 7) target, got {} values",
        target.len()
    );
    let ch = |p: usize, c: usize| target[p * TARGET_CHANNELS + c];
    let dev = out.heatmap.device();
    let mut parts = [0.0f32; 4];
    let (mut confidences, mut ious) = (Vec::new(), Vec::new());

    // Centerness.
    let mut a = vec![0.0f32; n];
    let mut n_pos = 0usize;
    for (p, ap) in a.iter_mut().enumerate() {
        let g = ch(p, 0);
        if g == 1.0 {
            *ap = -1.0;
            n_pos += 1;
        } else if g < 1.0 {
            *ap = ((1.0f32 - g) as f64).powf(cfg.beta as f64) as f32;
        }
    }
    let a = Tensor::from_vec(a, sh, dev);
    let sum = out.heatmap.paps_loss_terms(Term::Center, &a, EPS).sum_all();
    let center = sum.mul_scalar(-1.0 / n_pos.max(1) as f32);
    parts[0] = center.item();
    let mut total = center.mul_scalar(cfg.l_center);

    if let Some(heads) = &out.heads {
        let m = out.centers.len();
        let pix: Vec<usize> = out
            .centers
            .iter()
            .map(|c| (c.b * h + c.y) * w + c.x)
            .collect();
        // Size.
        if cfg.l_size != 0.0 {
            let t: Vec<f32> = pix.iter().flat_map(|&p| [ch(p, 3), ch(p, 4)]).collect();
            let t = Tensor::from_vec(t, &[m, 2], dev);
            let size = heads.size.paps_loss_terms(Term::Size, &t, EPS).sum_all();
            let size = size.mul_scalar(1.0 / m as f32);
            parts[1] = size.item();
            total = &total + &size.mul_scalar(cfg.l_size);
        }
        // Shape.
        if cfg.l_shape != 0.0 {
            let masks = no_grad(|| heads.masks.to_vec());
            let mut sign = vec![0.0f32; heads.layout.total];
            let mut collected = 0usize;
            let center_at: std::collections::HashMap<usize, usize> =
                pix.iter().enumerate().map(|(m, &p)| (p, m)).collect();
            for s in 0..b {
                let inst = |p: usize| ch(s * hw + p, 1);
                let mut ids: Vec<f32> = (0..hw).map(inst).collect();
                ids.sort_by(|x, y| x.total_cmp(y));
                ids.dedup();
                for id in ids {
                    for p in 0..hw {
                        let Some(&m) = center_at.get(&(s * hw + p)) else {
                            continue;
                        };
                        if ch(s * hw + p, 2) != id {
                            continue;
                        }
                        let bx = &heads.layout.boxes[m];
                        let [x0, y0, x1, y1] = bx.xyxy;
                        let range = heads.layout.range(m);
                        // The original's aliasing quirk (module doc): these boxes are supervised as
                        // all-background.
                        let aliased = bx.h() == 1 || bx.w() == 1 || bx.w() == w;
                        let (mut inter, mut union, mut inside_true) = (0usize, 0usize, 0usize);
                        for (k, (yy, xx)) in (y0..y1)
                            .flat_map(|y| (x0..x1).map(move |x| (y, x)))
                            .enumerate()
                        {
                            let t = inst(yy * w + xx) == id;
                            let pm = masks[range.start + k] > cfg.binary_threshold;
                            sign[range.start + k] = if t && !aliased { 1.0 } else { -1.0 };
                            inter += (pm && t) as usize;
                            union += (pm || t) as usize;
                            inside_true += t as usize;
                        }
                        collected += range.len();
                        let all_true = (0..hw).filter(|&q| inst(q) == id).count();
                        let iou = inter as f32 / (union + all_true - inside_true) as f32;
                        ious.push(if iou.is_finite() { iou } else { 0.0 });
                        confidences.push(out.centers[m].confidence);
                    }
                }
            }
            if collected > 0 {
                let a = Tensor::from_vec(sign, &[heads.layout.total], dev);
                let shape = heads.masks.paps_loss_terms(Term::Shape, &a, EPS).sum_all();
                let shape = shape.mul_scalar(1.0 / collected as f32);
                parts[2] = shape.item();
                total = &total + &shape.mul_scalar(cfg.l_shape);
            }
        }
        // Class.
        if cfg.l_class != 0.0 {
            let t: Vec<f32> = pix.iter().map(|&p| ch(p, 5)).collect();
            if t.iter().any(|&c| c as i64 != cfg.void_label) {
                let t = Tensor::from_vec(t, &[m], dev);
                let class = heads.semantic.cross_entropy(&t, None, cfg.void_label);
                parts[3] = class.item();
                total = &total + &class.mul_scalar(cfg.l_class);
            }
        }
    }
    PapsLossValue {
        total,
        parts,
        confidences,
        ious,
    }
}
