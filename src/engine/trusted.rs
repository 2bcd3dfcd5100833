//! The one module of the crate allowed `unsafe` (the policy of `../shared/perf-notes.md`): shader modules
//! created without naga's runtime checks — the default, `SITSGPU_TRUSTED_SHADERS=0` turns the checks back on.
//!
//! By default wgpu compiles every WGSL module with runtime checks: each index into a workgroup or private
//! array is clamped into range, every loop gets an extra counter that breaks out of it after 2^64 trips
//! (naga's "loop bounding"), and every integer division and remainder is guarded against zero. Our kernels
//! never rely on any of them — every storage access is guarded by an explicit bounds test at the top of the
//! kernel or beside the access, workgroup arrays are indexed by values derived from the local invocation
//! index within their declared size, every loop has a bound taken from `Params`, and no divisor is zero for a
//! shape the Rust launcher accepts — so turning them off cannot change a result, only the instruction count.
//!
//! **Measured** (NVIDIA H200, Vulkan, the U-TAE paper training step B4 T40 128², `sitsgpu profile`, same run):
//! 287 ms with the checks, 205 ms without (−29 %); every kernel gained (the register-tiled convolution
//! 16.9 → 24.0 TFLOP/s, the group-norm weight gradient 15.2 → 4.9 ms, reduce_sum 7.6 → 3.4 ms), so the
//! unchecked modules are the default. **Reviewed** for it: every workgroup and private array index of every
//! shader stays within its declared size by construction (the tiled kernels' slab indices are written out
//! in their headers), every barrier sits in uniform control flow, every loop is bounded by `Params`.
//! A new shader must keep these properties (README, "adding an op").
//!
//! Both paths are tested: `cargo test` runs the default (unchecked) modules and `.ci/run` runs the GPU parity
//! and engine suites again with `SITSGPU_TRUSTED_SHADERS=0`.
//!
//! ## Review: the shaders with workgroup memory
//!
//! Every `var<workgroup>` of `src/shaders/`, checked for the two things unchecked modules and the WGSL barrier
//! rules rely on: each `workgroupBarrier()` is reached by all 256 invocations of the workgroup or by none
//! (uniform control flow: every early return before a barrier tests a workgroup-uniform value — the folded
//! workgroup index, a `Params` field — and every loop around a barrier has workgroup-uniform bounds), and
//! every index into the array is within its declared size (`lid` < 256 throughout). Reviewed for issue 13;
//! a new shader with workgroup memory adds its line here.
//!
//! - `matmul.wgsl` — `tile_a`, `tile_b`: 256 vec4. Barriers: the early return tests `wg ≥ splits · per_split`
//!   (uniform); the K loop runs `k_begin..k_end` of the workgroup's split. Indices: staging element
//!   `e = lid + 256 q < 1024` goes to `kk · 16 + mm / 4` with `mm < 64, kk < 16` (or `mm = e % 64,
//!   kk = e / 64` transposed) ≤ 255; reads `kk · 16 + ty`, `ty < 16`.
//! - `matmul_128.wgsl` — `tile_a`, `tile_b`: 256 vec4. Barriers as matmul.wgsl. Indices: `kk · 32 + mm / 4`
//!   with `mm < 128, kk < 8` ≤ 255; reads `kk · 32 + 16 + ty` ≤ 255.
//! - `half_matmul.wgsl` — `tile_a`, `tile_b`: 256 vec4. Barriers: the early return tests `wg ≥ batch ·
//!   tiles` (uniform); the K loop runs to `k_p` (`Params`). Indices as matmul.wgsl's (`mm = e / 16 < 64`,
//!   `kk = e % 16`; `nn = e % 64`, `kb = e / 64 < 16`). Its storage loads have no bounds test: the operands
//!   are padded to the tiles by their launcher (`half_matmul::gpu_forward_on` allocates batch · M_p · K_p and
//!   K_p · N_p halves and every index is below those), the stores test M and N.
//! - `half_matmul_coop.wgsl` and `half_matmul_coop8.wgsl` hold no workgroup memory. Their cooperative loads
//!   and stores read 16 × 16 (8 × 8) tiles at rows < M_p (or K_p) and columns < K_p (or N_p) of the padded
//!   operands and output their launcher allocates (M_p, N_p multiples of 64, K_p of 16, so whole tiles), so
//!   they stay in bounds without tests (a cooperative operation cannot be made conditional: it must stay in
//!   uniform control flow).
//! - `conv2d.wgsl` — `tile_w`: 256, `tile_x`: 512 vec4. Barriers: early return on `wg ≥ tiles_o · tiles_p`;
//!   loops over the `kH · kW` taps and over `C_in` in steps of 16 (`Params`). Indices: `tile_x[kk · 32 +
//!   col / 4]` with `kk = lid / 128 + 2 j < 16, col < 128` ≤ 511; `tile_w[kk · 16 + m / 4]` with
//!   `kk = lid / 64 + 4 j < 16, m < 64` ≤ 255; reads `kk · 16 + ty` and `kk · 32 + 16 + tx`.
//! - `conv2d_narrow.wgsl` — `tile_w`: 32, `tile_x`: 512 vec4. Barriers as conv2d.wgsl (the `kw0 < 8` test
//!   guards a store, not a barrier). Indices: `tile_x[kk · 64 + lid / 4]`, `kk < 8` ≤ 511;
//!   `tile_w[kw0 · 4 + m / 4]`, `kw0 < 8, m < 16` ≤ 31; reads `kk · 4 + ty` (`ty < 4`), `kk · 64 + tx`
//!   (`tx < 64`).
//! - `conv2d_backward_weight.wgsl` — `tile_dy`, `tile_x`: 256 vec4. Barriers: early return on
//!   `wg ≥ nchunks · tiles`; the pixel loop `p_begin..p_end` of the workgroup's slice. Indices:
//!   `pp · 16 + row / 4` with `pp < 16, row = lid / 16 + 16 j < 64` ≤ 255; reads `pp · 16 + r0`,
//!   `pp · 16 + tx`, both < 256.
//! - `conv2d_backward_weight_narrow.wgsl` — `tile_dy`: 64 vec4, `tile_x`: 1024 f32. Barriers as
//!   conv2d_backward_weight.wgsl. Indices: `tile_dy[pp · 4 + r0 / 4]`, `r0 = lid / 16 < 16` ≤ 63;
//!   `tile_x[pp · 64 + row]`, `row < 64` ≤ 1023; reads `pp · 4 + ty` (`ty < 4`), `pp · 64 + tx` (`tx < 64`).
//! - `group_norm.wgsl`, `group_norm_backward_input.wgsl` — `red`: 256 f32. Barriers: `wg_sum` is called by
//!   every invocation after the uniform early return on `row ≥ N · G`, outside the strided loops (whose trip
//!   counts differ per invocation but hold no barrier). Indices: `red[lid + h]` only for `lid < h ≤ 128`.
//! - `group_norm_backward_weight.wgsl`, `batch_norm_stats.wgsl`, `channel_sum.wgsl` — `red`: 256 vec2 / f32. Barriers:
//!   `lane_sum` sits outside every loop and every `live` test (lanes past C add 0 but still reach the
//!   barrier); the early returns test `phase`, `mode`, `nslices` (`Params`) and the workgroup index.
//!   Indices: `red[lid + h · tc]` only for `lid < h · tc ≤ 128`; `red[lid % tc]`; `tc` a power of two ≤ 32
//!   (`ChannelSlices`). Outputs: with no values (`N · S = 0`) no workgroup runs, so the host clears the
//!   weight gradients (`group_norm::gpu_affine_grads`) and the sums (`reduce_sum::gpu_channel_sum`).
//! - `half_conv.wgsl`, `half_conv_dw.wgsl` — `tile_a`, `tile_b`: 256 vec4. Barriers as half_matmul.wgsl's
//!   (early return on `wg ≥ frames · tiles`, the K loop to `k_p`). Indices: the forward's B slab
//!   `tile_b[(kb + 4 q) · 16 + nn / 4]`, `kb = lid / 64 < 4, q < 4, nn < 64` ≤ 255, its A as
//!   half_matmul.wgsl's; the weight gradient's A slab `tile_a[kk · 16 + mm / 4 + 4 q]`, `kk < 16,
//!   mm = lid / 16 < 16, q < 4` ≤ 255, its B as half_matmul.wgsl's. The packed operand (A, or the
//!   gradient's B) is padded by its launcher as half_matmul's; the input is read only where `staged` found
//!   the tap inside the image.
//! - `half_conv_coop.wgsl`, `half_conv_dw_coop.wgsl` — `stage`: 8,192 f16, 8 slots of `SLAB` = 1,024 (one
//!   per subgroup: `slot = subgroup_id · SLAB`, `subgroup_id < 64 / size ≤ 8` because the host runs them
//!   only where the adapter's subgroups have 8 invocations or more, `conv2d::mixed::in_tiles_kernel`).
//!   Barriers: no early return (a surplus subgroup recomputes the last block); the K loop's bound is
//!   `k_p`. Indices: the forward's `slot + kk · 64 + 2 cp + 1`, `kk < 16, cp < 32`, and its `coopLoadT` of
//!   16 rows of stride 64 from `slot + 48` reach `slot + 1023`; the weight gradient's `slot + mm · 16 + kk`,
//!   `mm < 64, kk < 16`, the same. `half_conv_coop8.wgsl`, `half_conv_dw_coop8.wgsl`: 4,096 f16, 16
//!   slots of 256 (subgroups of 4 or more), `kk < 8, cp < 16` (stride 32) or `mm < 32, kk < 8`: within
//!   `slot + 255`.
//! - `segment_argmax.wgsl` — `best_v`, `best_i`: 64 f32 / u32 (workgroups of 64, not 256). Barriers: the
//!   early return tests the folded workgroup index against `n_segments` (uniform); the member loop before the
//!   first barrier holds none; the halving loop's bounds are constants. Indices: `best_*[lid]` and
//!   `best_*[lid + stride]` only for `lid < stride ≤ 32`, all < 64. Outputs: one `out[s]` per segment, written
//!   by invocation 0 (a segment without candidate gets the sentinel), so nothing is left unwritten.
//!
//! The accumulators of the tiled kernels are `var<private>` vec4s (zero-initialised per invocation by WGSL)
//! indexed by constants or by loop counters below 4. The other shaders hold no workgroup or private arrays;
//! their storage accesses are guarded where they are made.

