// temporal_agg_backward_x.wgsl: gradient of the temporal aggregation w.r.t. the feature maps.
//
// Math:     dx[b, t, c, s] = a[g, b, t, s] · dy[b, c, s],   g = c / (C/G)
// Threads:  one invocation per element of dx (a gather); WG = 256, 2-D fold.
// Bindings: 0 a (read) (G, B, T, S) | 1 dy (read) (B, C, S) | 2 dx (read_write) (B, T, C, S) | 3 params
// CPU reference: engine::ops::attention::temporal_agg::cpu_backward.

const WG: u32 = 256u;

struct Params { batch: u32, t: u32, c: u32, s: u32, groups: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       a: array<f32>;
@group(0) @binding(1) var<storage, read>       dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn temporal_agg_backward_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.batch * params.t * params.c * params.s) { return; }
    let s = i % params.s;
    let c = (i / params.s) % params.c;
    let t = (i / (params.s * params.c)) % params.t;
    let b = i / (params.s * params.c * params.t);
    let g = c / (params.c / params.groups);
    dx[i] = a[((g * params.batch + b) * params.t + t) * params.s + s] * dy[(b * params.c + c) * params.s + s];
}
