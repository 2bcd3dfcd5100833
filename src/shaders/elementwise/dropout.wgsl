// dropout.wgsl: inverted dropout with a counter-based random mask (no state, no atomics).
//
// Math:     keep(i) = pcg_hash(seed ^ pcg_hash(i)) >= threshold,   threshold = round(p · 2^32)
//           y[i] = keep(i) ? x[i] · scale : 0,   scale = 1 / (1 - p)   (expected value unchanged)
//           The same seed gives the same mask, so the gradient is this very kernel applied to dy with the
//           seed of the forward pass (a composition; no backward file).
// Threads:  one invocation per element; WG = 256; 2-D fold.
// Bindings: 0 x (read) (n) | 1 y (read_write) (n) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::dropout::cpu_forward (engine::rng::hash_u32 is the same hash).

const WG: u32 = 256u;

struct Params { n: u32, seed: u32, threshold: u32, scale: f32 }

@group(0) @binding(0) var<storage, read>       x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform>             params: Params;

// PCG hash (Jarzynski & Olano 2020); wrapping u32 arithmetic, identical on every backend and on the CPU.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let keep = pcg_hash(params.seed ^ pcg_hash(i)) >= params.threshold;
    y[i] = select(0.0, x[i] * params.scale, keep);
}
