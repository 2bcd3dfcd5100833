// masked_fill.wgsl: replaces the elements where the mask is non-zero by a constant (torch.masked_fill).
//
// Math:     y[i] = mask[i] != 0 ? value : x[i]     (mask already expanded to x's shape by the host)
//           Its gradient is masked_fill(dy, mask, 0): the same kernel.
// Threads:  one invocation per element; WG = 256; 2-D fold.
// Bindings: 0 x (read) (n) | 1 mask (read) (n) | 2 y (read_write) (n) | 3 params (uniform)
// CPU reference: engine::ops::elementwise::masked_fill::cpu_forward.

const WG: u32 = 256u;

struct Params { n: u32, value: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read>       mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn masked_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    y[i] = select(x[i], params.value, mask[i] != 0.0);
}
