// matmul.wgsl: batched matrix product through workgroup-memory tiles, with optional transposes and a
// broadcast batch (batch stride 0).
//
// Math:     C[b, m, n] = Σ_k A[b, m, k] · B[b, k, n],   A (batch, M, K) stored as (K, M) when trans_a = 1,
//           B (batch, K, N) stored as (N, K) when trans_b = 1; C (batch, M, N) contiguous.
//           The backward is two more matmuls with transposes (dA = dC·Bᵀ, dB = Aᵀ·dC): no kernel of its own.
// Threads:  one workgroup (16 × 16 = 256 invocations) per 64 × 64 tile of C; each invocation accumulates a
//           4 × 4 block (rows ty + 16 i, columns tx + 16 j) in registers. The K axis is walked 16 at a time:
//           the workgroup first copies a 64 × 16 slab of A and a 16 × 64 slab of B into workgroup memory
//           (each invocation loads 4 + 4 values, consecutive invocations reading consecutive addresses), waits
//           at a barrier, then every invocation reads its rows/columns of the slabs 16 times. Each A and B
//           value loaded from memory is reused 64 times. Workgroups: batch · ceil(M/64) · ceil(N/64), 2-D fold.
//           Workgroup memory: 2 × 1024 f32 = 8 KiB (WebGPU guarantees 16 KiB).
// Bindings: 0 a (read) | 1 b (read) | 2 c (read_write) (batch, M, N) | 3 params (uniform)
// CPU reference: engine::ops::matmul::cpu_forward.

const WG: u32 = 256u;
const TILE: u32 = 64u;
const TK: u32 = 16u;

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_batch_stride: u32,   // elements between batches of A (0: one A shared by every batch)
    b_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
}

@group(0) @binding(0) var<storage, read>       a: array<f32>;
@group(0) @binding(1) var<storage, read>       b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

var<workgroup> tile_a: array<f32, 1024>;   // [kk * TILE + mm] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<f32, 1024>;   // [kk * TILE + nn] = B[k0 + kk, n0 + nn]

fn load_a(base: u32, m: u32, k: u32) -> f32 {
    if (m >= params.m || k >= params.k) { return 0.0; }
    if (params.trans_a == 1u) { return a[base + k * params.m + m]; }
    return a[base + m * params.k + k];
}

fn load_b(base: u32, k: u32, n: u32) -> f32 {
    if (k >= params.k || n >= params.n) { return 0.0; }
    if (params.trans_b == 1u) { return b[base + n * params.k + k]; }
    return b[base + k * params.n + n];
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let tiles_m = (params.m + TILE - 1u) / TILE;
    let tiles_n = (params.n + TILE - 1u) / TILE;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= params.batch * tiles_m * tiles_n) { return; }
    let n0 = (wg % tiles_n) * TILE;
    let m0 = ((wg / tiles_n) % tiles_m) * TILE;
    let bt = wg / (tiles_n * tiles_m);
    let a_base = bt * params.a_batch_stride;
    let b_base = bt * params.b_batch_stride;
    let tx = lid % 16u;
    let ty = lid / 16u;

    var acc: array<f32, 16>;   // acc[i * 4 + j] = C[m0 + ty + 16 i, n0 + tx + 16 j]
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            // Pick the slab layout that makes consecutive invocations read consecutive addresses.
            var mm = e / TK;
            var kk = e % TK;
            if (params.trans_a == 1u) { mm = e % TILE; kk = e / TILE; }
            tile_a[kk * TILE + mm] = load_a(a_base, m0 + mm, k0 + kk);
            var nn = e % TILE;
            var kb = e / TILE;
            if (params.trans_b == 1u) { nn = e / TK; kb = e % TK; }
            tile_b[kb * TILE + nn] = load_b(b_base, k0 + kb, n0 + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = tile_a[kk * TILE + ty + 16u * i];
                bv[i] = tile_b[kk * TILE + tx + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            let row = m0 + ty + 16u * i;
            let col = n0 + tx + 16u * j;
            if (row < params.m && col < params.n) {
                c[(bt * params.m + row) * params.n + col] = acc[i * 4u + j];
            }
        }
    }
}
