// index_select_backward.wgsl: gradient of index_select, as a gather (an index may be picked several times;
// instead of scattering with atomics, each input element sums the output gradients that picked it).
//
// Math:     dx[o, i, k] = Σ_{j : idx[j] = i} dy[o, j, k]
// Threads:  one invocation per input element, a loop over the n_idx indices; WG = 256; 2-D fold.
// Bindings: 0 dy (read) (outer, n_idx, inner) | 1 idx (read) u32 (n_idx) | 2 dx (read_write) (outer, n_in, inner)
//           | 3 params (uniform)
// CPU reference: engine::ops::movement::index_select::cpu_backward.

const WG: u32 = 256u;

struct Params { outer: u32, n_in: u32, n_idx: u32, inner: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;
@group(0) @binding(1) var<storage, read>       idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn index_select_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.outer * params.n_in * params.inner) { return; }
    let k = i % params.inner;
    let row = (i / params.inner) % params.n_in;
    let o = i / (params.inner * params.n_in);
    var acc = 0.0;
    for (var j = 0u; j < params.n_idx; j = j + 1u) {
        if (idx[j] == row) { acc = acc + dy[(o * params.n_idx + j) * params.inner + k]; }
    }
    dx[i] = acc;
}
