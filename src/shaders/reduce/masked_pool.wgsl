// masked_pool.wgsl: the Pixel-Set Encoder's masked mean and standard deviation over the pixels of each set.
//
// Math:     f (N, S, K) features of S pixels per set, m (N, S) 1 = real pixel, 0 = padding copy. For (n, k):
//             M = Σ_s m_s,  μ = Σ_s m_s f_s / M,  d = M (2 where M = 1: the original's quirk),
//             σ = sqrt(Σ_s (m_s (f_s − μ))² / (d − 1) + 1e-31)
//           out[0, n, k] = μ, out[1, n, k] = σ.
// Threads:  one invocation per (n, k) — N·K of them, WG = 256, 2-D fold; consecutive invocations take
//           consecutive k, so each of the two loops over s reads f[n, s, ·] contiguously.
// Bindings: 0 f (read) (N, S, K) | 1 mask (read) (N, S) | 2 out (read_write) (2, N, K) | 3 params (uniform)
// CPU reference: engine::ops::reduce::masked_pool::cpu_forward.  Backward: masked_pool_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, s: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read>       f: array<f32>;
@group(0) @binding(1) var<storage, read>       mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn masked_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.k) { return; }
    let n = i / params.k;
    let k = i % params.k;
    var msum = 0.0;
    var fsum = 0.0;
    for (var s = 0u; s < params.s; s = s + 1u) {
        let w = mask[n * params.s + s];
        msum = msum + w;
        fsum = fsum + w * f[(n * params.s + s) * params.k + k];
    }
    let mu = fsum / msum;
    let dm1 = select(msum - 1.0, 1.0, msum == 1.0);
    var sq = 0.0;
    for (var s = 0u; s < params.s; s = s + 1u) {
        let c = mask[n * params.s + s] * (f[(n * params.s + s) * params.k + k] - mu);
        sq = sq + c * c;
    }
    out[i] = mu;                                   // out[0, n, k]
    out[params.n * params.k + i] = sqrt(sq / dm1 + 1e-31);   // out[1, n, k]
}
