// half_conv_coop8.wgsl: half_conv_coop.wgsl's implicit convolution (the forward, B unfolded from the input inside the
// product) on adapters whose cooperative matrices are 8 × 8 (Apple GPUs' simdgroup matrices through Metal,
// Mesa's lavapipe), as half_matmul_coop8.wgsl is half_matmul_coop.wgsl's product (engine/ops/conv/conv2d/
// mixed.rs).
//
// Math:     half_conv_coop.wgsl's: y[frame0 + f, o, p] = bias[o] + Σ_r A[o, r] · B[f, r, p], B half_im2col.wgsl's
//           operand element for element, C_out and P multiples of 64 (whole blocks stored straight into y).
//           The order of the float32 sums inside an 8 × 8 × 8 step is the hardware's.
// Threads:  half_matmul_coop8.wgsl's: a subgroup computes one 32 × 32 block of one image's y as 4 × 4
//           accumulators `coop_mat8x8<f32, C>`, `per_wg` blocks a workgroup, a surplus subgroup recomputing
//           the last block. Each K step (8 rows) a subgroup unfolds an 8 × 32 slab of B into its own slot of workgroup
//           memory (slot = subgroup_id: 16 slots of 256 halves cover subgroups of 4 invocations or more, the
//           host's condition), as half_conv_coop.wgsl does with 16 rows; then four coopLoadT of A from storage, four
//           of B from the slot, sixteen coopMultiplyAdd. Workgroups: ceil(frames · M_p/32 · N_p/32 /
//           per_wg), 2-D fold. Workgroup memory 8 KiB.
// Bindings: half_conv_coop.wgsl's (0 a | 1 x | 2 y from c_offset | 3 bias tile | 4 params).
// CPU reference: engine::ops::conv::conv2d::mixed's (see half_conv_coop.wgsl). Needs: SHADER_F16, SUBGROUP and
// EXPERIMENTAL_COOPERATIVE_MATRIX with an 8 × 8 × 8 f16 × f16 → f32 configuration; the device compares it
// with the unfolded copy before first use (mixed::in_tiles_self_test). Helpers, Params and the row walk are
// half_conv_coop.wgsl's (the same text: engine::kernels). Backward: none of its own.

enable f16;
enable wgpu_cooperative_matrix;

const WG: u32 = 64u;
const BLOCK: u32 = 32u;
const TK: u32 = 8u;
const SLAB: u32 = 256u;    // one subgroup's 8 × 32 slab of B, in halves

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

var<workgroup> stage: array<f16, 4096>;   // slot s: [s · SLAB + kk · 32 + nn] = B[f, k0 + kk, n0 + nn]

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

// The row after `row`.
fn next_row(row: Row) -> Row {
    return advance(row, vec3<u32>(0u, 0u, 1u), 1u);
}

// Unfolds rows k0 .. k0 + TK - 1 (the first is `first`) of image n's columns n0 .. n0 + BLOCK - 1 into the
// slot at `slot`: lane `lane` of a subgroup of `size` takes column pairs lane, lane + size, ...
fn stage_slab(slot: u32, first: Row, n: u32, n0: u32, lane: u32, size: u32) {
    let pixels = params.ho * params.wo;
    for (var cp = lane; cp < BLOCK / 2u; cp = cp + size) {
        let p = n0 + 2u * cp;
        let oy = p / params.wo;
        let ox = p - oy * params.wo;
        let wrap = ox + 1u == params.wo;
        let oy1 = select(oy, oy + 1u, wrap);
        let ox1 = select(ox + 1u, 0u, wrap);
        var row = first;
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var lo = 0u;
            var hi = 0u;
            if (row.r < params.k && p < pixels) {
                lo = unfolded_bits(n, row.c, row.ky, row.kx, oy, ox);
                if (p + 1u < pixels) { hi = unfolded_bits(n, row.c, row.ky, row.kx, oy1, ox1); }
            }
            // Halves widened and narrowed again, exact both ways (naga 30 has no bitcast from u32 to
            // vec2<f16>, and unpack2x16float needs a capability it does not assume).
            let at = slot + kk * BLOCK + 2u * cp;
            stage[at] = f16(half_value(lo));
            stage[at + 1u] = f16(half_value(hi));
            row = next_row(row);
        }
    }
}

