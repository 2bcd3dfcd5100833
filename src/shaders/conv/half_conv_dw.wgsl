// half_conv_dw.wgsl: the weight gradient of a 2-D convolution under --precision mixed as an implicit product on
// the f16 tiles: half_matmul.wgsl's tiles with the A operand, the unfolded input, read straight from the input
// instead of from an unfolded copy (half_im2col.wgsl), per image (engine/ops/conv/conv2d/mixed.rs).
//
// Math:     C[f, r, o] = Σ_p A[f, r, p] · Bt[f, p, o] for r < K = C_in · kH · kW, o < C_out, over p < P_p in
//           increasing order: dwᵀ of image n = frame0 + f, the images summed afterwards (reduce_sum, fixed
//           order). A[f, r, p] = h(xpad[n, c, oy·s - pad + ky, ox·s - pad + kx]) with r = (c · kH + ky) · kW
//           + kx, p = oy · W_out + ox, 0 for r ≥ K or p ≥ P = H_out · W_out: half_im2col.wgsl's operand
//           element for element (the same rounding h and padding); Bt (frames, P_p, C_out_p) is dy
//           transposed and packed by half_pack_operand.wgsl. So C is bit for bit half_im2col +
//           half_matmul. h: half_conv.wgsl's (rounded by the integer conversion, widened by half_value).
// Threads:  half_matmul.wgsl's: one workgroup (16 × 16 = 256 invocations) per 64 × 64 tile of one image's C
//           (rows r, columns o); invocation (ty, tx) accumulates 4 × 4 outputs in four vec4 registers; P is
//           walked 16 at a time through a 64 × 16 slab of A and a 16 × 64 slab of Bt widened to float32 in
//           workgroup memory. An invocation stages the same four rows of A at every step (r = m0 + lid / 16
//           + 16q, q = 0..3: their (c, ky, kx) divided out once) at column kk = lid % 16 (one division a step
//           for its pixel). Workgroups: frames · M_p/64 · N_p/64, 2-D fold. Workgroup memory 8 KiB.
// Bindings: 0 bt (frames · P_p · C_out_p halves) | 1 x (N, C_in, H, W) float32 | 2 c (frames, K, C_out)
//           float32 | 3 params (uniform): m = K, n = C_out, k_p = P_p, m_p = K padded to 64,
//           n_p = C_out_p, c_offset 0; has_bias and per_wg unused.
// CPU reference: engine::ops::conv::conv2d::cpu_backward on the rounded operands (conv2d::mixed). Needs
// SHADER_F16. Helpers, Params, Row, row_at and staged are half_conv.wgsl's (the same text: engine::kernels).
// Backward: none (it is a backward).

enable f16;

const WG: u32 = 256u;
const TILE: u32 = 64u;
const TK: u32 = 16u;

struct Params {
    m: u32, n: u32, k_p: u32, frames: u32,             // C_out, P, padded K, images in this launch
    m_p: u32, n_p: u32, c_offset: u32, has_bias: u32,  // padded C_out and P; where y's chunk starts
    ci: u32, h: u32, w: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, reflect: u32,
    ho: u32, wo: u32, k: u32, frame0: u32,             // output size, K, the launch's first image
    per_wg: u32, _pad0: u32, _pad1: u32, _pad2: u32,   // blocks a workgroup (half_conv_coop.wgsl)
}

@group(0) @binding(0) var<storage, read_write> b: array<f16>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

var<workgroup> tile_a: array<vec4<f32>, 256>;   // [kk * 16 + mm / 4][mm % 4] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<vec4<f32>, 256>;   // [kk * 16 + nn / 4][nn % 4] = Bt[k0 + kk, n0 + nn]

var<private> acc0: vec4<f32>;   // C[m0 + 4 ty + i, n0 + 4 tx .. 4 tx + 3] for i = 0..3
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

// Whether dropping `rem` (the discarded low bits, `half` the value of their top bit) rounds `r` up: nearest,
// ties to even.
fn round_up(r: u32, rem: u32, half: u32) -> bool {
    return rem > half || (rem == half && (r & 1u) == 1u);
}

// The binary16 bits of v (low 16 bits of the result).
fn half_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let m = b & 0x7fffffu;
    if (e == 0xffu) {
        // Infinity, or NaN (kept quiet: the top mantissa bit set).
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let exp = i32(e) - 112;                      // the half's biased exponent (127 - 15 = 112)
    if (exp >= 31) { return sign | 0x7bffu; }    // beyond the largest half: saturate
    if (exp <= 0) {
        // A half subnormal (value r · 2^-24) or zero: r = M >> (14 - exp), M the 24-bit significand.
        if (exp < -10) { return sign; }          // below half the smallest subnormal (and f32 subnormals)
        let big = m | 0x800000u;
        let shift = u32(14 - exp);               // 14 ..= 24
        let half = 1u << (shift - 1u);
        let rem = big & ((1u << shift) - 1u);
        let r = big >> shift;
        return sign | (r + select(0u, 1u, round_up(r, rem, half)));
    }
    var r = (u32(exp) << 10u) | (m >> 13u);
    r = r + select(0u, 1u, round_up(r, m & 0x1fffu, 0x1000u));  // a carry moves into the exponent: right
    if (r >= 0x7c00u) { return sign | 0x7bffu; }                  // rounded past the largest half: saturate
    return sign | r;
}

