//! Batched matrix product `C = A · B` with broadcasting of a batch of one (a weight shared by every batch).
//!
//! Math: `C[b, m, n] = Σ_k A[b, m, k] B[b, k, n]`. Derivatives: `dA = dC · Bᵀ`, `dB = Aᵀ · dC` (summed over
//! the batch when that operand was broadcast). Saved for backward: A and B (only the recipe of one that is
//! recomputable, `engine::recompute`; each is made again only when the other wants a gradient). The backward
//! needs no kernel of its own: it is two more launches of `matmul.wgsl` with its transpose flags (no transposed copies).
//! Shapes: A (..., M, K), B (..., K, N) where the leading (batch) axes are equal or one side has none / all
//! ones; C (batch..., M, N).
//!
//! Variants (llm.c style, each benchmarked in `benches/ops.rs`):
//! 1. `matmul.wgsl`: 64 × 64 tiles, 4 × 4 outputs per invocation in named vec4 registers, K slabs of 16 in
//!    workgroup memory — for small and skinny products (more workgroups for the same work).
//! 2. `matmul_128.wgsl`: 128 × 128 tiles, 8 × 8 per invocation, K slabs of 8 — for big products (twice the
//!    reuse of every staged value, four times the arithmetic per workgroup load).
//!
//! Both split K when the output has too few tiles to fill a GPU (a weight gradient `Xᵀ · dY` summed over
//! 196,608 rows is one tile): `splits` workgroups per tile each reduce a slice of K into a partial product,
//! and `reduce_sum.wgsl` adds the partials in index order — two deterministic passes, no float atomics
//! ([`plan`] decides from the shape alone, so the same shapes always give the same bits).
//! The CPU reference below is the naive triple loop (llm.c's `matmul_forward_naive`).
//!
//! Size: over the 400-line budget because the three kernels are variants of one op behind one plan; the
//! autograd's two transposed products reuse them.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::linalg::half_matmul;
use crate::engine::ops::reduce::reduce_sum;
use crate::engine::precision::{count_half, precision, Precision};
use crate::engine::real::Real;
use crate::engine::recompute::Saved;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    k_chunk: u32,
    splits: u32,
    _pad: [u32; 2],
}

/// Output tile edge of matmul.wgsl.
pub const TILE: usize = 64;

/// Which kernel computes a product, and in how many K slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `matmul_128.wgsl` (else `matmul.wgsl`).
    pub big: bool,
    /// K slices (1: no split).
    pub splits: usize,
}

/// Output tiles below which K is split (a big GPU runs thousands of workgroups at once).
const SPLIT_BELOW_TILES: usize = 256;
/// The shortest K slice worth a workgroup of its own.
const MIN_K_SLICE: usize = 256;

/// The kernel and split for (batch, M, K, N): the 128 × 128 kernel when both M and N are at least 128 and it
/// still gives 64 tiles or more; K split into slices of at least 256 when the tiles are fewer
/// than 256, to bring the workgroup count near that many.
pub fn plan(batch: usize, m: usize, k: usize, n: usize) -> Plan {
    let tiles128 = batch * m.div_ceil(128) * n.div_ceil(128);
    let big = m >= 128 && n >= 128 && tiles128 >= 64;
    let tiles = if big {
        tiles128
    } else {
        batch * m.div_ceil(TILE) * n.div_ceil(TILE)
    };
    let splits = if tiles >= SPLIT_BELOW_TILES {
        1
    } else {
        SPLIT_BELOW_TILES
            .div_ceil(tiles.max(1))
            .min(k / MIN_K_SLICE)
            .max(1)
    };
    Plan { big, splits }
}

/// A matrix operand: its batch count (1 = shared by every batch) and whether it is stored transposed.
#[derive(Debug, Clone, Copy)]
pub struct Operand {
    /// Batches stored (1 means broadcast to every batch).
    pub batch: usize,
    /// Stored as the transpose of the logical matrix.
    pub trans: bool,
}

