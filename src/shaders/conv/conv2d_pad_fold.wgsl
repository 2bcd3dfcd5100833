// conv2d_pad_fold.wgsl: folds the gradient of a padded input back onto the input: the last step of a stride-1
// conv2d's input gradient computed as a convolution (conv2d.wgsl with flip = 1 gives the gradient of
// xpad, the input padded by p on each side).
//
// Math:     dx[n, c, i, j] = Σ_{t ∈ T(i, H)} Σ_{u ∈ T(j, W)} dxpad[n, c, t + p, u + p], where T(i, n) are the padded
//           positions t ∈ [-p, n + p) whose source index is i: t = i, and for reflect padding also t = -i
//           (if 0 < i ≤ p) and t = 2(n-1) - i (if n-1-p ≤ i < n-1). Zero padding: a crop.
// Threads:  one invocation per dx element (it owns it: a fixed order of at most 9 terms); WG = 256;
//           ceil(N·C·H·W / 256) workgroups, folded.
// Bindings: 0 dxpad (read) (N, C, H + 2p, W + 2p) | 1 dx (read_write) (N, C, H, W) | 2 params (uniform)
//           (conv2d's Params: n, ci = C, h = H, w = W, pad, reflect; ho, wo = the padded sizes)
// CPU reference: engine::ops::conv::conv2d::cpu_backward (dx), through conv2d::cpu_pad_fold.

const WG: u32 = 256u;

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, kh: u32, kw: u32, stride: u32,
    ho: u32, wo: u32, pad: u32, reflect: u32,
    has_bias: u32, chunk: u32, nchunks: u32, flip: u32,
    out_h: u32, out_w: u32, out_stride: u32, phase_y: u32,   // where output pixel (a, b) is stored (flip mode)
    phase_x: u32, wkh: u32, wkw: u32, wstride: u32,          // the stored kernel's size and stride (flip mode)
}

@group(0) @binding(0) var<storage, read>       dxpad: array<f32>;   // (N, C, H + 2p, W + 2p)
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;      // (N, C, H, W)
@group(0) @binding(2) var<uniform>             params: Params;

// The padded positions (shifted by p: indices into dxpad's axis) whose source is i; count in .w (1..3).
fn positions(i: i32, n: i32) -> vec4<i32> {
    let p = i32(params.pad);
    var t = vec4<i32>(i + p, 0, 0, 1);
    if (params.reflect == 1u) {
        if (i > 0 && i <= p) { t[t.w] = p - i; t.w = t.w + 1; }
        if (i < n - 1 && i >= n - 1 - p) { t[t.w] = p + 2 * (n - 1) - i; t.w = t.w + 1; }
    }
    return t;
}

@compute @workgroup_size(WG)
fn conv2d_pad_fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let hw = params.h * params.w;
    if (idx >= params.n * params.ci * hw) { return; }
    let plane = idx / hw;
    let i = i32((idx % hw) / params.w);
    let j = i32(idx % params.w);
    let ti = positions(i, i32(params.h));
    let tj = positions(j, i32(params.w));
    let base = plane * params.ho * params.wo;
    var acc = 0.0;
    for (var a = 0; a < ti.w; a = a + 1) {
        for (var b = 0; b < tj.w; b = b + 1) {
            acc = acc + dxpad[base + u32(ti[a]) * params.wo + u32(tj[b])];
        }
    }
    dx[idx] = acc;
}
