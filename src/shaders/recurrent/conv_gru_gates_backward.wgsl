// conv_gru_gates_backward.wgsl: the gradient of conv_gru_gates.wgsl (comb2 = [x_s, r ⊙ h_s]), the second
// launch of a ConvGRU step's backpropagation through time; it also finishes the parts of dh_s that do not
// go through a convolution.
//
// Math (per hidden channel k and pixel, r = σ(zr[Hd + k]), z = σ(zr[k]), h = h_s, g = dcomb2[C_x + k] the
// gradient of r·h from out_conv's input gradient, D = d1 + d2 the gradient of h_{s+1} as in
// conv_gru_update_backward.wgsl):
//     dzr[Hd + k] = g · h · r · (1 - r)               (the reset gate's pre-activation)
//     dhx[C_x + k] = g · r + D · (1 - z)              (dh_s, but for in_conv's share, added next step)
//     dhx[c]      = dcomb2[c], c < C_x                 (dx_s, but for in_conv's share)
// dhx becomes the next backward step's d1 (and in_conv's input gradient of this step its d2).
//
// Threads:  one invocation per element of (B, C_x + Hd, P), P = H·W; WG = 256; folded. No loops; indices in
//           range by construction (trusted shaders).
// Bindings: 0 zr (read) (B, 2·Hd, P) | 1 comb (read) (B, C_x + Hd, P) | 2 dcomb2 (read) (B, C_x + Hd, P)
//           | 3 d1 (read) (B, c1 + Hd, P) | 4 d2 (read) (B, c1 + Hd, P) (a placeholder when has_d2 = 0)
//           | 5 dzr (read_write) (B, 2·Hd, P), the r half only | 6 dhx (read_write) (B, C_x + Hd, P)
//           | 7 params (uniform)
// CPU reference: engine::ops::recurrent::conv_gru::cpu_gates_backward.

const WG: u32 = 256u;

struct Params { batch: u32, hd: u32, p: u32, cx: u32, c1: u32, has_d2: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       zr: array<f32>;      // (B, 2·Hd, P)
@group(0) @binding(1) var<storage, read>       comb: array<f32>;    // (B, C_x + Hd, P)
@group(0) @binding(2) var<storage, read>       dcomb2: array<f32>;  // (B, C_x + Hd, P)
@group(0) @binding(3) var<storage, read>       d1: array<f32>;      // (B, c1 + Hd, P)
@group(0) @binding(4) var<storage, read>       d2: array<f32>;      // (B, c1 + Hd, P)
@group(0) @binding(5) var<storage, read_write> dzr: array<f32>;     // (B, 2·Hd, P)
@group(0) @binding(6) var<storage, read_write> dhx: array<f32>;     // (B, C_x + Hd, P)
@group(0) @binding(7) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

@compute @workgroup_size(WG)
fn conv_gru_gates_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let cn = params.cx + params.hd;
    if (i >= params.batch * cn * params.p) { return; }
    let px = i % params.p;
    let ch = (i / params.p) % cn;
    let b = i / (params.p * cn);
    if (ch < params.cx) {
        dhx[i] = dcomb2[i];
        return;
    }
    let k = ch - params.cx;
    let zi = (2u * b * params.hd + k) * params.p + px;
    let ri = zi + params.hd * params.p;
    let z = sigmoid(zr[zi]);
    let r = sigmoid(zr[ri]);
    let g = dcomb2[i];
    dzr[ri] = g * comb[i] * r * (1.0 - r);
    let di = (b * (params.c1 + params.hd) + params.c1 + k) * params.p + px;
    var grad = d1[di];
    if (params.has_d2 == 1u) { grad = grad + d2[di]; }
    dhx[i] = g * r + grad * (1.0 - z);
}
