// half_im2col.wgsl: the input of a 2-D convolution unfolded into the B operand of a half-precision product,
// rounded to binary16 and zero-padded to the tiles of half_matmul.wgsl / half_matmul_coop.wgsl
// (engine/ops/conv/conv2d/mixed.rs: a convolution under --precision mixed on tensor cores).
//
// Math:     for each frame f of the chunk (image n = frame0 + f) and each column p = oy · W_out + ox:
//           B[f, r, p] = h(xpad[n, c, oy·s - pad + ky, ox·s - pad + kx]), r = (c · kH + ky) · kW + kx
//           (the weight's (C_out, C_in, kH, kW) order read as (C_out, K) with K = C_in · kH · kW), for r < K
//           and p < P = H_out · W_out, else 0; xpad is x with zero or reflect padding (src_index, as
//           conv2d.wgsl). Then y[n] (C_out, P) = h(W) (C_out, K) · B[f] (K, P) is the convolution without
//           its bias. h = binary16 bits rounded to nearest, ties to even, saturating at ±65504 (the integer
//           conversion of half_pack.wgsl, so every adapter gives the CPU's words).
// Threads:  one invocation per 32-bit word (two neighbouring columns of one row), WG = 256 invocations per
//           workgroup; ceil(frames · k_p · n_p / 2 / WG) workgroups folded into 2-D (engine/kernel.rs).
//           Consecutive invocations read consecutive pixels of one input row (coalesced at stride 1). Each
//           word takes five integer divisions (row, frame, channel, tap, pixel), its second column none:
//           28 % less time on lavapipe than dividing per element (U-TAE's mixed step, benches/README.md).
// Bindings: 0 x (N, C_in, H, W) | 1 b (frames, k_p, n_p) halves, two a u32 | 2 params (uniform)
// CPU reference: engine::ops::conv::conv2d::mixed::cpu_im2col. No backward: it prepares an operand.

const WG: u32 = 256u;

struct Params {
    ci: u32, h: u32, w: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, reflect: u32,
    ho: u32, wo: u32, k: u32, k_p: u32,
    n_p: u32, frame0: u32, frames: u32, _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (N, C_in, H, W)
@group(0) @binding(1) var<storage, read_write> b: array<u32>;   // (frames, k_p, n_p) halves
@group(0) @binding(2) var<uniform>             params: Params;

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

// The index of x read for padded position t along an axis of length n; -1 inside zero padding.
fn src_index(t: i32, n: i32) -> i32 {
    if (t >= 0 && t < n) { return t; }
    if (params.reflect == 0u) { return -1; }
    if (t < 0) { return -t; }
    return 2 * (n - 1) - t;
}

// The rounded bits of x[n, c, oy·s - pad + ky, ox·s - pad + kx], or 0 in the image's zero padding.
fn unfolded_bits(n: u32, c: u32, ky: u32, kx: u32, oy: u32, ox: u32) -> u32 {
    let iy = src_index(i32(oy * params.stride + ky) - i32(params.pad), i32(params.h));
    let ix = src_index(i32(ox * params.stride + kx) - i32(params.pad), i32(params.w));
    if (iy < 0 || ix < 0) { return 0u; }
    return half_bits(x[((n * params.ci + c) * params.h + u32(iy)) * params.w + u32(ix)]);
}

@compute @workgroup_size(WG)
fn half_im2col(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let words_per_row = params.n_p / 2u;
    if (i >= params.frames * params.k_p * words_per_row) { return; }
    // One division per index: row (f, r) of the word, then (c, ky, kx) of r, then (oy, ox) of its first
    // column; the second column is the next pixel of the same output row, or the first of the next.
    let row = i / words_per_row;
    let p = 2u * (i - row * words_per_row);
    let f = row / params.k_p;
    let r = row - f * params.k_p;
    let pixels = params.ho * params.wo;
    if (r >= params.k || p >= pixels) {
        b[i] = 0u;
        return;
    }
    let taps = params.kh * params.kw;
    let c = r / taps;
    let tap = r - c * taps;
    let ky = tap / params.kw;
    let kx = tap - ky * params.kw;
    let oy = p / params.wo;
    let ox = p - oy * params.wo;
    let n = params.frame0 + f;
    let lo = unfolded_bits(n, c, ky, kx, oy, ox);
    var hi = 0u;
    if (p + 1u < pixels) {
        let wrap = ox + 1u == params.wo;
        hi = unfolded_bits(n, c, ky, kx, select(oy, oy + 1u, wrap), select(ox + 1u, 0u, wrap));
    }
    b[i] = lo | (hi << 16u);
}
