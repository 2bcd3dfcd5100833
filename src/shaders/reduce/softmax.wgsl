// softmax.wgsl: softmax along one axis of a contiguous tensor viewed as (outer, r, inner).
//
// Math:     y[o, j, k] = exp(x[o, j, k] - m) / Σ_i exp(x[o, i, k] - m),   m = max_i x[o, i, k]
//           (subtracting the max keeps exp from overflowing; the result is unchanged).
// Threads:  one invocation per (o, k) row, three sequential passes over j (max, sum, write): the axes we
//           softmax over (time, classes, heads) are short. WG = 256; 2-D fold.
// Bindings: 0 x (read) (outer, r, inner) | 1 y (read_write) (outer, r, inner) | 2 params (uniform)
// CPU reference: engine::ops::reduce::softmax::cpu_forward.  Backward: softmax_backward.wgsl.

const WG: u32 = 256u;

struct Params { outer: u32, r: u32, inner: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (row >= params.outer * params.inner) { return; }
    let k = row % params.inner;
    let base = (row / params.inner) * params.r * params.inner + k;   // x[o, 0, k]
    let step = params.inner;
    var m = x[base];
    for (var j = 1u; j < params.r; j = j + 1u) { m = max(m, x[base + j * step]); }
    var s = 0.0;
    for (var j = 0u; j < params.r; j = j + 1u) { s = s + exp(x[base + j * step] - m); }
    for (var j = 0u; j < params.r; j = j + 1u) { y[base + j * step] = exp(x[base + j * step] - m) / s; }
}
