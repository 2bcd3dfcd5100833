// crop_resize.wgsl: per instance, bilinear resize (align_corners = False, up or down, no antialiasing) of an
// S × S map to its own full size, then a crop of it, packed into one ragged vector (PaPs' instance shapes,
// spec §6.3 step 9: F.interpolate(shape, size=(s_y, s_x), mode="bilinear") then the part inside the image).
//
// Math:     crop m = (src = m, y0, x0, h, w, offset, r_y, r_x) with the f32 scales r = S / full size computed on
//           the host (as PyTorch); for 0 ≤ r < h, 0 ≤ c < w, output row o = y0 + r and column q = x0 + c:
//           per axis src = max((o + 0.5)·r_y − 0.5, 0), i0 = ⌊src⌋ (≤ S − 1), i1 = min(i0 + 1, S − 1), λ = src − i0;
//           y[offset + r·w + c] = (1−λy)·((1−λx)·x[i0y, i0x] + λx·x[i0y, i1x]) + λy·((1−λx)·x[i1y, i0x] + λx·x[i1y, i1x])
// Threads:  one invocation per packed element (total), WG = 256, 2-D fold; the crop by binary search over the
//           offsets (≤ 32 halvings). Every tap index is clamped to S − 1: reads stay inside x[m].
// Bindings: 0 x (read) (M, S, S) | 1 table (read) u32 (M, 8) | 2 y (read_write) (total) | 3 params (uniform)
// CPU reference: engine::ops::paps::crop::cpu_resize_crop.  Backward: crop_resize_backward.wgsl.

const WG: u32 = 256u;

struct Params { m: u32, total: u32, h: u32, w: u32, planes: u32, s: u32, max_h: u32, max_w: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;       // (M, S, S)
@group(0) @binding(1) var<storage, read>       table: array<u32>;   // (M, 8)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (total)
@group(0) @binding(3) var<uniform>             params: Params;

struct Taps { i0: u32, i1: u32, lambda: f32 }

fn taps(o: u32, scale: f32, len: u32) -> Taps {
    let src = max((f32(o) + 0.5) * scale - 0.5, 0.0);
    let i0 = min(u32(src), len - 1u);
    return Taps(i0, min(i0 + 1u, len - 1u), src - f32(i0));
}

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
fn crop_resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (e >= params.total) { return; }
    let m = owner(e);
    let t = m * 8u;
    let local = e - table[t + 5u];
    let cw = table[t + 4u];
    let ty = taps(table[t + 1u] + local / cw, bitcast<f32>(table[t + 6u]), params.s);
    let tx = taps(table[t + 2u] + local % cw, bitcast<f32>(table[t + 7u]), params.s);
    let base = table[t] * params.s * params.s;
    let r0 = base + ty.i0 * params.s;
    let r1 = base + ty.i1 * params.s;
    let top = (1.0 - tx.lambda) * x[r0 + tx.i0] + tx.lambda * x[r0 + tx.i1];
    let bottom = (1.0 - tx.lambda) * x[r1 + tx.i0] + tx.lambda * x[r1 + tx.i1];
    y[e] = (1.0 - ty.lambda) * top + ty.lambda * bottom;
}
