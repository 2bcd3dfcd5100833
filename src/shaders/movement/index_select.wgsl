// index_select.wgsl: picks entries along one axis by index (torch.index_select).
//
// Math:     y[o, j, k] = x[o, idx[j], k]    x viewed as (outer, n_in, inner), y as (outer, n_idx, inner)
// Threads:  one invocation per output element; WG = 256; 2-D fold.
// Bindings: 0 x (read) (outer, n_in, inner) | 1 idx (read) u32 (n_idx) | 2 y (read_write) (outer, n_idx, inner)
//           | 3 params (uniform)
// CPU reference: engine::ops::movement::index_select::cpu_forward.  Backward: index_select_backward.wgsl.

const WG: u32 = 256u;

struct Params { outer: u32, n_in: u32, n_idx: u32, inner: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn index_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.outer * params.n_idx * params.inner) { return; }
    let k = i % params.inner;
    let j = (i / params.inner) % params.n_idx;
    let o = i / (params.inner * params.n_idx);
    y[i] = x[(o * params.n_in + idx[j]) * params.inner + k];
}
