// adam.wgsl: one Adam step over a group of parameter tensors in one launch (multi-tensor), with
// torch.optim.Adam's exact operation order per element (single-tensor arithmetic, amsgrad off, L2 weight decay
// added to the gradient).
//
// Math:     g' = g + weight_decay · p
//           m  = m + (1 - β1) · (g' - m)               (torch's lerp_(g', 1 - β1), weight < 0.5 branch)
//           v  = β2 · v + ((1 - β2) · g') · g'          (mul_(β2).addcmul_(g', g', value = 1 - β2))
//           p  = p + ((-step_size) · m) / (sqrt(v) / bc2_sqrt + eps)    (addcdiv_)
//           with step_size = lr / (1 - β1^t) and bc2_sqrt = sqrt(1 - β2^t) computed on the host in f64.
//           With loss scaling (`scaled`, --precision mixed: engine/ops/optim/loss_scale.rs) g is the scaled
//           gradient and the step reads the scaler's state: nothing changes when the step found an overflow
//           (state[0], set by adam_find_overflow.wgsl), else g is first unscaled, g · 2^-e (PyTorch's
//           unscale_, exact: a power of two), and the step is the device's count of steps taken + 1,
//           t = state[2] + 1, whose host-computed step_size and bc2_sqrt are bias[t - 1] (no readback: the
//           host cannot know which steps were skipped).
// Layout:   the group's tensors are ranges of the buffers bound below, listed in `table` from entry `first`:
//           entry j = (p_off, g_off, mv_off, start) in f32 elements, tensor j's elements being invocations
//           start_j ≤ i < start_{j+1}; entry first + count is a sentinel whose start is n. A single tensor is
//           a group of one (offsets 0 when its own ranges are bound).
// Threads:  one invocation per element of the group's tensors, concatenated; WG = 256; 2-D fold. Invocation i
//           finds its tensor by binary search over the starts (no float atomics: each element is written by
//           exactly one invocation).
// Bindings: 0 p (read_write) (the buffer holding the group's parameters) | 1 g (read) (their gradients')
//           | 2 m (read_write) | 3 v (read_write) (the optimizer's moment bank) | 4 table (read)
//           (entries, vec4<u32>) | 5 state (read) (the loss scaler's 4 words: found, growth tracker, steps
//           taken, exponent e) | 6 bias (read) (vec2<f32> (step_size, bc2_sqrt) of steps 1, 2, ...; both 5 and
//           6 are any buffer, unread, without loss scaling) | 7 params (uniform)
// CPU reference: engine::ops::optim::adam::cpu_step (per tensor; the grouping is layout only).

const WG: u32 = 256u;

struct Params {
    n: u32,
    first: u32,
    count: u32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    scaled: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read>       g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read>       table: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read>       state: array<u32>;
@group(0) @binding(6) var<storage, read>       bias: array<vec2<f32>>;
@group(0) @binding(7) var<uniform>             params: Params;

// The table entry of invocation i: table[lo] with table[lo].w <= i < table[lo + 1].w (binary search over
// entries first .. first + count).
fn table_entry(i: u32) -> vec4<u32> {
    var lo = params.first;
    var hi = params.first + params.count;
    loop {
        if (hi - lo <= 1u) { break; }
        let mid = (lo + hi) / 2u;
        if (table[mid].w <= i) { lo = mid; } else { hi = mid; }
    }
    return table[lo];
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    var step_size = params.step_size;
    var bc2_sqrt = params.bc2_sqrt;
    let entry = table_entry(i);
    let e = i - entry.w;
    let pi = entry.x + e;
    let mi = entry.z + e;
    var gv = g[entry.y + e];
    if (params.scaled != 0u) {
        if (state[0] != 0u) { return; }               // an overflow: PyTorch's scaler skips the step
        let bc = bias[state[2]];
        step_size = bc.x;
        bc2_sqrt = bc.y;
        gv = gv * ldexp(1.0, -bitcast<i32>(state[3]));
    }
    let grad = gv + params.weight_decay * p[pi];
    let m1 = m[mi] + params.one_minus_beta1 * (grad - m[mi]);
    let v1 = v[mi] * params.beta2 + (params.one_minus_beta2 * grad) * grad;
    m[mi] = m1;
    v[mi] = v1;
    let denom = sqrt(v1) / bc2_sqrt + params.eps;
    p[pi] = p[pi] + (-step_size * m1) / denom;
}
