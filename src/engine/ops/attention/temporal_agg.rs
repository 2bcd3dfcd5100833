//! U-TAE's temporal aggregation of skip connections with attention weights (spec §3.5, "att_group"/"att_mean").
//!
//! Math: x (B, T, C, H, W), a (G, B, T, H, W). The C channels form G contiguous groups; channel c uses
//! the weights of group g = c / (C/G): `y[b, c] = Σ_t a[g, b, t] · x[b, t, c]` (per pixel) → (B, C, H, W).
//! Derivatives: `dx[b, t, c] = a[g, b, t] · dy[b, c]`; `da[g, b, t] = Σ_{c ∈ g} x[b, t, c] · dy[b, c]`.
//! Saved: x and a. Kernels: `temporal_agg.wgsl`, `temporal_agg_backward_x.wgsl`,
//! `temporal_agg_backward_attn.wgsl`. The resizing of the weights to the skip's resolution and the pad-mask
//! multiplication happen before, with their own ops (bilinear resize, mul).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::recompute::Saved;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of temporal_agg*.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    batch: u32,
    t: u32,
    c: u32,
    s: u32,
    groups: u32,
    _pad: [u32; 3],
}

/// Sizes: B, T, C channels, S = H·W pixels, G groups.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// B.
    pub batch: usize,
    /// T.
    pub t: usize,
    /// C.
    pub c: usize,
    /// S = H·W.
    pub s: usize,
    /// G.
    pub groups: usize,
}

impl Dims {
    fn params(self) -> Params {
        Params {
            batch: self.batch as u32,
            t: self.t as u32,
            c: self.c as u32,
            s: self.s as u32,
            groups: self.groups as u32,
            _pad: [0; 3],
        }
    }
}

/// `temporal_agg.wgsl`: x, attn → out.
pub const TEMPORAL_AGG: Kernel = Kernel::new::<Params>(&shaders::TEMPORAL_AGG, "temporal_agg", 4);
/// `temporal_agg_backward_x.wgsl`: dx.
pub const TEMPORAL_AGG_BACKWARD_X: Kernel = Kernel::new::<Params>(
    &shaders::TEMPORAL_AGG_BACKWARD_X,
    "temporal_agg_backward_x",
    4,
);
/// `temporal_agg_backward_attn.wgsl`: dattn.
pub const TEMPORAL_AGG_BACKWARD_ATTN: Kernel = Kernel::new::<Params>(
    &shaders::TEMPORAL_AGG_BACKWARD_ATTN,
    "temporal_agg_backward_attn",
    4,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    TEMPORAL_AGG,
    TEMPORAL_AGG_BACKWARD_X,
    TEMPORAL_AGG_BACKWARD_ATTN,
];

// ---- CPU reference ----

/// x (B, T, C, S), a (G, B, T, S) → y (B, C, S).
pub fn cpu_forward<T: Real>(x: &[T], a: &[T], d: Dims) -> Vec<T> {
    let per = d.c / d.groups;
    let mut y = vec![T::zero(); d.batch * d.c * d.s];
    for b in 0..d.batch {
        for c in 0..d.c {
            for s in 0..d.s {
                let mut acc = T::zero();
                for t in 0..d.t {
                    acc += a[((c / per * d.batch + b) * d.t + t) * d.s + s]
                        * x[((b * d.t + t) * d.c + c) * d.s + s];
                }
                y[(b * d.c + c) * d.s + s] = acc;
            }
        }
    }
    y
}

/// (dx, da) from dy (B, C, S).
pub fn cpu_backward<T: Real>(x: &[T], a: &[T], dy: &[T], d: Dims) -> (Vec<T>, Vec<T>) {
    let per = d.c / d.groups;
    let mut dx = vec![T::zero(); x.len()];
    let mut da = vec![T::zero(); a.len()];
    for b in 0..d.batch {
        for t in 0..d.t {
            for c in 0..d.c {
                for s in 0..d.s {
                    let ai = ((c / per * d.batch + b) * d.t + t) * d.s + s;
                    let xi = ((b * d.t + t) * d.c + c) * d.s + s;
                    let g = dy[(b * d.c + c) * d.s + s];
                    dx[xi] = a[ai] * g;
                    da[ai] += x[xi] * g;
                }
            }
        }
    }
    (dx, da)
}

// ---- GPU ----

/// Launches temporal_agg.wgsl.
pub fn gpu_forward(x: &GpuStorage, a: &GpuStorage, d: Dims) -> GpuStorage {
    let n = d.batch * d.c * d.s;
    let y = GpuStorage::alloc(x.gpu, n, "temporal_agg");
    TEMPORAL_AGG.dispatch(
        x.gpu,
        &[x.buffer(), a.buffer(), y.buffer()],
        &d.params(),
        Grid::threads(n).flops(2 * n * d.t).loop_len(d.t),
    );
    y
}

