// conv_gru_update.wgsl: the state update of one ConvGRU step (see conv_gru_gates.wgsl for the whole step),
// written straight into the next step's convolution input.
//
// Math (per hidden channel k and pixel):
//     z = σ(zr[k]),  h~ = tanh(a[k]),  h_{s+1} = (1 - z) · h_s + z · h~
// where zr = in_conv([x_s, h_s]) and a = out_conv([x_s, r ⊙ h_s]) (pre-activations), h_s = comb[C_x + k].
// The output is next = [x_{s+1}, h_{s+1}]: channels 0 .. cxn - 1 copy frame s+1 of x, channels
// cxn .. cxn + Hd - 1 hold h_{s+1}; after the last step cxn = 0 and next is h_T. With init = 1 (before step
// 0) zr, a and comb are not read: next = [x_0, 0].
//
// Worked example (engine::ops::recurrent::conv_gru tests): zr = 0 (z = 1/2), a = 0 (h~ = 0) and h_s = 0.6:
// h_{s+1} = 1/2 · 0.6 + 1/2 · 0 = 0.3.
//
// Threads:  one invocation per element of next (B, cxn + Hd, P), P = H·W; WG = 256; folded. No loops;
//           indices in range by construction (trusted shaders).
// Bindings: 0 zr (read) (B, 2·Hd, P) | 1 a (read) (B, Hd, P) | 2 comb (read) (B, C_x + Hd, P)
//           | 3 x (read) (B, T, C_x, P) | 4 next (read_write) (B, cxn + Hd, P) | 5 params (uniform)
// CPU reference: engine::ops::recurrent::conv_gru::cpu_update_forward.  Backward: conv_gru_update_backward.wgsl.

const WG: u32 = 256u;

struct Params {
    batch: u32,   // B
    hd: u32,      // hidden channels Hd
    p: u32,       // pixels H·W
    cx: u32,      // channels of x
    t: u32,       // frames of x
    t_next: u32,  // the frame of x copied into next
    cxn: u32,     // x channels in next: cx, or 0 after the last step
    init: u32,    // 1: before step 0 (h = 0)
}

@group(0) @binding(0) var<storage, read>       zr: array<f32>;     // (B, 2·Hd, P)
@group(0) @binding(1) var<storage, read>       a: array<f32>;      // (B, Hd, P)
@group(0) @binding(2) var<storage, read>       comb: array<f32>;   // (B, C_x + Hd, P)
@group(0) @binding(3) var<storage, read>       x: array<f32>;      // (B, T, C_x, P)
@group(0) @binding(4) var<storage, read_write> next: array<f32>;   // (B, cxn + Hd, P)
@group(0) @binding(5) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

@compute @workgroup_size(WG)
fn conv_gru_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let cn = params.cxn + params.hd;
    if (i >= params.batch * cn * params.p) { return; }
    let px = i % params.p;
    let ch = (i / params.p) % cn;
    let b = i / (params.p * cn);
    if (ch < params.cxn) {
        next[i] = x[((b * params.t + params.t_next) * params.cx + ch) * params.p + px];
        return;
    }
    if (params.init == 1u) {
        next[i] = 0.0;
        return;
    }
    let k = ch - params.cxn;
    let z = sigmoid(zr[(2u * b * params.hd + k) * params.p + px]);
    let hc = tanh(clamp(a[(b * params.hd + k) * params.p + px], -15.0, 15.0));
    let h = comb[(b * (params.cx + params.hd) + params.cx + k) * params.p + px];
    next[i] = (1.0 - z) * h + z * hc;
}
