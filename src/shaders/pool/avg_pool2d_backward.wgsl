// avg_pool2d_backward.wgsl: gradient of avg_pool2d with respect to x, as a gather.
//
// Math:     dx[n, c, iy, ix] = Σ dy[n, c, oy, ox] / (k·k) over the windows containing (iy, ix):
//           oy·s ≤ iy < oy·s + k, i.e. oy ∈ [⌈(iy − k + 1)/s⌉, ⌊iy/s⌋] ∩ [0, OH − 1] (likewise ox);
//           pixels in no window (s > k, or the uncovered bottom/right border) get 0.
// Threads:  one invocation per input element (N·C·H·W), WG = 256, folded; each owns its dx element.
// Bindings: 0 dy (read) (N, C, OH, OW) | 1 dx (read_write) (N, C, H, W) | 2 params (uniform)
// CPU reference: engine::ops::pool::avg_pool2d::cpu_backward.

const WG: u32 = 256u;

struct Params { nc: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, k: u32, stride: u32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;  // (N, C, OH, OW)
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;  // (N, C, H, W)
@group(0) @binding(2) var<uniform>             params: Params;

// Outputs [lo, hi) whose window covers input index i along one axis.
fn covering(i: u32, out_len: u32) -> vec2<u32> {
    var lo = 0u;
    if (i + 1u > params.k) { lo = (i + 1u - params.k + params.stride - 1u) / params.stride; }
    let hi = min(i / params.stride + 1u, out_len);
    return vec2<u32>(lo, max(hi, lo));
}

@compute @workgroup_size(WG)
fn avg_pool2d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.in_h * params.in_w) { return; }
    let ix = i % params.in_w;
    let iy = (i / params.in_w) % params.in_h;
    let plane = (i / (params.in_w * params.in_h)) * params.out_h * params.out_w;
    let ry = covering(iy, params.out_h);
    let rx = covering(ix, params.out_w);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        for (var ox = rx.x; ox < rx.y; ox = ox + 1u) { acc = acc + dy[plane + oy * params.out_w + ox]; }
    }
    dx[i] = acc / f32(params.k * params.k);
}
