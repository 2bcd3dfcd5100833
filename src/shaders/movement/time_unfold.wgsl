// time_unfold.wgsl: the depth (time) axis of a 5-D tensor unfolded into channels — im2col along one axis —
// so that a 3-D convolution runs on conv2d's kernels (engine::ops::conv::conv3d).
//
// Math:     cols[n·Do + o, k·C + c, y, x] = x[n, c, o·s − p + k, y, x]   (0 when o·s − p + k ∉ [0, D))
//           for o < Do = (D + 2p − K)/s + 1, k < K: output frame o of a K-tap, stride-s, zero-padded
//           convolution along D sees its K input frames side by side as K·C channels.
// Threads:  one invocation per cols element (N·Do, K·C, H·W); WG = 256; folded. No loops; indices in range
//           by construction (trusted shaders).
// Bindings: 0 x (read) (N, C, D, H·W) | 1 cols (read_write) (N·Do, K·C, H·W) | 2 params (uniform)
// CPU reference: engine::ops::movement::time_unfold::cpu_unfold.  Backward: time_fold.wgsl (its adjoint).

const WG: u32 = 256u;

struct Params { n: u32, c: u32, d: u32, hw: u32, k: u32, s: u32, p: u32, d_out: u32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;      // (N, C, D, H·W)
@group(0) @binding(1) var<storage, read_write> cols: array<f32>;   // (N·Do, K·C, H·W)
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn time_unfold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    let kc = params.k * params.c;
    if (i >= params.n * params.d_out * kc * params.hw) { return; }
    let q = i % params.hw;
    let ch = (i / params.hw) % kc;
    let no = i / (params.hw * kc);          // n·Do + o
    let o = no % params.d_out;
    let n = no / params.d_out;
    let k = ch / params.c;
    let c = ch % params.c;
    let t = i32(o * params.s + k) - i32(params.p);
    var v = 0.0;
    if (t >= 0 && t < i32(params.d)) {
        v = x[((n * params.c + c) * params.d + u32(t)) * params.hw + q];
    }
    cols[i] = v;
}
