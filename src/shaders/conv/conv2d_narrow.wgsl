// conv2d_narrow.wgsl: conv2d.wgsl's convolution (same Params, padding, flip and bindings) with a tile shaped for
// few output channels (the small U-TAE's 8..20, L-TAE-free heads): 16 channels × 256 pixels instead of 64 × 128,
// so a layer of 8 output channels wastes half a tile instead of seven eighths.
//
// Math:     y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
//           (see conv2d.wgsl: an implicit GEMM walked tap by tap, the input channels 8 at a time).
// Threads:  one workgroup (256 invocations) per 16 (output channels) × 256 (pixels) tile; invocation
//           (ty, tx) = (lid / 64, lid % 64) accumulates channels 4 ty .. 4 ty + 3 × pixels 4 tx .. 4 tx + 3 in four
//           named vec4 registers. Per step (one tap, 8 channels) the workgroup stages an 8 × 16 slab of W and an
//           8 × 256 slab of X (8 loads per invocation, consecutive pixels), then 8 steps of one vec4 of W times
//           one vec4 of X. Workgroups: ceil(C_out / 16) · ceil(P / 256), folded. Workgroup memory 8.5 KiB.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 weight (read) (C_out, C_in, kH, kW) | 2 bias (read) (C_out)
//           (a placeholder when has_bias = 0) | 3 y (read_write) (N, C_out, H_out, W_out) | 4 params
// CPU reference: engine::ops::conv::conv2d::cpu_forward.

const WG: u32 = 256u;
const BM: u32 = 16u;
const BN: u32 = 256u;
const BK: u32 = 8u;

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

var<workgroup> tile_w: array<vec4<f32>, 32>;    // [kk * 4 + m / 4][m % 4] = W[o0 + m, c0 + kk, tap]
var<workgroup> tile_x: array<vec4<f32>, 512>;   // [kk * 64 + p / 4][p % 4] = X[(c0 + kk, tap), p0 + p]

var<private> c0: vec4<f32>;
var<private> c1: vec4<f32>;
var<private> c2: vec4<f32>;
var<private> c3: vec4<f32>;

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
    let a = tile_w[kk * 4u + ty];
    let b = tile_x[kk * 64u + tx];
    c0 = c0 + a.x * b;
    c1 = c1 + a.y * b;
    c2 = c2 + a.z * b;
    c3 = c3 + a.w * b;
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
fn conv2d_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let ty = lid / 64u;
    let tx = lid % 64u;
    // The pixel column this invocation stages (all 8 rows of each X slab).
    let lp = p0 + lid;
    let valid_p = lp < npix;
    let lpix = lp % hw;
    let x_base = (lp / hw) * params.ci * params.h * params.w;
    let ly0 = i32((lpix / params.wo) * params.stride) - pad_y();
    let lx0 = i32((lpix % params.wo) * params.stride) - pad_x();
    // The weight element this invocation stages (invocations 0..127: row lid / 16, channel lid % 16).
    let m = lid % BM;
    let kw0 = lid / BM;

    for (var tap = 0u; tap < khw; tap = tap + 1u) {
        let iy = src_index(ly0 + i32(tap / params.kw), i32(params.h));
        let ix = src_index(lx0 + i32(tap % params.kw), i32(params.w));
        let inside = valid_p && iy >= 0 && ix >= 0;
        let sp = x_base + u32(max(iy, 0)) * params.w + u32(max(ix, 0));
        for (var c0_ = 0u; c0_ < params.ci; c0_ = c0_ + BK) {
            for (var kk = 0u; kk < BK; kk = kk + 1u) {
                let c = c0_ + kk;
                var v = 0.0;
                if (inside && c < params.ci) { v = x[sp + c * params.h * params.w]; }
                tile_x[kk * 64u + lid / 4u][lid % 4u] = v;
            }
            if (kw0 < BK) {
                let c = c0_ + kw0;
                var v = 0.0;
                if (o0 + m < params.co && c < params.ci) { v = weight_at(o0 + m, c, tap); }
                tile_w[kw0 * 4u + m / 4u][m % 4u] = v;
            }
            workgroupBarrier();
            fma_step(0u, ty, tx); fma_step(1u, ty, tx); fma_step(2u, ty, tx); fma_step(3u, ty, tx);
            fma_step(4u, ty, tx); fma_step(5u, ty, tx); fma_step(6u, ty, tx); fma_step(7u, ty, tx);
            workgroupBarrier();
        }
    }
    let o = o0 + 4u * ty;
    let p = p0 + 4u * tx;
    store4(o, p, c0);
    store4(o + 1u, p, c1);
    store4(o + 2u, p, c2);
    store4(o + 3u, p, c3);
}
