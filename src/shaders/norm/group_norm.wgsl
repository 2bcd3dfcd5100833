// group_norm.wgsl: group normalisation of x (N, C, S) with G groups of D = C / G channels, and affine.
//
// Math:     per row (n, g) of len = D·S values (channels gD..gD+D-1, all S positions; contiguous):
//           μ = Σ x / len,  σ² = Σ (x − μ)² / len (two passes, biased),  rstd = 1 / sqrt(σ² + eps),
//           y[n, c, s] = (x[n, c, s] − μ) · rstd · weight[c] + bias[c], then max(y, 0) when `relu` is set
//           (the ReLU after a norm when no gradient is recorded: relu_inplace.wgsl's expression on the same
//           value, so the same bits, in one launch instead of two)
// Threads:  one workgroup per row (dispatch = N·G workgroups, folded); its WG invocations stride over the
//           row, then sum in workgroup memory by halving (fixed order: deterministic).
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 bias (read) (C) | 3 y (read_write) (N, C, S)
//           | 4 stats (read_write) (N·G, 2) = (μ, rstd) saved for backward | 5 params (uniform)
// CPU reference: engine::ops::norm::group_norm::cpu_forward.
// Backward: group_norm_backward_input.wgsl, group_norm_backward_weight.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, groups: u32, eps: f32, relu: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;       // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;  // (C)
@group(0) @binding(2) var<storage, read>       bias: array<f32>;    // (C)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (N, C, S)
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;   // (N·G, 2)
@group(0) @binding(5) var<uniform>             params: Params;

var<workgroup> red: array<f32, WG>;

// Sum of `v` over the workgroup (every invocation gets the total).
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

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;     // n·G + g (uniform over the workgroup)
    if (row >= params.n * params.groups) { return; }
    let d = params.c / params.groups;
    let len = d * params.s;
    let base = row * len;                                  // x[n, gD, 0]
    let c0 = (row % params.groups) * d;
    // Shifted sum (exact for a constant group, see batch_norm.wgsl): mean = x0 + Σ (x - x0) / len.
    let x0 = x[base];
    var acc = 0.0;
    for (var i = lid; i < len; i = i + WG) { acc = acc + (x[base + i] - x0); }
    let mean = x0 + wg_sum(lid, acc) / f32(len);
    acc = 0.0;
    for (var i = lid; i < len; i = i + WG) { let t = x[base + i] - mean; acc = acc + t * t; }
    let rstd = 1.0 / sqrt(wg_sum(lid, acc) / f32(len) + params.eps);
    for (var i = lid; i < len; i = i + WG) {
        let c = c0 + i / params.s;
        let v = (x[base + i] - mean) * rstd * weight[c] + bias[c];
        y[base + i] = select(v, max(v, 0.0), params.relu == 1u);
    }
    if (lid == 0u) { stats[2u * row] = mean; stats[2u * row + 1u] = rstd; }
}
