//! Half-precision products: `C = A · B` from operands rounded to IEEE binary16, summed in float32 — what a
//! matrix product computes under `--precision mixed` (`engine::precision`), as PyTorch's autocast runs a
//! product in float16 with float32 accumulation.
//!
//! Math: `C[b, m, n] = Σ_k h(A[b, m, k]) · h(B[b, k, n])`, `h` = round to the nearest half, ties to even,
//! saturating at ±65,504 (`ops::elementwise::half`). Each product of two halves is exact in float32, so the
//! paths below differ only in the order of the float32 sums: relative error ≤ K · 2^-24 of Σ|a·b| between
//! any two of them, on top of the operands' rounding (≤ 2^-11 each), which all of them share.
//!
//! Three paths, chosen once per device ([`path`], printed by `sitsgpu info` and `sitsgpu profile`):
//! 1. **Cooperative matrices** (`half_matmul_coop.wgsl`): the matrix units (NVIDIA tensor cores, AMD WMMA)
//!    through wgpu's experimental `EXPERIMENTAL_COOPERATIVE_MATRIX`, where the adapter lists a 16 × 16 × 16
//!    f16 × f16 → f32 configuration, or `half_matmul_coop8.wgsl` where it lists only 8 × 8 × 8 (Apple's
//!    simdgroup matrices; Mesa's lavapipe since about 25.1, which runs it on the CPU), and the user turned
//!    it on (`SITSGPU_COOPERATIVE_MATRIX=1`: wgpu marks the feature as possibly unsound, `engine::trusted`).
//!    The device checks it against the CPU reference on a product with every edge case of the padding before
//!    using it ([`path_self_test`]); a wrong answer turns the path off and says so.
//! 2. **f16 tiles** (`half_matmul.wgsl`): adapters with `SHADER_F16` — half the operand bytes of the float32
//!    kernel, the same tiles and arithmetic once staged (on lavapipe 1.15× float32 on PSE's skinny layer,
//!    0.5× on square products: benches/README.md § `matmul_half`).
//! 3. **Rounded float32**: every other adapter, and products too small for the padded kernels: the operands
//!    are rounded by `half_pack.wgsl` / `half_unpack.wgsl` and multiplied by `matmul.wgsl` (no feature).
//!
//! Paths 1 and 2 read operands packed by `half_pack_operand.wgsl`: rounded, transposed into place when
//! stored transposed, and zero-padded to 64 rows / columns of C and 16 of K (the cooperative tiles must not
//! run past a row). The CPU reference ([`cpu_forward`]) rounds and runs `matmul::cpu_forward`. No backward
//! of its own: `Tensor::matmul`'s backward reads the operands it saved (kept as halves under mixed).

use crate::engine::gpu::Gpu;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::elementwise::half::{self, half_bits};
use crate::engine::ops::linalg::matmul::{self, Operand};
use crate::engine::ops::movement::copy_strided::{gpu_copy_strided, StridedCopy};
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of half_matmul.wgsl and half_matmul_coop.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    m: u32,
    n: u32,
    k_p: u32,
    batch: u32,
    m_p: u32,
    n_p: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    per_wg: u32,
    c_offset: u32,
    has_bias: u32,
    _pad: u32,
}

/// Shader `Params` of half_pack_operand.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PackParams {
    rows: u32,
    cols: u32,
    rows_p: u32,
    cols_p: u32,
    batch: u32,
    trans: u32,
    offset: u32,
    _pad: u32,
}

/// `half_matmul.wgsl`: 64 × 64 tiles from f16 operands (needs `SHADER_F16`).
pub const HALF_MATMUL: Kernel = Kernel::new::<Params>(&shaders::HALF_MATMUL, "half_matmul", 5);
/// `half_matmul_coop.wgsl`: 64 × 64 blocks of cooperative 16 × 16 tiles, 64 invocations a workgroup.
pub const HALF_MATMUL_COOP: Kernel =
    Kernel::new::<Params>(&shaders::HALF_MATMUL_COOP, "half_matmul_coop", 5).with_wg(64);
/// `half_pack_operand.wgsl`: an operand rounded, untransposed and zero-padded.
pub const HALF_PACK_OPERAND: Kernel =
    Kernel::new::<PackParams>(&shaders::HALF_PACK_OPERAND, "half_pack_operand", 3);
