// channel_sum.wgsl: the sum over every axis but one — a bias's gradient, y[c] = Σ_{n, s} x[n, c, s] — as a
// deterministic two-pass reduction over the M = N·S values of each channel of x (N, C, S) (no float atomics:
// the same bits on every run), sliced as the norms' statistics are (engine::ops::reduce::reduce_sum::
// ChannelSlices). One or two launches where summing the axes one at a time takes one each (three for a
// convolution's bias), and every pass reads consecutive addresses. j = n·S + s numbers the values of a
// channel.
//
// Math:     y[c] = Σ_{j < M} x[(j / S)·C·S + c·S + j % S]
// Threads:  phase 0 (slices): nslices · ceil(C / TC) workgroups (folded); workgroup w = q·blocks + b sums the
//           values j ∈ [q·L, (q+1)·L) (L = slice_rows) of channels b·TC + k, k < TC. Lane lid = r·TC + k: TC
//           channel lanes (a power of two: up to 32 when S = 1, so consecutive lanes read consecutive addresses
//           of a row of the (N, C) layout; 1 when S > 1, the lanes then read consecutive s) × R = WG / TC row
//           lanes. Each invocation sums j = q·L + r + R·i in order, the workgroup halves over r (fixed order);
//           row lane 0 writes y[c] (one slice) or partial[q][c] (several).
//           phase 1 (combine, nslices > 1): C workgroups, one per channel; invocation t sums
//           partial[t + WG·i][c] in order, the workgroup halves, invocation 0 writes y[c].
// Bindings: 0 x (read) (N, C, S) | 1 partial (read_write) (nslices, C) | 2 y (read_write) (C)
//           | 3 params (uniform)
// CPU reference: engine::ops::reduce::reduce_sum::cpu_channel_sum. Backward: expand (copy_strided with
// stride 0), as every sum's.

const WG: u32 = 256u;

struct Params {
    n: u32, c: u32, s: u32, tc: u32, slice_rows: u32, nslices: u32, phase: u32, _pad0: u32,
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C, S)
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;  // (nslices, C)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;        // (C)
@group(0) @binding(3) var<uniform>             params: Params;

var<workgroup> red: array<f32, WG>;

// Sum of v over the row lanes of each channel lane (lid = r·tc + k), halving: every invocation gets the total
// of its channel lane k.
fn lane_sum(lid: u32, tc: u32, v: f32) -> f32 {
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
fn channel_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (params.phase == 1u) {                          // combine: workgroup w = channel c
        if (w >= params.c) { return; }
        var acc = 0.0;
        for (var q = lid; q < params.nslices; q = q + WG) {
            acc = acc + partial[q * params.c + w];
        }
        let total = lane_sum(lid, 1u, acc);
        if (lid == 0u) { y[w] = total; }
        return;
    }
    let tc = params.tc;
    let blocks = (params.c + tc - 1u) / tc;
    if (w >= params.nslices * blocks) { return; }
    let q = w / blocks;
    let r = lid / tc;
    let c = (w % blocks) * tc + lid % tc;
    let live = c < params.c;                           // lanes past C add nothing (and read nothing)
    var acc = 0.0;
    if (live) {
        let j1 = min(params.n * params.s, (q + 1u) * params.slice_rows);
        for (var j = q * params.slice_rows + r; j < j1; j = j + WG / tc) {
            let n = j / params.s;
            acc = acc + x[(n * params.c + c) * params.s + j % params.s];
        }
    }
    let total = lane_sum(lid, tc, acc);
    if (r == 0u && live) {
        if (params.nslices > 1u) {
            partial[q * params.c + c] = total;
        } else {
            y[c] = total;
        }
    }
}
