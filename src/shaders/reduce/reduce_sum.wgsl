// reduce_sum.wgsl: sum along one axis of a contiguous tensor viewed as (outer, r, inner), optionally in
// chunks of the axis (a first pass of a two-pass reduction when the axis is long and the output small).
//
// Math:     y[o, q, k] = Σ_{j = q·chunk}^{min(r, (q+1)·chunk) - 1} x[o, j, k],   q < nchunks = ceil(r / chunk)
//           (one chunk covering the whole axis is the plain sum; the host then sums the nchunks partials.)
// Threads:  one invocation per output element (outer · nchunks · inner of them), a sequential loop over its
//           chunk, so the order of additions is fixed: deterministic. WG = 256; 2-D fold.
// Bindings: 0 x (read) (outer, r, inner) | 1 y (read_write) (outer, nchunks, inner) | 2 params (uniform)
// CPU reference: engine::ops::reduce::reduce_sum::cpu_sum.  Backward: expand (copy_strided with stride 0).

const WG: u32 = 256u;

struct Params { outer: u32, r: u32, inner: u32, chunk: u32, nchunks: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn reduce_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.outer * params.nchunks * params.inner) { return; }
    let k = i % params.inner;
    let q = (i / params.inner) % params.nchunks;
    let o = i / (params.inner * params.nchunks);
    let start = q * params.chunk;
    let end = min(params.r, start + params.chunk);
    var acc = 0.0;
    for (var j = start; j < end; j = j + 1u) {
        acc = acc + x[(o * params.r + j) * params.inner + k];
    }
    y[i] = acc;
}
