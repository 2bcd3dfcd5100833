// conv_gru_gates.wgsl: the reset gate of one ConvGRU step, written straight into the candidate convolution's
// input.
//
// What a ConvGRU step computes (spec §5.2). Per pixel, h_s (Hd channels, h_0 = 0) and x_s (C_x channels):
//     [z; r] = σ(in_conv([x_s, h_s]))        update gate z (first Hd channels), reset gate r (last Hd)
//     h~     = tanh(out_conv([x_s, r ⊙ h_s]))   candidate: the reset gate hides parts of the old state
//     h_{s+1} = (1 - z) ⊙ h_s + z ⊙ h~          (conv_gru_update.wgsl)
// This kernel runs between the two convolutions: from zr = in_conv([x_s, h_s]) (pre-activations) and
// comb = [x_s, h_s] it writes comb2 = [x_s, r ⊙ h_s], the input of out_conv. A ConvGRU step is therefore
// two convolutions and two fused launches: the candidate convolution reads r ⊙ h, which only exists once the
// first convolution has run.
//
// Worked example (engine::ops::recurrent::conv_gru tests): z, r pre-activations 0 and h_s = 0.6: r = 1/2, so the
// candidate convolution sees r·h = 0.3.
//
// Threads:  one invocation per element of comb2 (B, C_x + Hd, P), P = H·W; WG = 256; folded. Channel
//           ch < C_x copies x; channel C_x + k multiplies h_s[k] by r[k]. No loops; indices in range by
//           construction (trusted shaders).
// Bindings: 0 zr (read) (B, 2·Hd, P) | 1 comb (read) (B, C_x + Hd, P) | 2 comb2 (read_write) (B, C_x + Hd, P)
//           | 3 params (uniform)
// CPU reference: engine::ops::recurrent::conv_gru::cpu_gates_forward.  Backward: conv_gru_gates_backward.wgsl.

const WG: u32 = 256u;

struct Params { batch: u32, hd: u32, p: u32, cx: u32 }

@group(0) @binding(0) var<storage, read>       zr: array<f32>;      // (B, 2·Hd, P)
@group(0) @binding(1) var<storage, read>       comb: array<f32>;    // (B, C_x + Hd, P)
@group(0) @binding(2) var<storage, read_write> comb2: array<f32>;   // (B, C_x + Hd, P)
@group(0) @binding(3) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

@compute @workgroup_size(WG)
fn conv_gru_gates(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let cn = params.cx + params.hd;
    if (i >= params.batch * cn * params.p) { return; }
    let px = i % params.p;
    let ch = (i / params.p) % cn;
    let b = i / (params.p * cn);
    if (ch < params.cx) {
        comb2[i] = comb[i];
        return;
    }
    let k = ch - params.cx;
    let r = sigmoid(zr[((2u * b + 1u) * params.hd + k) * params.p + px]);
    comb2[i] = r * comb[i];
}
