// batch_norm_stats.wgsl: the batch statistics of batch_norm in training mode, per channel of x (N, C, S), as
// deterministic two-pass reductions over the M = N·S values of each channel (no float atomics: the same bits
// on every run). j = n·S + s numbers the values of a channel; value j of channel c is x[(n·C + c)·S + s].
//
// Math:     pass A: μ[c] = x0 + Σ_j (x[j, c] − x0) / M, x0 = x[0, c, 0] (the shifted sum: exact for a constant
//                   channel, whose x̂ is then exactly 0, as PyTorch's double-precision statistics give);
//           pass B: ss[c] = Σ_j (x[j, c] − μ[c])²,  rstd[c] = 1 / sqrt(ss / M + eps) (biased σ²), and in place
//                   running_mean[c] = (1 − m)·running_mean[c] + m·μ[c],
//                   running_var[c]  = (1 − m)·running_var[c]  + m·ss / (M − 1) (unbiased);
//           stats[c] = (μ, rstd). mode 0 runs pass A, mode 1 pass B (μ read from stats), mode 2 both (only with
//           one slice: the workgroup then owns whole channels).
// Threads:  phase 0 (slices): nslices · ceil(C / TC) workgroups (folded); workgroup w = q·blocks + b sums the
//           values j ∈ [q·L, (q+1)·L) (L = slice_rows) of channels b·TC + k, k < TC. Lane lid = r·TC + k: TC
//           channel lanes (a power of two: up to 32 when S = 1, so consecutive lanes read consecutive addresses
//           of a row of the (N, C) layout; 1 when S > 1, the lanes then read consecutive s) × R = WG / TC row
//           lanes. Each invocation sums j = q·L + r + R·i in order, the workgroup halves over r (fixed order).
//           One slice: row lane 0 finishes the pass (μ; rstd and running statistics); else it writes
//           partial[q][c]. phase 1 (combine, nslices > 1): C workgroups, one per channel; invocation t sums
//           partial[t + WG·i][c] in order, the workgroup halves, invocation 0 finishes the pass.
// Bindings: 0 x (read) (N, C, S) | 1 running_mean (read_write) (C) | 2 running_var (read_write) (C)
//           | 3 partial (read_write) (nslices, C) | 4 stats (read_write) (C, 2) = (μ, rstd) | 5 params (uniform)
// CPU reference: engine::ops::norm::batch_norm::{cpu_batch_stats, cpu_update_running}. Next: batch_norm.wgsl (y).

const WG: u32 = 256u;

struct Params {
    n: u32, c: u32, s: u32, tc: u32, momentum: f32, eps: f32, slice_rows: u32, nslices: u32,
    mode: u32, phase: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read>       x: array<f32>;             // (N, C, S)
@group(0) @binding(1) var<storage, read_write> running_mean: array<f32>;  // (C)
@group(0) @binding(2) var<storage, read_write> running_var: array<f32>;   // (C)
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;       // (nslices, C)
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;         // (C, 2)
@group(0) @binding(5) var<uniform>             params: Params;

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

// Flat index of value j of channel c.
fn at(c: u32, j: u32) -> u32 {
    return ((j / params.s) * params.c + c) * params.s + j % params.s;
}

// End of pass B for channel c: rstd into stats, running statistics updated in place.
fn finish_var(c: u32, mean: f32, ss: f32) {
    let m = params.n * params.s;
    stats[2u * c + 1u] = 1.0 / sqrt(ss / f32(m) + params.eps);
    let k = params.momentum;
    running_mean[c] = k * mean + (1.0 - k) * running_mean[c];
    running_var[c] = k * (ss / f32(m - 1u)) + (1.0 - k) * running_var[c];
}

@compute @workgroup_size(WG)
fn batch_norm_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    let m = params.n * params.s;
    if (params.phase == 1u) {                          // combine: workgroup w = channel c
        if (w >= params.c) { return; }
        var acc = 0.0;
        for (var q = lid; q < params.nslices; q = q + WG) { acc = acc + partial[q * params.c + w]; }
        let total = lane_sum(lid, 1u, acc);
        if (lid == 0u) {
            if (params.mode == 0u) {
                stats[2u * w] = x[at(w, 0u)] + total / f32(m);
            } else {
                finish_var(w, stats[2u * w], total);
            }
        }
        return;
    }
    let tc = params.tc;
    let blocks = (params.c + tc - 1u) / tc;
    if (w >= params.nslices * blocks) { return; }
    let q = w / blocks;
    let r = lid / tc;
    let c = (w % blocks) * tc + lid % tc;
    let live = c < params.c;                           // lanes past C add nothing (and read nothing)
    let j1 = min(m, (q + 1u) * params.slice_rows);
    let step = WG / tc;
    var mean = 0.0;
    if (params.mode != 1u) {                           // pass A
        var x0 = 0.0;
        var acc = 0.0;
        if (live) {
            x0 = x[at(c, 0u)];
            for (var j = q * params.slice_rows + r; j < j1; j = j + step) { acc = acc + (x[at(c, j)] - x0); }
        }
        let total = lane_sum(lid, tc, acc);
        if (params.nslices > 1u) {
            if (r == 0u && live) { partial[q * params.c + c] = total; }
            return;                                    // mode 0: the combine finishes pass A
        }
        mean = x0 + total / f32(m);
        if (r == 0u && live) { stats[2u * c] = mean; }
        if (params.mode == 0u) { return; }
    } else if (live) {
        mean = stats[2u * c];
    }
    var acc = 0.0;                                     // pass B
    if (live) {
        for (var j = q * params.slice_rows + r; j < j1; j = j + step) {
            let t = x[at(c, j)] - mean;
            acc = acc + t * t;
        }
    }
    let ss = lane_sum(lid, tc, acc);
    if (r == 0u && live) {
        if (params.nslices > 1u) { partial[q * params.c + c] = ss; } else { finish_var(c, mean, ss); }
    }
}