@compute @workgroup_size(WG)
fn half_conv_coop8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let ka = params.k_p;
    let a0 = m0 * ka;
    let a1 = a0 + 8u * ka;
    let a2 = a1 + 8u * ka;
    let a3 = a2 + 8u * ka;
    let slot = sid * SLAB;
    let s0 = slot;
    let s1 = slot + 8u;
    let s2 = slot + 16u;
    let s3 = slot + 24u;
    let d = row_at(TK);
    let step = vec3<u32>(d.c, d.ky, d.kx);
    var row = row_at(0u);

    var c00: coop_mat8x8<f32, C>; var c01: coop_mat8x8<f32, C>;
    var c02: coop_mat8x8<f32, C>; var c03: coop_mat8x8<f32, C>;
    var c10: coop_mat8x8<f32, C>; var c11: coop_mat8x8<f32, C>;
    var c12: coop_mat8x8<f32, C>; var c13: coop_mat8x8<f32, C>;
    var c20: coop_mat8x8<f32, C>; var c21: coop_mat8x8<f32, C>;
    var c22: coop_mat8x8<f32, C>; var c23: coop_mat8x8<f32, C>;
    var c30: coop_mat8x8<f32, C>; var c31: coop_mat8x8<f32, C>;
    var c32: coop_mat8x8<f32, C>; var c33: coop_mat8x8<f32, C>;
    if (params.has_bias == 1u) {
        // The accumulators start from the bias (a uniform branch: params is uniform).
        let t0 = coopLoadT<coop_mat8x8<f32, C>>(&bias[m0 * 16u], 16u);
        c00 = t0; c01 = t0; c02 = t0; c03 = t0;
        let t1 = coopLoadT<coop_mat8x8<f32, C>>(&bias[(m0 + 8u) * 16u], 16u);
        c10 = t1; c11 = t1; c12 = t1; c13 = t1;
        let t2 = coopLoadT<coop_mat8x8<f32, C>>(&bias[(m0 + 16u) * 16u], 16u);
        c20 = t2; c21 = t2; c22 = t2; c23 = t2;
        let t3 = coopLoadT<coop_mat8x8<f32, C>>(&bias[(m0 + 24u) * 16u], 16u);
        c30 = t3; c31 = t3; c32 = t3; c33 = t3;
    }
    for (var k0 = 0u; k0 < ka; k0 = k0 + TK) {
        workgroupBarrier();   // the slot's previous slab has been read
        stage_slab(slot, row, n, n0, lane, size);
        workgroupBarrier();
        row = advance(row, step, TK);
        let ta0 = coopLoadT<coop_mat8x8<f16, A>>(&a[a0 + k0], ka);
        let ta1 = coopLoadT<coop_mat8x8<f16, A>>(&a[a1 + k0], ka);
        let ta2 = coopLoadT<coop_mat8x8<f16, A>>(&a[a2 + k0], ka);
        let ta3 = coopLoadT<coop_mat8x8<f16, A>>(&a[a3 + k0], ka);
        let tb0 = coopLoadT<coop_mat8x8<f16, B>>(&stage[s0], BLOCK);
        let tb1 = coopLoadT<coop_mat8x8<f16, B>>(&stage[s1], BLOCK);
        let tb2 = coopLoadT<coop_mat8x8<f16, B>>(&stage[s2], BLOCK);
        let tb3 = coopLoadT<coop_mat8x8<f16, B>>(&stage[s3], BLOCK);
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
    let c1 = c0 + 8u * nb;
    let c2 = c1 + 8u * nb;
    let c3 = c2 + 8u * nb;
    // Offsets as `let`s first: naga 30.0.2's SPIR-V writer panics on an index computed inside a
    // cooperative store's pointer ("Expression is not cached").
    let o00 = c0;
    let o01 = c0 + 8u;
    let o02 = c0 + 16u;
    let o03 = c0 + 24u;
    let o10 = c1;
    let o11 = c1 + 8u;
    let o12 = c1 + 16u;
    let o13 = c1 + 24u;
    let o20 = c2;
    let o21 = c2 + 8u;
    let o22 = c2 + 16u;
    let o23 = c2 + 24u;
    let o30 = c3;
    let o31 = c3 + 8u;
    let o32 = c3 + 16u;
    let o33 = c3 + 24u;
    coopStoreT(c00, &c[o00], nb); coopStoreT(c01, &c[o01], nb);
    coopStoreT(c02, &c[o02], nb); coopStoreT(c03, &c[o03], nb);
    coopStoreT(c10, &c[o10], nb); coopStoreT(c11, &c[o11], nb);
    coopStoreT(c12, &c[o12], nb); coopStoreT(c13, &c[o13], nb);
    coopStoreT(c20, &c[o20], nb); coopStoreT(c21, &c[o21], nb);
    coopStoreT(c22, &c[o22], nb); coopStoreT(c23, &c[o23], nb);
    coopStoreT(c30, &c[o30], nb); coopStoreT(c31, &c[o31], nb);
    coopStoreT(c32, &c[o32], nb); coopStoreT(c33, &c[o33], nb);
}
