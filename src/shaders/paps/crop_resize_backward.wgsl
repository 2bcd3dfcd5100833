// crop_resize_backward.wgsl: gradient of crop_resize as a gather: every S × S input value of instance m sums
// the packed gradients of the crop's outputs that read it, weighted by their bilinear weights.
//
// Math:     dx[m, i, j] = Σ_{r < h_m} wy(y0_m + r, i) · Σ_{c < w_m} wx(x0_m + c, j) · dy[offset_m + r·w_m + c],
//           w(o, i) = (1 − λ) [i = i0(o)] + λ [i = i1(o)] with the forward's taps (same f32 arithmetic)
// Threads:  one invocation per input element (M·S·S), WG = 256, 2-D fold. The row loop runs
//           min(h_m, Params.max_h) times; the column loop (only for rows with a non-zero weight) min(w_m,
//           Params.max_w) times. Reads of dy stay inside crop m. No workgroup memory.
// Bindings: 0 dy (read) (total) | 1 table (read) u32 (M, 8) | 2 dx (read_write) (M, S, S) | 3 params (uniform)
// CPU reference: engine::ops::paps::crop::cpu_resize_crop_backward.

const WG: u32 = 256u;

struct Params { m: u32, total: u32, h: u32, w: u32, planes: u32, s: u32, max_h: u32, max_w: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;      // (total)
@group(0) @binding(1) var<storage, read>       table: array<u32>;   // (M, 8)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;      // (M, S, S)
@group(0) @binding(3) var<uniform>             params: Params;

struct Taps { i0: u32, i1: u32, lambda: f32 }

fn taps(o: u32, scale: f32, len: u32) -> Taps {
    let src = max((f32(o) + 0.5) * scale - 0.5, 0.0);
    let i0 = min(u32(src), len - 1u);
    return Taps(i0, min(i0 + 1u, len - 1u), src - f32(i0));
}

// The bilinear weight of input index i in output index o.
fn weight(o: u32, scale: f32, i: u32) -> f32 {
    let t = taps(o, scale, params.s);
    return select(0.0, 1.0 - t.lambda, t.i0 == i) + select(0.0, t.lambda, t.i1 == i);
}

@compute @workgroup_size(WG)
fn crop_resize_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let ss = params.s * params.s;
    if (e >= params.m * ss) { return; }
    let m = e / ss;
    let i = (e % ss) / params.s;
    let j = e % params.s;
    let t = m * 8u;
    let h = min(table[t + 3u], params.max_h);
    let w = min(table[t + 4u], params.max_w);
    let sy = bitcast<f32>(table[t + 6u]);
    let sx = bitcast<f32>(table[t + 7u]);
    var acc = 0.0;
    for (var r = 0u; r < h; r = r + 1u) {
        let wy = weight(table[t + 1u] + r, sy, i);
        if (wy != 0.0) {
            var row = 0.0;
            for (var c = 0u; c < w; c = c + 1u) {
                row = row + weight(table[t + 2u] + c, sx, j) * dy[table[t + 5u] + r * table[t + 4u] + c];
            }
            acc = acc + wy * row;
        }
    }
    dx[e] = acc;
}
