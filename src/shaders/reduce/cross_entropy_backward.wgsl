// cross_entropy_backward.wgsl: gradient of the per-position cross-entropy w.r.t. the class scores, the
// fused softmax + log-likelihood backward (llm.c's crossentropy_softmax_backward).
//
// Math:     dx[n, c, p] = dloss[n, p] · w[t] · (softmax(x[n, :, p])[c] - [c == t]),  0 where t is ignored
// Threads:  one invocation per (n, p), writing the C gradients of that position (a gather: no other
//           invocation touches them); WG = 256; 2-D fold.
// Bindings: 0 x (read) (N, C, P) | 1 labels (read) (N, P) | 2 weight (read) (C) | 3 dloss (read) (N, P)
//           | 4 dx (read_write) (N, C, P) | 5 params (uniform)
// CPU reference: engine::ops::reduce::cross_entropy::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, p: u32, ignore_index: i32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       labels: array<f32>;
@group(0) @binding(2) var<storage, read>       weight: array<f32>;
@group(0) @binding(3) var<storage, read>       dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.p) { return; }
    let pos = i % params.p;
    let base = (i / params.p) * params.c * params.p + pos;
    let t = i32(labels[i]);
    if (t == params.ignore_index || t < 0 || t >= i32(params.c)) {
        for (var c = 0u; c < params.c; c = c + 1u) { dx[base + c * params.p] = 0.0; }
        return;
    }
    var m = x[base];
    for (var c = 1u; c < params.c; c = c + 1u) { m = max(m, x[base + c * params.p]); }
    var s = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) { s = s + exp(x[base + c * params.p] - m); }
    let g = dloss[i] * weight[u32(t)];
    for (var c = 0u; c < params.c; c = c + 1u) {
        let prob = exp(x[base + c * params.p] - m) / s;
        dx[base + c * params.p] = g * (prob - select(0.0, 1.0, i32(c) == t));
    }
}
