// gru_cell.wgsl: one step of torch.nn.GRU's recurrence, fused (the PSE + GRU classifier of the L-TAE paper).
//
// Math (per sample b and hidden unit j; gates ordered (r, z, n) as PyTorch):
//     r  = σ(gh_r + gi_r)          z = σ(gh_z + gi_z)
//     n  = tanh(gi_n + gh_n · r)   (b_hn inside gh_n: the reset product as PyTorch)
//     h' = (h − n) · z + n         (= (1 − z) · n + z · h, in the composed ops' order)
// where gi = x_t W_ihᵀ + b_ih and gh = h W_hhᵀ + b_hh are computed by matmuls before the launch. σ(v) =
// 1 / (1 + e^−v); tanh's argument is clamped to ±15 as unary.wgsl's (tanh(±15) is ±1 in f32).
//
// Worked example (engine::ops::recurrent::gru_cell tests): gi = gh = 0, h = 0.5: r = z = 1/2, n = 0,
// h' = 0.5 · 0.5 = 0.25.
//
// Threads:  one invocation per element of h' (B, Hd); WG = 256; folded. No loops; indices in range by
//           construction (trusted shaders).
// Bindings: 0 gi (read) (B, 3·Hd) | 1 gh (read) (B, 3·Hd) | 2 h (read) (B, Hd) | 3 out (read_write) (B, Hd)
//           | 4 params (uniform)
// CPU reference: engine::ops::recurrent::gru_cell::cpu_forward.  Backward: gru_cell_backward.wgsl.

const WG: u32 = 256u;

struct Params {
    n: u32,     // B · Hd
    hd: u32,    // hidden units Hd
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read>       gi: array<f32>;    // (B, 3·Hd)
@group(0) @binding(1) var<storage, read>       gh: array<f32>;    // (B, 3·Hd)
@group(0) @binding(2) var<storage, read>       h: array<f32>;     // (B, Hd)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (B, Hd)
@group(0) @binding(4) var<uniform>             params: Params;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

// The gates (r, z, n) of the element whose r gate is at g in gi / gh. The same text in gru_cell.wgsl and
// gru_cell_backward.wgsl (checked by engine::kernels), so the backward recomputes the forward's values.
fn gates(g: u32, hd: u32) -> vec3<f32> {
    let r = sigmoid(gh[g] + gi[g]);
    let z = sigmoid(gh[g + hd] + gi[g + hd]);
    let n = tanh(clamp(gi[g + 2u * hd] + gh[g + 2u * hd] * r, -15.0, 15.0));
    return vec3<f32>(r, z, n);
}

@compute @workgroup_size(WG)
fn gru_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let hd = params.hd;
    let g = (i / hd) * 3u * hd + i % hd;
    let a = gates(g, hd);
    out[i] = (h[i] - a.z) * a.y + a.z;
}
