// conv2d_backward_input.wgsl: gradient of conv2d with respect to its input, as a gather.
//
// Math:     dx[n, c, iy, ix] = Σ dy[n, o, oy, ox] · w[o, c, ky, kx] over every (o, oy, ky, ox, kx) whose
//           forward read landed on (iy, ix): src(oy·s - p + ky) = iy and src(ox·s - p + kx) = ix.
//           Along one axis of length n the padded positions t with src(t) = i are t = i, and for reflect
//           padding also t = -i (if 0 < i ≤ p) and t = 2(n-1) - i (if n-1-p ≤ i < n-1): the mirrored reads
//           add their share here. For each such t and each ky, oy = (t + p - ky) / s must be an integer in
//           [0, H_out).
//           Also the forward of conv_transpose2d (zero padding, H given), see engine::ops::conv::conv_transpose2d.
// Threads:  one invocation per dx element (it owns it: no atomics, a fixed summation order); WG = 256;
//           ceil(N·C_in·H·W / 256) workgroups, folded.
// Bindings: 0 dy (read) (N, C_out, H_out, W_out) | 1 weight (read) (C_out, C_in, kH, kW) |
//           2 dx (read_write) (N, C_in, H, W) | 3 params (uniform)
// CPU reference: engine::ops::conv::conv2d::cpu_backward (dx).

const WG: u32 = 256u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, kh: u32, kw: u32, stride: u32,
    ho: u32, wo: u32, pad: u32, reflect: u32,
    has_bias: u32, chunk: u32, nchunks: u32, flip: u32,
    out_h: u32, out_w: u32, out_stride: u32, phase_y: u32,   // where output pixel (a, b) is stored (flip mode)
    phase_x: u32, wkh: u32, wkw: u32, wstride: u32,          // the stored kernel's size and stride (flip mode)
}

@group(0) @binding(0) var<storage, read>       dy: array<f32>;       // (N, C_out, H_out, W_out)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;   // (C_out, C_in, kH, kW)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;       // (N, C_in, H, W)
@group(0) @binding(3) var<uniform>             params: Params;

// The padded positions whose source index is i along an axis of length n (count in .w, up to 3).
fn positions(i: i32, n: i32) -> vec4<i32> {
    var t = vec4<i32>(i, 0, 0, 1);
    let p = i32(params.pad);
    if (params.reflect == 1u) {
        if (i > 0 && i <= p) { t[t.w] = -i; t.w = t.w + 1; }
        if (i < n - 1 && i >= n - 1 - p) { t[t.w] = 2 * (n - 1) - i; t.w = t.w + 1; }
    }
    return t;
}

@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (idx >= params.n * params.ci * params.h * params.w) { return; }
    let ix = idx % params.w;
    let iy = (idx / params.w) % params.h;
    let c = (idx / (params.w * params.h)) % params.ci;
    let n = idx / (params.w * params.h * params.ci);
    let s = i32(params.stride);
    let p = i32(params.pad);
    let ty = positions(i32(iy), i32(params.h));
    let tx = positions(i32(ix), i32(params.w));
    var acc = 0.0;
    for (var a = 0; a < ty.w; a = a + 1) {
        for (var ky = 0; ky < i32(params.kh); ky = ky + 1) {
            let ny = ty[a] + p - ky;
            if (ny < 0 || ny % s != 0 || ny / s >= i32(params.ho)) { continue; }
            let oy = u32(ny / s);
            for (var b = 0; b < tx.w; b = b + 1) {
                for (var kx = 0; kx < i32(params.kw); kx = kx + 1) {
                    let nx = tx[b] + p - kx;
                    if (nx < 0 || nx % s != 0 || nx / s >= i32(params.wo)) { continue; }
                    let ox = u32(nx / s);
                    let k = (c * params.kh + u32(ky)) * params.kw + u32(kx);
                    for (var o = 0u; o < params.co; o = o + 1u) {
                        acc = acc + dy[((n * params.co + o) * params.ho + oy) * params.wo + ox]
                                  * weight[o * params.ci * params.kh * params.kw + k];
                    }
                }
            }
        }
    }
    dx[idx] = acc;
}
