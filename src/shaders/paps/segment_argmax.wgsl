// segment_argmax.wgsl: per segment, the member with the largest value; a deterministic scatter-max over
// pixels grouped by zone id (torch_scatter's scatter_max as PaPs' CenterExtractor uses it on the CPU).
//
// Math:     out[s] = the member q of segment s (members[offsets[s] .. offsets[s + 1]], indices into x) with the
//           largest x[q]; ties → the smallest index q (torch_scatter's CPU loop visits pixels in index order
//           and replaces its running maximum only when strictly greater, so the first maximum wins). Only
//           values strictly above −3.4028235e38 (the lowest f32, scatter_max's initial value) can win, and a
//           NaN never does; a segment without any candidate gives the sentinel 0xFFFFFFFF.
// Threads:  one workgroup per segment (dispatch = n_segments workgroups, 2-D fold); the WG = 64 invocations
//           stride over the members (loop bounded by min(end, Params.n_members)), then reduce (value, index)
//           pairs in workgroup memory by halving. best_v / best_i are indexed by lid < WG or lid + stride < WG
//           (stride ≤ WG/2): in range by construction. The early return depends only on the workgroup id, and
//           every barrier is reached by all invocations of the workgroup (uniform control flow).
// Bindings: 0 x (read) (n) | 1 offsets (read) u32 (n_segments + 1) | 2 members (read) u32 (n_members)
//           | 3 out (read_write) u32 (n_segments) | 4 params (uniform)
// CPU reference: engine::ops::paps::segment_argmax::cpu_forward. Not differentiable (indices only): no backward.

const WG: u32 = 64u;
const LOWEST: f32 = -3.4028235e38;
const NONE: u32 = 0xFFFFFFFFu;

struct Params { n: u32, n_segments: u32, n_members: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;         // (n)
@group(0) @binding(1) var<storage, read>       offsets: array<u32>;   // (n_segments + 1)
@group(0) @binding(2) var<storage, read>       members: array<u32>;   // (n_members), each < n
@group(0) @binding(3) var<storage, read_write> out: array<u32>;       // (n_segments)
@group(0) @binding(4) var<uniform>             params: Params;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// Whether candidate (v, i) beats the current (bv, bi): larger value, or equal value and smaller index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn segment_argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let s = wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
    if (s >= params.n_segments) { return; }
    let start = offsets[s];
    let end = min(offsets[s + 1u], params.n_members);
    var bv = LOWEST;
    var bi = NONE;
    for (var j = start + lid; j < end; j = j + WG) {
        let q = members[j];
        let v = x[q];
        // A candidate must beat LOWEST strictly (a NaN fails every comparison).
        if (v > LOWEST && beats(v, q, bv, bi)) { bv = v; bi = q; }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            let ov = best_v[lid + stride];
            let oi = best_i[lid + stride];
            if (oi != NONE && (best_i[lid] == NONE || beats(ov, oi, best_v[lid], best_i[lid]))) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) { out[s] = best_i[0]; }
}
