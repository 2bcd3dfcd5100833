// conv_lstm_cell.wgsl: one time step of a ConvLSTM after its gate convolution: the four gates, the new cell
// state, the new hidden state — and the next step's convolution input, so a step is one convolution plus
// this one launch.
//
// What a ConvLSTM cell computes (spec §5.1; Shi et al. 2015 without peepholes). At step s every pixel of
// every sample has a hidden state h_s and a cell state c_s (Hd channels each; h_0 = c_0 = 0). One
// convolution over the channel concatenation [x_s, h_s] (C_x + Hd channels, k×k, zero padding) gives 4·Hd
// pre-activations per pixel, split into four consecutive blocks in the order i, f, o, g:
//     i = σ(gates[0·Hd + k])      input gate: how much of the candidate enters the cell
//     f = σ(gates[1·Hd + k])      forget gate: how much of the old cell state is kept
//     o = σ(gates[2·Hd + k])      output gate: how much of the cell is shown as h
//     g = tanh(gates[3·Hd + k])   candidate values
//     c_{s+1} = f · c_s + i · g
//     h_{s+1} = o · tanh(c_{s+1})
// (σ(v) = 1 / (1 + exp(-v)); tanh's argument is clamped to ±15, where it is ±1 in f32, as unary.wgsl.)
// This kernel writes c_{s+1} and the next convolution's input next = [x_{s+1}, h_{s+1}]: channels
// 0 .. cxn - 1 are a copy of frame s+1 of x, channels cxn .. cxn + Hd - 1 are h_{s+1}. After the last step
// cxn = 0 and next is h_T alone. With init = 1 (before step 0) gates and c_prev are not read: c = 0 and
// next = [x_0, 0].
//
// Worked example (engine::ops::recurrent::conv_lstm tests, `worked_example`): all four pre-activations 0 and c_s = 2
// give i = f = o = 1/2, g = 0, c_{s+1} = 1/2 · 2 + 1/2 · 0 = 1, h_{s+1} = 1/2 · tanh(1) = 0.3807970...
//
// Threads:  one invocation per element of next (B, cxn + Hd, P), P = H·W; WG = 256; ceil(B·(cxn+Hd)·P / 256)
//           workgroups, folded. Invocation (b, ch, p): ch < cxn copies x[b, t_next, ch, p]; otherwise it is
//           the cell of hidden channel k = ch - cxn at pixel p: it reads its 4 gates and c_prev and writes
//           c[b, k, p] and next[b, ch, p]. No loops, no workgroup memory; every index is below the sizes
//           checked at the top (trusted shaders: in range by construction).
// Bindings: 0 gates (read) (B, 4·Hd, P) | 1 c_prev (read) (B, Hd, P) | 2 x (read) (B, T, C_x, P)
//           | 3 c (read_write) (B, Hd, P) | 4 next (read_write) (B, cxn + Hd, P) | 5 params (uniform)
// CPU reference: engine::ops::recurrent::conv_lstm::cpu_cell_forward.  Backward: conv_lstm_cell_backward.wgsl.

const WG: u32 = 256u;

struct Params {
    batch: u32,   // B
    hd: u32,      // hidden channels Hd
    p: u32,       // pixels H·W
    cx: u32,      // channels of x
    t: u32,       // frames of x
    t_next: u32,  // the frame of x copied into next
    cxn: u32,     // x channels in next: cx, or 0 after the last step
    init: u32,    // 1: before step 0 (c = 0, h = 0)
}

@group(0) @binding(0) var<storage, read>       gates: array<f32>;    // (B, 4·Hd, P)
@group(0) @binding(1) var<storage, read>       c_prev: array<f32>;   // (B, Hd, P)
@group(0) @binding(2) var<storage, read>       x: array<f32>;        // (B, T, C_x, P)
@group(0) @binding(3) var<storage, read_write> c: array<f32>;        // (B, Hd, P)
@group(0) @binding(4) var<storage, read_write> next: array<f32>;     // (B, cxn + Hd, P)
@group(0) @binding(5) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

@compute @workgroup_size(WG)
fn conv_lstm_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let k = ch - params.cxn;
    let ci = (b * params.hd + k) * params.p + px;                  // c[b, k, p]
    if (params.init == 1u) {
        c[ci] = 0.0;
        next[i] = 0.0;
        return;
    }
    let g0 = (b * 4u * params.hd + k) * params.p + px;             // gates[b, k, p]
    let hp = params.hd * params.p;                                 // one gate block
    let ig = sigmoid(gates[g0]);
    let fg = sigmoid(gates[g0 + hp]);
    let og = sigmoid(gates[g0 + 2u * hp]);
    let gg = tanh(clamp(gates[g0 + 3u * hp], -15.0, 15.0));
    let cn1 = fg * c_prev[ci] + ig * gg;
    c[ci] = cn1;
    next[i] = og * tanh(clamp(cn1, -15.0, 15.0));
}
