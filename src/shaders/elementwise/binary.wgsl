// binary.wgsl: the elementwise two-input family with broadcasting: add, sub, mul, div (one entry point each).
//
// Math:     y[c] = a[c . sa] (op) b[c . sb] for every coordinate c of the output shape, where sa and sb are
//           a's and b's strides read as broadcast to the output (0 on broadcast axes; see engine/shape.rs).
//           The host merges contiguous axes first, so same-shape operands arrive as rank 1.
// Threads:  one invocation per output element; WG = 256; ceil(n / WG) workgroups folded into 2-D.
// Bindings: 0 a (read) (any) | 1 b (read) (any) | 2 y (read_write) (n = numel of the output) | 3 params
// CPU reference: engine::ops::elementwise::binary::cpu_forward.  Backward: a composition (engine/ops/elementwise/binary.rs).

const WG: u32 = 256u;

struct Params {
    n: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,      // output sizes, axis d at [d / 4][d % 4]
    a_strides: array<vec4<u32>, 2>,  // a's strides over the output axes (0 where broadcast)
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read>       a: array<f32>;
@group(0) @binding(1) var<storage, read>       b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // (n)
@group(0) @binding(3) var<uniform>             params: Params;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
}

// Offsets of output element i in a and b: peel the coordinates off the innermost axis outwards.
fn offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var off = vec2<u32>(0u, 0u);
    for (var d = i32(params.rank) - 1; d >= 0; d = d - 1) {
        let size = params.shape[d / 4][d % 4];
        let c = rem % size;
        rem = rem / size;
        off = off + c * vec2<u32>(params.a_strides[d / 4][d % 4], params.b_strides[d / 4][d % 4]);
    }
    return off;
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let o = offsets(i);
    y[i] = a[o.x] + b[o.y];
}

@compute @workgroup_size(WG)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let o = offsets(i);
    y[i] = a[o.x] - b[o.y];
}

@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let o = offsets(i);
    y[i] = a[o.x] * b[o.y];
}

@compute @workgroup_size(WG)
fn div(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= params.n) { return; }
    let o = offsets(i);
    y[i] = a[o.x] / b[o.y];
}
