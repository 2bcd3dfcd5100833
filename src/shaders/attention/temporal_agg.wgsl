// temporal_agg.wgsl: U-TAE's skip-connection aggregation over time with attention weights ("att_group").
//
// Math:     x (B, T, C, S) feature maps (S = H·W pixels), a (G, B, T, S) attention weights (one map per
//           head/group, already resized to this resolution and multiplied by the pad mask). The C channels
//           form G contiguous groups of C/G; channel c uses the weights of group g = c / (C/G):
//             y[b, c, s] = Σ_t a[g, b, t, s] · x[b, t, c, s]
//           ("att_mean" is the same with G = 1 and the head-averaged weights.)
// Threads:  one invocation per output element (B·C·S), a loop over T; WG = 256, 2-D fold.
// Bindings: 0 x (read) (B, T, C, S) | 1 a (read) (G, B, T, S) | 2 y (read_write) (B, C, S) | 3 params (uniform)
// CPU reference: engine::ops::attention::temporal_agg::cpu_forward.
// Backward: temporal_agg_backward_x.wgsl, temporal_agg_backward_attn.wgsl.

const WG: u32 = 256u;

struct Params { batch: u32, t: u32, c: u32, s: u32, groups: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       a: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn temporal_agg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.batch * params.c * params.s) { return; }
    let s = i % params.s;
    let c = (i / params.s) % params.c;
    let b = i / (params.s * params.c);
    let g = c / (params.c / params.groups);
    var acc = 0.0;
    for (var t = 0u; t < params.t; t = t + 1u) {
        acc = acc + a[((g * params.batch + b) * params.t + t) * params.s + s] * x[((b * params.t + t) * params.c + c) * params.s + s];
    }
    y[i] = acc;
}
