// paps_loss_backward.wgsl: gradients of the PaPs loss terms of paps_loss.wgsl with respect to x (the
// targets a get none). Family file: one entry point per loss, elementwise.
//
// Math:     center_loss_backward: dx = dt / (x + eps) for a positive (a < 0), else −a·dt / (1 − x + eps)
//           size_loss_backward:   dx = sign(x − a)·dt / (a + eps)  (sign(0) = 0, as PyTorch's abs)
//           shape_loss_backward:  dx = −2a·σ((1 − 2x)·a)·dt  (0 where a = 0)
// Threads:  one invocation per element, WG = 256, 2-D fold. No loop, no workgroup memory.
// Bindings: 0 x (read) (n) | 1 a (read) (n) | 2 dt (read) (n) | 3 dx (read_write) (n) | 4 params (uniform)
// CPU reference: engine::ops::paps::paps_loss::Term::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, eps: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;    // (n)
@group(0) @binding(1) var<storage, read>       a: array<f32>;    // (n)
@group(0) @binding(2) var<storage, read>       dt: array<f32>;   // (n)
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;   // (n)
@group(0) @binding(4) var<uniform>             params: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn center_loss_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let v = x[i];
    if (a[i] < 0.0) {
        dx[i] = dt[i] / (v + params.eps);
    } else {
        dx[i] = -a[i] * dt[i] / (1.0 - v + params.eps);
    }
}

@compute @workgroup_size(WG)
fn size_loss_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    dx[i] = sign(x[i] - a[i]) * dt[i] / (a[i] + params.eps);
}

@compute @workgroup_size(WG)
fn shape_loss_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let z = (1.0 - 2.0 * x[i]) * a[i];
    dx[i] = -2.0 * a[i] * dt[i] / (1.0 + exp(-z));
}
