// max_pool3d.wgsl: 3-D max pooling, window k × k × k, stride k, no padding (PyTorch nn.MaxPool3d(k), floor
// mode): U-Net 3D pools depth (time) together with height and width.
//
// Math:     y[n, c, od, oh, ow] = max over a, b, e < k of x[n, c, od·k + a, oh·k + b, ow·k + e];
//           Do = D / k, Ho = H / k, Wo = W / k (floor). The window is scanned depth, row, column, and only a
//           strictly larger value replaces the running max, so ties go to the first position (PyTorch's).
// Threads:  one invocation per output element; WG = 256; folded. Loops: k³ (params.k, bounded).
// Bindings: 0 x (read) (N·C, D, H, W) | 1 y (read_write) (N·C, Do, Ho, Wo) | 2 params (uniform)
// CPU reference: engine::ops::pool::max_pool3d::cpu_forward.  Backward: max_pool3d_backward.wgsl.

const WG: u32 = 256u;

struct Params { nc: u32, d: u32, h: u32, w: u32, k: u32, d_out: u32, h_out: u32, w_out: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (N·C, D, H, W)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (N·C, Do, Ho, Wo)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn max_pool3d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.d_out * params.h_out * params.w_out) { return; }
    let ow = i % params.w_out;
    let oh = (i / params.w_out) % params.h_out;
    let od = (i / (params.w_out * params.h_out)) % params.d_out;
    let plane = i / (params.w_out * params.h_out * params.d_out);
    let k = params.k;
    var best = x[((plane * params.d + od * k) * params.h + oh * k) * params.w + ow * k];
    for (var a = 0u; a < k; a = a + 1u) {
        for (var b = 0u; b < k; b = b + 1u) {
            for (var e = 0u; e < k; e = e + 1u) {
                let v = x[((plane * params.d + od * k + a) * params.h + oh * k + b) * params.w + ow * k + e];
                if (v > best) { best = v; }
            }
        }
    }
    y[i] = best;
}
