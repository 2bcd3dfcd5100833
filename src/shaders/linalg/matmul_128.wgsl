// matmul_128.wgsl: matmul.wgsl's product (same Params, transposes, broadcast batch and split-K) with a larger
// register tile for big matrices: each invocation owns 8 × 8 outputs, so every value staged in workgroup
// memory is reused 128 times and each workgroup load feeds 16 multiply-adds (4 in matmul.wgsl).
//
// Math:     C[s, b, m, n] = Σ_{k in slice s} A[b, m, k] · B[b, k, n]   (see matmul.wgsl)
// Threads:  one workgroup (16 × 16 = 256 invocations) per 128 × 128 tile of one split's C. Invocation (ty, tx)
//           owns rows {4 ty + i, 64 + 4 ty + i} × columns {4 tx + j, 64 + 4 tx + j} (i, j < 4), held in sixteen
//           named vec4 registers (cRh: row R of the 8, h = columns 0..3 (a) or 64.. (b)). K is walked 8 at a
//           time: a 128 × 8 slab of A and an 8 × 128 slab of B are copied to workgroup memory (4 + 4 loads per
//           invocation, coalesced), then 8 steps of two vec4 of A times two vec4 of B (64 multiply-adds).
//           Workgroups: splits · batch · ceil(M/128) · ceil(N/128), 2-D fold. Workgroup memory 8 KiB.
// Bindings: 0 a (read) | 1 b (read) | 2 c (read_write) (splits, batch, M, N) | 3 params (uniform)
// CPU reference: engine::ops::linalg::matmul::cpu_forward.

const WG: u32 = 256u;
const TILE: u32 = 128u;
const TK: u32 = 8u;

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

var<workgroup> tile_a: array<vec4<f32>, 256>;   // [kk * 32 + mm / 4][mm % 4] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<vec4<f32>, 256>;   // [kk * 32 + nn / 4][nn % 4] = B[k0 + kk, n0 + nn]

var<private> c0a: vec4<f32>; var<private> c0b: vec4<f32>; var<private> c1a: vec4<f32>; var<private> c1b: vec4<f32>;
var<private> c2a: vec4<f32>; var<private> c2b: vec4<f32>; var<private> c3a: vec4<f32>; var<private> c3b: vec4<f32>;
var<private> c4a: vec4<f32>; var<private> c4b: vec4<f32>; var<private> c5a: vec4<f32>; var<private> c5b: vec4<f32>;
var<private> c6a: vec4<f32>; var<private> c6b: vec4<f32>; var<private> c7a: vec4<f32>; var<private> c7b: vec4<f32>;

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

fn fma_step(kk: u32, ty: u32, tx: u32) {
    let a0 = tile_a[kk * 32u + ty];          // rows 4 ty .. 4 ty + 3
    let a1 = tile_a[kk * 32u + 16u + ty];    // rows 64 + 4 ty ..
    let b0 = tile_b[kk * 32u + tx];          // columns 4 tx .. 4 tx + 3
    let b1 = tile_b[kk * 32u + 16u + tx];    // columns 64 + 4 tx ..
    c0a = c0a + a0.x * b0; c0b = c0b + a0.x * b1;
    c1a = c1a + a0.y * b0; c1b = c1b + a0.y * b1;
    c2a = c2a + a0.z * b0; c2b = c2b + a0.z * b1;
    c3a = c3a + a0.w * b0; c3b = c3b + a0.w * b1;
    c4a = c4a + a1.x * b0; c4b = c4b + a1.x * b1;
    c5a = c5a + a1.y * b0; c5b = c5b + a1.y * b1;
    c6a = c6a + a1.z * b0; c6b = c6b + a1.z * b1;
    c7a = c7a + a1.w * b0; c7b = c7b + a1.w * b1;
}

fn store4(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) { return; }
    let o = base + row * params.n;
    if (col < params.n) { c[o + col] = v.x; }
    if (col + 1u < params.n) { c[o + col + 1u] = v.y; }
    if (col + 2u < params.n) { c[o + col + 2u] = v.z; }
    if (col + 3u < params.n) { c[o + col + 3u] = v.w; }
}

@compute @workgroup_size(WG)
fn matmul_128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + TILE - 1u) / TILE;
    let tiles_n = (params.n + TILE - 1u) / TILE;
    let per_split = params.batch * tiles_m * tiles_n;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (wg >= params.splits * per_split) { return; }   // uniform per workgroup: barriers stay uniform
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
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            var mm = e / TK;                  // consecutive invocations: consecutive k of a row of A
            var kk = e % TK;
            if (params.trans_a == 1u) { mm = e % TILE; kk = e / TILE; }
            tile_a[kk * 32u + mm / 4u][mm % 4u] = load_a(a_base, m0 + mm, k0 + kk, k_end);
            var nn = e % TILE;                // consecutive invocations: consecutive n of a row of B
            var kb = e / TILE;
            if (params.trans_b == 1u) { nn = e / TK; kb = e % TK; }
            tile_b[kb * 32u + nn / 4u][nn % 4u] = load_b(b_base, k0 + kb, n0 + nn, k_end);
        }
        workgroupBarrier();
        fma_step(0u, ty, tx); fma_step(1u, ty, tx); fma_step(2u, ty, tx); fma_step(3u, ty, tx);
        fma_step(4u, ty, tx); fma_step(5u, ty, tx); fma_step(6u, ty, tx); fma_step(7u, ty, tx);
        workgroupBarrier();
    }
    let base = (split * params.batch + bt) * params.m * params.n;
    let r = m0 + 4u * ty;
    let ca = n0 + 4u * tx;
    let cb = ca + 64u;
    store4(base, r, ca, c0a);       store4(base, r, cb, c0b);
    store4(base, r + 1u, ca, c1a);  store4(base, r + 1u, cb, c1b);
    store4(base, r + 2u, ca, c2a);  store4(base, r + 2u, cb, c2b);
    store4(base, r + 3u, ca, c3a);  store4(base, r + 3u, cb, c3b);
    store4(base, r + 64u, ca, c4a); store4(base, r + 64u, cb, c4b);
    store4(base, r + 65u, ca, c5a); store4(base, r + 65u, cb, c5b);
    store4(base, r + 66u, ca, c6a); store4(base, r + 66u, cb, c6b);
    store4(base, r + 67u, ca, c7a); store4(base, r + 67u, cb, c7b);
}
