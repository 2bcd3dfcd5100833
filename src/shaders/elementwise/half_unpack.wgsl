// half_unpack.wgsl: IEEE half precision values, two to a 32-bit word (half_pack.wgsl), back to float32.
//
// Math:     y[i] = f(w[i / 2] >> (16 · (i mod 2)) & 0xffff), f the binary16 value as float32 (exact: every half
//           is a float32; subnormals are m · 2^-24, NaN and infinities kept).
// Threads:  one invocation per element; WG = 256 invocations per workgroup; ceil(n / WG) workgroups folded into
//           2-D (engine/kernel.rs).
// Bindings: 0 w (ceil(n / 2), u32) | 1 y (n) | 2 params (uniform)
// CPU reference: engine::ops::elementwise::half::cpu_unpack.  Inverse of half_pack.wgsl on every half.

const WG: u32 = 256u;

struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read_write> w: array<u32>;   // (ceil(n / 2))
@group(0) @binding(1) var<storage, read_write> y: array<f32>;   // (n)
@group(0) @binding(2) var<uniform>             params: Params;

// The float32 value of the binary16 bits h.
fn half_value(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m · 2^-24, exact in float32; the sign set on the bits (keeps -0).
        return bitcast<f32>(sign | bitcast<u32>(ldexp(f32(m), -24)));
    }
    if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

@compute @workgroup_size(WG)
fn half_unpack(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (i >= params.n) { return; }
    let h = (w[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
    y[i] = half_value(h);
}
