// half_round.wgsl: float32 values rounded to their nearest half precision value (as float32): what
// half_pack.wgsl then half_unpack.wgsl give, without the words — the operands of a product under `--precision
// mixed`, and an operand made again for a backward pass (engine/ops/elementwise/half.rs). One launch for a
// rounded copy (x → a new y), or in place (x and y bound to the same slice).
//
// Math:     y[i] = f(h(x[i])), h the binary16 bits rounded to nearest, ties to even, saturating at ±65504
//           (half_pack.wgsl's integer conversion), f their float32 value (half_unpack.wgsl's, exact).
//           With `overflow` set (a gradient rounded as float16 arithmetic would: the loss scaler's signal,
//           engine/ops/optim/loss_scale.rs) magnitudes from 65520 up — those IEEE rounding sends past the
//           largest half — become ±infinity instead.
// Threads:  one invocation per element; it reads x[i] and then writes y[i], nothing else, so x and y may be
//           the same slice (in place); WG = 256 invocations per workgroup; ceil(n / WG) workgroups folded
//           into 2-D (engine/kernel.rs).
// Bindings: 0 x (n) | 1 y (read_write) (n; may be x) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::half::cpu_round (overflow: cpu_round_gradient). No backward: a
// rounding of operands, saved values and gradients.

const WG: u32 = 256u;

struct Params { n: u32, overflow: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (n); may be x
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
fn half_round(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let v = x[i];
    if (params.overflow != 0u && abs(v) >= 65520.0) {
        y[i] = bitcast<f32>((bitcast<u32>(v) & 0x80000000u) | 0x7f800000u);  // ±infinity (NaN fails the test)
        return;
    }
    y[i] = half_value(half_bits(v));
}
