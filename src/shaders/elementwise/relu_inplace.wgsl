// relu_inplace.wgsl: relu.wgsl over its own input. y = max(y, 0), elementwise, written where it was read.
//
// Math:     y[i] = y[i] if y[i] > 0 else 0
// Threads:  one invocation per element (each reads and writes only its own y[i]); WG = 256 invocations per
//           workgroup; ceil(n / WG) workgroups folded into 2-D (engine/kernel.rs).
// Bindings: 0 y (read_write) (n) | 1 params (uniform)
// Used by Tensor::relu_owned when nothing else holds the input (its storage is reused for the output).
// CPU reference: engine::ops::elementwise::relu::cpu_forward.  Backward: relu_backward_inplace.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read_write> y: array<f32>;   // (n)
@group(0) @binding(1) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn relu_inplace(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    y[i] = max(y[i], 0.0);
}