/// `half_matmul_coop8.wgsl`: 32 × 32 blocks of cooperative 8 × 8 tiles, 64 invocations a workgroup.
pub const HALF_MATMUL_COOP8: Kernel =
    Kernel::new::<Params>(&shaders::HALF_MATMUL_COOP8, "half_matmul_coop8", 5).with_wg(64);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    HALF_MATMUL,
    HALF_MATMUL_COOP,
    HALF_MATMUL_COOP8,
    HALF_PACK_OPERAND,
];

/// Rows and columns of C are padded to this (the tile of both padded kernels).
pub const BLOCK: usize = 64;
/// K is padded to this (one cooperative tile).
pub const K_STEP: usize = 16;
/// Products with fewer multiply-adds than this take the rounded float32 path (packing is not worth it).
pub const PACKED_MIN_MACS: usize = 1 << 18;

pub use crate::engine::precision::HalfPath;

/// Every path this device can run (the tests and benches compare them): rounded float32, f16 tiles with
/// `SHADER_F16`, and cooperative matrices when they are this device's [`path`].
pub fn paths_on(gpu: &'static Gpu) -> Vec<HalfPath> {
    let mut paths = vec![HalfPath::RoundedF32];
    if gpu.half.f16 {
        paths.push(HalfPath::F16Tiles);
    }
    if let p @ HalfPath::Cooperative { .. } = path(gpu) {
        paths.push(p);
    }
    paths
}

/// The path this device takes, decided on first use: cooperative matrices when enabled and their self-test
/// passes, else f16 tiles with `SHADER_F16`, else rounded float32.
pub fn path(gpu: &'static Gpu) -> HalfPath {
    *gpu.half_path.get_or_init(|| decide(gpu))
}

/// Why the cooperative path is not taken on this device, if it is not (for `info`).
pub fn coop_note(gpu: &'static Gpu) -> String {
    let h = &gpu.half;
    if !h.coop_offered {
        return "cooperative matrices: not offered (no 16×16×16 or 8×8×8 f16 × f16 → f32 configuration)"
            .into();
    }
    if !h.coop_enabled {
        return "cooperative matrices: offered, off (SITSGPU_COOPERATIVE_MATRIX=1 turns them on: \
                wgpu marks them experimental)"
            .into();
    }
    match path(gpu) {
        HalfPath::Cooperative { tile, .. } => {
            format!("cooperative matrices: on, {tile}×{tile} tiles (self-test ok)")
        }
        _ => "cooperative matrices: on but their self-test FAILED against the CPU: not used".into(),
    }
}

fn decide(gpu: &'static Gpu) -> HalfPath {
    let fallback = if gpu.half.f16 {
        HalfPath::F16Tiles
    } else {
        HalfPath::RoundedF32
    };
    if gpu.half.coop_enabled {
        let coop = HalfPath::Cooperative {
            per_wg: (BLOCK as u32 / gpu.half.subgroup_max.max(1)).max(1),
            tile: gpu.half.coop_tile,
        };
        if path_self_test(gpu, coop) {
            return coop;
        }
        eprintln!(
            "sitsgpu: the cooperative-matrix product disagrees with the CPU reference on this adapter; \
             using {fallback} instead"
        );
    }
    fallback
}

