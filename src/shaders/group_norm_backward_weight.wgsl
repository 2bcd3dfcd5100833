// group_norm_backward_weight.wgsl: gradients of group_norm with respect to weight and bias (both here: they
// are two sums over the same values).
//
// Math:     dweight[c] = Σ_{n, s} dy[n, c, s] · x̂[n, c, s],   dbias[c] = Σ_{n, s} dy[n, c, s],
//           x̂ = (x − μ[n, g]) · rstd[n, g] with g = c / D
// Threads:  one workgroup per channel c (C workgroups, folded); the invocations stride over the N·S values
//           and sum in workgroup memory (fixed order). Invocation 0 writes dweight[c] and dbias[c] (a gather).
// Bindings: 0 x (read) (N, C, S) | 1 stats (read) (N·G, 2) = (μ, rstd) | 2 dy (read) (N, C, S)
//           | 3 dweight (read_write) (C) | 4 dbias (read_write) (C) | 5 params (uniform)
// CPU reference: engine::ops::group_norm::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, groups: u32, eps: f32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C, S)
@group(0) @binding(1) var<storage, read>       stats: array<f32>;    // (N·G, 2)
@group(0) @binding(2) var<storage, read>       dy: array<f32>;       // (N, C, S)
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;  // (C)
@group(0) @binding(4) var<storage, read_write> dbias: array<f32>;    // (C)
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
fn group_norm_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (c >= params.c) { return; }
    let g = c / (params.c / params.groups);
    var a = 0.0;   // Σ dy · x̂
    var b = 0.0;   // Σ dy
    for (var j = lid; j < params.n * params.s; j = j + WG) {
        let n = j / params.s;
        let i = (n * params.c + c) * params.s + j % params.s;
        let row = n * params.groups + g;
        a = a + dy[i] * (x[i] - stats[2u * row]) * stats[2u * row + 1u];
        b = b + dy[i];
    }
    let dw = wg_sum(lid, a);
    let db = wg_sum(lid, b);
    if (lid == 0u) { dweight[c] = dw; dbias[c] = db; }
}
