// half_matmul_coop8.wgsl: half_matmul_coop.wgsl's product on adapters whose cooperative matrices are 8 × 8
// (Apple GPUs' simdgroup matrices through Metal, Mesa's lavapipe): the same operands, padding, output and
// Params, with 8 × 8 tiles (engine/ops/linalg/half_matmul.rs picks it when the adapter lists 8 × 8 × 8
// f16 × f16 → f32 and no 16 × 16 × 16).
//
// Math:     C[b, m, n] = Σ_k A[b, m, k] · B[b, k, n] over padded operands: A (batch_a, M_p, K_p) and
//           B (batch_b, K_p, N_p) as binary16 (half_pack_operand.wgsl), M_p and N_p multiples of 64, K_p of 16;
//           C (batch, M_p, N_p) float32, plus bias[m] first when has_bias = 1; the host keeps the M × N
//           window. The products of halves are exact in float32; the order of the float32 sums inside an
//           8 × 8 × 8 step is the hardware's.
// Threads:  a subgroup computes one 32 × 32 block of C as 4 × 4 accumulators `coop_mat8x8<f32, C>` (named
//           variables: registers). K is walked 8 at a time: four 8 × 8 tiles of A and four of B are loaded
//           from storage (`coopLoadT`: row-major memory) and each accumulator gets one `coopMultiplyAdd`.
//           WG = 64 invocations = one or more subgroups; subgroup `sid` of workgroup `wg` takes block
//           `wg · per_wg + sid`, `per_wg` = 64 / the adapter's largest subgroup size (lavapipe: 8 subgroups of
//           8; Apple: 2 of 32); a surplus subgroup recomputes the last block of the workgroup's range instead
//           of returning (cooperative operations stay in uniform control flow), writing the same values to
//           the same addresses. Workgroups: ceil(batch · M_p/32 · N_p/32 / per_wg), 2-D fold.
// Bindings: 0 a (batch_a · M_p · K_p halves) | 1 b (batch_b · K_p · N_p halves) |
//           2 c (batch, M_p, N_p) from element c_offset on | 3 bias tile (M_p, 16) float32, row m the
//           bias of row m of C 16 times (half_matmul::gpu_bias_tile; any buffer when has_bias = 0) |
//           4 params (uniform)
// CPU reference: engine::ops::linalg::half_matmul::cpu_forward (the same rounding, then float32 sums).
// Needs: SHADER_F16, SUBGROUP and EXPERIMENTAL_COOPERATIVE_MATRIX with an 8 × 8 × 8 f16 × f16 → f32
// configuration; checked against the CPU at device start before it is used (engine::ops::linalg::
// half_matmul::path_self_test; CI runs it on Mesa 26's lavapipe: .ci/coop-lavapipe). Backward: none of its
// own (the backward of a product is two products).

enable f16;
enable wgpu_cooperative_matrix;

const WG: u32 = 64u;
const BLOCK: u32 = 32u;

struct Params {
    m: u32, n: u32, k_p: u32, batch: u32,  // logical M, N; padded K; batches of C
    m_p: u32, n_p: u32,                    // padded M, N (multiples of 64)
    a_batch_stride: u32,                   // halves between batches of A (0: one A for every batch)
    b_batch_stride: u32,
    per_wg: u32,                           // blocks per workgroup (64 / largest subgroup size)
    c_offset: u32,                         // where C starts in its binding (a chunk of a larger output)
    has_bias: u32,                         // 1: C starts from the bias tile (C[b, m, n] = bias[m] + Σ ...)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;   // (M_p, 16): row m is bias[m] × 16
@group(0) @binding(4) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn half_matmul_coop8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(subgroup_id) sid: u32) {
    let blocks_m = params.m_p / BLOCK;
    let blocks_n = params.n_p / BLOCK;
    let blocks = params.batch * blocks_m * blocks_n;
    let wg = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    let first = wg * params.per_wg;
    let t = min(first + min(sid, params.per_wg - 1u), blocks - 1u);
    let n0 = (t % blocks_n) * BLOCK;
    let m0 = ((t / blocks_n) % blocks_m) * BLOCK;
    let bt = t / (blocks_n * blocks_m);
    let ka = params.k_p;
    let nb = params.n_p;
    let a0 = bt * params.a_batch_stride + m0 * ka;
    let a1 = a0 + 8u * ka;
    let a2 = a1 + 8u * ka;
    let a3 = a2 + 8u * ka;
    let b_base = bt * params.b_batch_stride + n0;

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
    for (var k0 = 0u; k0 < ka; k0 = k0 + 8u) {
        let ta0 = coopLoadT<coop_mat8x8<f16, A>>(&a[a0 + k0], ka);
        let ta1 = coopLoadT<coop_mat8x8<f16, A>>(&a[a1 + k0], ka);
        let ta2 = coopLoadT<coop_mat8x8<f16, A>>(&a[a2 + k0], ka);
        let ta3 = coopLoadT<coop_mat8x8<f16, A>>(&a[a3 + k0], ka);
        let row = b_base + k0 * nb;
        let tb0 = coopLoadT<coop_mat8x8<f16, B>>(&b[row], nb);
        let tb1 = coopLoadT<coop_mat8x8<f16, B>>(&b[row + 8u], nb);
        let tb2 = coopLoadT<coop_mat8x8<f16, B>>(&b[row + 16u], nb);
        let tb3 = coopLoadT<coop_mat8x8<f16, B>>(&b[row + 24u], nb);
        c00 = coopMultiplyAdd(ta0, tb0, c00); c01 = coopMultiplyAdd(ta0, tb1, c01);
        c02 = coopMultiplyAdd(ta0, tb2, c02); c03 = coopMultiplyAdd(ta0, tb3, c03);
        c10 = coopMultiplyAdd(ta1, tb0, c10); c11 = coopMultiplyAdd(ta1, tb1, c11);
        c12 = coopMultiplyAdd(ta1, tb2, c12); c13 = coopMultiplyAdd(ta1, tb3, c13);
        c20 = coopMultiplyAdd(ta2, tb0, c20); c21 = coopMultiplyAdd(ta2, tb1, c21);
        c22 = coopMultiplyAdd(ta2, tb2, c22); c23 = coopMultiplyAdd(ta2, tb3, c23);
        c30 = coopMultiplyAdd(ta3, tb0, c30); c31 = coopMultiplyAdd(ta3, tb1, c31);
        c32 = coopMultiplyAdd(ta3, tb2, c32); c33 = coopMultiplyAdd(ta3, tb3, c33);
    }
    let c0 = params.c_offset + (bt * params.m_p + m0) * nb + n0;
    let c1 = c0 + 8u * nb;
    let c2 = c1 + 8u * nb;
    let c3 = c2 + 8u * nb;
    // Offsets as `let`s first (naga 30.0.2's SPIR-V writer: half_matmul_coop.wgsl).
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
