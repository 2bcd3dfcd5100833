// copy_strided.wgsl: the one movement kernel. Copies an N-d box of elements between two strided layouts;
// permute, slice, expand (broadcast), concat and their backwards are all this kernel with other strides.
//
// Math:     for every coordinate c of `shape`:
//             dst[dst_offset + c . dst_strides] = src[src_offset + c . src_strides]
//           (a src stride of 0 repeats an element: expand; dst strides of a bigger tensor write a region of
//           it: concat, and the backward of slice).
// Threads:  one invocation per element of the box; WG = 256; ceil(n / WG) workgroups folded into 2-D.
//           Each dst element is written by exactly one invocation (dst strides never alias).
// Bindings: 0 src (read) (any) | 1 dst (read_write) (any) | 2 params (uniform)
// CPU reference: engine::ops::movement::copy_strided::cpu_copy_strided.

const WG: u32 = 256u;

struct Params {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    shape: array<vec4<u32>, 2>,        // box sizes, axis d at [d / 4][d % 4]
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read>       src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn copy_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    var rem = i;
    var s = params.src_offset;
    var d_off = params.dst_offset;
    for (var d = i32(params.rank) - 1; d >= 0; d = d - 1) {
        let size = params.shape[d / 4][d % 4];
        let c = rem % size;
        rem = rem / size;
        s = s + c * params.src_strides[d / 4][d % 4];
        d_off = d_off + c * params.dst_strides[d / 4][d % 4];
    }
    dst[d_off] = src[s];
}