/// `matmul.wgsl`: C = A · B, 64 × 64 tiles (optionally split over K).
pub const MATMUL: Kernel = Kernel::new::<Params>(&shaders::MATMUL, "matmul", 4);
/// `matmul_128.wgsl`: the same with 128 × 128 tiles.
pub const MATMUL_128: Kernel = Kernel::new::<Params>(&shaders::MATMUL_128, "matmul_128", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[MATMUL, MATMUL_128];

// ---- CPU reference ----

/// C (batch, M, N) = A · B for logical A (M, K) and B (K, N) per batch, operands stored as described.
#[allow(clippy::too_many_arguments)]
pub fn cpu_forward<T: Real>(
    a: &[T],
    oa: Operand,
    b: &[T],
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    let mut c = vec![T::zero(); batch * m * n];
    for bt in 0..batch {
        let (ab, bb) = (
            if oa.batch == 1 { 0 } else { bt * m * k },
            if ob.batch == 1 { 0 } else { bt * k * n },
        );
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::zero();
                for p in 0..k {
                    let av = if oa.trans {
                        a[ab + p * m + i]
                    } else {
                        a[ab + i * k + p]
                    };
                    let bv = if ob.trans {
                        b[bb + j * k + p]
                    } else {
                        b[bb + p * n + j]
                    };
                    acc += av * bv;
                }
                c[(bt * m + i) * n + j] = acc;
            }
        }
    }
    c
}

/// (dA, dB) for plain (untransposed) A (a_batch, M, K), B (b_batch, K, N) and dC (batch, M, N); a broadcast
/// operand's gradient is summed over the batch.
#[allow(clippy::too_many_arguments)]
pub fn cpu_backward<T: Real>(
    a: &[T],
    a_batch: usize,
    b: &[T],
    b_batch: usize,
    dc: &[T],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<T>, Vec<T>) {
    let mut da = vec![T::zero(); a_batch * m * k];
    let mut db = vec![T::zero(); b_batch * k * n];
    for bt in 0..batch {
        let (ab, bb) = (
            if a_batch == 1 { 0 } else { bt * m * k },
            if b_batch == 1 { 0 } else { bt * k * n },
        );
        for i in 0..m {
            for j in 0..n {
                let g = dc[(bt * m + i) * n + j];
                for p in 0..k {
                    da[ab + i * k + p] += g * b[bb + p * n + j];
                    db[bb + p * n + j] += a[ab + i * k + p] * g;
                }
            }
        }
    }
    (da, db)
}

// ---- GPU ----

