// conv2d.wgsl: 2-D convolution (cross-correlation, as PyTorch) with stride, zero or reflect padding and an
// optional bias, as an implicit GEMM with register tiles. Also the input gradient of any convolution, one
// stride phase at a time (flip = 1: the flipped, transposed kernel over dy, see engine::ops::conv::conv2d).
//
// Math:     y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
//           As a matrix product C (C_out, P) = W (C_out, K) · X (K, P), P = N·H_out·W_out output pixels, with K
//           walked tap by tap: for each kernel tap r = (ky, kx), the input channels 16 at a time. X is never
//           materialised; within one tap every pixel's source position (and its zero / reflect padding,
//           src_index below) is computed once for all channels. flip = 1 reads the weight as
//           w'[o, c, ty, tx] = w[c, o, φy + s'·(kH-1-ty), φx + s'·(kW-1-tx)] (stored (C_in', C_out', wkh, wkw),
//           s' = wstride) and stores output pixel (a, b) at (s'·a + φy, s'·b + φx) of an (out_h, out_w) plane:
//           phase (φy, φx) of the gradient of a stride-s' convolution's padded input.
// Threads:  one workgroup (256 invocations) per 64 (output channels) × 128 (pixels) tile of C; invocation
//           (ty, tx) = (lid / 16, lid % 16) accumulates channels 4 ty .. 4 ty + 3 × pixels {4 tx + j, 64 + 4 tx + j}
//           in eight named vec4 registers. Per step (one tap, 16 channels) the workgroup stages a 16 × 64
//           slab of W and a 16 × 128 slab of X in workgroup memory (4 + 8 loads per invocation; the X loads of
//           consecutive invocations are consecutive pixels), then 16 steps of one vec4 of W (broadcast) times
//           two vec4 of X: 32 multiply-adds per three workgroup loads.
//           Workgroups: ceil(C_out / 64) · ceil(P / 128), folded. Workgroup memory 12 KiB.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 weight (read) (C_out, C_in, kH, kW) | 2 bias (read) (C_out)
//           (a placeholder when has_bias = 0) | 3 y (read_write) (N, C_out, H_out, W_out) | 4 params
// CPU reference: engine::ops::conv::conv2d::cpu_forward.  Variant for few output channels: conv2d_narrow.wgsl.
// Backward: conv2d_backward_input.wgsl (or this kernel with flip = 1 and conv2d_pad_fold.wgsl),
//           conv2d_backward_weight.wgsl (bias: a sum of dy).

const WG: u32 = 256u;
const BM: u32 = 64u;
const BN: u32 = 128u;
const BK: u32 = 16u;

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

var<workgroup> tile_w: array<vec4<f32>, 256>;   // [kk * 16 + m / 4][m % 4] = W[o0 + m, c0 + kk, tap]
var<workgroup> tile_x: array<vec4<f32>, 512>;   // [kk * 32 + p / 4][p % 4] = X[(c0 + kk, tap), p0 + p]

var<private> c0a: vec4<f32>; var<private> c0b: vec4<f32>; var<private> c1a: vec4<f32>; var<private> c1b: vec4<f32>;
var<private> c2a: vec4<f32>; var<private> c2b: vec4<f32>; var<private> c3a: vec4<f32>; var<private> c3b: vec4<f32>;

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

// w[o, c, tap] as this convolution reads it. flip = 1: the stored kernel (C_in', C_out', wkh, wkw) transposed and
// flipped, one phase of its stride: tap (ty, tx) reads (phase_y + wstride·(kH-1-ty), phase_x + wstride·(kW-1-tx)).
fn weight_at(o: u32, c: u32, tap: u32) -> f32 {
    if (o >= params.co) { return 0.0; }
    if (params.flip == 1u) {
        let ky = params.phase_y + params.wstride * (params.kh - 1u - tap / params.kw);
        let kx = params.phase_x + params.wstride * (params.kw - 1u - tap % params.kw);
        return weight[((c * params.co + o) * params.wkh + ky) * params.wkw + kx];
    }
    return weight[(o * params.ci + c) * params.kh * params.kw + tap];
}

fn fma_step(kk: u32, ty: u32, tx: u32) {
    let a = tile_w[kk * 16u + ty];
    let b0 = tile_x[kk * 32u + tx];
    let b1 = tile_x[kk * 32u + 16u + tx];
    c0a = c0a + a.x * b0; c0b = c0b + a.x * b1;
    c1a = c1a + a.y * b0; c1b = c1b + a.y * b1;
    c2a = c2a + a.z * b0; c2b = c2b + a.z * b1;
    c3a = c3a + a.w * b0; c3b = c3b + a.w * b1;
}

