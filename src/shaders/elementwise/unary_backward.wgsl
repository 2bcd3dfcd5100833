// unary_backward.wgsl: gradients of the unary family. Each entry point reads the tensor its derivative needs
// ("s": the input x or the output y, as listed), the output gradient dy, and writes dx (a gather).
//
// Math (a = params.a):
//   leaky_relu_backward  s = x   dx = dy * (x > 0 ? 1 : a)
//   sigmoid_backward     s = y   dx = dy * y * (1 - y)
//   tanh_backward        s = y   dx = dy * (1 - y * y)
//   exp_backward         s = y   dx = dy * y
//   log_backward         s = x   dx = dy / x
//   sqrt_backward        s = y   dx = dy * 0.5 / y
//   softplus_backward    s = x   dx = x > 20 ? dy : dy * z / (z + 1), z = exp(x)   (PyTorch's formula)
// (add_scalar's gradient is dy itself and mul_scalar's is mul_scalar(dy, a): no kernel of their own.)
// Threads:  one invocation per element; WG = 256; ceil(n / WG) workgroups folded into 2-D.
// Bindings: 0 s (read) (n) | 1 dy (read) (n) | 2 dx (read_write) (n) | 3 params (uniform)
// CPU reference: engine::ops::elementwise::unary::Unary::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, a: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       s: array<f32>;    // (n) x or y
@group(0) @binding(1) var<storage, read>       dy: array<f32>;   // (n)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // (n)
@group(0) @binding(3) var<uniform>             params: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn leaky_relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    dx[i] = dy[i] * select(params.a, 1.0, s[i] > 0.0);
}

@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let y = s[i];
    dx[i] = dy[i] * y * (1.0 - y);
}

@compute @workgroup_size(WG)
fn tanh_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let y = s[i];
    dx[i] = dy[i] * (1.0 - y * y);
}

@compute @workgroup_size(WG)
fn exp_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    dx[i] = dy[i] * s[i];
}

@compute @workgroup_size(WG)
fn log_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    dx[i] = dy[i] / s[i];
}

@compute @workgroup_size(WG)
fn sqrt_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    dx[i] = dy[i] * 0.5 / s[i];
}

@compute @workgroup_size(WG)
fn softplus_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let v = s[i];
    let z = exp(min(v, 20.0));
    dx[i] = select(dy[i] * z / (z + 1.0), dy[i], v > 20.0);
}
