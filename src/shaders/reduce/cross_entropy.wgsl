// cross_entropy.wgsl: per-position weighted cross-entropy from class scores (PyTorch semantics), the first
// half of F.cross_entropy(x, t, weight, ignore_index) with reduction 'mean'.
//
// Math:     for each sample n and position p (target t = labels[n, p]):
//             lse = m + ln Σ_c exp(x[n, c, p] - m),   m = max_c x[n, c, p]     (log-sum-exp, max subtracted)
//             loss[n, p] = w[t] · (lse - x[n, t, p]),   wt[n, p] = w[t]
//             and both 0 where t == ignore_index.
//           The host finishes the mean as Σ loss / Σ wt (a composition), which is PyTorch's normalisation by
//           the total weight of the targets present.
// Threads:  one invocation per (n, p), loops over the C classes; WG = 256; 2-D fold.
// Bindings: 0 x (read) (N, C, P) | 1 labels (read) (N, P) class ids as f32 | 2 weight (read) (C)
//           | 3 loss (read_write) (N, P) | 4 wt (read_write) (N, P) | 5 params (uniform)
// CPU reference: engine::ops::reduce::cross_entropy::cpu_forward.  Backward: cross_entropy_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, p: u32, ignore_index: i32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       labels: array<f32>;
@group(0) @binding(2) var<storage, read>       weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> wt: array<f32>;
@group(0) @binding(5) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.p) { return; }
    let pos = i % params.p;
    let base = (i / params.p) * params.c * params.p + pos;   // x[n, 0, p]
    let t = i32(labels[i]);
    if (t == params.ignore_index || t < 0 || t >= i32(params.c)) {
        loss[i] = 0.0;
        wt[i] = 0.0;
        return;
    }
    var m = x[base];
    for (var c = 1u; c < params.c; c = c + 1u) { m = max(m, x[base + c * params.p]); }
    var s = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) { s = s + exp(x[base + c * params.p] - m); }
    let lse = m + log(s);
    let w = weight[u32(t)];
    loss[i] = w * (lse - x[base + u32(t) * params.p]);
    wt[i] = w;
}
