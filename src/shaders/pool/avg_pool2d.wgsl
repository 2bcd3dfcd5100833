// avg_pool2d.wgsl: average pooling of x (N, C, H, W) with a k×k window and stride s, no padding, floor mode
// (PyTorch's F.avg_pool2d(x, k, s)): OH = (H − k)/s + 1, OW = (W − k)/s + 1.
//
// Math:     y[n, c, oy, ox] = Σ_{dy, dx < k} x[n, c, oy·s + dy, ox·s + dx] / (k·k)
// Threads:  one invocation per output element (N·C·OH·OW), WG = 256, folded.
// Bindings: 0 x (read) (N, C, H, W) | 1 y (read_write) (N, C, OH, OW) | 2 params (uniform)
// CPU reference: engine::ops::pool::avg_pool2d::cpu_forward.  Backward: avg_pool2d_backward.wgsl.

const WG: u32 = 256u;

struct Params { nc: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, k: u32, stride: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (N, C, H, W)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (N, C, OH, OW)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn avg_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.out_h * params.out_w) { return; }
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let plane = (i / (params.out_w * params.out_h)) * params.in_h * params.in_w;
    var acc = 0.0;
    for (var a = 0u; a < params.k; a = a + 1u) {
        let row = plane + (oy * params.stride + a) * params.in_w + ox * params.stride;
        for (var b = 0u; b < params.k; b = b + 1u) { acc = acc + x[row + b]; }
    }
    y[i] = acc / f32(params.k * params.k);
}
