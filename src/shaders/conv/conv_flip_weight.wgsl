// conv_flip_weight.wgsl: one stride phase of a convolution's weight, flipped and transposed: the weight of
// the convolution that gives that phase of the input gradient (engine/ops/conv/conv2d/mixed.rs,
// gpu_backward_input; conv2d.wgsl's flip mode reads the same taps in place, on the float32 path).
//
// Math:     wt[c, o, m, l] = w[o, c, py + s·(T_h - 1 - m), px + s·(T_w - 1 - l)] for c < C_in, o < C_out,
//           m < T_h, l < T_w: the phase (py, px) of stride s keeps every s-th tap, reversed.
// Threads:  one invocation per element of wt (it reads one element of w); WG = 256; ceil(C_in · C_out ·
//           T_h · T_w / 256) workgroups, folded into 2-D.
// Bindings: 0 w (C_out, C_in, kH, kW) | 1 wt (C_in, C_out, T_h, T_w) | 2 params (uniform)
// CPU reference: engine::ops::conv::conv2d::mixed::cpu_flip_weight. No backward: it prepares an operand.

const WG: u32 = 256u;

struct Params {
    ci: u32, co: u32, kh: u32, kw: u32,
    th: u32, tw: u32, stride: u32, py: u32,
    px: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> w: array<f32>;    // (C_out, C_in, kH, kW)
@group(0) @binding(1) var<storage, read_write> wt: array<f32>;   // (C_in, C_out, T_h, T_w)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn conv_flip_weight(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let taps = params.th * params.tw;
    if (i >= params.ci * params.co * taps) { return; }
    let t = i % taps;
    let m = t / params.tw;
    let l = t - m * params.tw;
    let co = i / taps;                       // c · C_out + o
    let c = co / params.co;
    let o = co - c * params.co;
    let ky = params.py + params.stride * (params.th - 1u - m);
    let kx = params.px + params.stride * (params.tw - 1u - l);
    wt[i] = w[((o * params.ci + c) * params.kh + ky) * params.kw + kx];
}
