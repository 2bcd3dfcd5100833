// upsample_bilinear_backward.wgsl: gradient of upsample_bilinear with respect to x, as a gather.
//
// Math:     dx[n, c, iy, ix] = Σ_oy Σ_ox wy(oy, iy) · wx(ox, ix) · dy[n, c, oy, ox], where w(o, i) is the
//           weight output o gives input i in the forward pass: (1 − λ) if i = i0(o), plus λ if i = i1(o)
//           (same taps() as upsample_bilinear.wgsl).
// Threads:  one invocation per input element (N·C·H·W), WG = 256, folded. Output o can read input i only
//           if i0(o) ∈ {i − 1, i}, i.e. src(o) ∈ [i − 1, i + 1), i.e. o ∈ [(i − 0.5)/r − 0.5, (i + 1.5)/r − 0.5);
//           each invocation scans that window widened by at least 1 on each side (slack for the float
//           division; the exact weights are recomputed by taps(), so extra candidates add 0) and owns its dx
//           element (no atomics).
// Bindings: 0 dy (read) (N, C, OH, OW) | 1 dx (read_write) (N, C, H, W) | 2 params (uniform)
// CPU reference: engine::ops::pool::upsample_bilinear::cpu_backward (a scatter; the sums agree up to rounding order).

const WG: u32 = 256u;

struct Params { nc: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, scale_h: f32, scale_w: f32, _pad0: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;  // (N, C, OH, OW)
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;  // (N, C, H, W)
@group(0) @binding(2) var<uniform>             params: Params;

struct Taps { i0: u32, i1: u32, lambda: f32 }

fn taps(o: u32, scale: f32, len: u32) -> Taps {
    let src = max((f32(o) + 0.5) * scale - 0.5, 0.0);
    let i0 = min(u32(src), len - 1u);
    return Taps(i0, min(i0 + 1u, len - 1u), src - f32(i0));
}

// Weight output o gives input i along one axis.
fn weight(o: u32, i: u32, scale: f32, len: u32) -> f32 {
    let t = taps(o, scale, len);
    return select(0.0, 1.0 - t.lambda, t.i0 == i) + select(0.0, t.lambda, t.i1 == i);
}

// Candidate outputs [lo, hi) for input i (see the header).
fn window(i: u32, scale: f32, out_len: u32) -> vec2<u32> {
    let lo = max(floor((f32(i) - 0.5) / scale - 0.5) - 1.0, 0.0);
    let hi = min(ceil((f32(i) + 1.5) / scale - 0.5) + 2.0, f32(out_len));
    return vec2<u32>(u32(lo), u32(max(hi, lo)));
}

@compute @workgroup_size(WG)
fn upsample_bilinear_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.nc * params.in_h * params.in_w) { return; }
    let ix = i % params.in_w;
    let iy = (i / params.in_w) % params.in_h;
    let plane = (i / (params.in_w * params.in_h)) * params.out_h * params.out_w;
    let wy_range = window(iy, params.scale_h, params.out_h);
    let wx_range = window(ix, params.scale_w, params.out_w);
    var acc = 0.0;
    for (var oy = wy_range.x; oy < wy_range.y; oy = oy + 1u) {
        let wy = weight(oy, iy, params.scale_h, params.in_h);
        if (wy == 0.0) { continue; }
        var row = 0.0;
        for (var ox = wx_range.x; ox < wx_range.y; ox = ox + 1u) {
            row = row + weight(ox, ix, params.scale_w, params.in_w) * dy[plane + oy * params.out_w + ox];
        }
        acc = acc + wy * row;
    }
    dx[i] = acc;
}
