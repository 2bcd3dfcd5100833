// crop_ragged.wgsl: M rectangular crops of a stack of planes, packed one after the other into one ragged
// vector (PaPs crops the saliency map to every instance's box, spec §6.3 step 9).
//
// Math:     for crop m = (src, y0, x0, h, w, offset): y[offset + r·w + c] = x[src, y0 + r, x0 + c]
//           (0 ≤ r < h, 0 ≤ c < w); crops lie inside their plane and tile 0 .. total (asserted on the host).
// Threads:  one invocation per packed element (total), WG = 256, 2-D fold. Each finds its crop by a binary
//           search over the crops' offsets (≤ 32 halvings, bounded by Params.m). No workgroup memory.
// Bindings: 0 x (read) (P, H, W) | 1 table (read) u32 (M, 8): src, y0, x0, h, w, offset, scale_h, scale_w
//           | 2 y (read_write) (total) | 3 params (uniform)
// CPU reference: engine::ops::paps::crop::cpu_crop.  Backward: crop_ragged_backward.wgsl.

const WG: u32 = 256u;

struct Params { m: u32, total: u32, h: u32, w: u32, planes: u32, s: u32, max_h: u32, max_w: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;       // (P, H, W)
@group(0) @binding(1) var<storage, read>       table: array<u32>;   // (M, 8)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (total)
@group(0) @binding(3) var<uniform>             params: Params;

// The crop holding packed element e: the last m with offset[m] ≤ e.
fn owner(e: u32) -> u32 {
    var lo = 0u;
    var hi = params.m;
    for (var it = 0u; it < 32u && hi - lo > 1u; it = it + 1u) {
        let mid = (lo + hi) / 2u;
        if (table[mid * 8u + 5u] <= e) { lo = mid; } else { hi = mid; }
    }
    return lo;
}

@compute @workgroup_size(WG)
fn crop_ragged(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (e >= params.total) { return; }
    let t = owner(e) * 8u;
    let local = e - table[t + 5u];
    let cw = table[t + 4u];
    let r = local / cw;
    let c = local % cw;
    y[e] = x[(table[t] * params.h + table[t + 1u] + r) * params.w + table[t + 2u] + c];
}
