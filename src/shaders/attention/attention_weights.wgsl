// attention_weights.wgsl: the attention weights of L-TAE's master-query multi-head temporal attention.
//
// What L-TAE computes, for every pixel's time series (sequence n = b·P + p: sample b, pixel p of P = rows · cols):
//   Each head h owns one learnt query vector Q[h] (d_k numbers), shared by every pixel and every sample:
//   the "master query". Every date t of the sequence has a key k[n, t, h] (a linear map of the date's
//   features, computed before this kernel). The head asks "which dates matter?" by comparing its query with
//   every key:
//       s[t] = <Q[h], k[n, t, h]> / sqrt(d_k)                (scaled dot product; temperature sqrt(d_k))
//       s[t] = -1000   where date t of sample b is padding   (masked_fill with -1000, not -inf, as L-TAE)
//       a[t] = exp(s[t] - max s) / Σ_u exp(s[u] - max s)      (softmax over time; the max is subtracted so
//                                                             exp never overflows; exp(-1000 - max) is 0)
//       a[t] = keep(t) ? a[t] / (1 - p_drop) : 0             (attention dropout in training mode)
//   The weights a[t] then average the values over time (attention_apply.wgsl). Because there is one query
//   per head (not one per date), attention costs O(T) per head and pixel instead of O(T²).
//
// Threads:  one invocation per (head, sequence) pair — H · B · P of them, WG = 256, 2-D fold. Each walks its
//           T dates three times (max, sum, write), recomputing the d_k-long dot products instead of keeping
//           them in a local array, so T is not limited by a compile-time size.
// Bindings: 0 k (read) (N, T, H·d_k) keys, N = B·P | 1 q (read) (H, d_k) master queries
//           | 2 mask (read) (B, T) 1.0 = padded date | 3 attn (read_write) (H, B, T, P) | 4 params (uniform)
// Dropout:  keep(i) = pcg_hash(seed ^ pcg_hash(i)) >= threshold, i = the attn index (same hash as dropout.wgsl).
// CPU reference: engine::ops::attention::attention_weights::cpu_weights.  Backward: attention_weights_backward.wgsl.

const WG: u32 = 256u;

struct Params {
    heads: u32,       // H
    batch: u32,       // B
    t: u32,           // T dates (after padding)
    pixels: u32,      // P = rows · cols of the map sequences per sample
    dk: u32,          // d_k
    use_mask: u32,    // 0: no padding in the batch (mask ignored)
    seed: u32,        // dropout seed
    threshold: u32,   // dropout: keep when hash >= threshold (0 = no dropout)
    keep_scale: f32,       // dropout: 1 / (1 - p), the kept weights' scale (not the attention scale: inv_temp)
    inv_temp: f32,    // 1 / sqrt(d_k)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read>       k: array<f32>;
@group(0) @binding(1) var<storage, read>       q: array<f32>;
@group(0) @binding(2) var<storage, read>       mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> attn: array<f32>;
@group(0) @binding(4) var<uniform>             params: Params;

fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The masked, scaled score of date t for head h and sequence n (sample b).
fn score(head: u32, n: u32, b: u32, t: u32) -> f32 {
    if (params.use_mask == 1u && mask[b * params.t + t] != 0.0) { return -1000.0; }
    let kbase = (n * params.t + t) * params.heads * params.dk + head * params.dk;
    var s = 0.0;
    for (var j = 0u; j < params.dk; j = j + 1u) { s = s + q[head * params.dk + j] * k[kbase + j]; }
    return s * params.inv_temp;
}

@compute @workgroup_size(WG)
fn attention_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let n_seq = params.batch * params.pixels;
    if (i >= params.heads * n_seq) { return; }
    let head = i / n_seq;            // head
    let n = i % n_seq;            // sequence
    let b = n / params.pixels;    // sample
    let p = n % params.pixels;    // pixel
    var m = score(head, n, b, 0u);
    for (var t = 1u; t < params.t; t = t + 1u) { m = max(m, score(head, n, b, t)); }
    var total = 0.0;
    for (var t = 0u; t < params.t; t = t + 1u) { total = total + exp(score(head, n, b, t) - m); }
    for (var t = 0u; t < params.t; t = t + 1u) {
        let out = ((head * params.batch + b) * params.t + t) * params.pixels + p;   // attn[head, b, t, p]
        var a = exp(score(head, n, b, t) - m) / total;
        if (params.threshold != 0u) {
            a = select(0.0, a * params.keep_scale, pcg_hash(params.seed ^ pcg_hash(out)) >= params.threshold);
        }
        attn[out] = a;
    }
}
