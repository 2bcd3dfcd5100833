// matmul.wgsl: batched matrix product through workgroup-memory tiles, with optional transposes, a broadcast
// batch (batch stride 0) and split-K (each split writes a partial product over its slice of K).
//
// Math:     C[s, b, m, n] = Σ_{k in slice s} A[b, m, k] · B[b, k, n],   slice s = [s·k_chunk, (s+1)·k_chunk) ∩ [0, K);
//           A (batch, M, K) stored as (K, M) when trans_a = 1, B (batch, K, N) stored as (N, K) when trans_b = 1;
//           C (splits, batch, M, N) contiguous. With splits = 1 that is the product itself; otherwise the host
//           sums the partials over s in index order (reduce_sum.wgsl): deterministic, no atomics.
//           The backward is two more matmuls with transposes (dA = dC·Bᵀ, dB = Aᵀ·dC): no kernel of its own.
// Threads:  one workgroup (16 × 16 = 256 invocations) per 64 × 64 tile of one split's C; invocation (ty, tx)
//           accumulates rows 4·ty..4·ty+3 × columns 4·tx..4·tx+3 in four vec4 registers (named, not an
//           array, so they stay in registers). K is walked 16 at a time: the workgroup copies a 64 × 16 slab of
//           A and a 16 × 64 slab of B into workgroup memory (4 + 4 loads per invocation, consecutive invocations
//           reading consecutive addresses), then each invocation runs 16 steps of one vec4 of A (broadcast) times
//           one vec4 of B: 16 multiply-adds per two workgroup loads, every staged value reused 64 times.
//           Workgroups: splits · batch · ceil(M/64) · ceil(N/64), 2-D fold. Workgroup memory 8 KiB.
// Bindings: 0 a (read) | 1 b (read) | 2 c (read_write) (splits, batch, M, N) | 3 params (uniform)
// CPU reference: engine::ops::linalg::matmul::cpu_forward.  Variant for big matrices: matmul_128.wgsl.

const WG: u32 = 256u;
const TILE: u32 = 64u;
const TK: u32 = 16u;

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_batch_stride: u32,   // elements between batches of A (0: one A shared by every batch)
    b_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    k_chunk: u32,          // K per split (a multiple of TK), K itself when splits = 1
    splits: u32,
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read>       a: array<f32>;
@group(0) @binding(1) var<storage, read>       b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

var<workgroup> tile_a: array<vec4<f32>, 256>;   // [kk * 16 + mm / 4][mm % 4] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<vec4<f32>, 256>;   // [kk * 16 + nn / 4][nn % 4] = B[k0 + kk, n0 + nn]

var<private> acc0: vec4<f32>;   // C[m0 + 4 ty + i, n0 + 4 tx .. 4 tx + 3] for i = 0..3
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

fn load_a(base: u32, m: u32, k: u32, k_end: u32) -> f32 {
    if (m >= params.m || k >= k_end) { return 0.0; }
    if (params.trans_a == 1u) { return a[base + k * params.m + m]; }
    return a[base + m * params.k + k];
}

fn load_b(base: u32, k: u32, n: u32, k_end: u32) -> f32 {
    if (k >= k_end || n >= params.n) { return 0.0; }
    if (params.trans_b == 1u) { return b[base + n * params.k + k]; }
    return b[base + k * params.n + n];
}

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
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + TILE - 1u) / TILE;
    let tiles_n = (params.n + TILE - 1u) / TILE;
    let per_split = params.batch * tiles_m * tiles_n;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= params.splits * per_split) { return; }
    let split = wg / per_split;
    let t = wg % per_split;
    let n0 = (t % tiles_n) * TILE;
    let m0 = ((t / tiles_n) % tiles_m) * TILE;
    let bt = t / (tiles_n * tiles_m);
    let a_base = bt * params.a_batch_stride;
    let b_base = bt * params.b_batch_stride;
    let k_begin = split * params.k_chunk;
    let k_end = min(params.k, k_begin + params.k_chunk);
    let tx = lid % 16u;
    let ty = lid / 16u;

    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            // Pick the slab layout that makes consecutive invocations read consecutive addresses.
            var mm = e / TK;
            var kk = e % TK;
            if (params.trans_a == 1u) { mm = e % TILE; kk = e / TILE; }
            tile_a[kk * 16u + mm / 4u][mm % 4u] = load_a(a_base, m0 + mm, k0 + kk, k_end);
            var nn = e % TILE;
            var kb = e / TILE;
            if (params.trans_b == 1u) { nn = e / TK; kb = e % TK; }
            tile_b[kb * 16u + nn / 4u][nn % 4u] = load_b(b_base, k0 + kb, n0 + nn, k_end);
        }
        workgroupBarrier();
        fma_step(0u, ty, tx);  fma_step(1u, ty, tx);  fma_step(2u, ty, tx);  fma_step(3u, ty, tx);
        fma_step(4u, ty, tx);  fma_step(5u, ty, tx);  fma_step(6u, ty, tx);  fma_step(7u, ty, tx);
        fma_step(8u, ty, tx);  fma_step(9u, ty, tx);  fma_step(10u, ty, tx); fma_step(11u, ty, tx);
        fma_step(12u, ty, tx); fma_step(13u, ty, tx); fma_step(14u, ty, tx); fma_step(15u, ty, tx);
        workgroupBarrier();
    }
    let base = (split * params.batch + bt) * params.m * params.n;
    let row = m0 + 4u * ty;
    let col = n0 + 4u * tx;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
}
