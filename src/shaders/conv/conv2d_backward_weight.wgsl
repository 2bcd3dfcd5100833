// conv2d_backward_weight.wgsl: gradient of conv2d with respect to its weight, as a split-K implicit GEMM: the
// first pass of a deterministic two-pass reduction over the N·H_out·W_out output pixels.
//
// Math:     dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
//           (padding as in conv2d.wgsl: zero, or the mirrored index for reflect). As a matrix product
//           dW (C_out, K) = dY (C_out, P) · Xᵀ (P, K), K = C_in·kH·kW in the weight's order, P = N·H_out·W_out, the
//           long P axis cut into nchunks slices of `chunk` pixels; this kernel writes one partial product per
//           slice, partial[q, o, k] = the sum over the pixels of slice q, in pixel order. The host then sums the
//           partials over q with reduce_sum.wgsl (skipped when nchunks = 1). Also the weight gradient of
//           conv_transpose2d (dy and x swapped).
// Threads:  one workgroup (256 invocations) per (slice, 64 output channels × 64 K-columns tile); invocation
//           (ty, tx) = (lid / 16, lid % 16) accumulates o = 4 ty .. 4 ty + 3 × k = 4 tx .. 4 tx + 3 in four named
//           vec4 registers. Each step stages 16 consecutive pixels of dY (64 × 16) and of X (64 × 16, read
//           through the padding) in workgroup memory — 4 + 4 loads per invocation, consecutive invocations on
//           consecutive pixels; each invocation decodes its four K rows (c, ky, kx) once — then 16 steps of
//           one vec4 of dY (broadcast) times one vec4 of X.
//           Workgroups: nchunks · ceil(C_out / 64) · ceil(K / 64), folded. Workgroup memory 8 KiB.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 dy (read) (N, C_out, H_out, W_out) |
//           2 partial (read_write) (nchunks, C_out, C_in, kH, kW) | 3 params (uniform)
// CPU reference: engine::ops::conv::conv2d::cpu_backward (dw).

const WG: u32 = 256u;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BP: u32 = 16u;

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

var<workgroup> tile_dy: array<vec4<f32>, 256>;   // [pp * 16 + o / 4][o % 4] = dY[o0 + o, p0 + pp]
var<workgroup> tile_x: array<vec4<f32>, 256>;    // [pp * 16 + k / 4][k % 4] = X[k0 + k, p0 + pp]

var<private> c0: vec4<f32>;
var<private> c1: vec4<f32>;
var<private> c2: vec4<f32>;
var<private> c3: vec4<f32>;

// As in conv2d.wgsl: the index of x read for padded position t; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

fn fma_step(pp: u32, ty: u32, tx: u32) {
    let a = tile_dy[pp * 16u + ty];
    let b = tile_x[pp * 16u + tx];
    c0 = c0 + a.x * b;
    c1 = c1 + a.y * b;
    c2 = c2 + a.z * b;
    c3 = c3 + a.w * b;
}

fn store4(q: u32, o: u32, k: u32, ktot: u32, v: vec4<f32>) {
    if (o >= params.co) { return; }
    let base = (q * params.co + o) * ktot;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (k + j < ktot) { partial[base + k + j] = v[j]; }
    }
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let khw = params.kh * params.kw;
    let ktot = params.ci * khw;
    let hw = params.ho * params.wo;
    let npix = params.n * hw;
    let tiles_k = (ktot + BN - 1u) / BN;
    let tiles = ((params.co + BM - 1u) / BM) * tiles_k;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (wg >= params.nchunks * tiles) { return; }   // uniform per workgroup: the barriers stay uniform
    let q = wg / tiles;
    let k0 = (wg % tiles % tiles_k) * BN;
    let o0 = (wg % tiles / tiles_k) * BM;
    let p_begin = q * params.chunk;
    let p_end = min(npix, p_begin + params.chunk);
    let pp = lid % BP;   // the pixel of each step this invocation stages; also tx, its 4 K columns
    let r0 = lid / BP;   // its rows of each slab; also ty, its 4 output channels
    // The four K rows this invocation stages: k = k0 + r0 + 16 j → (c, ky, kx), decoded once.
    var kc: vec4<u32>;
    var ky: vec4<i32>;
    var kx: vec4<i32>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let k = min(k0 + r0 + 16u * j, ktot - 1u);
        kc[j] = k / khw;
        ky[j] = i32((k % khw) / params.kw);
        kx[j] = i32(k % params.kw);
    }
    let s = params.stride;
    let pad = i32(params.pad);
    for (var p0 = p_begin; p0 < p_end; p0 = p0 + BP) {
        let p = p0 + pp;
        let valid = p < p_end;
        let n = min(p, npix - 1u) / hw;
        let pix = min(p, npix - 1u) % hw;
        let oy = i32((pix / params.wo) * s) - pad;
        let ox = i32((pix % params.wo) * s) - pad;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let row = r0 + 16u * j;
            let o = o0 + row;
            var dv = 0.0;
            if (valid && o < params.co) { dv = dy[(n * params.co + o) * hw + pix]; }
            tile_dy[pp * 16u + row / 4u][row % 4u] = dv;
            var xv = 0.0;
            if (valid && k0 + row < ktot) {
                let iy = src_index(oy + ky[j], i32(params.h));
                let ix = src_index(ox + kx[j], i32(params.w));
                if (iy >= 0 && ix >= 0) {
                    xv = x[((n * params.ci + kc[j]) * params.h + u32(iy)) * params.w + u32(ix)];
                }
            }
            tile_x[pp * 16u + row / 4u][row % 4u] = xv;
        }
        workgroupBarrier();
        fma_step(0u, r0, pp);  fma_step(1u, r0, pp);  fma_step(2u, r0, pp);  fma_step(3u, r0, pp);
        fma_step(4u, r0, pp);  fma_step(5u, r0, pp);  fma_step(6u, r0, pp);  fma_step(7u, r0, pp);
        fma_step(8u, r0, pp);  fma_step(9u, r0, pp);  fma_step(10u, r0, pp); fma_step(11u, r0, pp);
        fma_step(12u, r0, pp); fma_step(13u, r0, pp); fma_step(14u, r0, pp); fma_step(15u, r0, pp);
        workgroupBarrier();
    }
    store4(q, o0 + 4u * r0, k0 + 4u * pp, ktot, c0);
    store4(q, o0 + 4u * r0 + 1u, k0 + 4u * pp, ktot, c1);
    store4(q, o0 + 4u * r0 + 2u, k0 + 4u * pp, ktot, c2);
    store4(q, o0 + 4u * r0 + 3u, k0 + 4u * pp, ktot, c3);
}
