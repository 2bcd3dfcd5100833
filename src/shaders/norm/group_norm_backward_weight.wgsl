// group_norm_backward_weight.wgsl: gradients of group_norm (and of batch_norm) with respect to weight and bias
// (both here: they are two sums over the same values), as a deterministic two-pass reduction over the
// M = N·S values of each channel of x (N, C, S) (no float atomics: the same bits on every run).
//
// Math:     dweight[c] = Σ_{n, s} dy[n, c, s] · x̂[n, c, s],   dbias[c] = Σ_{n, s} dy[n, c, s],
//           x̂ = (x − μ[row]) · rstd[row] with the statistics row = n·row_stride + c / cpr
//           (group norm: row_stride = G, cpr = C / G channels per group; batch norm: row_stride = 0, cpr = 1,
//           so row = c). j = n·S + s numbers the values of a channel.
// Threads:  phase 0 (slices): nslices · ceil(C / TC) workgroups (folded); workgroup w = q·blocks + b sums the
//           values j ∈ [q·L, (q+1)·L) (L = slice_rows) of channels b·TC + k, k < TC. Lane lid = r·TC + k: TC
//           channel lanes (a power of two: up to 32 when S = 1, so consecutive lanes read consecutive addresses
//           of a row of the (N, C) layout; 1 when S > 1, the lanes then read consecutive s) × R = WG / TC row
//           lanes. Each invocation sums j = q·L + r + R·i in order, the workgroup halves over r (fixed order);
//           row lane 0 writes dweight[c], dbias[c] (one slice) or partial[q][c] (several).
//           phase 1 (combine, nslices > 1): C workgroups, one per channel; invocation t sums
//           partial[t + WG·i][c] in order, the workgroup halves, invocation 0 writes dweight[c], dbias[c].
// Bindings: 0 x (read) (N, C, S) | 1 stats (read) (rows, 2) = (μ, rstd) | 2 dy (read) (N, C, S)
//           | 3 partial (read_write) (nslices, C, 2) | 4 dweight (read_write) (C) | 5 dbias (read_write) (C)
//           | 6 params (uniform)
// CPU reference: engine::ops::norm::group_norm::cpu_backward (and batch_norm::cpu_backward's dγ, dβ).

const WG: u32 = 256u;

struct Params {
    n: u32, c: u32, s: u32, row_stride: u32, cpr: u32, tc: u32, slice_rows: u32, nslices: u32,
    phase: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C, S)
@group(0) @binding(1) var<storage, read>       stats: array<f32>;    // (rows, 2)
@group(0) @binding(2) var<storage, read>       dy: array<f32>;       // (N, C, S)
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;  // (nslices, C, 2)
@group(0) @binding(4) var<storage, read_write> dweight: array<f32>;  // (C)
@group(0) @binding(5) var<storage, read_write> dbias: array<f32>;    // (C)
@group(0) @binding(6) var<uniform>             params: Params;

var<workgroup> red: array<vec2<f32>, WG>;

// Sum of v over the row lanes of each channel lane (lid = r·tc + k), halving: every invocation gets the total
// of its channel lane k.
fn lane_sum(lid: u32, tc: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var h = WG / (2u * tc); h > 0u; h = h / 2u) {
        if (lid < h * tc) { red[lid] = red[lid] + red[lid + h * tc]; }
        workgroupBarrier();
    }
    let total = red[lid % tc];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn group_norm_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (params.phase == 1u) {                          // combine: workgroup w = channel c
        if (w >= params.c) { return; }
        var acc = vec2<f32>(0.0);
        for (var q = lid; q < params.nslices; q = q + WG) {
            let p = 2u * (q * params.c + w);
            acc = acc + vec2<f32>(partial[p], partial[p + 1u]);
        }
        let total = lane_sum(lid, 1u, acc);
        if (lid == 0u) { dweight[w] = total.x; dbias[w] = total.y; }
        return;
    }
    let tc = params.tc;
    let blocks = (params.c + tc - 1u) / tc;
    if (w >= params.nslices * blocks) { return; }
    let q = w / blocks;
    let r = lid / tc;
    let c = (w % blocks) * tc + lid % tc;
    let live = c < params.c;                           // lanes past C add nothing (and read nothing)
    var acc = vec2<f32>(0.0);                          // (Σ dy · x̂, Σ dy)
    if (live) {
        let j1 = min(params.n * params.s, (q + 1u) * params.slice_rows);
        let g = c / params.cpr;
        for (var j = q * params.slice_rows + r; j < j1; j = j + WG / tc) {
            let n = j / params.s;
            let i = (n * params.c + c) * params.s + j % params.s;
            let row = n * params.row_stride + g;
            let d = dy[i];
            acc = acc + vec2<f32>(d * (x[i] - stats[2u * row]) * stats[2u * row + 1u], d);
        }
    }
    let total = lane_sum(lid, tc, acc);
    if (r == 0u && live) {
        if (params.nslices > 1u) {
            let p = 2u * (q * params.c + c);
            partial[p] = total.x;
            partial[p + 1u] = total.y;
        } else {
            dweight[c] = total.x;
            dbias[c] = total.y;
        }
    }
}
