// attention_apply.wgsl: L-TAE's attention-weighted average over time, heads concatenated.
//
// Math:     the values are contiguous channel slices of the features: head h reads channels
//           h·d_v .. h·d_v + d_v - 1 of v (no value projection in L-TAE). For sequence n = b·P + p:
//             out[n, h·d_v + c] = Σ_t attn[h, b, t, p] · v[n, t, h·d_v + c]
//           so out, read along its channels, is [head 0 | head 1 | … ] — the heads concatenated.
// Threads:  one invocation per output element (N · H·d_v), a loop over T; WG = 256, 2-D fold.
// Bindings: 0 attn (read) (H, B, T, P) | 1 v (read) (N, T, H·d_v) | 2 out (read_write) (N, H·d_v)
//           | 3 params (uniform)
// CPU reference: engine::ops::attention::attention_apply::cpu_forward.
// Backward: attention_apply_backward_value.wgsl (dv) and attention_apply_backward_attn.wgsl (dattn).

const WG: u32 = 256u;

struct Params { heads: u32, batch: u32, t: u32, pixels: u32, dv: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       attn: array<f32>;
@group(0) @binding(1) var<storage, read>       v: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn attention_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let width = params.heads * params.dv;
    if (i >= params.batch * params.pixels * width) { return; }
    let n = i / width;
    let ch = i % width;
    let head = ch / params.dv;
    let b = n / params.pixels;
    let p = n % params.pixels;
    var acc = 0.0;
    for (var t = 0u; t < params.t; t = t + 1u) {
        acc = acc + attn[((head * params.batch + b) * params.t + t) * params.pixels + p] * v[(n * params.t + t) * width + ch];
    }
    out[i] = acc;
}
