// half_conv_dw_coop.wgsl: the weight gradient of a 2-D convolution under --precision mixed as an implicit
// product on the matrix units (tensor cores): half_matmul_coop.wgsl's blocks, with the A operand (the unfolded
// input) unfolded into workgroup memory step by step instead of read from an unfolded copy
// (half_im2col.wgsl), per image (engine/ops/conv/conv2d/mixed.rs).
//
// Math:     C[f, r, o] = Σ_p A[f, r, p] · Bt[f, p, o] (half_conv_dw.wgsl's, the same operands), over whole
//           64 × 64 blocks: the host runs it only where K = C_in · kH · kW and C_out are multiples of 64, so
//           whole blocks are stored straight into C (frames, K, C_out). The order of the float32 sums inside
//           a 16 × 16 × 16 step is the hardware's, as in half_matmul_coop.wgsl.
// Threads:  half_matmul_coop.wgsl's: a subgroup computes one 64 × 64 block of one image's C as 4 × 4
//           accumulators `coop_mat16x16<f32, C>`, `per_wg` blocks a workgroup, a surplus subgroup recomputing
//           the last block. Each P step (16 columns) a subgroup unfolds its 64 × 16 slab of A into its own
//           slot of workgroup memory (slot = subgroup_id; subgroups of 8 or more: half_conv_coop.wgsl):
//           lane l takes rows l, l + S, ... (S = subgroup size, each row's (c, ky, kx) divided out once a
//           step) and the step's 16 pixels, walked from the step's first (one division a step); then four
//           coopLoadT of A from the slot, four of Bt from storage, sixteen coopMultiplyAdd. Two workgroup
//           barriers a step. Workgroups: ceil(frames · K/64 · C_out/64 / per_wg), 2-D fold. Workgroup memory
//           16 KiB (8 slots of 1,024 halves).
// Bindings: 0 bt (frames · P_p · C_out halves) | 1 x (N, C_in, H, W) float32 | 2 c (frames, K, C_out)
//           float32 | 3 params (uniform): half_conv_dw.wgsl's.
// CPU reference: engine::ops::conv::conv2d::cpu_backward on the rounded operands (conv2d::mixed). Needs:
// SHADER_F16, SUBGROUP and EXPERIMENTAL_COOPERATIVE_MATRIX with a 16 × 16 × 16 f16 × f16 → f32
// configuration (the device's cooperative product path, self-tested at start). Helpers, Params, Row and
// row_at are half_conv_coop.wgsl's and half_conv.wgsl's (the same text: engine::kernels). Backward: none.

enable f16;
enable wgpu_cooperative_matrix;

const WG: u32 = 64u;
const BLOCK: u32 = 64u;
const TK: u32 = 16u;
const SLAB: u32 = 1024u;   // one subgroup's 64 × 16 slab of A, in halves

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

var<workgroup> stage: array<f16, 8192>;   // slot s: [s · SLAB + mm · 16 + kk] = A[f, m0 + mm, k0 + kk]

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

// The rounded bits of x[n, c, oy·s - pad + ky, ox·s - pad + kx], or 0 in the image's zero padding.
fn unfolded_bits(n: u32, c: u32, ky: u32, kx: u32, oy: u32, ox: u32) -> u32 {
    let iy = src_index(i32(oy * params.stride + ky) - i32(params.pad), i32(params.h));
    let ix = src_index(i32(ox * params.stride + kx) - i32(params.pad), i32(params.w));
    if (iy < 0 || ix < 0) { return 0u; }
    return half_bits(x[((n * params.ci + c) * params.h + u32(iy)) * params.w + u32(ix)]);
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

// Unfolds rows m0 .. m0 + BLOCK - 1 of image n's pixels k0 .. k0 + TK - 1 into the slot at `slot`,
// row-major (TK halves a row: four TK × TK tiles one under the other): lane `lane` of a subgroup of `size`
// takes rows lane, lane + size, ...
fn stage_rows(slot: u32, m0: u32, n: u32, k0: u32, lane: u32, size: u32) {
    let pixels = params.ho * params.wo;
    let oy0 = k0 / params.wo;
    let ox0 = k0 - oy0 * params.wo;
    for (var mm = lane; mm < BLOCK; mm = mm + size) {
        let row = row_at(m0 + mm);
        var oy = oy0;
        var ox = ox0;
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var bits = 0u;
            if (row.r < params.k && k0 + kk < pixels) {
                bits = unfolded_bits(n, row.c, row.ky, row.kx, oy, ox);
            }
            // A half widened and narrowed again, exact both ways (half_conv_coop.wgsl).
            stage[slot + mm * TK + kk] = f16(half_value(bits));
            ox = ox + 1u;
            if (ox == params.wo) { ox = 0u; oy = oy + 1u; }
        }
    }
}

