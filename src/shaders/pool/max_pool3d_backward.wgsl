// max_pool3d_backward.wgsl: the gradient of max_pool3d.wgsl as a gather: each input element owns its
// gradient, dy of its window when it is the window's (first) maximum, else 0.
//
// Math:     dx[n, c, t, r, q] = dy[n, c, t/k, r/k, q/k] if (t, r, q) lies in a window (t/k < Do, ...) and
//           is the position max_pool3d.wgsl chose (rescanned in the same order: the first strict maximum);
//           0 otherwise (ties and the uncovered trailing planes get nothing, as PyTorch).
// Threads:  one invocation per input element; WG = 256; folded. Loops: k³ (params.k, bounded).
// Bindings: 0 x (read) (N·C, D, H, W) | 1 dy (read) (N·C, Do, Ho, Wo) | 2 dx (read_write) (N·C, D, H, W)
//           | 3 params (uniform)
// CPU reference: engine::ops::pool::max_pool3d::cpu_backward.

const WG: u32 = 256u;

struct Params { nc: u32, d: u32, h: u32, w: u32, k: u32, d_out: u32, h_out: u32, w_out: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;    // (N·C, D, H, W)
@group(0) @binding(1) var<storage, read>       dy: array<f32>;   // (N·C, Do, Ho, Wo)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // (N·C, D, H, W)
@group(0) @binding(3) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn max_pool3d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.d * params.h * params.w) { return; }
    let q = i % params.w;
    let r = (i / params.w) % params.h;
    let t = (i / (params.w * params.h)) % params.d;
    let plane = i / (params.w * params.h * params.d);
    let k = params.k;
    let od = t / k;
    let oh = r / k;
    let ow = q / k;
    if (od >= params.d_out || oh >= params.h_out || ow >= params.w_out) {
        dx[i] = 0.0;
        return;
    }
    // Rescan the window for its first maximum.
    var best_i = ((plane * params.d + od * k) * params.h + oh * k) * params.w + ow * k;
    var best = x[best_i];
    for (var a = 0u; a < k; a = a + 1u) {
        for (var b = 0u; b < k; b = b + 1u) {
            for (var e = 0u; e < k; e = e + 1u) {
                let j = ((plane * params.d + od * k + a) * params.h + oh * k + b) * params.w + ow * k + e;
                if (x[j] > best) { best = x[j]; best_i = j; }
            }
        }
    }
    var g = 0.0;
    if (best_i == i) { g = dy[((plane * params.d_out + od) * params.h_out + oh) * params.w_out + ow]; }
    dx[i] = g;
}
