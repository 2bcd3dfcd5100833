// paps_loss.wgsl: the per-element terms of PaPs' losses (spec §6.4); each loss is then a sum (reduce_sum)
// and a scale. Family file: one entry point per loss, all elementwise over n values.
//
// Math:     center_loss_terms (CornerNet, α = 0): a < 0 marks a positive pixel (target exactly 1.0),
//             t = log(x + eps); otherwise a = (1 − g)^β ≥ 0 (0 where the target is > 1, which counts for
//             neither) and t = a·log(1 − x + eps)
//           size_loss_terms (relative L1): t = |a − x| / (a + eps), a the target size
//           shape_loss_terms: a = 2y − 1 ∈ {−1, 1} for a collected pixel with true mask y, 0 for a pixel not
//             collected; t = softplus((1 − 2x)·a) = log(1 + exp((1 − 2x)·a)) (the log-softmax of the pair
//             [1 − x, x] read at y, negated), 0 where a = 0
// Threads:  one invocation per element, WG = 256, 2-D fold. No loop, no workgroup memory.
// Bindings: 0 x (read) (n) | 1 a (read) (n) | 2 t (read_write) (n) | 3 params (uniform)
// CPU reference: engine::ops::paps::paps_loss::Term::cpu_forward.  Backward: paps_loss_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, eps: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read>       a: array<f32>;   // (n)
@group(0) @binding(2) var<storage, read_write> t: array<f32>;   // (n)
@group(0) @binding(3) var<uniform>             params: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn center_loss_terms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let v = x[i];
    if (a[i] < 0.0) {
        t[i] = log(v + params.eps);
    } else {
        t[i] = a[i] * log(1.0 - v + params.eps);
    }
}

@compute @workgroup_size(WG)
fn size_loss_terms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    t[i] = abs(a[i] - x[i]) / (a[i] + params.eps);
}

@compute @workgroup_size(WG)
fn shape_loss_terms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let z = (1.0 - 2.0 * x[i]) * a[i];
    t[i] = select(0.0, log(1.0 + exp(z)), a[i] != 0.0);
}
