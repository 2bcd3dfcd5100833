// conv2d_backward_weight_direct.wgsl: gradient of conv2d with respect to its weight without workgroup memory
// (software adapters; conv2d_backward_weight.wgsl is the GEMM for GPUs), first pass of a deterministic
// two-pass reduction over the N·H_out output rows.
//
// Math:     dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
//           (padding as in conv2d.wgsl: zero, or the mirrored index for reflect). The N·H_out output rows
//           (n, oy) are cut into nchunks chunks of `chunk` rows; this kernel writes one partial sum per chunk:
//           partial[q, o, c, ky, kx] = the sum over the rows of chunk q. The host then sums the partials over
//           q with reduce_sum.wgsl (skipped when nchunks = 1). Also the weight gradient of conv_transpose2d.
// Threads:  one invocation per partial (nchunks · C_out · C_in · kH · kW of them; it owns it), walking its
//           rows and their W_out columns in order: deterministic. WG = 256; folded.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 dy (read) (N, C_out, H_out, W_out) |
//           2 partial (read_write) (nchunks, C_out, C_in, kH, kW) | 3 params (uniform)
// CPU reference: engine::ops::conv::conv2d::cpu_backward (dw).

const WG: u32 = 256u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, kh: u32, kw: u32, stride: u32,
    ho: u32, wo: u32, pad: u32, reflect: u32,
    has_bias: u32, chunk: u32, nchunks: u32, flip: u32,
    out_h: u32, out_w: u32, out_stride: u32, phase_y: u32,   // where output pixel (a, b) is stored (flip mode)
    phase_x: u32, wkh: u32, wkw: u32, wstride: u32,          // the stored kernel's size and stride (flip mode)
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;         // (N, C_in, H, W)
@group(0) @binding(1) var<storage, read>       dy: array<f32>;        // (N, C_out, H_out, W_out)
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;   // (nchunks, C_out, C_in, kH, kW)
@group(0) @binding(3) var<uniform>             params: Params;

// As in conv2d.wgsl: the index of x read for padded position t; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let nw = params.co * params.ci * params.kh * params.kw;
    if (idx >= params.nchunks * nw) { return; }
    let kx = idx % params.kw;
    let ky = (idx / params.kw) % params.kh;
    let c = (idx / (params.kw * params.kh)) % params.ci;
    let o = (idx / (params.kw * params.kh * params.ci)) % params.co;
    let q = idx / nw;
    let row_end = min(params.n * params.ho, (q + 1u) * params.chunk);
    let s = params.stride;
    let p = i32(params.pad);
    var acc = 0.0;
    for (var row = q * params.chunk; row < row_end; row = row + 1u) {
        let n = row / params.ho;
        let oy = row % params.ho;
        let iy = src_index(i32(oy * s + ky) - p, i32(params.h));
        if (iy < 0) { continue; }
        let x_row = ((n * params.ci + c) * params.h + u32(iy)) * params.w;
        let dy_row = ((n * params.co + o) * params.ho + oy) * params.wo;
        for (var ox = 0u; ox < params.wo; ox = ox + 1u) {
            let ix = src_index(i32(ox * s + kx) - p, i32(params.w));
            if (ix >= 0) { acc = acc + dy[dy_row + ox] * x[x_row + u32(ix)]; }
        }
    }
    partial[idx] = acc;
}
