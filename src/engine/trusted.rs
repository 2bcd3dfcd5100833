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