#![allow(unsafe_code)]

/// Whether modules are created without runtime checks: yes unless `SITSGPU_TRUSTED_SHADERS=0`.
pub fn enabled() -> bool {
    std::env::var("SITSGPU_TRUSTED_SHADERS").map_or(true, |v| v != "0")
}

/// Compiles `source` with naga's runtime checks off (see the module doc for why that is sound here).
pub fn create_module(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    // SAFETY: wgpu requires that the shader performs no out-of-bounds access, no unbounded loop and no
    // division by zero once the checks are gone. Every kernel of the crate bounds-checks its storage
    // accesses explicitly, indexes its workgroup arrays within their size, bounds its loops by `Params`
    // values, and divides only by sizes the launchers assert to be non-zero (module doc); the checked path
    // tests each of them against the CPU reference.
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
}

/// wgpu's token for its experimental features: enabled only for the cooperative-matrix products
/// (`engine::ops::linalg::half_matmul`), which the user turns on with `SITSGPU_COOPERATIVE_MATRIX=1`.
///
/// Not measured yet on a GPU (no device was lent when it was written), so off by default as this module's
/// policy asks of an unmeasured gain; `benches/device/run.sh` turns it on and measures it beside the f16
/// tiles. Both kernels run in CI on Mesa's lavapipe, whose cooperative matrices emulate the matrix units on
/// the CPU (`.ci/coop-lavapipe`). The kernel is checked against the CPU reference on the device before its first use
/// (`half_matmul::path_self_test`), and falls back to the f16 tiles if it disagrees.
pub fn experimental_features(cooperative_matrix: bool) -> wgpu::ExperimentalFeatures {
    if cooperative_matrix {
        // SAFETY: wgpu warns that its experimental features may contain bugs that are undefined behaviour
        // when used incorrectly. We use one (cooperative matrices) in the products half_matmul_coop.wgsl
        // and half_matmul_coop8.wgsl (the same product on 16 × 16 or 8 × 8 tiles) and in the implicit
        // convolutions half_conv(_dw)_coop(8).wgsl, whose every load and store stays inside the padded
        // operands and outputs their launchers allocate (half_matmul::gpu_forward_on,
        // conv2d::mixed::gpu_in_tiles) or inside their slot of workgroup memory (the module doc), in uniform
        // control flow (naga checks it), and whose results are compared with the CPU reference (the
        // products) or with the unfolded copy's bits (the convolutions) on the device before use.
        unsafe { wgpu::ExperimentalFeatures::enabled() }
    } else {
        wgpu::ExperimentalFeatures::disabled()
    }
}
