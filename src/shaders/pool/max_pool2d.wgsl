// max_pool2d.wgsl: k × k max pooling, stride 1, "same" padding r = (k − 1)/2 that never wins (−∞ semantics):
// nn.MaxPool2d(kernel_size=k, stride=1, padding=r), the local-maximum test of PaPs' CenterExtractor (k = 3).
//
// Math:     y[p, i, j] = max over a, b ∈ [−r, r] with (i + a, j + b) inside the image of x[p, i + a, j + b];
//           the window is scanned row-major and only a strictly greater value replaces the running maximum
//           (PyTorch's CPU kernel: the first maximum wins a tie; the window start is clamped to the image).
// Threads:  one invocation per output element (P·H·W), WG = 256, ceil(n / WG) workgroups folded in 2-D.
//           The window loops run over [max(i − r, 0), min(i + r, H − 1)]: bounded by Params (k, h, w);
//           every read is inside the plane by construction. No workgroup memory, no barrier.
// Bindings: 0 x (read) (P, H, W) | 1 y (read_write) (P, H, W) | 2 params (uniform)
// CPU reference: engine::ops::pool::max_pool2d::cpu_forward.  Backward: max_pool2d_backward.wgsl.

const WG: u32 = 256u;

struct Params { planes: u32, h: u32, w: u32, r: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;   // (P, H, W)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (P, H, W)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn max_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let hw = params.h * params.w;
    if (e >= params.planes * hw) { return; }
    let base = (e / hw) * hw;
    let i = (e % hw) / params.w;
    let j = e % params.w;
    let y0 = select(0u, i - params.r, i >= params.r);
    let x0 = select(0u, j - params.r, j >= params.r);
    let y1 = min(i + params.r, params.h - 1u);
    let x1 = min(j + params.r, params.w - 1u);
    var best = x[base + y0 * params.w + x0];
    for (var a = y0; a <= y1; a = a + 1u) {
        for (var b = x0; b <= x1; b = b + 1u) {
            let v = x[base + a * params.w + b];
            if (v > best) { best = v; }
        }
    }
    y[e] = best;
}
