// batch_norm_backward.wgsl: gradient of batch_norm with respect to x (elementwise, given the per-channel sums).
//
// Math:     per channel c over M = N·S values, x̂ = (x − μ)·rstd with the saved (μ, rstd), and the sums
//           dweight[c] = Σ dy · x̂, dbias[c] = Σ dy (computed just before by group_norm_backward_weight.wgsl,
//           with the statistics row = c):
//           training: dx = weight[c] · rstd · (dy − dbias[c] / M − x̂ · dweight[c] / M)
//                     (gradient through the batch statistics, as group norm's with the row = channel);
//           eval:     dx = weight[c] · rstd · dy (the running statistics are constants).
// Threads:  one invocation per element i of (N, C, S), c = (i / S) % C; dispatch = ceil(N·C·S / WG)
//           workgroups, folded.
// Bindings: 0 x (read) (N, C, S) | 1 weight (read) (C) | 2 stats (read) (C, 2) = (μ, rstd)
//           | 3 dy (read) (N, C, S) | 4 dweight (read) (C) | 5 dbias (read) (C) | 6 dx (read_write) (N, C, S)
//           | 7 params (uniform)
// CPU reference: engine::ops::norm::batch_norm::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, training: u32, momentum: f32, eps: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;        // (N, C, S)
@group(0) @binding(1) var<storage, read>       weight: array<f32>;   // (C)
@group(0) @binding(2) var<storage, read>       stats: array<f32>;    // (C, 2)
@group(0) @binding(3) var<storage, read>       dy: array<f32>;       // (N, C, S)
@group(0) @binding(4) var<storage, read>       dweight: array<f32>;  // (C)
@group(0) @binding(5) var<storage, read>       dbias: array<f32>;    // (C)
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;       // (N, C, S)
@group(0) @binding(7) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn batch_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.c * params.s) { return; }
    let c = (i / params.s) % params.c;
    let m = f32(params.n * params.s);
    let mean = stats[2u * c];
    let rstd = stats[2u * c + 1u];
    let scale = weight[c] * rstd;
    if (params.training != 0u) {
        let xh = (x[i] - mean) * rstd;
        dx[i] = scale * (dy[i] - dbias[c] / m - xh * (dweight[c] / m));
    } else {
        dx[i] = scale * dy[i];
    }
}
