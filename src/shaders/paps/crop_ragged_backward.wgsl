// crop_ragged_backward.wgsl: gradient of crop_ragged as a gather: every plane pixel sums the packed
// gradients of the crops that contain it (crops may overlap; no atomics).
//
// Math:     dx[p, yy, xx] = Σ_m [src_m = p, y0_m ≤ yy < y0_m + h_m, x0_m ≤ xx < x0_m + w_m]
//                              dy[offset_m + (yy − y0_m)·w_m + (xx − x0_m)],  summed in increasing m
// Threads:  one invocation per plane element (P·H·W), WG = 256, 2-D fold; a loop over the M crops (bounded by
//           Params.m). Reads of dy stay inside the crop (tested membership). No workgroup memory.
// Bindings: 0 dy (read) (total) | 1 table (read) u32 (M, 8) | 2 dx (read_write) (P, H, W) | 3 params (uniform)
// CPU reference: engine::ops::paps::crop::cpu_crop_backward.

const WG: u32 = 256u;

struct Params { m: u32, total: u32, h: u32, w: u32, planes: u32, s: u32, max_h: u32, max_w: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;      // (total)
@group(0) @binding(1) var<storage, read>       table: array<u32>;   // (M, 8)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;      // (P, H, W)
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn crop_ragged_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let hw = params.h * params.w;
    if (e >= params.planes * hw) { return; }
    let p = e / hw;
    let yy = (e % hw) / params.w;
    let xx = e % params.w;
    var acc = 0.0;
    for (var m = 0u; m < params.m; m = m + 1u) {
        let t = m * 8u;
        let y0 = table[t + 1u];
        let x0 = table[t + 2u];
        if (table[t] == p && yy >= y0 && yy < y0 + table[t + 3u] && xx >= x0 && xx < x0 + table[t + 4u]) {
            acc = acc + dy[table[t + 5u] + (yy - y0) * table[t + 4u] + (xx - x0)];
        }
    }
    dx[e] = acc;
}
