// adam_find_overflow.wgsl: the loss scaler's check before an Adam step (PyTorch's
// _amp_foreach_non_finite_check_and_unscale_, the check half; adam.wgsl unscales as it reads): whether any
// gradient of a group of tensors, unscaled, is infinite or NaN (engine/ops/optim/loss_scale.rs).
//
// Math:     state[0] = 1 when some g[i] · 2^-e is not finite (e = state[3], the scale's exponent); else it is
//           left as it is (0 from adam_update_scale.wgsl's reset, or 1 from an earlier group).
// Layout:   adam.wgsl's: the group's tensors are ranges of the buffer bound below, listed in `table` from
//           entry `first`: entry j = (p_off, g_off, mv_off, start) (only g_off and start read here).
// Threads:  one invocation per element of the group's tensors; WG = 256; 2-D fold. The flag is an integer
//           atomic (every writer stores 1: the result does not depend on the order; no float atomics).
// Bindings: 0 g (read) (the buffer holding the group's gradients) | 1 table (read) (vec4<u32>) | 2 state
//           (read_write) (4 words: found, growth tracker, steps taken, exponent) | 3 params (uniform)
// CPU reference: engine::ops::optim::loss_scale::ScaleState::cpu_find.

const WG: u32 = 256u;

struct Params {
    n: u32,
    first: u32,
    count: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read>       g: array<f32>;
@group(0) @binding(1) var<storage, read>       table: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(3) var<uniform>             params: Params;

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
fn find_overflow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let entry = table_entry(i);
    let v = g[entry.y + i - entry.w] * ldexp(1.0, -bitcast<i32>(atomicLoad(&state[3])));
    // Infinity or NaN: the exponent bits all set (tested on the bits: no isinf / isnan in WGSL).
    if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) {
        atomicStore(&state[0], 1u);
    }
}
