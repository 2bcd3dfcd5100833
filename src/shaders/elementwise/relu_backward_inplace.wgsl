// relu_backward_inplace.wgsl: relu_backward.wgsl writing dx over dy (the incoming gradient is not needed
// after this op, and nothing else holds it).
//
// Math:     g[i] = g[i] * (y[i] > 0 ? 1 : 0)   (g holds dy on entry, dx on exit)
// Threads:  one invocation per element (each reads and writes only its own g[i]); WG = 256, ceil(n / WG)
//           workgroups folded into 2-D.
// Bindings: 0 y (read) (n) | 1 g (read_write) (n) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::relu::cpu_backward.

const WG: u32 = 256u;

struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       y: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read_write> g: array<f32>;   // (n)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn relu_backward_inplace(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    g[i] = select(0.0, g[i], y[i] > 0.0);
}
