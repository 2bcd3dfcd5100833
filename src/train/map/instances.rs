//! U-TAE + PaPs in `sitsgpu map`: which instances of a window are kept, their scene-wide ids, and which
//! instance a pixel gets when windows disagree.
//!
//! Each window's panoptic prediction is `predict`'s (the pseudo-NMS of [`crate::models::paps::nms`]): an
//! instance map of ids `rank + 1` and, on the instance's pixels, its class (the argmax of its class scores;
//! class 0 elsewhere). An instance of window (ky, kx) is **kept** when the window's core
//! ([`super::plan::axis_core`]) holds its center, so an instance cut by a window's edge is taken from the window
//! that sees it around its center; its id over the scene is `(ky · nx + kx) · p² + rank + 1`
//! ([`super::plan::Plan::id_base`]: unique over the scene and the same in every `--part`; `id mod p²` is
//! `predict`'s id of that window, `id div p²` the window). Each pixel of a kept instance is **claimed** for
//! it; where kept instances of several windows claim one pixel, the claim of the window whose core holds
//! the pixel wins, then the more confident instance, then the lower window index, an order that does not
//! depend on the order in which windows run (so parts and blocks give the single run's map).

use crate::models::paps::{Center, Panoptic};

use super::plan::Plan;

/// One window's claim on a pixel (id 0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Claim {
    /// Scene-wide instance id (0 = no instance).
    pub id: u32,
    /// The instance's class.
    pub class: u8,
    /// The instance's confidence (the heatmap at its center).
    pub confidence: f32,
    /// The claiming window's core holds the pixel.
    pub core: bool,
    /// The claiming window's scene-wide index.
    pub window: u32,
}

impl Claim {
    /// Bytes of a claim in a spill record.
    pub const BYTES: usize = 14;

    /// Whether this claim wins the pixel over `other` (see the module doc).
    pub fn beats(&self, other: &Claim) -> bool {
        if self.id == 0 {
            return false;
        }
        if other.id == 0 {
            return true;
        }
        (self.core, self.confidence, std::cmp::Reverse(self.window)).partial_cmp(&(
            other.core,
            other.confidence,
            std::cmp::Reverse(other.window),
        )) == Some(std::cmp::Ordering::Greater)
    }

    /// Little-endian bytes (id, class, confidence, core, window).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(self.class);
        out.extend_from_slice(&self.confidence.to_le_bytes());
        out.push(self.core as u8);
        out.extend_from_slice(&self.window.to_le_bytes());
    }

    /// Reads what [`Claim::write`] wrote.
    pub fn read(b: &[u8]) -> Claim {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Claim {
            id: u32_at(0),
            class: b[4],
            confidence: f32::from_bits(u32_at(5)),
            core: b[9] != 0,
            window: u32_at(10),
        }
    }
}

/// The claims (p × p, window pixels) of sample `i` of a batch's panoptic output, window (ky, kx) of
/// `plan`: the pixels of its kept instances. `classes` is [`Panoptic::classes`] of the batch, `centers`
/// the batch's centers (the forward's order, as the pseudo-NMS received them).
pub fn window_claims(
    pano: &Panoptic,
    classes: &[usize],
    centers: &[Center],
    i: usize,
    plan: &Plan,
    (ky, kx): (usize, usize),
) -> Vec<Claim> {
    let [_, h, w] = pano.dims;
    let (p, hw) = (plan.p, h * w);
    debug_assert_eq!((h, w), (p, p));
    // The pseudo-NMS's ranking of this sample's centers: decreasing confidence, stable (nms.rs).
    let mut cand: Vec<&Center> = centers.iter().filter(|c| c.b == i).collect();
    cand.sort_by(|a, b| {
        b.confidence
            .partial_cmp(&a.confidence)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (core_y, core_x) = plan.core(ky, kx);
    let (y0, x0) = (plan.ys[ky], plan.xs[kx]);
    let kept: Vec<bool> = cand
        .iter()
        .map(|c| core_y.contains(&(y0 + c.y)) && core_x.contains(&(x0 + c.x)))
        .collect();
    let base = plan.id_base(ky, kx);
    let window = plan.index(ky, kx) as u32;
    let inst = &pano.instance[i * hw..(i + 1) * hw];
    let cls = &classes[i * hw..(i + 1) * hw];
    let mut out = vec![Claim::default(); hw];
    for (q, (&v, &c)) in inst.iter().zip(cls).enumerate() {
        let rank = v as usize;
        if rank == 0 || !kept.get(rank - 1).copied().unwrap_or(false) {
            continue;
        }
        let (y, x) = (y0 + q / p, x0 + q % p);
        out[q] = Claim {
            id: base + rank as u32,
            class: c.min(254) as u8,
            confidence: cand[rank - 1].confidence,
            core: core_y.contains(&y) && core_x.contains(&x),
            window,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_order_core_then_confidence_then_window() {
        let a = Claim {
            id: 5,
            class: 3,
            confidence: 0.5,
            core: false,
            window: 7,
        };
        let core = Claim {
            core: true,
            confidence: 0.1,
            ..a
        };
        let surer = Claim {
            confidence: 0.9,
            ..a
        };
        let lower = Claim { window: 2, ..a };
        assert!(core.beats(&a) && !a.beats(&core));
        assert!(surer.beats(&a) && !a.beats(&surer));
        assert!(lower.beats(&a) && !a.beats(&lower));
        assert!(a.beats(&Claim::default()) && !Claim::default().beats(&a));
        assert!(!a.beats(&a));
        let mut b = Vec::new();
        a.write(&mut b);
        assert_eq!(b.len(), Claim::BYTES);
        assert_eq!(Claim::read(&b), a);
    }
}
