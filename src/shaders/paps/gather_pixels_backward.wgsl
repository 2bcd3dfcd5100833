// gather_pixels_backward.wgsl: gradient of gather_pixels as a gather over an inverse index (no atomics):
// every input element sums the output gradients of the list entries that picked its pixel.
//
// Math:     dx[b, c, p] = Σ_{m ∈ picks(b·H·W + p)} dy[m, c], picks(q) = list[offsets[q] .. offsets[q + 1]]
//           (the entries m with pix[m] = q, increasing: the CPU reference's summation order)
// Threads:  one invocation per input element (B·C·H·W), WG = 256, 2-D fold; the loop over a pixel's picks is
//           bounded by min(offsets[q + 1], Params.m), and list entries are < M (built by the launcher).
// Bindings: 0 dy (read) (M, C) | 1 offsets (read) u32 (B·H·W + 1) | 2 list (read) u32 (M)
//           | 3 dx (read_write) (B, C, H, W) | 4 params (uniform)
// CPU reference: engine::ops::paps::gather_pixels::cpu_backward.

const WG: u32 = 256u;

struct Params { m: u32, c: u32, hw: u32, n_pixels: u32 }

@group(0) @binding(0) var<storage, read>       dy: array<f32>;        // (M, C)
@group(0) @binding(1) var<storage, read>       offsets: array<u32>;   // (B·H·W + 1)
@group(0) @binding(2) var<storage, read>       list: array<u32>;      // (M)
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;        // (B, C, H, W)
@group(0) @binding(4) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn gather_pixels_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + (wid.y + wid.z * nwg.y) * nwg.x) * WG + lid;
    if (e >= params.n_pixels * params.c) { return; }
    let p = e % params.hw;
    let c = (e / params.hw) % params.c;
    let b = e / (params.hw * params.c);
    let q = b * params.hw + p;
    let end = min(offsets[q + 1u], params.m);
    var acc = 0.0;
    for (var j = offsets[q]; j < end; j = j + 1u) {
        acc = acc + dy[list[j] * params.c + c];
    }
    dx[e] = acc;
}
