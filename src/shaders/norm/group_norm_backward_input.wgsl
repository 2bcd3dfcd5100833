// group_norm_backward_input.wgsl: gradient of group_norm with respect to x.
//
// Math:     per row (n, g) of len = D·S values, with x̂ = (x − μ)·rstd and dx̂ = dy·weight[c]:
//           dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))   (means over the row)
// Threads:  one workgroup per row (N·G workgroups, folded); two workgroup sums, then each invocation
//           writes its strided share of the row of dx (a gather: no other workgroup writes it).
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 stats (read) (N·G, 2) = (μ, rstd)
//           | 3 dy (read) (N, C, S) | 4 dx (read_write) (N, C, S) | 5 params (uniform)
// CPU reference: engine::ops::norm::group_norm::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, groups: u32, eps: f32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;       // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;  // (C)
@group(0) @binding(2) var<storage, read>       stats: array<f32>;   // (N·G, 2)
@group(0) @binding(3) var<storage, read>       dy: array<f32>;      // (N, C, S)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;      // (N, C, S)
@group(0) @binding(5) var<uniform>             params: Params;

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

@compute @workgroup_size(WG)
fn group_norm_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (row >= params.n * params.groups) { return; }
    let d = params.c / params.groups;
    let len = d * params.s;
    let base = row * len;
    let c0 = (row % params.groups) * d;
    let mean = stats[2u * row];
    let rstd = stats[2u * row + 1u];
    var a = 0.0;   // Σ dx̂
    var b = 0.0;   // Σ dx̂ · x̂
    for (var i = lid; i < len; i = i + WG) {
        let g = dy[base + i] * weight[c0 + i / params.s];
        a = a + g;
        b = b + g * (x[base + i] - mean) * rstd;
    }
    let mean_g = wg_sum(lid, a) / f32(len);
    let mean_gx = wg_sum(lid, b) / f32(len);
    for (var i = lid; i < len; i = i + WG) {
        let g = dy[base + i] * weight[c0 + i / params.s];
        let xh = (x[base + i] - mean) * rstd;
        dx[base + i] = rstd * (g - mean_g - xh * mean_gx);
    }
}
