//! The one module of the crate allowed `unsafe` (the policy of `../shared/perf-notes.md`): shader modules
//! created without naga's runtime checks, opt-in with `SITSGPU_TRUSTED_SHADERS=1`.
//!
//! By default wgpu compiles every WGSL module with runtime checks: each index into a workgroup or private
//! array is clamped into range, every loop gets an extra counter that breaks out of it after 2^64 trips
//! (naga's "loop bounding"), and every integer division and remainder is guarded against zero. Our kernels
//! never rely on any of them — every storage access is guarded by an explicit bounds test at the top of the
//! kernel or beside the access, workgroup arrays are indexed by values derived from the local invocation
//! index within their declared size, every loop has a bound taken from `Params`, and no divisor is zero for a
//! shape the Rust launcher accepts — so turning them off cannot change a result, only the instruction count.
//!
//! Every kernel is tested through the checked path (the default, which `cargo test` uses); `.ci/run` runs the
//! GPU parity suite once more with this switch on. The measured gain is recorded in `benches/README.md`.

#![allow(unsafe_code)]

/// Whether `SITSGPU_TRUSTED_SHADERS=1` asks for modules without runtime checks.
pub fn requested() -> bool {
    std::env::var("SITSGPU_TRUSTED_SHADERS").is_ok_and(|v| v == "1")
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
