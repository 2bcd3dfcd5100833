// adam.wgsl: one Adam step over one parameter tensor, with torch.optim.Adam's exact operation order
// (single-tensor implementation, amsgrad off, L2 weight decay added to the gradient).
//
// Math:     g' = g + weight_decay · p
//           m  = m + (1 - β1) · (g' - m)               (torch's lerp_(g', 1 - β1), weight < 0.5 branch)
//           v  = β2 · v + ((1 - β2) · g') · g'          (mul_(β2).addcmul_(g', g', value = 1 - β2))
//           p  = p + ((-step_size) · m) / (sqrt(v) / bc2_sqrt + eps)    (addcdiv_)
//           with step_size = lr / (1 - β1^t) and bc2_sqrt = sqrt(1 - β2^t) computed on the host in f64.
// Threads:  one invocation per parameter element; WG = 256; 2-D fold. The host launches it once per
//           parameter tensor, all in one command encoder.
// Bindings: 0 p (read_write) (n) | 1 g (read) (n) | 2 m (read_write) (n) | 3 v (read_write) (n)
//           | 4 params (uniform)
// CPU reference: train::adam::cpu_step.

const WG: u32 = 256u;

struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read>       g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let grad = g[i] + params.weight_decay * p[i];
    let mi = m[i] + params.one_minus_beta1 * (grad - m[i]);
    let vi = v[i] * params.beta2 + (params.one_minus_beta2 * grad) * grad;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / params.bc2_sqrt + params.eps;
    p[i] = p[i] + (-params.step_size * mi) / denom;
}
