// unary.wgsl: the elementwise one-input family, one entry point per op, over a contiguous tensor of n values.
//
// Math (a = params.a):
//   leaky_relu_forward  y = x > 0 ? x : a * x
//   sigmoid_forward     y = 1 / (1 + exp(-x))
//   tanh_forward        y = tanh(x)            (x clamped to ±15 first: tanh(±15) is ±1 in f32, and some
//                                               backends compute tanh through exp(2x), which overflows)
//   exp_forward         y = exp(x)
//   log_forward         y = ln(x)
//   sqrt_forward        y = sqrt(x)
//   softplus_forward    y = x > 20 ? x : log1p(exp(x))   (PyTorch Softplus(beta=1, threshold=20))
//   add_scalar          y = x + a
//   mul_scalar          y = x * a
// Threads:  one invocation per element; WG = 256; ceil(n / WG) workgroups folded into 2-D (engine/kernel.rs).
// Bindings: 0 x (read) (n) | 1 y (read_write) (n) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::unary::Unary::cpu_forward.  Backward: unary_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, a: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (n)
@group(0) @binding(2) var<uniform>             params: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
}

// ln(1 + u) for u >= 0, accurate for small u (WGSL has no log1p).
fn log1p(u: f32) -> f32 {
    if (u < 1e-4) { return u * (1.0 - u * (0.5 - u / 3.0)); }
    return log(1.0 + u);
}

@compute @workgroup_size(WG)
fn leaky_relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let v = x[i];
    y[i] = select(params.a * v, v, v > 0.0);
}

@compute @workgroup_size(WG)
fn sigmoid_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = 1.0 / (1.0 + exp(-x[i]));
}

@compute @workgroup_size(WG)
fn tanh_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = tanh(clamp(x[i], -15.0, 15.0));
}

@compute @workgroup_size(WG)
fn exp_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = exp(x[i]);
}

@compute @workgroup_size(WG)
fn log_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = log(x[i]);
}

@compute @workgroup_size(WG)
fn sqrt_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = sqrt(x[i]);
}

@compute @workgroup_size(WG)
fn softplus_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let v = x[i];
    y[i] = select(log1p(exp(v)), v, v > 20.0);
}

@compute @workgroup_size(WG)
fn add_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = x[i] + params.a;
}

@compute @workgroup_size(WG)
fn mul_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    y[i] = x[i] * params.a;
}