// y[o, p .. p + 3] = v + bias (pixels past the end skipped; the four may straddle two images).
fn store4(o: u32, p: u32, v: vec4<f32>) {
    if (o >= params.co) { return; }
    let hw = params.ho * params.wo;
    var b = 0.0;
    if (params.has_bias == 1u) { b = bias[o]; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let q = p + j;
        if (q < params.n * hw) { store(q / hw, o, q % hw, v[j] + b); }
    }
}

// y[n, o, pixel pix] = v: pixel (a, b) = (pix / W_out, pix % W_out) of this convolution lands on row
// out_stride·a + phase_y, column out_stride·b + phase_x of an (out_h, out_w) plane (the identity unless flip = 1
// computes one phase of a strided input gradient).
fn store(n: u32, o: u32, pix: u32, v: f32) {
    let row = params.out_stride * (pix / params.wo) + params.phase_y;
    let col = params.out_stride * (pix % params.wo) + params.phase_x;
    if (row < params.out_h && col < params.out_w) {
        y[((n * params.co + o) * params.out_h + row) * params.out_w + col] = v;
    }
}

@compute @workgroup_size(WG)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let hw = params.ho * params.wo;
    let npix = params.n * hw;
    let khw = params.kh * params.kw;
    let tiles_p = (npix + BN - 1u) / BN;
    let tiles_o = (params.co + BM - 1u) / BM;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (wg >= tiles_o * tiles_p) { return; }   // uniform per workgroup: the barriers stay uniform
    let p0 = (wg % tiles_p) * BN;
    let o0 = (wg / tiles_p) * BM;
    let ty = lid / 16u;
    let tx = lid % 16u;
    // The pixel column this invocation stages (rows kx0, kx0 + 2, ..., kx0 + 14 of each X slab).
    let col = lid % BN;
    let kx0 = lid / BN;
    let lp = p0 + col;
    let valid_p = lp < npix;
    let lpix = lp % hw;
    let x_base = (lp / hw) * params.ci * params.h * params.w;
    let ly0 = i32((lpix / params.wo) * params.stride) - pad_y();
    let lx0 = i32((lpix % params.wo) * params.stride) - pad_x();
    // The weight column this invocation stages (rows kw0, kw0 + 4, ..., kw0 + 12 of each W slab).
    let m = lid % BM;
    let kw0 = lid / BM;

    for (var tap = 0u; tap < khw; tap = tap + 1u) {
        let iy = src_index(ly0 + i32(tap / params.kw), i32(params.h));
        let ix = src_index(lx0 + i32(tap % params.kw), i32(params.w));
        let inside = valid_p && iy >= 0 && ix >= 0;
        let sp = x_base + u32(max(iy, 0)) * params.w + u32(max(ix, 0));
        for (var c0 = 0u; c0 < params.ci; c0 = c0 + BK) {
            for (var j = 0u; j < 8u; j = j + 1u) {
                let kk = kx0 + 2u * j;
                let c = c0 + kk;
                var v = 0.0;
                if (inside && c < params.ci) { v = x[sp + c * params.h * params.w]; }
                tile_x[kk * 32u + col / 4u][col % 4u] = v;
            }
            for (var j = 0u; j < 4u; j = j + 1u) {
                let kk = kw0 + 4u * j;
                let c = c0 + kk;
                var v = 0.0;
                if (o0 + m < params.co && c < params.ci) { v = weight_at(o0 + m, c, tap); }
                tile_w[kk * 16u + m / 4u][m % 4u] = v;
            }
            workgroupBarrier();
            fma_step(0u, ty, tx);  fma_step(1u, ty, tx);  fma_step(2u, ty, tx);  fma_step(3u, ty, tx);
            fma_step(4u, ty, tx);  fma_step(5u, ty, tx);  fma_step(6u, ty, tx);  fma_step(7u, ty, tx);
            fma_step(8u, ty, tx);  fma_step(9u, ty, tx);  fma_step(10u, ty, tx); fma_step(11u, ty, tx);
            fma_step(12u, ty, tx); fma_step(13u, ty, tx); fma_step(14u, ty, tx); fma_step(15u, ty, tx);
            workgroupBarrier();
        }
    }
    let o = o0 + 4u * ty;
    let pa = p0 + 4u * tx;
    let pb = pa + 64u;
    store4(o, pa, c0a);      store4(o, pb, c0b);
    store4(o + 1u, pa, c1a); store4(o + 1u, pb, c1b);
    store4(o + 2u, pa, c2a); store4(o + 2u, pb, c2b);
    store4(o + 3u, pa, c3a); store4(o + 3u, pb, c3b);
}
