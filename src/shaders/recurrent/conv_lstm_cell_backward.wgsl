// conv_lstm_cell_backward.wgsl: the gradient of one ConvLSTM step's fused cell (conv_lstm_cell.wgsl), one
// launch per step of backpropagation through time.
//
// Math (per hidden channel k and pixel; i, f, o, g recomputed from the saved pre-activations, as the
// forward computes them; c' = f·c + i·g and τ = tanh(c') recomputed too):
//     dc' = dc + dh · o · (1 - τ²)          h' = o·τ reaches c' through τ
//     do = dh · τ,  di = dc' · g,  dg = dc' · i,  df = dc' · c,  dc_prev = dc' · f
//     dgates = [di · i(1-i), df · f(1-f), do · o(1-o), dg · (1-g²)]    (σ' = σ(1-σ), tanh' = 1 - tanh²)
// dh is the gradient of h_{s+1}: channels C_x .. C_x + Hd - 1 of dnext, the input gradient of the next step's
// convolution (its channels 0 .. C_x - 1 are the gradient of frame s+1 of x, copied here into dx). After the
// last step (has_dh = 0) dh = 0: the sequence op returns c_T alone, which every model uses (spec §5.1).
//
// Threads:  one invocation per element of (B, C_x + Hd, P), P = H·W; WG = 256; folded. Invocation (b, ch, p):
//           ch < C_x copies dnext[b, ch, p] to dx[b, t_dx, ch, p] (only when has_dh = 1); otherwise it owns
//           hidden channel k = ch - C_x at pixel p and writes its 4 gate gradients and dc_prev. No loops, no
//           workgroup memory; indices in range by construction (trusted shaders).
// Bindings: 0 gates (read) (B, 4·Hd, P) | 1 c_prev (read) (B, Hd, P) | 2 dnext (read) (B, C_x + Hd, P)
//           (a placeholder when has_dh = 0) | 3 dc (read) (B, Hd, P) | 4 dgates (read_write) (B, 4·Hd, P)
//           | 5 dc_prev (read_write) (B, Hd, P) | 6 dx (read_write) (B, T, C_x, P) | 7 params (uniform)
// CPU reference: engine::ops::recurrent::conv_lstm::cpu_cell_backward.

const WG: u32 = 256u;

struct Params {
    batch: u32,   // B
    hd: u32,      // hidden channels Hd
    p: u32,       // pixels H·W
    cx: u32,      // channels of x
    t: u32,       // frames of x
    t_dx: u32,    // the frame of dx written from dnext
    has_dh: u32,  // 0 after the last step: dh = 0 and dnext is not read
    _pad: u32,
}

@group(0) @binding(0) var<storage, read>       gates: array<f32>;    // (B, 4·Hd, P)
@group(0) @binding(1) var<storage, read>       c_prev: array<f32>;   // (B, Hd, P)
@group(0) @binding(2) var<storage, read>       dnext: array<f32>;    // (B, C_x + Hd, P)
@group(0) @binding(3) var<storage, read>       dc: array<f32>;       // (B, Hd, P)
@group(0) @binding(4) var<storage, read_write> dgates: array<f32>;   // (B, 4·Hd, P)
@group(0) @binding(5) var<storage, read_write> dc_prev: array<f32>;  // (B, Hd, P)
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;       // (B, T, C_x, P)
@group(0) @binding(7) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

@compute @workgroup_size(WG)
fn conv_lstm_cell_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let cn = params.cx + params.hd;
    if (i >= params.batch * cn * params.p) { return; }
    let px = i % params.p;
    let ch = (i / params.p) % cn;
    let b = i / (params.p * cn);
    if (ch < params.cx) {
        if (params.has_dh == 1u) {
            dx[((b * params.t + params.t_dx) * params.cx + ch) * params.p + px] = dnext[i];
        }
        return;
    }
    let k = ch - params.cx;
    let ci = (b * params.hd + k) * params.p + px;
    let g0 = (b * 4u * params.hd + k) * params.p + px;
    let hp = params.hd * params.p;
    let ig = sigmoid(gates[g0]);
    let fg = sigmoid(gates[g0 + hp]);
    let og = sigmoid(gates[g0 + 2u * hp]);
    let gg = tanh(clamp(gates[g0 + 3u * hp], -15.0, 15.0));
    let cp = c_prev[ci];
    let tc = tanh(clamp(fg * cp + ig * gg, -15.0, 15.0));
    var dh = 0.0;
    if (params.has_dh == 1u) { dh = dnext[i]; }
    let dcn = dc[ci] + dh * og * (1.0 - tc * tc);
    dgates[g0] = dcn * gg * ig * (1.0 - ig);
    dgates[g0 + hp] = dcn * cp * fg * (1.0 - fg);
    dgates[g0 + 2u * hp] = dh * tc * og * (1.0 - og);
    dgates[g0 + 3u * hp] = dcn * ig * (1.0 - gg * gg);
    dc_prev[ci] = dcn * fg;
}
