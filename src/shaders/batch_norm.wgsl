// batch_norm.wgsl: batch normalisation of x (N, C, S) per channel, training or evaluation mode.
//
// Math:     training: per channel c over the M = N·S values x[:, c, :] (two passes):
//             μ = Σ x / M,  ss = Σ (x − μ)²,  σ² = ss / M (biased, used to normalise);
//             running_mean[c] = (1 − m)·running_mean[c] + m·μ,
//             running_var[c]  = (1 − m)·running_var[c]  + m·ss / (M − 1) (unbiased), updated in place.
//           eval: μ = running_mean[c], σ² = running_var[c] (nothing updated).
//           Both: rstd = 1 / sqrt(σ² + eps),  y = (x − μ) · rstd · weight[c] + bias[c].
// Threads:  one workgroup per channel (C workgroups, folded); the invocations stride over the N·S values
//           and sum in workgroup memory by halving (fixed order). Invocation 0 writes stats[c] and the
//           running statistics of its channel, so no two workgroups write the same value.
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 bias (read) (C) | 3 running_mean (read_write) (C)
//           | 4 running_var (read_write) (C) | 5 y (read_write) (N, C, S)
//           | 6 stats (read_write) (C, 2) = (μ, rstd) used, saved for backward | 7 params (uniform)
// CPU reference: engine::ops::batch_norm::{cpu_batch_stats, cpu_forward, cpu_update_running}.
// Backward: batch_norm_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, training: u32, momentum: f32, eps: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;             // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;        // (C)
@group(0) @binding(2) var<storage, read>       bias: array<f32>;          // (C)
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;  // (C)
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;   // (C)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;             // (N, C, S)
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;         // (C, 2)
@group(0) @binding(7) var<uniform>             params: Params;

var<workgroup> red: array<f32, WG>;

fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) { red[lid] = red[lid] + red[lid + h]; }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// Flat index of the j-th value (j < N·S) of channel c.
fn at(c: u32, j: u32) -> u32 {
    return ((j / params.s) * params.c + c) * params.s + j % params.s;
}

@compute @workgroup_size(WG)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (c >= params.c) { return; }
    let m = params.n * params.s;
    var mean = 0.0;
    var var_ = 0.0;
    if (params.training != 0u) {
        // Shifted sum: mean = x0 + Σ (x - x0) / M. Exact for a constant channel (its x̂ is then exactly 0,
        // as PyTorch's double-precision statistics give), and more accurate than Σ x / M in general.
        let x0 = x[at(c, 0u)];
        var acc = 0.0;
        for (var j = lid; j < m; j = j + WG) { acc = acc + (x[at(c, j)] - x0); }
        mean = x0 + wg_sum(lid, acc) / f32(m);
        acc = 0.0;
        for (var j = lid; j < m; j = j + WG) { let t = x[at(c, j)] - mean; acc = acc + t * t; }
        let ss = wg_sum(lid, acc);
        var_ = ss / f32(m);
        if (lid == 0u) {
            let k = params.momentum;
            running_mean[c] = k * mean + (1.0 - k) * running_mean[c];
            running_var[c] = k * (ss / f32(m - 1u)) + (1.0 - k) * running_var[c];
        }
    } else {
        mean = running_mean[c];
        var_ = running_var[c];
    }
    let rstd = 1.0 / sqrt(var_ + params.eps);
    for (var j = lid; j < m; j = j + WG) {
        let i = at(c, j);
        y[i] = (x[i] - mean) * rstd * weight[c] + bias[c];
    }
    if (lid == 0u) { stats[2u * c] = mean; stats[2u * c + 1u] = rstd; }
}
