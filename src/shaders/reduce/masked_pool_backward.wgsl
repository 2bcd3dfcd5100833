// masked_pool_backward.wgsl: gradient of the masked mean and std (masked_pool.wgsl) with respect to f.
//
// Math:     with M, μ, d, σ as in the forward, c_s = m_s (f_s − μ) and Q = Σ_s c_s m_s (0 for a 0/1 mask),
//             df[n, s, k] = gμ m_s / M + gσ (c_s m_s − m_s Q / M) / ((d − 1) σ)
//           gμ = dout[0, n, k], gσ = dout[1, n, k]. The mask gets no gradient.
// Threads:  one invocation per (n, k) — N·K of them, WG = 256, 2-D fold; each recomputes M, μ, Q and σ (two
//           loops over s) and writes the S gradients df[n, ·, k] it owns (a gather: no atomics).
// Bindings: 0 f (read) (N, S, K) | 1 mask (read) (N, S) | 2 dout (read) (2, N, K) | 3 df (read_write) (N, S, K)
//           | 4 params (uniform)
// CPU reference: engine::ops::reduce::masked_pool::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, s: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read>       f: array<f32>;
@group(0) @binding(1) var<storage, read>       mask: array<f32>;
@group(0) @binding(2) var<storage, read>       dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> df: array<f32>;
@group(0) @binding(4) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn masked_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    var q = 0.0;
    for (var s = 0u; s < params.s; s = s + 1u) {
        let w = mask[n * params.s + s];
        let c = w * (f[(n * params.s + s) * params.k + k] - mu);
        sq = sq + c * c;
        q = q + c * w;
    }
    let sigma = sqrt(sq / dm1 + 1e-31);
    let gmu = dout[i];
    let gsigma = dout[params.n * params.k + i];
    for (var s = 0u; s < params.s; s = s + 1u) {
        let w = mask[n * params.s + s];
        let j = (n * params.s + s) * params.k + k;
        let c = w * (f[j] - mu);
        df[j] = gmu * w / msum + gsigma * (c * w - w * q / msum) / (dm1 * sigma);
    }
}