/// C (batch, M, N) = A · B on the GPU, with the kernel and split of [`plan`].
#[allow(clippy::too_many_arguments)]
pub fn gpu_forward(
    a: &GpuStorage,
    oa: Operand,
    b: &GpuStorage,
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> GpuStorage {
    gpu_forward_with(plan(batch, m, k, n), a, oa, b, ob, batch, m, k, n)
}

/// [`gpu_forward`] with an explicit plan (benchmarks and tests compare the variants).
#[allow(clippy::too_many_arguments)]
pub fn gpu_forward_with(
    plan: Plan,
    a: &GpuStorage,
    oa: Operand,
    b: &GpuStorage,
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> GpuStorage {
    let (kernel, tile, tk) = if plan.big {
        (MATMUL_128, 128, 8)
    } else {
        (MATMUL, TILE, 16)
    };
    let splits = plan.splits.clamp(1, k.max(1));
    let k_chunk = k.div_ceil(splits).next_multiple_of(tk).max(tk);
    let splits = k.div_ceil(k_chunk).max(1);
    let c = GpuStorage::alloc(a.gpu, splits * batch * m * n, kernel.entry);
    let p = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch: batch as u32,
        a_batch_stride: if oa.batch == 1 { 0 } else { (m * k) as u32 },
        b_batch_stride: if ob.batch == 1 { 0 } else { (k * n) as u32 },
        trans_a: oa.trans as u32,
        trans_b: ob.trans as u32,
        k_chunk: k_chunk as u32,
        splits: splits as u32,
        _pad: [0; 2],
    };
    let tiles = batch * m.div_ceil(tile) * n.div_ceil(tile);
    let grid = Grid::groups(splits * tiles)
        .flops(2 * batch * m * n * k)
        .bytes(4 * (oa.batch * m * k + ob.batch * k * n + splits * batch * m * n))
        .loop_len(k_chunk);
    kernel.dispatch(a.gpu, &[a.buffer(), b.buffer(), c.buffer()], &p, grid);
    if splits == 1 {
        c
    } else {
        reduce_sum::gpu_sum(&c, 1, splits, batch * m * n)
    }
}

// ---- Autograd ----

/// Batch count, M, K, N of `a · b`, and the output shape; panics with both shapes when they do not fit.
fn dims(a: &[usize], b: &[usize]) -> (usize, usize, usize, usize, usize, usize, Vec<usize>) {
    assert!(
        a.len() >= 2 && b.len() >= 2,
        "matmul: expected operands of rank >= 2, got {a:?} and {b:?}"
    );
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    assert_eq!(
        k, k2,
        "matmul: expected A (.., M, K) and B (.., K, N), got {a:?} and {b:?}"
    );
    let (ba, bb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
    let (na, nb) = (shape::numel(ba), shape::numel(bb));
    let batch_shape = if na >= nb { ba } else { bb };
    assert!(
        ba == bb || na == 1 || nb == 1,
        "matmul: expected equal batch axes or a batch of one, got {a:?} and {b:?}"
    );
    let mut out = batch_shape.to_vec();
    out.extend([m, n]);
    (na, nb, na.max(nb), m, k, n, out)
}

struct MatmulBackward {
    /// A (only its recipe when it is recomputable, `engine::recompute`).
    a: Saved,
    /// B (the same).
    b: Saved,
    /// A's and B's shapes.
    shapes: [Vec<usize>; 2],
    /// Whether A and B want gradients.
    wants: [bool; 2],
    /// The forward ran under --precision mixed: the backward reads h(A) and h(B), as the forward did, and
    /// dC rounded as a float16 gradient.
    mixed: bool,
}

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, dc: &Tensor) -> Vec<Option<Tensor>> {
        self.backward_owned(dc.clone())
    }
    fn backward_owned(&self, dc: Tensor) -> Vec<Option<Tensor>> {
        // Under mixed dC is rounded as a float16 gradient (in place when the walk let it go).
        let dc = &dc.into_gradient_operand(self.mixed);
        let [a_shape, b_shape] = &self.shapes;
        let (na, nb, batch, m, k, n, _) = dims(a_shape, b_shape);
        if dc.device() == Device::Cpu {
            let (a, b) = (self.a.get_as(self.mixed), self.b.get_as(self.mixed));
            let (da, db) = cpu_backward(
                &a.cpu_data("matmul"),
                na,
                &b.cpu_data("matmul"),
                nb,
                &dc.cpu_data("matmul"),
                batch,
                m,
                k,
                n,
            );
            return vec![
                self.wants[0].then(|| a.new_like(da, a_shape)),
                self.wants[1].then(|| b.new_like(db, b_shape)),
            ];
        }
        let gc = dc.gpu_storage("matmul");
        let plain = |batch| Operand {
            batch,
            trans: false,
        };
        // dA (batch, M, K) = dC (M, N) · Bᵀ (N, K): B is read transposed. dA needs B and dB needs A: only
        // what a wanted gradient reads is made again.
        let da = self.wants[0].then(|| {
            let b = self.b.get_as(self.mixed);
            let d = gpu_forward(
                gc,
                plain(batch),
                b.gpu_storage("matmul"),
                Operand {
                    batch: nb,
                    trans: true,
                },
                batch,
                m,
                n,
                k,
            );
            let t = Tensor::from_storage(&[batch, m, k], Storage::Gpu(d));
            if na == 1 { t.sum(&[0], false) } else { t }.reshape(a_shape)
        });
        // dB (batch, K, N) = Aᵀ (K, M) · dC (M, N): A is read transposed.
        let db = self.wants[1].then(|| {
            let a = self.a.get_as(self.mixed);
            let d = gpu_forward(
                a.gpu_storage("matmul"),
                Operand {
                    batch: na,
                    trans: true,
                },
                gc,
                plain(batch),
                batch,
                k,
                m,
                n,
            );
            let t = Tensor::from_storage(&[batch, k, n], Storage::Gpu(d));
            if nb == 1 { t.sum(&[0], false) } else { t }.reshape(b_shape)
        });
        vec![da, db]
    }
}