/// Runs `path` on a product whose M, K and N are not multiples of the tiles, with a batch, a shared and a
/// transposed operand, and compares it with [`cpu_forward`] (float32 sums in another order: within
/// 4 · K · 2^-23 of Σ|a·b|); then, on a padded path, the same product starting from a bias, written into
/// a larger output at an offset ([`gpu_packed_product_into`], as the convolutions use it). A device whose
/// driver gets cooperative matrices wrong fails here, not in a training run (`sitsgpu info` runs it on the
/// device's path too).
pub fn path_self_test(gpu: &'static Gpu, path: HalfPath) -> bool {
    let (batch, m, k, n) = (2, 70, 40, 130);
    let a: Vec<f32> = (0..batch * m * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 53 % 89) as f32 - 44.0) / 13.0)
        .collect();
    let (oa, ob) = (
        Operand {
            batch,
            trans: false,
        },
        Operand {
            batch: 1,
            trans: true,
        },
    );
    let want = cpu_forward(&a, oa, &b, ob, batch, m, k, n);
    let got = gpu_product(gpu, path, (&a, oa), (&b, ob), batch, m, k, n);
    if !within_sum_order(&got, &want, &a, oa, &b, ob, batch, m, k, n) {
        return false;
    }
    if path == HalfPath::RoundedF32 {
        return true;
    }
    // The same product into the middle of a larger output, starting from a bias (a convolution's chunk):
    // the bias, plus the same sums.
    let bias: Vec<f32> = (0..m).map(|i| (i as f32 - 30.0) / 7.0).collect();
    let offset = 3;
    let got = {
        let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[v.len()], Device::Gpu);
        let (ta, tb, tbias) = (t(&a), t(&b), t(&bias));
        let (m_p, k_p, n_p) = padded(m, k, n);
        let pa = gpu_pack_operand(
            ta.gpu_storage("self-test"),
            batch,
            (m, k),
            false,
            (m_p, k_p),
        );
        let pb = gpu_pack_operand(tb.gpu_storage("self-test"), 1, (k, n), true, (k_p, n_p));
        let tile = gpu_bias_tile(tbias.gpu_storage("self-test"), m);
        let out = GpuStorage::alloc(gpu, offset + batch * m * n, "self-test");
        gpu_packed_product_into(
            path,
            (&pa, batch),
            (&pb, 1),
            (batch, m, k, n),
            (&out, offset),
            Some(&tile),
        );
        Storage::Gpu(out)
            .to_vec(offset + batch * m * n)
            .split_off(offset)
    };
    // The sums' bound, plus one rounding of the bias's addition.
    let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let mass = cpu_forward(&abs(&a), oa, &abs(&b), ob, batch, m, k, n);
    got.len() == want.len()
        && got.iter().enumerate().all(|(i, g)| {
            let w = want[i] + bias[(i / n) % m];
            (g - w).abs() <= 4.0 * k as f32 * mass[i] * 2f32.powi(-23) + w.abs() * 2f32.powi(-23)
        })
}

