//! The second half of L-TAE's master-query attention (the first is `attention.rs`, which explains the whole):
//! the attention-weighted average of the values over time, heads concatenated.
//!
//! Math: for sequence n = b·P + p (sample b, pixel p) and channel `h·d_v + c` of head h,
//! `o[n, h·d_v + c] = Σ_t a[h, b, t, p] · v[n, t, h·d_v + c]`.
//! Derivatives: `dv[n, t, h·d_v + c] = a[h, b, t, p] · do[n, h·d_v + c]` and
//! `da[h, b, t, p] = Σ_c do[n, h·d_v + c] · v[n, t, h·d_v + c]`. Saved for backward: a and v.
//! Shapes: a (H, B, T, P), v (B·P, T, H·d_v) → o (B·P, H·d_v).
//!
//! Kernels: `attention_apply.wgsl` (one invocation per output), `attention_apply_backward_value.wgsl` (one per
//! dv element) and `attention_apply_backward_attn.wgsl` (one per da element, a d_v-long dot product).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of attention_apply*.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    heads: u32,
    batch: u32,
    t: u32,
    pixels: u32,
    dv: u32,
    _pad: [u32; 3],
}

/// Sizes: H heads, B samples, T dates, P sequences per sample, d_v value channels per head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Heads H.
    pub heads: usize,
    /// Samples B.
    pub batch: usize,
    /// Dates T.
    pub t: usize,
    /// Sequences per sample P.
    pub pixels: usize,
    /// Value channels per head d_v.
    pub dv: usize,
}

impl Dims {
    /// Index of a[h, n, t] in the (H, B, T, P) layout of the weights, n = b·P + p.
    fn attn_index(self, head: usize, n: usize, t: usize) -> usize {
        let (b, p) = (n / self.pixels, n % self.pixels);
        ((head * self.batch + b) * self.t + t) * self.pixels + p
    }

    fn params(self) -> Params {
        Params {
            heads: self.heads as u32,
            batch: self.batch as u32,
            t: self.t as u32,
            pixels: self.pixels as u32,
            dv: self.dv as u32,
            _pad: [0; 3],
        }
    }
}

/// `attention_apply.wgsl`: a, v → o.
pub const ATTENTION_APPLY: Kernel =
    Kernel::new::<Params>(&shaders::ATTENTION_APPLY, "attention_apply", 4);
/// `attention_apply_backward_value.wgsl`: a, do → dv.
pub const ATTENTION_APPLY_BACKWARD_VALUE: Kernel = Kernel::new::<Params>(
    &shaders::ATTENTION_APPLY_BACKWARD_VALUE,
    "attention_apply_backward_value",
    4,
);
/// `attention_apply_backward_attn.wgsl`: v, do → da.
pub const ATTENTION_APPLY_BACKWARD_ATTN: Kernel = Kernel::new::<Params>(
    &shaders::ATTENTION_APPLY_BACKWARD_ATTN,
    "attention_apply_backward_attn",
    4,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    ATTENTION_APPLY,
    ATTENTION_APPLY_BACKWARD_VALUE,
    ATTENTION_APPLY_BACKWARD_ATTN,
];

// ---- CPU reference ----

/// a (H, B, T, P), v (N, T, H·d_v) → o (N, H·d_v), N = B·P.
pub fn cpu_forward<T: Real>(a: &[T], v: &[T], d: Dims) -> Vec<T> {
    let (n_seq, width) = (d.batch * d.pixels, d.heads * d.dv);
    let mut o = vec![T::zero(); n_seq * width];
    for n in 0..n_seq {
        for ch in 0..width {
            let head = ch / d.dv;
            let mut acc = T::zero();
            for t in 0..d.t {
                acc += a[d.attn_index(head, n, t)] * v[(n * d.t + t) * width + ch];
            }
            o[n * width + ch] = acc;
        }
    }
    o
}

/// (da (H, B, T, P), dv (N, T, H·d_v)) from do (N, H·d_v).
pub fn cpu_backward<T: Real>(a: &[T], v: &[T], dout: &[T], d: Dims) -> (Vec<T>, Vec<T>) {
    let (n_seq, width) = (d.batch * d.pixels, d.heads * d.dv);
    let mut da = vec![T::zero(); a.len()];
    let mut dvv = vec![T::zero(); v.len()];
    for n in 0..n_seq {
        for ch in 0..width {
            let head = ch / d.dv;
            for t in 0..d.t {
                let ai = d.attn_index(head, n, t);
                let vi = (n * d.t + t) * width + ch;
                da[ai] += dout[n * width + ch] * v[vi];
                dvv[vi] = a[ai] * dout[n * width + ch];
            }
        }
    }
    (da, dvv)
}

// ---- GPU ----

/// Launches attention_apply.wgsl → o (N, H·d_v).
pub fn gpu_forward(a: &GpuStorage, v: &GpuStorage, d: Dims) -> GpuStorage {
    let n = d.batch * d.pixels * d.heads * d.dv;
    let o = GpuStorage::alloc(a.gpu, n, "attention_apply");
    let bufs = [a.buffer(), v.buffer(), o.buffer()];
    let grid = Grid::threads(n).flops(2 * n * d.t).loop_len(d.t);
    ATTENTION_APPLY.dispatch(a.gpu, &bufs, &d.params(), grid);
    o
}

