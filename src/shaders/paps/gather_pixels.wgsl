// gather_pixels.wgsl: the feature vectors of a list of pixels, y[m, c] = x[b_m, c, y_m, x_m] — PaPs' center
// features, one gather per decoder level (spec §6.3 step 6).
//
// Math:     y[m, c] = x[(b_m·C + c)·H·W + p_m], where pix[m] = b_m·H·W + p_m (p_m = y_m·W + x_m)
// Threads:  one invocation per output element (M·C), WG = 256, 2-D fold. pix[m] < B·H·W (asserted by the
//           launcher), so every read is inside x. No loop, no workgroup memory.
// Bindings: 0 x (read) (B, C, H, W) | 1 pix (read) u32 (M) | 2 y (read_write) (M, C) | 3 params (uniform)
// CPU reference: engine::ops::paps::gather_pixels::cpu_forward.  Backward: gather_pixels_backward.wgsl.

const WG: u32 = 256u;

struct Params { m: u32, c: u32, hw: u32, n_pixels: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;     // (B, C, H, W)
@group(0) @binding(1) var<storage, read>       pix: array<u32>;   // (M)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;     // (M, C)
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn gather_pixels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (e >= params.m * params.c) { return; }
    let m = e / params.c;
    let c = e % params.c;
    let q = pix[m];
    let b = q / params.hw;
    y[e] = x[(b * params.c + c) * params.hw + q % params.hw];
}
