// half_conv.wgsl: a 2-D convolution under --precision mixed as an implicit product on the f16 tiles: the
// tiles of half_matmul.wgsl, with the B operand read straight from the input instead of from an unfolded copy
// (half_im2col.wgsl), so no (K, P) operand is written to memory and read back (engine/ops/conv/conv2d/
// mixed.rs).
//
// Math:     y[frame0 + f, o, p] = bias[o] + Σ_r A[o, r] · B[f, r, p] for o < C_out, p < P = H_out · W_out,
//           over r < K_p in increasing order, where A (M_p, K_p) is h(W) packed by half_pack_operand.wgsl
//           (the weight (C_out, C_in, kH, kW) read as (C_out, K), K = C_in · kH · kW, zero-padded) and
//           B[f, r, p] = h(xpad[n, c, oy·s - pad + ky, ox·s - pad + kx]) with n = frame0 + f,
//           r = (c · kH + ky) · kW + kx, p = oy · W_out + ox, 0 for r ≥ K or p ≥ P: half_im2col.wgsl's
//           operand, element for element (the same rounding h and the same padding), so y is bit for bit
//           half_im2col + half_matmul. h = binary16 rounded to nearest, ties to even, saturating (the integer
//           conversion of half_pack.wgsl), widened back exactly (half_unpack.wgsl's half_value: unpack2x16float
//           would need a capability naga does not assume).
// Threads:  half_matmul.wgsl's: one workgroup (16 × 16 = 256 invocations) per 64 × 64 tile of one image's y
//           (rows o, columns p); invocation (ty, tx) accumulates 4 × 4 outputs in four vec4 registers; K is
//           walked 16 at a time through a 64 × 16 slab of A and a 16 × 64 slab of B widened to float32 in
//           workgroup memory. An invocation stages the same column p of B at every step (nn = lid % 64) and
//           rows kb = lid / 64 + 4q, q = 0..3: its output pixel (oy, ox) is divided out once, and each row's
//           (c, ky, kx) advances by 16 rows a step with carries instead of divisions. Workgroups:
//           frames · M_p/64 · N_p/64, 2-D fold. Workgroup memory 8 KiB.
// Bindings: 0 a (M_p · K_p halves) | 1 x (N, C_in, H, W) float32 | 2 y (N, C_out, P) from element c_offset
//           on | 3 bias tile (M_p, 16) float32, row o the bias of output channel o 16 times
//           (half_matmul::gpu_bias_tile; any buffer when has_bias = 0) | 4 params (uniform)
// CPU reference: engine::ops::conv::conv2d::mixed::cpu_forward. Needs SHADER_F16 (`enable f16`). fma_step and
// store_row are half_matmul.wgsl's, half_bits, round_up and src_index half_im2col.wgsl's, half_value
// half_unpack.wgsl's (the same text:
// engine::kernels checks them).
// Backward: none of its own (conv2d::mixed: the input gradient is this convolution again, on dy).

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

@group(0) @binding(0) var<storage, read_write> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;   // (M_p, 16): row m is bias[m] × 16
@group(0) @binding(4) var<uniform>             params: Params;

var<workgroup> tile_a: array<vec4<f32>, 256>;   // [kk * 16 + mm / 4][mm % 4] = A[m0 + mm, k0 + kk]
var<workgroup> tile_b: array<vec4<f32>, 256>;   // [kk * 16 + nn / 4][nn % 4] = B[k0 + kk, n0 + nn]

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

// `row` moved on by `by` rows, `step` their mixed-radix digits (dc, dky, dkx): kx wraps at kW, ky at kH (one
// carry each: every digit is below its radix).
fn advance(row: Row, step: vec3<u32>, by: u32) -> Row {
    var kx = row.kx + step.z;
    var ky = row.ky + step.y;
    var c = row.c + step.x;
    if (kx >= params.kw) { kx = kx - params.kw; ky = ky + 1u; }
    if (ky >= params.kh) { ky = ky - params.kh; c = c + 1u; }
    return Row(row.r + by, c, ky, kx);
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
fn half_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let tiles_m = params.m_p / TILE;
    let tiles_n = params.n_p / TILE;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    // Uniform per workgroup, so returning here does not break the barriers below.
    if (wg >= params.frames * tiles_m * tiles_n) { return; }
    let n0 = (wg % tiles_n) * TILE;
    let m0 = ((wg / tiles_n) % tiles_m) * TILE;
    let f = wg / (tiles_n * tiles_m);
    let a_base = m0 * params.k_p;
    let tx = lid % 16u;
    let ty = lid / 16u;

    // This invocation's column of B: output pixel p = n0 + nn of image n, its window's corner (iy0, ix0).
    let nn = lid % TILE;
    let p = n0 + nn;
    let in_p = p < params.ho * params.wo;
    let oy = p / params.wo;
    let iy0 = i32(oy * params.stride) - i32(params.pad);
    let ix0 = i32((p - oy * params.wo) * params.stride) - i32(params.pad);
    let n = params.frame0 + f;
    // Its rows kb = lid / 64 + 4q of the slab, and what 16 rows add to (c, ky, kx).
    let kb = lid / TILE;
    var r0 = row_at(kb);
    var r1 = row_at(kb + 4u);
    var r2 = row_at(kb + 8u);
    var r3 = row_at(kb + 12u);
    let d = row_at(TK);
    let step = vec3<u32>(d.c, d.ky, d.kx);

    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    if (params.has_bias == 1u) {
        // The bias first, then the products (half_matmul.wgsl).
        let r = (m0 + 4u * ty) * 16u;
        acc0 = vec4<f32>(bias[r]);
        acc1 = vec4<f32>(bias[r + 16u]);
        acc2 = vec4<f32>(bias[r + 32u]);
        acc3 = vec4<f32>(bias[r + 48u]);
    }
    for (var k0 = 0u; k0 < params.k_p; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            let mm = e / TK;
            let kk = e % TK;
            tile_a[kk * 16u + mm / 4u][mm % 4u] = f32(a[a_base + mm * params.k_p + k0 + kk]);
        }
        let slot = nn / 4u;
        let lane = nn % 4u;
        tile_b[kb * 16u + slot][lane] = staged(r0, n, iy0, ix0, in_p);
        tile_b[(kb + 4u) * 16u + slot][lane] = staged(r1, n, iy0, ix0, in_p);
        tile_b[(kb + 8u) * 16u + slot][lane] = staged(r2, n, iy0, ix0, in_p);
        tile_b[(kb + 12u) * 16u + slot][lane] = staged(r3, n, iy0, ix0, in_p);
        r0 = advance(r0, step, TK);
        r1 = advance(r1, step, TK);
        r2 = advance(r2, step, TK);
        r3 = advance(r3, step, TK);
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