fn half_value(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m · 2^-24, exact in float32; the sign set on the bits (keeps -0).
        return bitcast<f32>(sign | bitcast<u32>(ldexp(f32(m), -24)));
    }
    if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// The index of x read for padded position t along an axis of length n; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

// One step of the inner product: row slice kk of the A slab times row kk of the B slab.
fn fma_step(kk: u32, ty: u32, tx: u32) {
    let av = tile_a[kk * 16u + ty];
    let bv = tile_b[kk * 16u + tx];
    acc0 = acc0 + av.x * bv;
    acc1 = acc1 + av.y * bv;
    acc2 = acc2 + av.z * bv;
    acc3 = acc3 + av.w * bv;
}

fn store_row(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) { return; }
    let o = base + row * params.n;
    if (col < params.n) { c[o + col] = v.x; }
    if (col + 1u < params.n) { c[o + col + 1u] = v.y; }
    if (col + 2u < params.n) { c[o + col + 2u] = v.z; }
    if (col + 3u < params.n) { c[o + col + 3u] = v.w; }
}

// A row of B as this invocation tracks it: r, and r's (c, ky, kx).
struct Row { r: u32, c: u32, ky: u32, kx: u32 }

fn row_at(r: u32) -> Row {
    let taps = params.kh * params.kw;
    let c = r / taps;
    let tap = r - c * taps;
    let ky = tap / params.kw;
    return Row(r, c, ky, tap - ky * params.kw);
}

// h(xpad) at `row` of the column whose window starts at (iy0, ix0) of image n, widened; 0 past K.
fn staged(row: Row, n: u32, iy0: i32, ix0: i32, in_p: bool) -> f32 {
    if (!in_p || row.r >= params.k) { return 0.0; }
    let iy = src_index(iy0 + i32(row.ky), i32(params.h));
    let ix = src_index(ix0 + i32(row.kx), i32(params.w));
    if (iy < 0 || ix < 0) { return 0.0; }
    return half_value(half_bits(x[((n * params.ci + row.c) * params.h + u32(iy)) * params.w + u32(ix)]));
}

@compute @workgroup_size(WG)
fn half_conv_dw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tiles_m = params.m_p / TILE;
    let tiles_n = params.n_p / TILE;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= params.frames * tiles_m * tiles_n) { return; }
    let n0 = (wg % tiles_n) * TILE;
    let m0 = ((wg / tiles_n) % tiles_m) * TILE;
    let f = wg / (tiles_n * tiles_m);
    let b_base = f * params.k_p * params.n_p + n0;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let n = params.frame0 + f;
    let pixels = params.ho * params.wo;

    // This invocation's rows of A and its column of each step's slab.
    let mm = lid / TK;
    let kk = lid % TK;
    let r0 = row_at(m0 + mm);
    let r1 = row_at(m0 + mm + 16u);
    let r2 = row_at(m0 + mm + 32u);
    let r3 = row_at(m0 + mm + 48u);

    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.k_p; k0 = k0 + TK) {
        let p = k0 + kk;
        let oy = p / params.wo;
        let iy0 = i32(oy * params.stride) - i32(params.pad);
        let ix0 = i32((p - oy * params.wo) * params.stride) - i32(params.pad);
        let in_p = p < pixels;
        let slot = mm / 4u;
        let lane = mm % 4u;
        tile_a[kk * 16u + slot][lane] = staged(r0, n, iy0, ix0, in_p);
        tile_a[kk * 16u + slot + 4u][lane] = staged(r1, n, iy0, ix0, in_p);
        tile_a[kk * 16u + slot + 8u][lane] = staged(r2, n, iy0, ix0, in_p);
        tile_a[kk * 16u + slot + 12u][lane] = staged(r3, n, iy0, ix0, in_p);
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            let nn = e % TILE;
            let kb = e / TILE;
            tile_b[kb * 16u + nn / 4u][nn % 4u] = f32(b[b_base + (k0 + kb) * params.n_p + nn]);
        }
        workgroupBarrier();
        fma_step(0u, ty, tx);  fma_step(1u, ty, tx);  fma_step(2u, ty, tx);  fma_step(3u, ty, tx);
        fma_step(4u, ty, tx);  fma_step(5u, ty, tx);  fma_step(6u, ty, tx);  fma_step(7u, ty, tx);
        fma_step(8u, ty, tx);  fma_step(9u, ty, tx);  fma_step(10u, ty, tx); fma_step(11u, ty, tx);
        fma_step(12u, ty, tx); fma_step(13u, ty, tx); fma_step(14u, ty, tx); fma_step(15u, ty, tx);
        workgroupBarrier();
    }
    let base = params.c_offset + f * params.m * params.n;
    let row = m0 + 4u * ty;
    let col = n0 + 4u * tx;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
}
