// half_matmul.wgsl: C = A · B from half-precision operands with float32 accumulation, for adapters with
// `SHADER_F16` but no usable matrix units (engine/ops/linalg/half_matmul.rs). Half the operand bytes of
// matmul.wgsl; the same tiles and the same arithmetic once the halves are in workgroup memory.
//
// Math:     C[b, m, n] = Σ_k A[b, m, k] · B[b, k, n] for m < M, n < N, over padded operands: A (batch_a, M_p,
//           K_p) and B (batch_b, K_p, N_p) as binary16 (half_pack_operand.wgsl: rounded to nearest even, zero
//           past the logical M × K and K × N), M_p and N_p multiples of 64, K_p of 16; C (batch, M, N)
//           float32, plus bias[m] first when has_bias = 1 (a convolution's bias: conv2d::mixed). Each product
//           of two halves is exact in float32; the sum runs over k in increasing order, as matmul.wgsl's does.
// Threads:  one workgroup (16 × 16 = 256 invocations) per 64 × 64 tile of C; invocation (ty, tx) accumulates
//           rows 4·ty..4·ty+3 × columns 4·tx..4·tx+3 in four vec4 registers. K is walked 16 at a time: the
//           workgroup widens a 64 × 16 slab of A and a 16 × 64 slab of B to float32 in workgroup memory (4 + 4
//           loads per invocation, no bounds tests: the operands are padded), then each invocation runs 16
//           vec4 multiply-adds. Workgroups: batch · M_p/64 · N_p/64, 2-D fold. Workgroup memory 8 KiB.
// Bindings: 0 a (batch_a · M_p · K_p halves) | 1 b (batch_b · K_p · N_p halves) |
//           2 c (batch, M, N) from element c_offset on | 3 bias tile (M_p, 16) float32, row m the
//           bias of row m of C 16 times (half_matmul::gpu_bias_tile; any buffer when has_bias = 0) |
//           4 params (uniform)
// CPU reference: engine::ops::linalg::half_matmul::cpu_forward. Needs SHADER_F16 (`enable f16`). fma_step and
// store_row are matmul.wgsl's (the same text: engine::kernels checks store_row).
// Backward: none of its own (the backward of a product is two products).

enable f16;

const WG: u32 = 256u;
const TILE: u32 = 64u;
const TK: u32 = 16u;

struct Params {
    m: u32, n: u32, k_p: u32, batch: u32,  // logical M, N; padded K; batches of C
    m_p: u32, n_p: u32,                    // padded M, N (multiples of 64)
    a_batch_stride: u32,                   // halves between batches of A (0: one A for every batch)
    b_batch_stride: u32,
    per_wg: u32,                           // blocks per workgroup (64 / largest subgroup size)
    c_offset: u32,                         // where C starts in its binding (a chunk of a larger output)
    has_bias: u32,                         // 1: C starts from the bias tile (C[b, m, n] = bias[m] + Σ ...)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;   // (M_p, 16): row m is bias[m] × 16
@group(0) @binding(4) var<uniform>             params: Params;

var<workgroup> tile_a: array<vec4<f32>, 256>;   // [kk * 16 + mm / 4][mm % 4] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<vec4<f32>, 256>;   // [kk * 16 + nn / 4][nn % 4] = B[k0 + kk, n0 + nn]

var<private> acc0: vec4<f32>;   // C[m0 + 4 ty + i, n0 + 4 tx .. 4 tx + 3] for i = 0..3
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

// One step of the inner product: row slice kk of the A slab times row kk of the B slab.
fn fma_step(kk: u32, ty: u32, tx: u32) {
    let av = tile_a[kk * 16u + ty];
    let bv = tile_b[kk * 16u + tx];
    acc0 = acc0 + av.x * bv;
    acc1 = acc1 + av.y * bv;
    acc2 = acc2 + av.z * bv;
    acc3 = acc3 + av.w * bv;
}

fn store_row(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) { return; }
    let o = base + row * params.n;
    if (col < params.n) { c[o + col] = v.x; }
    if (col + 1u < params.n) { c[o + col + 1u] = v.y; }
    if (col + 2u < params.n) { c[o + col + 2u] = v.z; }
    if (col + 3u < params.n) { c[o + col + 3u] = v.w; }
}

@compute @workgroup_size(WG)
fn half_matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let tiles_m = params.m_p / TILE;
    let tiles_n = params.n_p / TILE;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= params.batch * tiles_m * tiles_n) { return; }
    let n0 = (wg % tiles_n) * TILE;
    let m0 = ((wg / tiles_n) % tiles_m) * TILE;
    let bt = wg / (tiles_n * tiles_m);
    let a_base = bt * params.a_batch_stride + m0 * params.k_p;
    let b_base = bt * params.b_batch_stride + n0;
    let tx = lid % 16u;
    let ty = lid / 16u;

    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    if (params.has_bias == 1u) {
        // The bias first, then the products: one pass instead of a second one over C.
        let r = (m0 + 4u * ty) * 16u;
        acc0 = vec4<f32>(bias[r]);
        acc1 = vec4<f32>(bias[r + 16u]);
        acc2 = vec4<f32>(bias[r + 32u]);
        acc3 = vec4<f32>(bias[r + 48u]);
    }
    for (var k0 = 0u; k0 < params.k_p; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            // Consecutive invocations read consecutive addresses of both operands.
            let mm = e / TK;
            let kk = e % TK;
            tile_a[kk * 16u + mm / 4u][mm % 4u] = f32(a[a_base + mm * params.k_p + k0 + kk]);
            let nn = e % TILE;
            let kb = e / TILE;
            tile_b[kb * 16u + nn / 4u][nn % 4u] = f32(b[b_base + (k0 + kb) * params.n_p + nn]);
        }
        workgroupBarrier();
        fma_step(0u, ty, tx);  fma_step(1u, ty, tx);  fma_step(2u, ty, tx);  fma_step(3u, ty, tx);
        fma_step(4u, ty, tx);  fma_step(5u, ty, tx);  fma_step(6u, ty, tx);  fma_step(7u, ty, tx);
        fma_step(8u, ty, tx);  fma_step(9u, ty, tx);  fma_step(10u, ty, tx); fma_step(11u, ty, tx);
        fma_step(12u, ty, tx); fma_step(13u, ty, tx); fma_step(14u, ty, tx); fma_step(15u, ty, tx);
        workgroupBarrier();
    }
    let base = params.c_offset + bt * params.m * params.n;
    let row = m0 + 4u * ty;
    let col = n0 + 4u * tx;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
}
