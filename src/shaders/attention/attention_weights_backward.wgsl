// attention_weights_backward.wgsl: gradients of the attention weights w.r.t. the keys (and the scores, from which
// the host gets the master queries' gradient with one matmul).
//
// Math, per head h and sequence n (see attention_weights.wgsl for the forward):
//   g[t]  = dattn[h, b, t, p] · (keep(t) ? 1 / (1 - p_drop) : 1 or 0)    (through the dropout)
//   ds[t] = a[t] · (g[t] - Σ_u g[u] a[u])                               (softmax backward; a = pre-dropout)
//   ds[t] = 0 where the date is padding                                  (masked_fill backward)
//   dscore[h, b, t, p] = ds[t] / sqrt(d_k)                               (through the temperature)
//   dk[n, t, h·d_k + j] = dscore[h, b, t, p] · Q[h, j]
//   (dQ[h, j] = Σ_{n, t} dscore · k[n, t, h·d_k + j] is a batched matmul on the host side.)
// Threads:  one invocation per (head, sequence), recomputing the softmax; it owns k's slice
//           [n, :, h·d_k .. h·d_k + d_k] and dscore[h, b, :, p], so every write is a gather. WG = 256, 2-D fold.
// Bindings: 0 k (read) (N, T, H·d_k) | 1 q (read) (H, d_k) | 2 mask (read) (B, T) | 3 dattn (read) (H, B, T, P)
//           | 4 dk (read_write) (N, T, H·d_k) | 5 dscore (read_write) (H, B, T, P) | 6 params (uniform)
// CPU reference: engine::ops::attention::attention_weights::cpu_weights_backward.

const WG: u32 = 256u;

struct Params {
    heads: u32, batch: u32, t: u32, pixels: u32, dk: u32, use_mask: u32,
    seed: u32, threshold: u32, keep_scale: f32, inv_temp: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read>       k: array<f32>;
@group(0) @binding(1) var<storage, read>       q: array<f32>;
@group(0) @binding(2) var<storage, read>       mask: array<f32>;
@group(0) @binding(3) var<storage, read>       dattn: array<f32>;
@group(0) @binding(4) var<storage, read_write> dk: array<f32>;
@group(0) @binding(5) var<storage, read_write> dscore: array<f32>;
@group(0) @binding(6) var<uniform>             params: Params;

fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn masked(b: u32, t: u32) -> bool {
    return params.use_mask == 1u && mask[b * params.t + t] != 0.0;
}

fn score(head: u32, n: u32, b: u32, t: u32) -> f32 {
    if (masked(b, t)) { return -1000.0; }
    let kbase = (n * params.t + t) * params.heads * params.dk + head * params.dk;
    var s = 0.0;
    for (var j = 0u; j < params.dk; j = j + 1u) { s = s + q[head * params.dk + j] * k[kbase + j]; }
    return s * params.inv_temp;
}

// Upstream gradient of the pre-dropout weight a[t].
fn grad_a(at: u32) -> f32 {
    if (params.threshold == 0u) { return dattn[at]; }
    return select(0.0, dattn[at] * params.keep_scale, pcg_hash(params.seed ^ pcg_hash(at)) >= params.threshold);
}

@compute @workgroup_size(WG)
fn attention_weights_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let n_seq = params.batch * params.pixels;
    if (i >= params.heads * n_seq) { return; }
    let head = i / n_seq;
    let n = i % n_seq;
    let b = n / params.pixels;
    let p = n % params.pixels;
    let base = (head * params.batch + b) * params.t * params.pixels + p;   // attn[head, b, 0, p]
    var m = score(head, n, b, 0u);
    for (var t = 1u; t < params.t; t = t + 1u) { m = max(m, score(head, n, b, t)); }
    var total = 0.0;
    for (var t = 0u; t < params.t; t = t + 1u) { total = total + exp(score(head, n, b, t) - m); }
    var dot = 0.0;   // Σ_u g[u] a[u]
    for (var t = 0u; t < params.t; t = t + 1u) {
        dot = dot + grad_a(base + t * params.pixels) * exp(score(head, n, b, t) - m) / total;
    }
    for (var t = 0u; t < params.t; t = t + 1u) {
        let at = base + t * params.pixels;
        let a = exp(score(head, n, b, t) - m) / total;
        var ds = a * (grad_a(at) - dot) * params.inv_temp;
        if (masked(b, t)) { ds = 0.0; }
        dscore[at] = ds;
        let kbase = (n * params.t + t) * params.heads * params.dk + head * params.dk;
        for (var j = 0u; j < params.dk; j = j + 1u) { dk[kbase + j] = ds * q[head * params.dk + j]; }
    }
}