@compute @workgroup_size(WG)
fn half_conv_dw_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32,
                     @builtin(subgroup_size) size: u32) {
    let blocks_m = params.m_p / BLOCK;
    let blocks_n = params.n_p / BLOCK;
    let blocks = params.frames * blocks_m * blocks_n;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    let first = wg * params.per_wg;
    let t = min(first + min(sid, params.per_wg - 1u), blocks - 1u);
    let n0 = (t % blocks_n) * BLOCK;
    let m0 = ((t / blocks_n) % blocks_m) * BLOCK;
    let f = t / (blocks_n * blocks_m);
    let n = params.frame0 + f;
    let b_base = f * params.k_p * params.n_p + n0;
    let slot = sid * SLAB;
    let s0 = slot;
    let s1 = slot + 256u;
    let s2 = slot + 512u;
    let s3 = slot + 768u;

    var c00: coop_mat16x16<f32, C>; var c01: coop_mat16x16<f32, C>;
    var c02: coop_mat16x16<f32, C>; var c03: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>; var c11: coop_mat16x16<f32, C>;
    var c12: coop_mat16x16<f32, C>; var c13: coop_mat16x16<f32, C>;
    var c20: coop_mat16x16<f32, C>; var c21: coop_mat16x16<f32, C>;
    var c22: coop_mat16x16<f32, C>; var c23: coop_mat16x16<f32, C>;
    var c30: coop_mat16x16<f32, C>; var c31: coop_mat16x16<f32, C>;
    var c32: coop_mat16x16<f32, C>; var c33: coop_mat16x16<f32, C>;
    for (var k0 = 0u; k0 < params.k_p; k0 = k0 + TK) {
        workgroupBarrier();   // the slot's previous slab has been read
        stage_rows(slot, m0, n, k0, lane, size);
        workgroupBarrier();
        let ta0 = coopLoadT<coop_mat16x16<f16, A>>(&stage[s0], TK);
        let ta1 = coopLoadT<coop_mat16x16<f16, A>>(&stage[s1], TK);
        let ta2 = coopLoadT<coop_mat16x16<f16, A>>(&stage[s2], TK);
        let ta3 = coopLoadT<coop_mat16x16<f16, A>>(&stage[s3], TK);
        let row = b_base + k0 * params.n_p;
        let tb0 = coopLoadT<coop_mat16x16<f16, B>>(&b[row], params.n_p);
        let tb1 = coopLoadT<coop_mat16x16<f16, B>>(&b[row + 16u], params.n_p);
        let tb2 = coopLoadT<coop_mat16x16<f16, B>>(&b[row + 32u], params.n_p);
        let tb3 = coopLoadT<coop_mat16x16<f16, B>>(&b[row + 48u], params.n_p);
        c00 = coopMultiplyAdd(ta0, tb0, c00); c01 = coopMultiplyAdd(ta0, tb1, c01);
        c02 = coopMultiplyAdd(ta0, tb2, c02); c03 = coopMultiplyAdd(ta0, tb3, c03);
        c10 = coopMultiplyAdd(ta1, tb0, c10); c11 = coopMultiplyAdd(ta1, tb1, c11);
        c12 = coopMultiplyAdd(ta1, tb2, c12); c13 = coopMultiplyAdd(ta1, tb3, c13);
        c20 = coopMultiplyAdd(ta2, tb0, c20); c21 = coopMultiplyAdd(ta2, tb1, c21);
        c22 = coopMultiplyAdd(ta2, tb2, c22); c23 = coopMultiplyAdd(ta2, tb3, c23);
        c30 = coopMultiplyAdd(ta3, tb0, c30); c31 = coopMultiplyAdd(ta3, tb1, c31);
        c32 = coopMultiplyAdd(ta3, tb2, c32); c33 = coopMultiplyAdd(ta3, tb3, c33);
    }
    let nb = params.n_p;
    let c0 = params.c_offset + (f * params.m_p + m0) * nb + n0;
    let c1 = c0 + 16u * nb;
    let c2 = c1 + 16u * nb;
    let c3 = c2 + 16u * nb;
    // Offsets as `let`s first: naga 30.0.2's SPIR-V writer panics on an index computed inside a
    // cooperative store's pointer ("Expression is not cached").
    let o00 = c0;
    let o01 = c0 + 16u;
    let o02 = c0 + 32u;
    let o03 = c0 + 48u;
    let o10 = c1;
    let o11 = c1 + 16u;
    let o12 = c1 + 32u;
    let o13 = c1 + 48u;
    let o20 = c2;
    let o21 = c2 + 16u;
    let o22 = c2 + 32u;
    let o23 = c2 + 48u;
    let o30 = c3;
    let o31 = c3 + 16u;
    let o32 = c3 + 32u;
    let o33 = c3 + 48u;
    coopStoreT(c00, &c[o00], nb); coopStoreT(c01, &c[o01], nb);
    coopStoreT(c02, &c[o02], nb); coopStoreT(c03, &c[o03], nb);
    coopStoreT(c10, &c[o10], nb); coopStoreT(c11, &c[o11], nb);
    coopStoreT(c12, &c[o12], nb); coopStoreT(c13, &c[o13], nb);
    coopStoreT(c20, &c[o20], nb); coopStoreT(c21, &c[o21], nb);
    coopStoreT(c22, &c[o22], nb); coopStoreT(c23, &c[o23], nb);
    coopStoreT(c30, &c[o30], nb); coopStoreT(c31, &c[o31], nb);
    coopStoreT(c32, &c[o32], nb); coopStoreT(c33, &c[o33], nb);
}
