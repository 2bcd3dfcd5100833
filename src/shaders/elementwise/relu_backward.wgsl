// relu_backward.wgsl: gradient of relu. dx = dy where x > 0, else 0 (the kink at 0 gets 0, as PyTorch).
//
// Math:     dx[i] = dy[i] * (x[i] > 0 ? 1 : 0)
// Threads:  one invocation per element (a gather: each invocation writes only its own dx[i]); WG = 256,
//           ceil(n / WG) workgroups folded into 2-D.
// Bindings: 0 x (read) (n) | 1 dy (read) (n) | 2 dx (read_write) (n) | 3 params (uniform)
// CPU reference: engine::ops::elementwise::relu::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;    // (n)
@group(0) @binding(1) var<storage, read>       dy: array<f32>;   // (n)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // (n)
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    dx[i] = select(0.0, dy[i], x[i] > 0.0);
}
