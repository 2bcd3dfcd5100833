//! Where a tensor's numbers live: host memory (the CPU reference backend) or a GPU storage buffer.
//!
//! Uploads go through a staging buffer copied inside the pending command encoder (ordered after earlier
//! kernels); readback copies into a `MAP_READ` staging buffer, submits, waits and maps it (`Gpu::read_buffer`).
//! Storage is mutable in place only through [`Storage::write`] (the optimizer updates parameters in place).

use std::sync::RwLock;

use crate::engine::error::{raise_too_large, TensorTooLarge};
use crate::engine::gpu::Gpu;
use crate::engine::pool::{BufSlice, PooledBuffer};

/// Which backend a tensor is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Host memory; ops run the plain-Rust CPU reference.
    Cpu,
    /// The process GPU; ops run WGSL kernels.
    Gpu,
}

/// A tensor's data: `numel` f32 values, row-major.
pub enum Storage {
    /// Host memory.
    Cpu(RwLock<Vec<f32>>),
    /// A range of a pooled GPU buffer (at least `4 * numel` bytes).
    Gpu(GpuStorage),
}

/// GPU storage: the buffer and the context it belongs to.
pub struct GpuStorage {
    /// The pooled buffer.
    pub buf: PooledBuffer,
    /// The context.
    pub gpu: &'static Gpu,
}

impl GpuStorage {
    /// Uninitialised (recycled) storage for `numel` f32 values. Over the device's maximum storage binding it
    /// raises [`TensorTooLarge`] (`op` names who asked), which the nearest
    /// [`catch_too_large`](crate::engine::error::catch_too_large) turns into an error.
    pub fn alloc(gpu: &'static Gpu, numel: usize, op: &str) -> Self {
        let bytes = 4 * numel as u64;
        let max = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        if bytes > max {
            raise_too_large(TensorTooLarge {
                op: op.to_string(),
                numel,
                max_bytes: max,
            });
        }
        GpuStorage {
            buf: gpu.pooled(bytes),
            gpu,
        }
    }

    /// Its range in the pool's segment.
    pub fn buffer(&self) -> BufSlice<'_> {
        self.buf.buffer()
    }
}

impl Storage {
    /// The backend.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(_) => Device::Gpu,
        }
    }

    /// Copies the first `numel` values to the host (GPU: submit, wait, map).
    pub fn to_vec(&self, numel: usize) -> Vec<f32> {
        match self {
            Storage::Cpu(v) => v.read().unwrap()[..numel].to_vec(),
            Storage::Gpu(g) => {
                let bytes = g.gpu.read_buffer(g.buffer(), 4 * numel as u64);
                bytemuck::cast_slice(&bytes).to_vec()
            }
        }
    }

    /// Overwrites the values in place (same length).
    pub fn write(&self, data: &[f32]) {
        match self {
            Storage::Cpu(v) => {
                let mut v = v.write().unwrap();
                assert_eq!(v.len(), data.len(), "Storage::write: length mismatch");
                v.copy_from_slice(data);
            }
            Storage::Gpu(g) => g.gpu.write_buffer(g.buffer(), bytemuck::cast_slice(data)),
        }
    }

    /// The GPU storage; panics (naming `op`) if this is host storage.
    pub fn gpu(&self, op: &str) -> &GpuStorage {
        match self {
            Storage::Gpu(g) => g,
            Storage::Cpu(_) => panic!("{op}: expected a GPU tensor, got a CPU tensor"),
        }
    }
}
