// softmax_backward.wgsl: gradient of softmax along one axis, from the saved output y.
//
// Math:     dx[o, j, k] = y[o, j, k] · (dy[o, j, k] - Σ_i dy[o, i, k] · y[o, i, k])
//           (the Jacobian of softmax is diag(y) - y yᵀ, applied to dy).
// Threads:  one invocation per (o, k) row, two passes over j; WG = 256; 2-D fold. Each invocation writes
//           only its own row of dx (a gather).
// Bindings: 0 y (read) (outer, r, inner) | 1 dy (read) | 2 dx (read_write) | 3 params (uniform)
// CPU reference: engine::ops::reduce::softmax::cpu_backward.

const WG: u32 = 256u;

struct Params { outer: u32, r: u32, inner: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       y: array<f32>;
@group(0) @binding(1) var<storage, read>       dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (row >= params.outer * params.inner) { return; }
    let k = row % params.inner;
    let base = (row / params.inner) * params.r * params.inner + k;
    let step = params.inner;
    var dot = 0.0;
    for (var j = 0u; j < params.r; j = j + 1u) { dot = dot + dy[base + j * step] * y[base + j * step]; }
    for (var j = 0u; j < params.r; j = j + 1u) {
        let p = base + j * step;
        dx[p] = y[p] * (dy[p] - dot);
    }
}
