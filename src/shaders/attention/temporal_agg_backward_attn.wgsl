// temporal_agg_backward_attn.wgsl: gradient of the temporal aggregation w.r.t. the attention weights.
//
// Math:     da[g, b, t, s] = Σ_{c in group g} x[b, t, c, s] · dy[b, c, s]     (C/G channels per group)
// Threads:  one invocation per attention weight (a gather over the group's channels); WG = 256, 2-D fold.
// Bindings: 0 x (read) (B, T, C, S) | 1 dy (read) (B, C, S) | 2 da (read_write) (G, B, T, S) | 3 params
// CPU reference: engine::ops::attention::temporal_agg::cpu_backward.

const WG: u32 = 256u;

struct Params { batch: u32, t: u32, c: u32, s: u32, groups: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> da: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn temporal_agg_backward_attn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.groups * params.batch * params.t * params.s) { return; }
    let s = i % params.s;
    let t = (i / params.s) % params.t;
    let b = (i / (params.s * params.t)) % params.batch;
    let g = i / (params.s * params.t * params.batch);
    let per = params.c / params.groups;
    var acc = 0.0;
    for (var c = g * per; c < (g + 1u) * per; c = c + 1u) {
        acc = acc + x[((b * params.t + t) * params.c + c) * params.s + s] * dy[(b * params.c + c) * params.s + s];
    }
    da[i] = acc;
}
