// half_pack.wgsl: float32 values to IEEE half precision (binary16), two to a 32-bit word: what a tensor saved
// for the backward pass keeps under `--precision mixed` (engine/ops/elementwise/half.rs).
//
// Math:     w[i] = h(x[2i]) | h(x[2i + 1]) << 16, with h(v) the binary16 bits of v rounded to nearest, ties to
//           even; |v| beyond the largest half (65504) saturates to ±65504, infinities stay infinite, NaN stays
//           NaN; the odd last element of an odd n is paired with 0. The conversion is written out on the bits
//           (not pack2x16float, whose rounding the WGSL spec leaves to the implementation), so every adapter
//           and the CPU reference give the same words.
//           With `rounded` set it also writes y[j] = f(h(x[j])), f the half's float32 value (half_unpack.wgsl's,
//           exact): the words and what unpacking them gives, in one launch (a recomputed norm's input, kept
//           as halves and read rounded by its first evaluation: engine/recompute.rs).
// Threads:  one invocation per word; WG = 256 invocations per workgroup; ceil(ceil(n / 2) / WG) workgroups
//           folded into 2-D (engine/kernel.rs).
// Bindings: 0 x (n) | 1 w (ceil(n / 2), u32) | 2 y (n; any buffer when rounded = 0) | 3 params (uniform)
// CPU reference: engine::ops::elementwise::half::cpu_pack (y: cpu_round).  Inverse: half_unpack.wgsl. No
// backward: a storage format, not an op of the graph.

const WG: u32 = 256u;

struct Params { n: u32, rounded: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read_write> w: array<u32>;   // (ceil(n / 2))
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // (n) when rounded = 1
@group(0) @binding(3) var<uniform>             params: Params;

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

// The float32 value of the binary16 bits h.
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

@compute @workgroup_size(WG)
fn half_pack(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let lo = 2u * i;
    if (lo >= params.n) { return; }
    let h = half_bits(x[lo]);
    var hi = 0u;
    if (lo + 1u < params.n) { hi = half_bits(x[lo + 1u]); }
    w[i] = h | (hi << 16u);
    if (params.rounded == 1u) {
        y[lo] = half_value(h);
        if (lo + 1u < params.n) { y[lo + 1u] = half_value(hi); }
    }
}
