// attention_apply_backward_attn.wgsl: gradient of the attention-weighted average w.r.t. the weights.
//
// Math:     dattn[h, b, t, p] = Σ_c dout[n, h·d_v + c] · v[n, t, h·d_v + c]     (n = b·P + p, c < d_v)
// Threads:  one invocation per attention weight (a gather over the head's d_v channels); WG = 256, 2-D fold.
// Bindings: 0 v (read) (N, T, H·d_v) | 1 dout (read) (N, H·d_v) | 2 dattn (read_write) (H, B, T, P)
//           | 3 params (uniform)
// CPU reference: engine::ops::attention::attention_apply::cpu_backward.

const WG: u32 = 256u;

struct Params { heads: u32, batch: u32, t: u32, pixels: u32, dv: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       v: array<f32>;
@group(0) @binding(1) var<storage, read>       dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dattn: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn attention_apply_backward_attn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.heads * params.batch * params.t * params.pixels) { return; }
    let p = i % params.pixels;
    let t = (i / params.pixels) % params.t;
    let b = (i / (params.pixels * params.t)) % params.batch;
    let head = i / (params.pixels * params.t * params.batch);
    let n = b * params.pixels + p;
    let width = params.heads * params.dv;
    var acc = 0.0;
    for (var c = 0u; c < params.dv; c = c + 1u) {
        let ch = head * params.dv + c;
        acc = acc + dout[n * width + ch] * v[(n * params.t + t) * width + ch];
    }
    dattn[i] = acc;
}
