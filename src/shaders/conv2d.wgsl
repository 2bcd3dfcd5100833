// conv2d.wgsl: 2-D convolution (cross-correlation, as PyTorch) with stride, zero or reflect padding and an
// optional bias, as an implicit GEMM through workgroup-memory tiles (the matmul.wgsl scheme).
//
// Math:     y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]
//           Seen as a matrix product: C (C_out, P) = W (C_out, K) · X (K, P), K = C_in·kH·kW (the weight as
//           stored), P = N·H_out·W_out (every output pixel of every image); X is never materialised: its
//           element (k, p) is read from x on the fly, padding by index arithmetic (src_index below: -1 for
//           zero padding, the mirrored index x[-i] = x[i], x[n-1+i] = x[n-1-i] for reflect).
// Threads:  one workgroup (16 × 16 = 256 invocations) per 64 (output channels) × 64 (pixels) tile of C;
//           each invocation accumulates 4 × 4 outputs (channels ty + 16 i, pixels tx + 16 j) in registers.
//           K is walked 16 at a time: the workgroup stages a 64 × 16 slab of W and a 16 × 64 slab of X in
//           workgroup memory (4 + 4 loads per invocation; each invocation always loads the same pixel
//           column, so its pixel decode is hoisted out of the K loop), then every value is reused 64 times.
//           Workgroups: ceil(C_out / 64) · ceil(P / 64), folded. Workgroup memory 8 KiB.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 weight (read) (C_out, C_in, kH, kW) | 2 bias (read) (C_out)
//           (a placeholder when has_bias = 0) | 3 y (read_write) (N, C_out, H_out, W_out) | 4 params
// CPU reference: engine::ops::conv2d::cpu_forward.
// Backward: conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl (bias: a sum of dy).

const WG: u32 = 256u;
const TILE: u32 = 64u;
const TK: u32 = 16u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, kh: u32, kw: u32, stride: u32,
    ho: u32, wo: u32, pad: u32, reflect: u32,
    has_bias: u32, chunk: u32, nchunks: u32, _pad0: u32,
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C_in, H, W)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;   // (C_out, C_in, kH, kW)
@group(0) @binding(2) var<storage, read>       bias: array<f32>;     // (C_out)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;        // (N, C_out, H_out, W_out)
@group(0) @binding(4) var<uniform>             params: Params;

var<workgroup> tile_w: array<f32, 1024>;   // [kk * TILE + mm] = W[o0 + mm, k0 + kk]
var<workgroup> tile_x: array<f32, 1024>;   // [kk * TILE + pp] = X[k0 + kk, p0 + pp]

// The index of x read for padded position t along an axis of length n; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

@compute @workgroup_size(WG)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let hw = params.ho * params.wo;
    let npix = params.n * hw;
    let khw = params.kh * params.kw;
    let k_total = params.ci * khw;
    let tiles_p = (npix + TILE - 1u) / TILE;
    let tiles_o = (params.co + TILE - 1u) / TILE;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= tiles_o * tiles_p) { return; }
    let p0 = (wg % tiles_p) * TILE;
    let o0 = (wg / tiles_p) * TILE;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // The pixel column this invocation loads into tile_x, decoded once.
    let lp = p0 + lid % TILE;
    let ln = lp / hw;
    let lpix = lp % hw;
    let ly0 = i32((lpix / params.wo) * params.stride) - i32(params.pad);
    let lx0 = i32((lpix % params.wo) * params.stride) - i32(params.pad);

    var acc: array<f32, 16>;   // acc[i * 4 + j] = C[o0 + ty + 16 i, p0 + tx + 16 j]
    for (var k0 = 0u; k0 < k_total; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            // W slab: consecutive invocations read consecutive k (contiguous in the weight).
            let o = o0 + e / TK;
            let kw_ = k0 + e % TK;
            var wv = 0.0;
            if (o < params.co && kw_ < k_total) { wv = weight[o * k_total + kw_]; }
            tile_w[(e % TK) * TILE + e / TK] = wv;
            // X slab: row e / TILE, column lid % TILE (consecutive invocations: consecutive pixels).
            let k = k0 + e / TILE;
            var xv = 0.0;
            if (lp < npix && k < k_total) {
                let c = k / khw;
                let r = k % khw;
                let iy = src_index(ly0 + i32(r / params.kw), i32(params.h));
                let ix = src_index(lx0 + i32(r % params.kw), i32(params.w));
                if (iy >= 0 && ix >= 0) {
                    xv = x[((ln * params.ci + c) * params.h + u32(iy)) * params.w + u32(ix)];
                }
            }
            tile_x[(e / TILE) * TILE + lid % TILE] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = tile_w[kk * TILE + ty + 16u * i];
                bv[i] = tile_x[kk * TILE + tx + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let o = o0 + ty + 16u * i;
        if (o >= params.co) { continue; }
        var b = 0.0;
        if (params.has_bias == 1u) { b = bias[o]; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let p = p0 + tx + 16u * j;
            if (p < npix) {
                y[((p / hw) * params.co + o) * hw + p % hw] = acc[i * 4u + j] + b;
            }
        }
    }
}
