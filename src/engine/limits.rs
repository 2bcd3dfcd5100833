//! Which device limits the engine asks wgpu for: the adapter's own (the default) or WebGPU's defaults
//! (`SITSGPU_LIMITS=webgpu`), the weakest limits any WebGPU adapter must offer.
//!
//! By default [`Gpu`](crate::engine::gpu::Gpu) requests the adapter's own limits, so that big storage bindings
//! and large workgroup counts are there where the hardware has them. A user's GPU may offer no more than
//! WebGPU's defaults ([`wgpu::Limits::defaults`], the same numbers as the WebGPU specification's "default"
//! column), among them:
//!
//! | limit | WebGPU default | lavapipe (this project's CI adapter) |
//! | --- | --- | --- |
//! | `max_storage_buffer_binding_size` | 128 MiB | 128 MiB |
//! | `max_buffer_size` | 256 MiB | 2 GiB |
//! | `max_storage_buffers_per_shader_stage` | 8 | 32 |
//! | `max_compute_workgroup_storage_size` | 16 KiB | 32 KiB |
//! | `max_compute_invocations_per_workgroup` | 256 | 1024 |
//! | `max_compute_workgroups_per_dimension` | 65,535 | 65,535 |
//! | `min_uniform_buffer_offset_alignment` | 256 bytes | 32 bytes |
//!
//! `SITSGPU_LIMITS=webgpu` requests exactly those defaults, whatever the adapter offers, so a test run under it
//! proves the engine on the weakest adapter a user may have (`.ci/run` runs the GPU parity, engine and
//! whole-model tests that way). Everything in the engine that depends on a limit reads the **device's**
//! limits ([`Gpu::limits`](crate::engine::gpu::Gpu::limits), what the device was created with), never the
//! adapter's: the 2-D dispatch fold (`engine::kernel`), the storage-binding check (`engine::storage`), the
//! uniform arena's alignment (`engine::gpu`).
//!
//! Every kernel of the crate fits WebGPU's defaults on its own — at most 8 storage buffers, 16 KiB of
//! workgroup memory and 256 invocations per workgroup — which the naga tests of `engine::kernels` check
//! without a GPU (wgpu does not check workgroup memory against the limit when it creates a pipeline, so no
//! run on a generous adapter would notice a kernel over 16 KiB).

use crate::engine::error::{Error, Result};

/// The environment variable choosing the limits.
pub const ENV: &str = "SITSGPU_LIMITS";

/// Which limits the device is requested with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsMode {
    /// The adapter's own limits (the default; `SITSGPU_LIMITS` unset, empty or `adapter`).
    Adapter,
    /// WebGPU's default limits, [`wgpu::Limits::defaults`] (`SITSGPU_LIMITS=webgpu`).
    WebGpuDefaults,
}

impl LimitsMode {
    /// The mode `SITSGPU_LIMITS` asks for; an error naming the variable for any other value.
    pub fn from_env() -> Result<LimitsMode> {
        LimitsMode::parse(std::env::var(ENV).ok().as_deref())
    }

    /// The mode a value of `SITSGPU_LIMITS` asks for (`None`: unset).
    pub fn parse(value: Option<&str>) -> Result<LimitsMode> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("adapter") => Ok(LimitsMode::Adapter),
            Some("webgpu") => Ok(LimitsMode::WebGpuDefaults),
            Some(_) => Err(Error::Invalid(format!(
                "{ENV}={:?}: expected `webgpu` (WebGPU's default limits) or `adapter` (the adapter's own, \
                 the default)",
                value.unwrap_or_default()
            ))),
        }
    }

    /// The limits to request from an adapter offering `adapter`.
    pub fn required(self, adapter: &wgpu::Limits) -> wgpu::Limits {
        match self {
            LimitsMode::Adapter => adapter.clone(),
            LimitsMode::WebGpuDefaults => wgpu::Limits::defaults(),
        }
    }

    /// One line for `sitsgpu info`.
    pub fn describe(self) -> &'static str {
        match self {
            LimitsMode::Adapter => {
                "the adapter's own (SITSGPU_LIMITS=webgpu requests WebGPU's defaults)"
            }
            LimitsMode::WebGpuDefaults => {
                "WebGPU's defaults (SITSGPU_LIMITS=webgpu), not the adapter's own"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_parses_and_rejects_unknown_values() {
        assert_eq!(LimitsMode::parse(None).unwrap(), LimitsMode::Adapter);
        assert_eq!(LimitsMode::parse(Some("")).unwrap(), LimitsMode::Adapter);
        assert_eq!(
            LimitsMode::parse(Some("adapter")).unwrap(),
            LimitsMode::Adapter
        );
        assert_eq!(
            LimitsMode::parse(Some("WebGPU")).unwrap(),
            LimitsMode::WebGpuDefaults
        );
        let err = LimitsMode::parse(Some("webgpu2")).unwrap_err().to_string();
        assert!(
            err.contains("SITSGPU_LIMITS") && err.contains("webgpu2"),
            "{err}"
        );
    }

    #[test]
    fn webgpu_mode_requests_the_webgpu_specification_defaults() {
        // The numbers of the WebGPU specification's limit table ("default" column), written out so that a
        // wgpu release changing `Limits::defaults` is noticed here.
        let generous = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 32,
            max_compute_workgroup_storage_size: 32 << 10,
            ..wgpu::Limits::defaults()
        };
        let l = LimitsMode::WebGpuDefaults.required(&generous);
        assert_eq!(l.max_storage_buffer_binding_size, 128 << 20);
        assert_eq!(l.max_buffer_size, 256 << 20);
        assert_eq!(l.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(l.max_uniform_buffers_per_shader_stage, 12);
        assert_eq!(l.max_uniform_buffer_binding_size, 64 << 10);
        assert_eq!(l.max_compute_workgroup_storage_size, 16 << 10);
        assert_eq!(l.max_compute_invocations_per_workgroup, 256);
        assert_eq!(
            (
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z
            ),
            (256, 256, 64)
        );
        assert_eq!(l.max_compute_workgroups_per_dimension, 65535);
        assert_eq!(l.min_uniform_buffer_offset_alignment, 256);
        assert_eq!(l.max_bind_groups, 4);
        assert_eq!(LimitsMode::Adapter.required(&generous), generous);
    }
}
