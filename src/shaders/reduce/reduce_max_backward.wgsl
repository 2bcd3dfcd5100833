// reduce_max_backward.wgsl: gradient of reduce_max. The output gradient goes to the saved argmax only.
//
// Math:     dx[o, j, k] = dy[o, k] if j == idx[o, k] else 0
// Threads:  one invocation per input element (a gather); WG = 256; 2-D fold.
// Bindings: 0 dy (read) (outer, inner) | 1 idx (read) u32 (outer, inner) | 2 dx (read_write) (outer, r, inner)
//           | 3 params (uniform)
// CPU reference: engine::ops::reduce::reduce_max::cpu_max_backward.

const WG: u32 = 256u;

struct Params { outer: u32, r: u32, inner: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;
@group(0) @binding(1) var<storage, read>       idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn reduce_max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.outer * params.r * params.inner) { return; }
    let k = i % params.inner;
    let j = (i / params.inner) % params.r;
    let o = i / (params.inner * params.r);
    let out = o * params.inner + k;
    dx[i] = select(0.0, dy[out], idx[out] == j);
}
