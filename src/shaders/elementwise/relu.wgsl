// relu.wgsl: the tutorial kernel. y = max(x, 0), elementwise over a contiguous tensor of n values.
//
// Math:     y[i] = x[i] if x[i] > 0 else 0
// Threads:  one invocation per element; WG = 256 invocations per workgroup; ceil(n / WG) workgroups,
//           folded into (x, y) past 65,535 (see engine/kernel.rs): the linear workgroup index is
//           wid.x + (wid.y + wid.z * nwg.y) * nwg.x, and invocations past n return at once.
// Bindings: 0 x (read) (n) | 1 y (read_write) (n) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::relu::cpu_forward.  Backward: relu_backward.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (n)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (n)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn relu(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Which element this invocation owns.
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    y[i] = max(x[i], 0.0);
}
