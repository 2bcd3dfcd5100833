//! Segment argmax: for each group of elements (a "segment", e.g. the pixels of one zone of one sample), the
//! element with the largest value — the deterministic replacement of `torch_scatter.scatter_max` that PaPs'
//! CenterExtractor uses in training to pick one center per ground-truth zone (spec §6.3 step 3).
//!
//! Math: segments are given in CSR form, `members[offsets[s] .. offsets[s + 1]]` = the indices into x of
//! segment s; `out[s] = argmax_{q ∈ segment s} x[q]`. **Ties** go to the smallest index q: torch_scatter's
//! CPU kernel (the one the fixtures were made with) visits the elements in index order and replaces its
//! running maximum only when the new value is strictly greater, so the first maximum in flattened (row-major)
//! order wins; this op reproduces that whatever the order of `members`, and whatever the order in which the
//! GPU's workgroup reduction combines partial results (so it is deterministic). As scatter_max, whose running
//! maximum starts at the lowest f32, only values strictly above `f32::MIN` can win and a NaN never does; a
//! segment without candidate yields [`NONE`] (scatter_max's out-of-range index, which PaPs filters out).
//!
//! Not differentiable (it returns indices), so there is no backward. Kernel: `segment_argmax.wgsl`, one
//! workgroup per segment reducing (value, index) pairs in workgroup memory.

use crate::engine::kernel::{upload_u32, Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// The index given to a segment without candidate.
pub const NONE: u32 = u32::MAX;

/// Shader `Params` of segment_argmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    n_segments: u32,
    n_members: u32,
    _pad: u32,
}

/// `segment_argmax.wgsl` (workgroups of 64).
pub const SEGMENT_ARGMAX: Kernel =
    Kernel::new::<Params>(&shaders::SEGMENT_ARGMAX, "segment_argmax", 5).with_wg(64);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[SEGMENT_ARGMAX];

/// Segments in CSR form: segment s is `members[offsets[s] as usize .. offsets[s + 1] as usize]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segments {
    /// n_segments + 1 non-decreasing offsets, the first 0 and the last `members.len()`.
    pub offsets: Vec<u32>,
    /// Element indices.
    pub members: Vec<u32>,
}

impl Segments {
    /// Groups `0..keys.len()` by key, segments in increasing key order, members in increasing index order.
    /// Returns the segments and their keys.
    pub fn group_by<K: Ord + Copy>(keys: &[K]) -> (Segments, Vec<K>) {
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by_key(|&i| (keys[i as usize], i));
        let mut offsets = vec![0u32];
        let mut uniq = Vec::new();
        for (j, &i) in order.iter().enumerate() {
            if uniq.last() != Some(&keys[i as usize]) {
                if j > 0 {
                    offsets.push(j as u32);
                }
                uniq.push(keys[i as usize]);
            }
        }
        offsets.push(order.len() as u32);
        if keys.is_empty() {
            offsets = vec![0];
        }
        (
            Segments {
                offsets,
                members: order,
            },
            uniq,
        )
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there is no segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, n: usize) {
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && *self.offsets.last().unwrap_or(&0) as usize == self.members.len()
            && self.members.iter().all(|&q| (q as usize) < n);
        assert!(
            ok,
            "segment_argmax: expected CSR segments over {n} elements, got offsets {:?}…",
            &self.offsets[..self.offsets.len().min(8)]
        );
    }
}

// ---- CPU reference ----

/// The argmax of every segment (ties → smallest index; [`NONE`] without candidate).
pub fn cpu_forward<T: Real>(x: &[T], seg: &Segments) -> Vec<u32> {
    let lowest = T::from_f64(f32::MIN as f64);
    (0..seg.len())
        .map(|s| {
            let mut members: Vec<u32> =
                seg.members[seg.offsets[s] as usize..seg.offsets[s + 1] as usize].to_vec();
            members.sort_unstable(); // torch_scatter's visiting order
            let (mut best, mut arg) = (lowest, NONE);
            for q in members {
                if x[q as usize] > best {
                    best = x[q as usize];
                    arg = q;
                }
            }
            arg
        })
        .collect()
}

// ---- GPU ----

/// Launches segment_argmax.wgsl and reads the indices back.
pub fn gpu_forward(x: &GpuStorage, n: usize, seg: &Segments) -> Vec<u32> {
    let gpu = x.gpu;
    let offsets = upload_u32(gpu, &seg.offsets);
    // A storage binding may not be empty: one unused member when there is none.
    let members = upload_u32(
        gpu,
        if seg.members.is_empty() {
            &[0]
        } else {
            &seg.members
        },
    );
    let out = gpu.pooled(4 * seg.len() as u64);
    let p = Params {
        n: n as u32,
        n_segments: seg.len() as u32,
        n_members: seg.members.len() as u32,
        _pad: 0,
    };
    let bufs = [x.buffer(), offsets.buffer(), members.buffer(), out.buffer()];
    SEGMENT_ARGMAX.dispatch(gpu, &bufs, &p, Grid::groups(seg.len()));
    bytemuck::cast_slice(&gpu.read_buffer(out.buffer(), 4 * seg.len() as u64)).to_vec()
}

impl Tensor {
    /// The argmax of every segment of this tensor's flattened values (host indices; no gradient).
    pub fn segment_argmax(&self, seg: &Segments) -> Vec<u32> {
        let op = "segment_argmax";
        seg.check(self.numel());
        if seg.is_empty() {
            return Vec::new();
        }
        match self.device() {
            Device::Cpu => cpu_forward(&self.cpu_data(op), seg),
            Device::Gpu => gpu_forward(self.gpu_storage(op), self.numel(), seg),
        }
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values() {
        // Zones of 7 pixels: zone 2 = {0, 3, 6} with values (0.5, 0.9, 0.9) → the tie goes to index 3;
        // zone 0 = {1, 4} (0.1, −0.2) → 1; zone 5 = {2, 5} where 5 is NaN → 2.
        let keys = [2, 0, 5, 2, 0, 5, 2];
        let (seg, uniq) = Segments::group_by(&keys);
        assert_eq!(uniq, vec![0, 2, 5]);
        assert_eq!(seg.offsets, vec![0, 2, 5, 7]);
        let x = [0.5f32, 0.1, 0.3, 0.9, -0.2, f32::NAN, 0.9];
        assert_eq!(cpu_forward(&x, &seg), vec![1, 3, 2]);
        // Members given in any order: the smallest index still wins the tie.
        let rev = Segments {
            offsets: vec![0, 3],
            members: vec![6, 3, 0],
        };
        assert_eq!(cpu_forward(&x, &rev), vec![3]);
        // Only values above the lowest f32 are candidates; an empty segment has none.
        let low = Segments {
            offsets: vec![0, 1, 1],
            members: vec![0],
        };
        assert_eq!(cpu_forward(&[f32::MIN], &low), vec![NONE, NONE]);
    }
}