/// Whether `got` is `want` up to the order of the float32 sums: |got - want| ≤ 4 · K · 2^-23 · Σ_k |h(a) h(b)|
/// per element. Two IEEE float32 sums of K exact products are each within K · 2^-24 of the exact sum; the
/// factor 4 allows a matrix unit whose adder truncates or aligns its terms to a shared exponent (tensor cores
/// do). A layout or indexing bug is off by the values' own size, millions of times more.
#[allow(clippy::too_many_arguments)]
fn within_sum_order(
    got: &[f32],
    want: &[f32],
    a: &[f32],
    oa: Operand,
    b: &[f32],
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> bool {
    let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let mass = cpu_forward(&abs(a), oa, &abs(b), ob, batch, m, k, n);
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .zip(&mass)
            .all(|((g, w), s)| (g - w).abs() <= 4.0 * k as f32 * s * 2f32.powi(-23))
}

/// Uploads A and B, runs `path`, reads C back (the self-test and the tests).
#[allow(clippy::too_many_arguments)]
fn gpu_product(
    gpu: &'static Gpu,
    path: HalfPath,
    (a, oa): (&[f32], Operand),
    (b, ob): (&[f32], Operand),
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let ta = Tensor::from_vec(a.to_vec(), &[a.len()], Device::Gpu);
    let tb = Tensor::from_vec(b.to_vec(), &[b.len()], Device::Gpu);
    let c = gpu_forward_on(
        path,
        ta.gpu_storage("half_matmul"),
        oa,
        tb.gpu_storage("half_matmul"),
        ob,
        batch,
        m,
        k,
        n,
    );
    debug_assert!(std::ptr::eq(c.gpu, gpu));
    Storage::Gpu(c).to_vec(batch * m * n)
}

// ---- CPU reference ----

/// C (batch, M, N) = h(A) · h(B), float32 sums over k in increasing order (operands stored as described).
#[allow(clippy::too_many_arguments)]
pub fn cpu_forward(
    a: &[f32],
    oa: Operand,
    b: &[f32],
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let r = half::cpu_rounded;
    matmul::cpu_forward(&r(a), oa, &r(b), ob, batch, m, k, n)
}

/// half_pack_operand.wgsl's words: `batch` matrices of `rows × cols` (stored `cols × rows` when `trans`)
/// rounded, untransposed and zero-padded to `rows_p × cols_p` (`cols_p` even), two halves a word.
pub fn cpu_pack_operand(
    x: &[f32],
    batch: usize,
    (rows, cols): (usize, usize),
    trans: bool,
    (rows_p, cols_p): (usize, usize),
) -> Vec<u32> {
    let at = |b: usize, r: usize, c: usize| -> u32 {
        if r >= rows || c >= cols {
            return 0;
        }
        let base = b * rows * cols;
        half_bits(if trans {
            x[base + c * rows + r]
        } else {
            x[base + r * cols + c]
        }) as u32
    };
    let mut w = Vec::with_capacity(batch * rows_p * cols_p / 2);
    for b in 0..batch {
        for r in 0..rows_p {
            for c in (0..cols_p).step_by(2) {
                w.push(at(b, r, c) | at(b, r, c + 1) << 16);
            }
        }
    }
    w
}

// ---- GPU ----

/// The padded (M_p, K_p, N_p) of a product.
pub fn padded(m: usize, k: usize, n: usize) -> (usize, usize, usize) {
    (
        m.next_multiple_of(BLOCK),
        k.next_multiple_of(K_STEP),
        n.next_multiple_of(BLOCK),
    )
}

/// Launches half_pack_operand.wgsl (see [`cpu_pack_operand`]).
pub fn gpu_pack_operand(
    x: &GpuStorage,
    batch: usize,
    dims: (usize, usize),
    trans: bool,
    padded: (usize, usize),
) -> GpuStorage {
    gpu_pack_operand_at(x, 0, batch, dims, trans, padded)
}

/// [`gpu_pack_operand`] of the `batch` operands from element `offset` of `x` on (a chunk of a batch).
pub fn gpu_pack_operand_at(
    x: &GpuStorage,
    offset: usize,
    batch: usize,
    (rows, cols): (usize, usize),
    trans: bool,
    (rows_p, cols_p): (usize, usize),
) -> GpuStorage {
    let words = batch * rows_p * cols_p / 2;
    let p = GpuStorage::alloc(x.gpu, words.max(1), "half_pack_operand");
    HALF_PACK_OPERAND.dispatch(
        x.gpu,
        &[x.buffer(), p.buffer()],
        &PackParams {
            rows: rows as u32,
            cols: cols as u32,
            rows_p: rows_p as u32,
            cols_p: cols_p as u32,
            batch: batch as u32,
            trans: trans as u32,
            offset: offset as u32,
            _pad: 0,
        },
        Grid::threads(words),
    );
    p
}

/// C (batch, M, N) = h(A) · h(B) on this device's [`path`].
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
    let mut p = path(a.gpu);
    // The padded kernels pay for packing and padding: small or skinny products (the plan would split K)
    // take the rounded float32 path, whose numbers are the same up to the order of the sums.
    if batch * m * k * n < PACKED_MIN_MACS || matmul::plan(batch, m, k, n).splits > 1 {
        p = HalfPath::RoundedF32;
    }
    gpu_forward_on(p, a, oa, b, ob, batch, m, k, n)
}

