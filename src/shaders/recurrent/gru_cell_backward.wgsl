// gru_cell_backward.wgsl: the gradients of one fused GRU step (gru_cell.wgsl), its gates recomputed from the
// saved inputs instead of stored.
//
// Math (per sample b and hidden unit j; D = dL/dh'; r, z, n as in the forward):
//     dn = D − D · z                 dz = D · (h − n)                dh = D · z
//     da_n = dn · (1 − n²)           dgi_n = da_n    dgh_n = da_n · r    dr = da_n · gh_n
//     da_r = dr · r · (1 − r)        dgi_r = dgh_r = da_r
//     da_z = dz · z · (1 − z)        dgi_z = dgh_z = da_z
// the same products, in the same order, as the composed ops' backwards (sub, mul, add, tanh, sigmoid). dh is
// h's direct part only: the part through gh = h W_hhᵀ + b_hh is the matmul's backward.
//
// Worked example (engine::ops::recurrent::gru_cell tests): gi = gh = 0, h = 0.5, D = 1: dh = 0.5,
// dz = 0.5, da_z = 0.125, dn = 0.5, da_n = 0.5, dgh_n = 0.25, dr = 0, da_r = 0.
//
// Threads:  one invocation per element of h' (B, Hd); WG = 256; folded. No loops; indices in range by
//           construction (trusted shaders).
// Bindings: 0 gi (read) (B, 3·Hd) | 1 gh (read) (B, 3·Hd) | 2 h (read) (B, Hd) | 3 dout (read) (B, Hd)
//           | 4 dgi (read_write) (B, 3·Hd) | 5 dgh (read_write) (B, 3·Hd) | 6 dh (read_write) (B, Hd)
//           | 7 params (uniform)
// CPU reference: engine::ops::recurrent::gru_cell::cpu_backward.

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
@group(0) @binding(3) var<storage, read>       dout: array<f32>;  // (B, Hd)
@group(0) @binding(4) var<storage, read_write> dgi: array<f32>;   // (B, 3·Hd)
@group(0) @binding(5) var<storage, read_write> dgh: array<f32>;   // (B, 3·Hd)
@group(0) @binding(6) var<storage, read_write> dh: array<f32>;    // (B, Hd)
@group(0) @binding(7) var<uniform>             params: Params;

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
fn gru_cell_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let hd = params.hd;
    let g = (i / hd) * 3u * hd + i % hd;
    let a = gates(g, hd);
    let r = a.x;
    let z = a.y;
    let n = a.z;
    let ghn = gh[g + 2u * hd];
    let d = dout[i];
    let dn = d - d * z;
    let dz = d * (h[i] - n);
    dh[i] = d * z;
    let dan = dn * (1.0 - n * n);
    let dr = dan * ghn;
    let dar = dr * r * (1.0 - r);
    let daz = dz * z * (1.0 - z);
    dgi[g] = dar;
    dgi[g + hd] = daz;
    dgi[g + 2u * hd] = dan;
    dgh[g] = dar;
    dgh[g + hd] = daz;
    dgh[g + 2u * hd] = dan * r;
}
