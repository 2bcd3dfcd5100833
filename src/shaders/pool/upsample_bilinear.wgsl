// upsample_bilinear.wgsl: bilinear resize of x (N, C, H, W) to (N, C, OH, OW), align_corners = False
// (PyTorch's F.interpolate(size=…, mode="bilinear"); also for downsizing).
//
// Math:     per axis, for output index o with scale r = in / out (an f32 computed on the host, as PyTorch):
//           src = max((o + 0.5)·r − 0.5, 0),  i0 = ⌊src⌋,  i1 = min(i0 + 1, in − 1),  λ = src − i0;
//           y = (1−λy)·((1−λx)·x[i0y, i0x] + λx·x[i0y, i1x]) + λy·((1−λx)·x[i1y, i0x] + λx·x[i1y, i1x])
// Threads:  one invocation per output element (N·C·OH·OW), WG = 256, folded.
// Bindings: 0 x (read) (N, C, H, W) | 1 y (read_write) (N, C, OH, OW) | 2 params (uniform)
// CPU reference: engine::ops::pool::upsample_bilinear::cpu_forward.  Backward: upsample_bilinear_backward.wgsl.

const WG: u32 = 256u;

struct Params { nc: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, scale_h: f32, scale_w: f32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (N, C, H, W)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (N, C, OH, OW)
@group(0) @binding(2) var<uniform>             params: Params;

struct Taps { i0: u32, i1: u32, lambda: f32 }

// The two source indices of output index o and the weight λ of the second one.
fn taps(o: u32, scale: f32, len: u32) -> Taps {
    let src = max((f32(o) + 0.5) * scale - 0.5, 0.0);
    let i0 = min(u32(src), len - 1u);
    return Taps(i0, min(i0 + 1u, len - 1u), src - f32(i0));
}

@compute @workgroup_size(WG)
fn upsample_bilinear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.out_h * params.out_w) { return; }
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let plane = (i / (params.out_w * params.out_h)) * params.in_h * params.in_w;
    let ty = taps(oy, params.scale_h, params.in_h);
    let tx = taps(ox, params.scale_w, params.in_w);
    let r0 = plane + ty.i0 * params.in_w;
    let r1 = plane + ty.i1 * params.in_w;
    let top = (1.0 - tx.lambda) * x[r0 + tx.i0] + tx.lambda * x[r0 + tx.i1];
    let bottom = (1.0 - tx.lambda) * x[r1 + tx.i0] + tx.lambda * x[r1 + tx.i1];
    y[i] = (1.0 - ty.lambda) * top + ty.lambda * bottom;
}
