// attention_apply_backward_value.wgsl: gradient of the attention-weighted average w.r.t. the values.
//
// Math:     dv[n, t, h·d_v + c] = attn[h, b, t, p] · dout[n, h·d_v + c]     (n = b·P + p)
// Threads:  one invocation per element of dv (a gather); WG = 256, 2-D fold.
// Bindings: 0 attn (read) (H, B, T, P) | 1 dout (read) (N, H·d_v) | 2 dv (read_write) (N, T, H·d_v)
//           | 3 params (uniform)
// CPU reference: engine::ops::attention::attention_apply::cpu_backward.

const WG: u32 = 256u;

struct Params { heads: u32, batch: u32, t: u32, pixels: u32, dv: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       attn: array<f32>;
@group(0) @binding(1) var<storage, read>       dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dv: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn attention_apply_backward_value(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let width = params.heads * params.dv;
    if (i >= params.batch * params.pixels * params.t * width) { return; }
    let ch = i % width;
    let t = (i / width) % params.t;
    let n = i / (width * params.t);
    let head = ch / params.dv;
    let b = n / params.pixels;
    let p = n % params.pixels;
    dv[i] = attn[((head * params.batch + b) * params.t + t) * params.pixels + p] * dout[n * width + ch];
}
