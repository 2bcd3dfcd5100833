// half_pack_operand.wgsl: one operand of a half-precision product, rounded to binary16 and zero-padded to the
// tiles of half_matmul.wgsl / half_matmul_coop.wgsl (engine/ops/linalg/half_matmul.rs).
//
// Math:     P[b, r, c] = h(X[b, r, c]) for r < rows, c < cols, else 0 (P: batch × rows_p × cols_p halves,
//           cols_p even), where X[b, r, c] = x[offset + b · rows · cols + r · cols + c], or x[offset +
//           b · rows · cols + c · rows + r] when trans = 1 (an operand stored transposed; offset: the first
//           of a chunk of batches); h = binary16 bits rounded to nearest,
//           ties to even, saturating at ±65504 (the integer conversion of half_pack.wgsl, not
//           pack2x16float, so every adapter gives the CPU's words).
// Threads:  one invocation per 32-bit word (two neighbouring columns of one row); WG = 256 invocations per
//           workgroup; ceil(batch · rows_p · cols_p / 2 / WG) workgroups folded into 2-D (engine/kernel.rs).
// Bindings: 0 x (offset + batch · rows · cols) | 1 p (batch · rows_p · cols_p / 2, u32) | 2 params (uniform)
// CPU reference: engine::ops::linalg::half_matmul::cpu_pack_padded. No backward: it prepares an operand.

const WG: u32 = 256u;

struct Params {
    rows: u32, cols: u32, rows_p: u32, cols_p: u32,
    batch: u32, trans: u32, offset: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (batch, rows, cols), or (batch, cols, rows)
@group(0) @binding(1) var<storage, read_write> p: array<u32>;   // (batch, rows_p, cols_p) halves
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

// The rounded bits of X[b, r, c], or 0 in the padding.
fn element(b: u32, r: u32, c: u32) -> u32 {
    if (r >= params.rows || c >= params.cols) { return 0u; }
    let base = params.offset + b * params.rows * params.cols;
    if (params.trans == 1u) { return half_bits(x[base + c * params.rows + r]); }
    return half_bits(x[base + r * params.cols + c]);
}

@compute @workgroup_size(WG)
fn half_pack_operand(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let words_per_row = params.cols_p / 2u;
    let per_batch = params.rows_p * words_per_row;
    if (i >= params.batch * per_batch) { return; }
    let b = i / per_batch;
    let r = (i % per_batch) / words_per_row;
    let c = 2u * (i % words_per_row);
    p[i] = element(b, r, c) | (element(b, r, c + 1u) << 16u);
}