/// Launches the two backward kernels → (da (H, B, T, P), dv (N, T, H·d_v)).
pub fn gpu_backward(
    a: &GpuStorage,
    v: &GpuStorage,
    dout: &GpuStorage,
    d: Dims,
) -> (GpuStorage, GpuStorage) {
    let p = d.params();
    let n_a = d.heads * d.batch * d.t * d.pixels;
    let da = GpuStorage::alloc(a.gpu, n_a, "attention_apply_backward_attn");
    let bufs = [v.buffer(), dout.buffer(), da.buffer()];
    let grid = Grid::threads(n_a).flops(2 * n_a * d.dv).loop_len(d.dv);
    ATTENTION_APPLY_BACKWARD_ATTN.dispatch(a.gpu, &bufs, &p, grid);
    let n_v = d.batch * d.pixels * d.t * d.heads * d.dv;
    let dvv = GpuStorage::alloc(a.gpu, n_v, "attention_apply_backward_value");
    let bufs = [a.buffer(), dout.buffer(), dvv.buffer()];
    ATTENTION_APPLY_BACKWARD_VALUE.dispatch(a.gpu, &bufs, &p, Grid::threads(n_v).flops(n_v));
    (da, dvv)
}

// ---- Autograd ----

struct ApplyBackward {
    a: Tensor,
    v: Tensor,
    d: Dims,
}

impl Backward for ApplyBackward {
    fn name(&self) -> &'static str {
        "temporal_attention_apply"
    }
    fn backward(&self, dout: &Tensor) -> Vec<Option<Tensor>> {
        let (a, v, op) = (&self.a, &self.v, "attention_apply_backward");
        let (da, dv) = match dout.device() {
            Device::Cpu => {
                let (da, dv) =
                    cpu_backward(&a.cpu_data(op), &v.cpu_data(op), &dout.cpu_data(op), self.d);
                (Tensor::cpu_storage(da), Tensor::cpu_storage(dv))
            }
            Device::Gpu => {
                let (da, dv) = gpu_backward(
                    a.gpu_storage(op),
                    v.gpu_storage(op),
                    dout.gpu_storage(op),
                    self.d,
                );
                (Storage::Gpu(da), Storage::Gpu(dv))
            }
        };
        vec![
            Some(Tensor::from_storage(a.shape(), da)),
            Some(Tensor::from_storage(v.shape(), dv)),
        ]
    }
}

impl Tensor {
    /// Attention-weighted average over time with heads concatenated. `self` = weights a (H, B, T, P);
    /// `v` = values (B·P, T, H·d_v). Returns o (B·P, H·d_v).
    pub fn temporal_attention_apply(&self, v: &Tensor) -> Tensor {
        let op = "temporal_attention_apply";
        let a = self.shape();
        assert_eq!(a.len(), 4, "{op}: expected weights (H, B, T, P), got {a:?}");
        let (heads, batch, t, pixels) = (a[0], a[1], a[2], a[3]);
        let vs = v.shape();
        assert!(
            vs.len() == 3 && vs[0] == batch * pixels && vs[1] == t && vs[2].is_multiple_of(heads),
            "{op}: expected values ({}, {t}, H·d_v), got {vs:?}",
            batch * pixels,
        );
        let d = Dims {
            heads,
            batch,
            t,
            pixels,
            dv: vs[2] / heads,
        };
        let storage = match Tensor::same_device(op, &[self, v]) {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), &v.cpu_data(op), d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), v.gpu_storage(op), d)),
        };
        let back = ApplyBackward {
            a: self.clone(),
            v: v.clone(),
            d,
        };
        Tensor::from_op(&[d.batch * d.pixels, vs[2]], storage, &[self, v], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // One head, one sequence of T = 3 dates with weights a = (3/4, 1/4, 0) and values (d_v = 2)
        // v_t = (t, 10 t): o = 3/4 (0, 0) + 1/4 (1, 10) + 0 (2, 20) = (0.25, 2.5).
        let d = Dims {
            heads: 1,
            batch: 1,
            t: 3,
            pixels: 1,
            dv: 2,
        };
        let o = cpu_forward(&[0.75, 0.25, 0.0], &[0.0, 0.0, 1.0, 10.0, 2.0, 20.0], d);
        assert_eq!(o, vec![0.25, 2.5]);
        // do = (1, 0): dv_t = a_t · do = (3/4, 0), (1/4, 0), (0, 0); da_t = <do, v_t> = (0, 1, 2).
        let (da, dv) = cpu_backward(
            &[0.75, 0.25, 0.0],
            &[0.0, 0.0, 1.0, 10.0, 2.0, 20.0],
            &[1.0, 0.0],
            d,
        );
        assert_eq!(da, vec![0.0, 1.0, 2.0]);
        assert_eq!(dv, vec![0.75, 0.0, 0.25, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn gradcheck_f64() {
        let d = Dims {
            heads: 2,
            batch: 2,
            t: 4,
            pixels: 3,
            dv: 2,
        };
        let n = d.batch * d.pixels;
        let a = random_vec(d.heads * d.batch * d.t * d.pixels, 0.0, 1.0, 64);
        let v = random_vec(n * d.t * d.heads * d.dv, -1.0, 1.0, 63);
        gradcheck(
            "attention apply",
            &[a, v],
            &[],
            |x| cpu_forward(&x[0], &x[1], d),
            |x, g| {
                let (da, dvv) = cpu_backward(&x[0], &x[1], g, d);
                vec![da, dvv]
            },
        );
    }
}
