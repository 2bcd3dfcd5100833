// conv2d_backward_weight_narrow.wgsl: conv2d_backward_weight.wgsl's split-K weight gradient (same Params,
// bindings, slices and partials) with a tile for few output channels: 16 output channels × 64 K-columns per
// workgroup instead of 64 × 64, so the small models' 8..32-channel layers do not idle most of a workgroup.
//
// Math:     partial[q, o, k] = Σ_{p in slice q} dy[p, o] · X[k, p]   (see conv2d_backward_weight.wgsl)
// Threads:  one workgroup (256 invocations) per (slice, 16 × 64 tile); invocation (ty, tx) = (lid / 64, lid % 64)
//           accumulates o = 4 ty .. 4 ty + 3 for K-column tx in one vec4 register. Each step stages 16
//           consecutive pixels of dY (16 × 16, one load per invocation) and of X (64 × 16, four loads per
//           invocation, K rows decoded once), then 16 steps of one vec4 of dY times one value of X.
//           Workgroups: nchunks · ceil(C_out / 16) · ceil(K / 64), folded. Workgroup memory 5 KiB.
// Bindings: 0 x (read) (N, C_in, H, W) | 1 dy (read) (N, C_out, H_out, W_out) |
//           2 partial (read_write) (nchunks, C_out, C_in, kH, kW) | 3 params (uniform)
// CPU reference: engine::ops::conv::conv2d::cpu_backward (dw).

const WG: u32 = 256u;
const BM: u32 = 16u;
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

var<workgroup> tile_dy: array<vec4<f32>, 64>;   // [pp * 4 + o / 4][o % 4] = dY[o0 + o, p0 + pp]
var<workgroup> tile_x: array<f32, 1024>;        // [pp * 64 + k] = X[k0 + k, p0 + pp]

var<private> acc: vec4<f32>;

// As in conv2d.wgsl: the index of x read for padded position t; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

fn fma_step(pp: u32, ty: u32, tx: u32) {
    acc = acc + tile_dy[pp * 4u + ty] * tile_x[pp * 64u + tx];
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let pp = lid % BP;   // the pixel of each step this invocation stages
    let r0 = lid / BP;   // its dY row (output channel) and first X row (K column) of each slab
    let ty = lid / 64u;  // its 4 output channels
    let tx = lid % 64u;  // its K column
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
        var dv = 0.0;
        if (valid && o0 + r0 < params.co) { dv = dy[(n * params.co + o0 + r0) * hw + pix]; }
        tile_dy[pp * 4u + r0 / 4u][r0 % 4u] = dv;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let row = r0 + 16u * j;
            var xv = 0.0;
            if (valid && k0 + row < ktot) {
                let iy = src_index(oy + ky[j], i32(params.h));
                let ix = src_index(ox + kx[j], i32(params.w));
                if (iy >= 0 && ix >= 0) {
                    xv = x[((n * params.ci + kc[j]) * params.h + u32(iy)) * params.w + u32(ix)];
                }
            }
            tile_x[pp * 64u + row] = xv;
        }
        workgroupBarrier();
        fma_step(0u, ty, tx);  fma_step(1u, ty, tx);  fma_step(2u, ty, tx);  fma_step(3u, ty, tx);
        fma_step(4u, ty, tx);  fma_step(5u, ty, tx);  fma_step(6u, ty, tx);  fma_step(7u, ty, tx);
        fma_step(8u, ty, tx);  fma_step(9u, ty, tx);  fma_step(10u, ty, tx); fma_step(11u, ty, tx);
        fma_step(12u, ty, tx); fma_step(13u, ty, tx); fma_step(14u, ty, tx); fma_step(15u, ty, tx);
        workgroupBarrier();
    }
    let k = k0 + tx;
    if (k < ktot) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let o = o0 + 4u * ty + i;
            if (o < params.co) { partial[(q * params.co + o) * ktot + k] = acc[i]; }
        }
    }
}
