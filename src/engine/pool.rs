//! The buffer pool: storage buffers are recycled by size, so that a training loop that allocates the same
//! shapes every step reuses the same buffers and GPU memory stays flat over thousands of steps.
//!
//! A tensor's GPU storage is a [`PooledBuffer`]; when it is dropped the `wgpu::Buffer` goes back to the pool
//! under its (rounded) byte size and the next request of that size takes it. Reuse is safe without waiting:
//! every later use of the buffer is recorded after every earlier use in the same queue, and uploads go
//! through the pending encoder (see `Gpu::write_buffer`), so wgpu orders them.
//!
//! Counters ([`PoolStats`]) expose what is live (held by tensors) and what is idle (in the pool).
//!
//! **Stale reads.** A recycled buffer holds whatever its last tensor left there, a new one is zeroed by wgpu:
//! a kernel that reads an element no kernel wrote would compute with stale data on some runs and zeros on
//! others. Every op writes each element of the storage it allocates (or clears it first); the debug mode
//! `SITSGPU_POISON_POOL=1` ([`poison_enabled`]) checks that empirically: every buffer the pool hands out, new
//! or reused, is first filled with NaN (`Gpu::pooled` allocates and poisons; the pool knows no GPU), so a stale read shows up as NaN in the GPU parity
//! and whole-model checks (`.ci/run` runs the whole-model checks once in that mode).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Every storage buffer gets these usages: bound by kernels, filled by copies, read back by copies.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Buffer sizes are rounded up to this many bytes (also wgpu's copy alignment is 4).
pub const SIZE_ALIGN: u64 = 16;

/// Pool counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers held by live tensors.
    pub live_buffers: usize,
    /// Bytes held by live tensors.
    pub live_bytes: u64,
    /// Idle buffers waiting in the pool.
    pub idle_buffers: usize,
    /// Bytes of idle buffers.
    pub idle_bytes: u64,
    /// Buffers ever created through the pool (a cache miss each).
    pub created_buffers: usize,
}

/// Size-keyed free lists of storage buffers.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

impl BufferPool {
    /// A buffer of at least `bytes` bytes (rounded up to [`SIZE_ALIGN`], at least one unit), reused if one
    /// of that size is idle.
    pub fn take(&self, device: &wgpu::Device, bytes: u64) -> (wgpu::Buffer, u64) {
        let size = bytes.max(1).div_ceil(SIZE_ALIGN) * SIZE_ALIGN;
        let mut inner = self.inner.lock().unwrap();
        inner.stats.live_buffers += 1;
        inner.stats.live_bytes += size;
        if let Some(buf) = inner.free.get_mut(&size).and_then(|v| v.pop()) {
            inner.stats.idle_buffers -= 1;
            inner.stats.idle_bytes -= size;
            return (buf, size);
        }
        inner.stats.created_buffers += 1;
        drop(inner);
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sitsgpu tensor"),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        });
        (buf, size)
    }

    /// Returns a buffer taken with [`BufferPool::take`].
    pub fn give_back(&self, buf: wgpu::Buffer, size: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.stats.live_buffers -= 1;
        inner.stats.live_bytes -= size;
        inner.stats.idle_buffers += 1;
        inner.stats.idle_bytes += size;
        inner.free.entry(size).or_default().push(buf);
    }

    /// Drops every idle buffer (frees GPU memory after, say, a change of batch shapes).
    pub fn trim(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.free.clear();
        inner.stats.idle_buffers = 0;
        inner.stats.idle_bytes = 0;
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().unwrap().stats
    }
}

/// A storage buffer that goes back to the pool when dropped.
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    size: u64,
    pool: &'static BufferPool,
}

/// Whether every pooled buffer is filled with NaN before use: `SITSGPU_POISON_POOL=1` (read once).
pub fn poison_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SITSGPU_POISON_POOL").is_ok_and(|v| v == "1"))
}

impl PooledBuffer {
    /// Takes a buffer of at least `bytes` bytes from `pool` (creating it on `device` when none is idle).
    /// Kernels allocate through `Gpu::pooled`, which also poisons it in poison mode ([`poison_enabled`]).
    pub fn new(pool: &'static BufferPool, device: &wgpu::Device, bytes: u64) -> Self {
        let (buf, size) = pool.take(device, bytes);
        PooledBuffer {
            buf: Some(buf),
            size,
            pool,
        }
    }

    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }

    /// Its size in bytes (rounded up).
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give_back(buf, self.size);
        }
    }
}
