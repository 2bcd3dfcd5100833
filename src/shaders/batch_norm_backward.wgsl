// batch_norm_backward.wgsl: gradients of batch_norm with respect to x, weight and bias, in one kernel (all
// three come from the same two per-channel sums).
//
// Math:     per channel c over M = N·S values, x̂ = (x − μ)·rstd with the saved (μ, rstd):
//           dweight[c] = Σ dy · x̂,   dbias[c] = Σ dy,
//           training: dx = weight[c] · rstd · (dy − dbias[c] / M − x̂ · dweight[c] / M)
//                     (gradient through the batch statistics, as group norm's with the row = channel);
//           eval:     dx = weight[c] · rstd · dy (the running statistics are constants).
// Threads:  one workgroup per channel (C workgroups, folded); two workgroup sums, then each invocation
//           writes its strided share of the channel's dx; invocation 0 writes dweight[c], dbias[c] (gathers).
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 stats (read) (C, 2) = (μ, rstd)
//           | 3 dy (read) (N, C, S) | 4 dx (read_write) (N, C, S) | 5 dweight (read_write) (C)
//           | 6 dbias (read_write) (C) | 7 params (uniform)
// CPU reference: engine::ops::batch_norm::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, training: u32, momentum: f32, eps: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;   // (C)
@group(0) @binding(2) var<storage, read>       stats: array<f32>;    // (C, 2)
@group(0) @binding(3) var<storage, read>       dy: array<f32>;       // (N, C, S)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;       // (N, C, S)
@group(0) @binding(5) var<storage, read_write> dweight: array<f32>;  // (C)
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;    // (C)
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

fn at(c: u32, j: u32) -> u32 {
    return ((j / params.s) * params.c + c) * params.s + j % params.s;
}

@compute @workgroup_size(WG)
fn batch_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (c >= params.c) { return; }
    let m = params.n * params.s;
    let mean = stats[2u * c];
    let rstd = stats[2u * c + 1u];
    var a = 0.0;   // Σ dy · x̂
    var b = 0.0;   // Σ dy
    for (var j = lid; j < m; j = j + WG) {
        let i = at(c, j);
        a = a + dy[i] * (x[i] - mean) * rstd;
        b = b + dy[i];
    }
    let dw = wg_sum(lid, a);
    let db = wg_sum(lid, b);
    let scale = weight[c] * rstd;
    for (var j = lid; j < m; j = j + WG) {
        let i = at(c, j);
        if (params.training != 0u) {
            let xh = (x[i] - mean) * rstd;
            dx[i] = scale * (dy[i] - db / f32(m) - xh * (dw / f32(m)));
        } else {
            dx[i] = scale * dy[i];
        }
    }
    if (lid == 0u) { dweight[c] = dw; dbias[c] = db; }
}
