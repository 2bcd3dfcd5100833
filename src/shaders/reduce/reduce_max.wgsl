// reduce_max.wgsl: maximum along one axis of a contiguous tensor viewed as (outer, r, inner), with the index
// of the first maximal element (saved for the backward).
//
// Math:     y[o, k] = max_j x[o, j, k],   idx[o, k] = smallest j with x[o, j, k] = y[o, k]
// Threads:  one invocation per output element (outer · inner), sequential loop over j. WG = 256; 2-D fold.
// Bindings: 0 x (read) (outer, r, inner) | 1 y (read_write) (outer, inner) | 2 idx (read_write) u32
//           (outer, inner) | 3 params (uniform)
// CPU reference: engine::ops::reduce::reduce_max::cpu_max.  Backward: reduce_max_backward.wgsl.

const WG: u32 = 256u;

struct Params { outer: u32, r: u32, inner: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn reduce_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.outer * params.inner) { return; }
    let k = i % params.inner;
    let o = i / params.inner;
    var best = x[o * params.r * params.inner + k];
    var arg = 0u;
    for (var j = 1u; j < params.r; j = j + 1u) {
        let v = x[(o * params.r + j) * params.inner + k];
        if (v > best) { best = v; arg = j; }
    }
    y[i] = best;
    idx[i] = arg;
}
