// max_pool2d_backward.wgsl: gradient of max_pool2d (k × k, stride 1, same padding that never wins), as a
// gather: every input pixel sums the output gradients of the windows whose (first) maximum it is.
//
// Math:     dx[p, s, t] = Σ over outputs (i, j) with |i − s| ≤ r, |j − t| ≤ r and argmax(i, j) = (s, t) of
//           dy[p, i, j]; argmax(i, j) is recomputed exactly as the forward scans it (row-major, strict ">",
//           so the first maximum of a tie gets the whole gradient, as PyTorch).
// Threads:  one invocation per input element (P·H·W), WG = 256, 2-D fold. Loops: the (≤ k²) windows
//           containing the pixel, each rescanned (≤ k²): bounded by Params; reads stay inside the plane.
// Bindings: 0 x (read) (P, H, W) | 1 dy (read) (P, H, W) | 2 dx (read_write) (P, H, W) | 3 params (uniform)
// CPU reference: engine::ops::pool::max_pool2d::cpu_backward.

const WG: u32 = 256u;

struct Params { planes: u32, h: u32, w: u32, r: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;    // (P, H, W)
@group(0) @binding(1) var<storage, read>       dy: array<f32>;   // (P, H, W)
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // (P, H, W)
@group(0) @binding(3) var<uniform>             params: Params;

// Flat index (within the plane) of the first maximum of the window centred on (i, j).
fn window_argmax(base: u32, i: u32, j: u32) -> u32 {
    let y0 = select(0u, i - params.r, i >= params.r);
    let x0 = select(0u, j - params.r, j >= params.r);
    let y1 = min(i + params.r, params.h - 1u);
    let x1 = min(j + params.r, params.w - 1u);
    var arg = y0 * params.w + x0;
    var best = x[base + arg];
    for (var a = y0; a <= y1; a = a + 1u) {
        for (var b = x0; b <= x1; b = b + 1u) {
            let v = x[base + a * params.w + b];
            if (v > best) { best = v; arg = a * params.w + b; }
        }
    }
    return arg;
}

@compute @workgroup_size(WG)
fn max_pool2d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let hw = params.h * params.w;
    if (e >= params.planes * hw) { return; }
    let base = (e / hw) * hw;
    let me = e % hw;
    let s = me / params.w;
    let t = me % params.w;
    let i0 = select(0u, s - params.r, s >= params.r);
    let j0 = select(0u, t - params.r, t >= params.r);
    let i1 = min(s + params.r, params.h - 1u);
    let j1 = min(t + params.r, params.w - 1u);
    var acc = 0.0;
    for (var i = i0; i <= i1; i = i + 1u) {
        for (var j = j0; j <= j1; j = j + 1u) {
            if (window_argmax(base, i, j) == me) { acc = acc + dy[base + i * params.w + j]; }
        }
    }
    dx[e] = acc;
}