/// Launches the two backward kernels → (dx, da).
pub fn gpu_backward(
    x: &GpuStorage,
    a: &GpuStorage,
    dy: &GpuStorage,
    d: Dims,
) -> (GpuStorage, GpuStorage) {
    let p = d.params();
    let nx = d.batch * d.t * d.c * d.s;
    let dx = GpuStorage::alloc(x.gpu, nx, "temporal_agg_backward_x");
    TEMPORAL_AGG_BACKWARD_X.dispatch(
        x.gpu,
        &[a.buffer(), dy.buffer(), dx.buffer()],
        &p,
        Grid::threads(nx).flops(nx),
    );
    let na = d.groups * d.batch * d.t * d.s;
    let da = GpuStorage::alloc(x.gpu, na, "temporal_agg_backward_attn");
    TEMPORAL_AGG_BACKWARD_ATTN.dispatch(
        x.gpu,
        &[x.buffer(), dy.buffer(), da.buffer()],
        &p,
        Grid::threads(na)
            .flops(2 * na * (d.c / d.groups))
            .loop_len(d.c / d.groups),
    );
    (dx, da)
}

// ---- Autograd ----

struct TemporalAggBackward {
    /// The values (only their recipe when they are recomputable, `engine::recompute`).
    x: Saved,
    a: Tensor,
    d: Dims,
}

impl Backward for TemporalAggBackward {
    fn name(&self) -> &'static str {
        "temporal_agg"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let x = &self.x.get();
        let (a, op) = (&self.a, "temporal_agg_backward");
        let (dx, da) = match dy.device() {
            Device::Cpu => {
                let (dx, da) =
                    cpu_backward(&x.cpu_data(op), &a.cpu_data(op), &dy.cpu_data(op), self.d);
                (Tensor::cpu_storage(dx), Tensor::cpu_storage(da))
            }
            Device::Gpu => {
                let (dx, da) = gpu_backward(
                    x.gpu_storage(op),
                    a.gpu_storage(op),
                    dy.gpu_storage(op),
                    self.d,
                );
                (Storage::Gpu(dx), Storage::Gpu(da))
            }
        };
        vec![
            Some(Tensor::from_storage(x.shape(), dx)),
            Some(Tensor::from_storage(a.shape(), da)),
        ]
    }
}

impl Tensor {
    /// Aggregates `self` = x (B, T, C, H, W) over time with weights `a` (G, B, T, H, W), channel group g
    /// (C/G contiguous channels) using the weights of group g. Returns (B, C, H, W).
    pub fn temporal_aggregate(&self, a: &Tensor) -> Tensor {
        let op = "temporal_aggregate";
        let (xs, as_) = (self.shape(), a.shape());
        assert!(
            xs.len() == 5 && as_.len() == 5,
            "{op}: expected x (B, T, C, H, W) and a (G, B, T, H, W), got {xs:?} and {as_:?}"
        );
        let d = Dims {
            batch: xs[0],
            t: xs[1],
            c: xs[2],
            s: xs[3] * xs[4],
            groups: as_[0],
        };
        assert!(
            as_[1..] == [xs[0], xs[1], xs[3], xs[4]]
                && d.groups > 0
                && d.c.is_multiple_of(d.groups),
            "{op}: expected a ({}, {}, {}, {}, {}) dividing the {} channels, got {as_:?}",
            as_[0],
            xs[0],
            xs[1],
            xs[3],
            xs[4],
            d.c
        );
        let storage = match Tensor::same_device(op, &[self, a]) {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), &a.cpu_data(op), d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), a.gpu_storage(op), d)),
        };
        let back = TemporalAggBackward {
            x: Saved::new(self),
            a: a.clone(),
            d,
        };
        Tensor::from_op(&[xs[0], xs[2], xs[3], xs[4]], storage, &[self, a], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // B = 1, T = 2, C = 2 channels in G = 2 groups, one pixel. x_t = (1, 10) then (3, 30);
        // group 0 weights (0.25, 0.75), group 1 weights (1, 0): y = (0.25 + 2.25, 10) = (2.5, 10).
        let d = Dims {
            batch: 1,
            t: 2,
            c: 2,
            s: 1,
            groups: 2,
        };
        let y = cpu_forward(&[1.0f32, 10.0, 3.0, 30.0], &[0.25, 0.75, 1.0, 0.0], d);
        assert_eq!(y, vec![2.5, 10.0]);
    }

    #[test]
    fn gradcheck_f64() {
        let d = Dims {
            batch: 2,
            t: 3,
            c: 4,
            s: 5,
            groups: 2,
        };
        gradcheck(
            "temporal_agg",
            &[
                random_vec(2 * 3 * 4 * 5, -1.0, 1.0, 71),
                random_vec(2 * 2 * 3 * 5, 0.0, 1.0, 72),
            ],
            &[],
            |v| cpu_forward(&v[0], &v[1], d),
            |v, g| {
                let (dx, da) = cpu_backward(&v[0], &v[1], g, d);
                vec![dx, da]
            },
        );
    }
}
