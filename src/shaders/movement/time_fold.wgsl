// time_fold.wgsl: the adjoint of time_unfold.wgsl — col2im along the depth (time) axis, as a gather. It is
// both time_unfold's backward and the last step of a 3-D transposed convolution on conv2d's kernels
// (engine::ops::conv::conv3d), where it sums each output frame's contributions.
//
// Math:     y[n, c, t, y, x] = Σ cols[n·Do + o, k·C + c, y, x] over the (o, k) with o·s − p + k = t,
//           o < Do, k < K: o = (t + p − k)/s for each k whose division is exact.
// Threads:  one invocation per y element (N, C, D, H·W) — it owns it: no atomics, a fixed order (k
//           ascending); WG = 256; folded. The loop runs K times (K = params.k, the kernel depth).
// Bindings: 0 cols (read) (N·Do, K·C, H·W) | 1 y (read_write) (N, C, D, H·W) | 2 params (uniform)
// CPU reference: engine::ops::movement::time_unfold::cpu_fold.  Backward: time_unfold.wgsl.

const WG: u32 = 256u;

struct Params { n: u32, c: u32, d: u32, hw: u32, k: u32, s: u32, p: u32, d_out: u32 }

@group(0) @binding(0) var<storage, read>       cols: array<f32>;   // (N·Do, K·C, H·W)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;      // (N, C, D, H·W)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn time_fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n * params.c * params.d * params.hw) { return; }
    let q = i % params.hw;
    let t = (i / params.hw) % params.d;
    let c = (i / (params.hw * params.d)) % params.c;
    let n = i / (params.hw * params.d * params.c);
    let kc = params.k * params.c;
    var acc = 0.0;
    for (var k = 0u; k < params.k; k = k + 1u) {
        let num = i32(t + params.p) - i32(k);
        if (num < 0 || num % i32(params.s) != 0) { continue; }
        let o = u32(num) / params.s;
        if (o >= params.d_out) { continue; }
        acc = acc + cols[((n * params.d_out + o) * kc + k * params.c + c) * params.hw + q];
    }
    y[i] = acc;
}
