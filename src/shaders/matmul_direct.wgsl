// matmul_direct.wgsl: matmul.wgsl's product (same Params: transposes, broadcast batch, split-K partials)
// without workgroup memory: each invocation owns four neighbouring outputs of a row and reads A and B straight
// from memory. The variant for software adapters (a CPU's caches do what workgroup memory does on a GPU, and
// barriers split a workgroup's work into serial phases).
//
// Math:     C[s, b, m, n] = Σ_{k in slice s} A[b, m, k] · B[b, k, n]   (see matmul.wgsl)
// Threads:  invocation i → columns 4·j .. 4·j + 3 of row m of batch b of split s,
//           i = ((s · batch + b) · M + m) · ceil(N / 4) + j: neighbouring invocations share the row of A and read
//           neighbouring columns of B. The loop walks the split's K in order. ceil(splits·batch·M·ceil(N/4) / 256)
//           workgroups, folded.
// Bindings: 0 a (read) | 1 b (read) | 2 c (read_write) (splits, batch, M, N) | 3 params (uniform)
// CPU reference: engine::ops::matmul::cpu_forward.

const WG: u32 = 256u;

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_batch_stride: u32, b_batch_stride: u32, trans_a: u32, trans_b: u32,
    k_chunk: u32, splits: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read>       a: array<f32>;
@group(0) @binding(1) var<storage, read>       b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

fn load_b(base: u32, k: u32, n: u32) -> f32 {
    if (n >= params.n) { return 0.0; }
    if (params.trans_b == 1u) { return b[base + n * params.k + k]; }
    return b[base + k * params.n + n];
}

@compute @workgroup_size(WG)
fn matmul_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let groups = (params.n + 3u) / 4u;
    if (i >= params.splits * params.batch * params.m * groups) { return; }
    let col = 4u * (i % groups);
    let row = (i / groups) % params.m;
    let bt = (i / (groups * params.m)) % params.batch;
    let split = i / (groups * params.m * params.batch);
    let a_base = bt * params.a_batch_stride;
    let b_base = bt * params.b_batch_stride;
    let k_begin = split * params.k_chunk;
    let k_end = min(params.k, k_begin + params.k_chunk);
    var acc = vec4<f32>(0.0);
    for (var k = k_begin; k < k_end; k = k + 1u) {
        var av: f32;
        if (params.trans_a == 1u) { av = a[a_base + k * params.m + row]; } else { av = a[a_base + row * params.k + k]; }
        let bv = vec4<f32>(load_b(b_base, k, col), load_b(b_base, k, col + 1u),
                           load_b(b_base, k, col + 2u), load_b(b_base, k, col + 3u));
        acc = acc + av * bv;
    }
    let o = ((split * params.batch + bt) * params.m + row) * params.n + col;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < params.n) { c[o + j] = acc[j]; }
    }
}