impl Tensor {
    /// Matrix product over the last two axes (torch.matmul for rank >= 2, batch axes equal or one side 1).
    /// Under `--precision mixed` the operands are rounded to halves and the sums stay float32
    /// (`half_matmul`, as autocast's float16 product); the backward pass reads the operands as the forward
    /// read them and, under mixed, dC rounded as a float16 gradient (autocast's backward products), with
    /// float32 sums in both modes.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let (na, nb, batch, m, k, n, out) = dims(self.shape(), other.shape());
        let (oa, ob) = (
            Operand {
                batch: na,
                trans: false,
            },
            Operand {
                batch: nb,
                trans: false,
            },
        );
        // Under --precision mixed the operands are rounded to halves (engine::precision): two roundings.
        let mixed = precision() == Precision::Mixed;
        if mixed {
            count_half();
            count_half();
        }
        let storage = match Tensor::same_device("matmul", &[self, other]) {
            Device::Cpu => {
                let (a, b) = (self.cpu_data("matmul"), other.cpu_data("matmul"));
                Tensor::cpu_storage(if mixed {
                    half_matmul::cpu_forward(&a, oa, &b, ob, batch, m, k, n)
                } else {
                    cpu_forward(&a, oa, &b, ob, batch, m, k, n)
                })
            }
            Device::Gpu => {
                let (a, b) = (self.gpu_storage("matmul"), other.gpu_storage("matmul"));
                Storage::Gpu(if mixed {
                    half_matmul::gpu_forward(a, oa, b, ob, batch, m, k, n)
                } else {
                    gpu_forward(a, oa, b, ob, batch, m, k, n)
                })
            }
        };
        Tensor::from_op(
            &out,
            storage,
            &[self, other],
            MatmulBackward {
                a: Saved::new(self),
                b: Saved::new(other),
                shapes: [self.shape().to_vec(), other.shape().to_vec()],
                wants: [self.requires_grad(), other.requires_grad()],
                mixed,
            },
        )
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // [[1, 2], [3, 4]] · [[5], [6]] = [[17], [39]]
        let p = Operand {
            batch: 1,
            trans: false,
        };
        assert_eq!(
            cpu_forward(&[1.0f32, 2.0, 3.0, 4.0], p, &[5.0, 6.0], p, 1, 2, 2, 1),
            vec![17.0, 39.0]
        );
        // The same with A stored transposed ([[1, 3], [2, 4]]).
        let t = Operand {
            batch: 1,
            trans: true,
        };
        assert_eq!(
            cpu_forward(&[1.0f32, 3.0, 2.0, 4.0], t, &[5.0, 6.0], p, 1, 2, 2, 1),
            vec![17.0, 39.0]
        );
    }

    #[test]
    fn gradcheck_f64_with_broadcast_batch() {
        let (batch, m, k, n) = (3, 4, 5, 2);
        let p = |b| Operand {
            batch: b,
            trans: false,
        };
        for (na, nb) in [(3, 3), (3, 1), (1, 3)] {
            gradcheck(
                &format!("matmul batches {na},{nb}"),
                &[
                    random_vec(na * m * k, -1.0, 1.0, 21),
                    random_vec(nb * k * n, -1.0, 1.0, 22),
                ],
                &[],
                |v| cpu_forward(&v[0], p(na), &v[1], p(nb), batch, m, k, n),
                |v, g| {
                    let (da, db) = cpu_backward(&v[0], na, &v[1], nb, g, batch, m, k, n);
                    vec![da, db]
                },
            );
        }
    }
}