/// [`gpu_forward`] on an explicit path (tests and benchmarks compare them).
#[allow(clippy::too_many_arguments)]
pub fn gpu_forward_on(
    path: HalfPath,
    a: &GpuStorage,
    oa: Operand,
    b: &GpuStorage,
    ob: Operand,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> GpuStorage {
    if path == HalfPath::RoundedF32 {
        let (ra, rb) = (
            half::gpu_rounded(a, oa.batch * m * k),
            half::gpu_rounded(b, ob.batch * k * n),
        );
        return matmul::gpu_forward(&ra, oa, &rb, ob, batch, m, k, n);
    }
    let (m_p, k_p, n_p) = padded(m, k, n);
    let pa = gpu_pack_operand(a, oa.batch, (m, k), oa.trans, (m_p, k_p));
    let pb = gpu_pack_operand(b, ob.batch, (k, n), ob.trans, (k_p, n_p));
    gpu_packed_product(path, (&pa, oa.batch), (&pb, ob.batch), batch, m, k, n)
}

/// C (batch, M, N) from operands already packed by `half_pack_operand.wgsl` (or an unfolding like
/// `conv2d::mixed`'s): A (batches, M_p, K_p) and B (batches, K_p, N_p) halves, a batch count of 1
/// broadcast, on a padded path (cooperative matrices or f16 tiles).
pub fn gpu_packed_product(
    path: HalfPath,
    a: (&GpuStorage, usize),
    b: (&GpuStorage, usize),
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> GpuStorage {
    let c = GpuStorage::alloc(a.0.gpu, batch * m * n, "half_matmul");
    gpu_packed_product_into(path, a, b, (batch, m, k, n), (&c, 0), None);
    c
}

/// Columns of a bias tile: 16 copies of each row's bias (the cooperative kernels load it as the
/// accumulators' first value, 16 × 16 or 8 × 8 at a time).
pub const BIAS_TILE_COLS: usize = 16;

/// The bias tile of a product with M rows: (M_p, 16) float32, row m < M `bias[m]` sixteen times (rows past M
/// are left as they are: the kernels' rows past M are never kept).
pub fn gpu_bias_tile(bias: &GpuStorage, m: usize) -> GpuStorage {
    let m_p = m.next_multiple_of(BLOCK);
    let tile = GpuStorage::alloc(bias.gpu, m_p * BIAS_TILE_COLS, "half_matmul_bias_tile");
    gpu_copy_strided(
        bias,
        &tile,
        &StridedCopy {
            shape: vec![m, BIAS_TILE_COLS],
            src_offset: 0,
            src_strides: vec![1, 0],
            dst_offset: 0,
            dst_strides: vec![BIAS_TILE_COLS, 1],
        },
    );
    tile
}

/// [`gpu_packed_product`] written into `out` from element `offset` on (batch, M, N) instead of a new
/// tensor: a chunk of a larger output (`conv2d::mixed`'s chunks of images), without a copy where the kernel
/// stores C as it is (the f16 tiles always; the cooperative tiles when M and N are multiples of 64, else
/// through a padded C cropped into place). With a bias tile ([`gpu_bias_tile`]) every row m of C starts
/// from `bias[m]` and the products are added to it: a convolution's bias without a pass of its own.
pub fn gpu_packed_product_into(
    path: HalfPath,
    (pa, a_batches): (&GpuStorage, usize),
    (pb, b_batches): (&GpuStorage, usize),
    (batch, m, k, n): (usize, usize, usize, usize),
    (out, offset): (&GpuStorage, usize),
    bias_tile: Option<&GpuStorage>,
) {
    debug_assert!(
        path != HalfPath::RoundedF32,
        "half_matmul: packed operands need a padded path"
    );
    let gpu = pa.gpu;
    let (m_p, k_p, n_p) = padded(m, k, n);
    let mut params = Params {
        m: m as u32,
        n: n as u32,
        k_p: k_p as u32,
        batch: batch as u32,
        m_p: m_p as u32,
        n_p: n_p as u32,
        a_batch_stride: if a_batches == 1 {
            0
        } else {
            (m_p * k_p) as u32
        },
        b_batch_stride: if b_batches == 1 {
            0
        } else {
            (k_p * n_p) as u32
        },
        per_wg: 1,
        c_offset: offset as u32,
        has_bias: bias_tile.is_some() as u32,
        _pad: 0,
    };
    // Without a bias the kernels never read binding 3: any buffer does.
    let bias = bias_tile.unwrap_or(pa).buffer();
    let grid = |groups| {
        Grid::groups(groups)
            .flops(2 * batch * m_p * n_p * k_p)
            .bytes(2 * (a_batches * m_p * k_p + b_batches * k_p * n_p) + 4 * batch * m * n)
            .loop_len(k_p)
    };
    // The cooperative kernels store whole tiles: they write C_p (batch, M_p, N_p), cropped into place below
    // when padded; a subgroup takes a block of 4 × 4 tiles. The f16 tiles store C (batch, M, N) directly.
    let blocks = |edge: usize| batch * (m_p / edge) * (n_p / edge);
    let (kernel, groups, padded_out) = match path {
        HalfPath::Cooperative { per_wg, tile } => {
            params.per_wg = per_wg;
            let (kernel, edge) = if tile == 8 {
                (HALF_MATMUL_COOP8, 32)
            } else {
                (HALF_MATMUL_COOP, BLOCK)
            };
            (
                kernel,
                blocks(edge).div_ceil(per_wg as usize),
                (m_p, n_p) != (m, n),
            )
        }
        _ => (HALF_MATMUL, blocks(BLOCK), false),
    };
    if !padded_out {
        kernel.dispatch(
            gpu,
            &[pa.buffer(), pb.buffer(), out.buffer(), bias],
            &params,
            grid(groups),
        );
        return;
    }
    params.c_offset = 0;
    let c = GpuStorage::alloc(gpu, batch * m_p * n_p, kernel.entry);
    kernel.dispatch(
        gpu,
        &[pa.buffer(), pb.buffer(), c.buffer(), bias],
        &params,
        grid(groups),
    );
    gpu_copy_strided(
        &c,
        out,
        &StridedCopy {
            shape: vec![batch, m, n],
            src_offset: 0,
            src_strides: vec![m_p * n_p, n_p, 1],
            dst_offset: offset,
            dst_strides: vec![m * n, n, 1],
        },
    );
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::random_vec;

    fn op(batch: usize, trans: bool) -> Operand {
        Operand { batch, trans }
    }

    fn random_f32(n: usize, seed: u64) -> Vec<f32> {
        random_vec(n, -2.0, 2.0, seed)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// Every path this adapter can run, on products with ragged edges, a batch, a shared operand and
    /// transposed operands: the packed operands equal the CPU's words, and C equals the CPU reference up to
    /// the order of the sums. On Debian 12's lavapipe that is the f16 tiles and rounded float32; the
    /// cooperative path runs where the adapter has it and `SITSGPU_COOPERATIVE_MATRIX=1` (Mesa ≥ 25.1's
    /// lavapipe: `.ci/coop-lavapipe`; a lent GPU: benches/device/), and must then have passed its self-test.
    #[test]
    fn gpu_paths_match_the_cpu_reference() {
        let Some(gpu) = crate::engine::testing::gpu_or_skip("half-precision products") else {
            return;
        };
        let paths = paths_on(gpu);
        if !gpu.half.f16 {
            eprintln!("half-precision products: SHADER_F16 not offered: f16 tiles not tested here");
        }
        if !matches!(path(gpu), HalfPath::Cooperative { .. }) {
            // Offered and turned on, the cooperative path must pass its self-test (.ci/coop-lavapipe).
            assert!(!gpu.half.coop_enabled, "{}", coop_note(gpu));
            eprintln!("half-precision products: {}", coop_note(gpu));
        }
        let cases = [
            (1, 64, 16, 64, 1, 1, false, false),
            (3, 70, 33, 129, 3, 1, false, true),
            (2, 5, 100, 3, 1, 2, true, false),
            (2, 130, 7, 65, 2, 2, true, true),
        ];
        for (i, &(batch, m, k, n, na, nb, ta, tb)) in cases.iter().enumerate() {
            let a = random_f32(na * m * k, 10 + i as u64);
            let b = random_f32(nb * k * n, 20 + i as u64);
            let (oa, ob) = (op(na, ta), op(nb, tb));
            let want = cpu_forward(&a, oa, &b, ob, batch, m, k, n);
            for &p in &paths {
                let got = gpu_product(gpu, p, (&a, oa), (&b, ob), batch, m, k, n);
                assert!(
                    within_sum_order(&got, &want, &a, oa, &b, ob, batch, m, k, n),
                    "{p} on case {i}: worst |Δ| {}",
                    crate::engine::testing::max_abs_diff(&got, &want)
                );
            }
            // The packed operand, word for word.
            let (m_p, k_p, _) = padded(m, k, n);
            let t = Tensor::from_vec(a.clone(), &[a.len()], Device::Gpu);
            let words = gpu_pack_operand(t.gpu_storage("test"), na, (m, k), ta, (m_p, k_p));
            let got: Vec<u32> = Storage::Gpu(words)
                .to_vec(na * m_p * k_p / 2)
                .into_iter()
                .map(f32::to_bits)
                .collect();
            assert_eq!(got, cpu_pack_operand(&a, na, (m, k), ta, (m_p, k_p)));
        }
    }

    #[test]
    fn the_reference_multiplies_the_rounded_operands() {
        // 1 + 2^-12 rounds to 1 (a tie, to even), 3 · 2^-12 + 1 to 1 + 2^-10: the products see the halves.
        let a = [1.0 + 2f32.powi(-12), 2.0];
        let b = [1.0 + 3.0 * 2f32.powi(-12), 1.0];
        let c = cpu_forward(&a, op(1, false), &b, op(1, false), 1, 1, 2, 1);
        assert_eq!(c, vec![1.0 + 2f32.powi(-10) + 2.0]);
    }

    /// Recorded under mixed, a matmul's gradients are the plain product's on the rounded operands with dC
    /// rounded as a float16 gradient (overflowing to infinity), on the CPU and on the GPU (whose backward
    /// runs the float32 kernels on those operands), bit for bit.
    #[test]
    fn mixed_gradients_are_the_plain_ones_on_rounded_operands() {
        use crate::engine::precision::{with_precision, Precision};
        use crate::engine::storage::Device;
        use crate::engine::tensor::Tensor;
        let mut devices = vec![Device::Cpu];
        if crate::engine::testing::gpu_or_skip("mixed matmul's autograd").is_some() {
            devices.push(Device::Gpu);
        }
        for d in devices {
            let a = Tensor::rand_uniform(&[3, 5, 7], -2.0, 2.0, 21, d).requires_grad_();
            let b = Tensor::rand_uniform(&[7, 4], -2.0, 2.0, 22, d).requires_grad_();
            // dC = 2 C · 30000: large enough that some of it overflows a half.
            let c = with_precision(Precision::Mixed, || a.matmul(&b));
            let loss = &(&c * &c).sum_all() * 30000.0;
            loss.backward();
            let mixed = (a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec());
            let (ha, hb) = (
                a.clone().rounded_to_half().requires_grad_(),
                b.clone().rounded_to_half().requires_grad_(),
            );
            let c = ha.matmul(&hb);
            let dc = &(&c * 2.0) * 30000.0;
            c.backward_with(dc.rounded_gradient());
            let plain = (ha.grad().unwrap().to_vec(), hb.grad().unwrap().to_vec());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&mixed.0), bits(&plain.0), "{d:?}: dA");
            assert_eq!(bits(&mixed.1), bits(&plain.1), "{d:?}: dB");
            assert!(mixed.1.iter().any(|v| !v.is_finite()), "nothing overflowed");
        }
    }

    #[test]
    fn the_packed_operand_is_rounded_untransposed_and_padded() {
        // A 2 × 3 matrix stored transposed (3 × 2), padded to 4 × 4.
        let x = [1.0f32, 4.0, 2.0, 5.0, 3.0, 65520.0];
        let w = cpu_pack_operand(&x, 1, (2, 3), true, (4, 4));
        let halves: Vec<f32> = half::cpu_unpack(&w, 16);
        #[rustfmt::skip]
        let want = [1.0, 2.0, 3.0, 0.0,
                    4.0, 5.0, 65504.0, 0.0,
                    0.0, 0.0, 0.0, 0.0,
                    0.0, 0.0, 0.0, 0.0];
        assert_eq!(halves, want);
    }

    #[test]
    fn padding_covers_the_tiles() {
        assert_eq!(padded(1, 1, 1), (64, 16, 64));
        assert_eq!(padded(64, 16, 128), (64, 16, 128));
        assert_eq!(padded(65, 17, 129), (128, 32, 192));
    }

    #[test]
    fn rounding_bounds_the_difference_from_float32() {
        // |h(a)h(b) - ab| ≤ (2u + u²)|ab| per term, u = 2^-11.
        let (m, k, n) = (5, 33, 7);
        let a = random_f32(m * k, 3);
        let b = random_f32(k * n, 4);
        let full = matmul::cpu_forward(&a, op(1, false), &b, op(1, false), 1, m, k, n);
        let half = cpu_forward(&a, op(1, false), &b, op(1, false), 1, m, k, n);
        let u = 2f32.powi(-11);
        for i in 0..m {
            for j in 0..n {
                let mass: f32 = (0..k).map(|p| (a[i * k + p] * b[p * n + j]).abs()).sum();
                let d = (full[i * n + j] - half[i * n + j]).abs();
                assert!(d <= (2.0 * u + u * u) * mass + 1e-5, "{d} vs {mass}");
            }
        }
    }
}
