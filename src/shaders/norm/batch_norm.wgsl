// batch_norm.wgsl: batch normalisation of x (N, C, S) per channel with given statistics, training or
// evaluation mode (elementwise).
//
// Math:     training: (μ, rstd) = stats[c], computed by batch_norm_stats.wgsl (dispatched just before).
//           eval: μ = running_mean[c], rstd = 1 / sqrt(running_var[c] + eps), and the invocation of x[0, c, 0]
//           writes stats[c] = (μ, rstd) (saved for backward; no other invocation touches stats in eval).
//           Both: y = (x − μ) · rstd · weight[c] + bias[c], then max(y, 0) when `relu` is set (the ReLU after
//           a norm where no gradient is recorded: relu_inplace.wgsl's expression on the same value, so the
//           same bits, in one launch instead of two).
// Threads:  one invocation per element i of (N, C, S), c = (i / S) % C; dispatch = ceil(N·C·S / WG)
//           workgroups, folded.
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 bias (read) (C) | 3 running_mean (read) (C)
//           | 4 running_var (read) (C) | 5 stats (read_write) (C, 2) = (μ, rstd) | 6 y (read_write) (N, C, S)
//           | 7 params (uniform)
// CPU reference: engine::ops::norm::batch_norm::{cpu_rstd, cpu_forward}. Backward: batch_norm_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, training: u32, momentum: f32, eps: f32, relu: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;             // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;        // (C)
@group(0) @binding(2) var<storage, read>       bias: array<f32>;          // (C)
@group(0) @binding(3) var<storage, read>       running_mean: array<f32>;  // (C)
@group(0) @binding(4) var<storage, read>       running_var: array<f32>;   // (C)
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;         // (C, 2)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;             // (N, C, S)
@group(0) @binding(7) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.c * params.s) { return; }
    let c = (i / params.s) % params.c;
    var mean: f32;
    var rstd: f32;
    if (params.training != 0u) {
        mean = stats[2u * c];
        rstd = stats[2u * c + 1u];
    } else {
        mean = running_mean[c];
        rstd = 1.0 / sqrt(running_var[c] + params.eps);
        if (i < params.c * params.s && i % params.s == 0u) { stats[2u * c] = mean; stats[2u * c + 1u] = rstd; }
    }
    let v = (x[i] - mean) * rstd * weight[c] + bias[c];
    y[i] = select(v, max(v, 0.0), params.relu == 1u);
}
