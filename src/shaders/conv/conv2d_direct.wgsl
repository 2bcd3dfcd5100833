// conv2d_direct.wgsl: conv2d.wgsl's convolution (same Params, padding, flip and bindings) computed directly,
// without workgroup memory: each invocation owns one pixel and four output channels and reads the input and
// the weight straight from memory. The variant for software adapters (a CPU's caches do what workgroup
// memory does on a GPU, and barriers split the work of a workgroup into serial phases).
//
// Math:     y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
// Threads:  invocation i → output channels 4·g .. 4·g + 3, pixel p (i = g·P + p: neighbouring invocations share
//           the channels, so their weight reads are the same address, and read neighbouring pixels); the loop
//           walks the taps, each tap's source position computed once, then the input channels.
//           ceil(ceil(C_out / 4) · P / 256) workgroups, folded.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 weight (read) (C_out, C_in, kH, kW) | 2 bias (read) (C_out)
//           (a placeholder when has_bias = 0) | 3 y (read_write) (N, C_out, H_out, W_out) | 4 params
// CPU reference: engine::ops::conv::conv2d::cpu_forward.

const WG: u32 = 256u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, kh: u32, kw: u32, stride: u32,
    ho: u32, wo: u32, pad: u32, reflect: u32,
    has_bias: u32, chunk: u32, nchunks: u32, flip: u32,
    out_h: u32, out_w: u32, out_stride: u32, phase_y: u32,   // where output pixel (a, b) is stored (flip mode)
    phase_x: u32, wkh: u32, wkw: u32, wstride: u32,          // the stored kernel's size and stride (flip mode)
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C_in, H, W)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;   // (C_out, C_in, kH, kW)
@group(0) @binding(2) var<storage, read>       bias: array<f32>;     // (C_out)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;        // (N, C_out, H_out, W_out)
@group(0) @binding(4) var<uniform>             params: Params;

// The padding before row 0 and column 0: `pad`, or in flip mode kH - 1 and kW - 1 (the full correlation).
fn pad_y() -> i32 { return select(i32(params.pad), i32(params.kh) - 1, params.flip == 1u); }
fn pad_x() -> i32 { return select(i32(params.pad), i32(params.kw) - 1, params.flip == 1u); }

// The index of x read for padded position t along an axis of length n; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

// w[o, c, tap] as this convolution reads it (0 past the last channel; flip = 1: the stored kernel transposed
// and flipped, one phase of its stride, as in conv2d.wgsl).
fn weight_at(o: u32, c: u32, tap: u32) -> f32 {
    if (o >= params.co) { return 0.0; }
    if (params.flip == 1u) {
        let ky = params.phase_y + params.wstride * (params.kh - 1u - tap / params.kw);
        let kx = params.phase_x + params.wstride * (params.kw - 1u - tap % params.kw);
        return weight[((c * params.co + o) * params.wkh + ky) * params.wkw + kx];
    }
    return weight[(o * params.ci + c) * params.kh * params.kw + tap];
}

// y[n, o, pixel pix] = v, stored as in conv2d.wgsl (out_stride, phase: one phase of a strided input gradient).
fn store(n: u32, o: u32, pix: u32, v: f32) {
    let row = params.out_stride * (pix / params.wo) + params.phase_y;
    let col = params.out_stride * (pix % params.wo) + params.phase_x;
    if (row < params.out_h && col < params.out_w) {
        y[((n * params.co + o) * params.out_h + row) * params.out_w + col] = v;
    }
}

@compute @workgroup_size(WG)
fn conv2d_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let hw = params.ho * params.wo;
    let npix = params.n * hw;
    let groups = (params.co + 3u) / 4u;
    if (i >= groups * npix) { return; }
    let o = 4u * (i / npix);
    let p = i % npix;
    let n = p / hw;
    let pix = p % hw;
    let y0 = i32((pix / params.wo) * params.stride) - pad_y();
    let x0 = i32((pix % params.wo) * params.stride) - pad_x();
    let plane = params.h * params.w;
    let x_base = n * params.ci * plane;
    var acc = vec4<f32>(0.0);
    for (var tap = 0u; tap < params.kh * params.kw; tap = tap + 1u) {
        let iy = src_index(y0 + i32(tap / params.kw), i32(params.h));
        let ix = src_index(x0 + i32(tap % params.kw), i32(params.w));
        if (iy < 0 || ix < 0) { continue; }
        let sp = x_base + u32(iy) * params.w + u32(ix);
        for (var c = 0u; c < params.ci; c = c + 1u) {
            let wv = vec4<f32>(weight_at(o, c, tap), weight_at(o + 1u, c, tap),
                               weight_at(o + 2u, c, tap), weight_at(o + 3u, c, tap));
            acc = acc + wv * x[sp + c * plane];
        }
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (o + j < params.co) {
            var b = 0.0;
            if (params.has_bias == 1u) { b = bias[o + j]; }
            store(n, o + j, pix, acc[j] + b);
        }
    }
}
