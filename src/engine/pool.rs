//! The buffer pool: storage buffers are recycled by size, so that a training loop that allocates the same
//! shapes every step reuses the same buffers and GPU memory stays flat over thousands of steps.
//!
//! A tensor's GPU storage is a [`PooledBuffer`]; when it is dropped the `wgpu::Buffer` goes back to the pool
//! under its (rounded) byte size and the next request of that size takes it. Reuse is safe without waiting:
//! every later use of the buffer is recorded after every earlier use in the same queue, and uploads go
//! through the pending encoder (see `Gpu::write_buffer`), so wgpu orders them.
//!
//! **Size classes.** Requests are rounded up to a size class: 16-byte steps up to 64 KiB, then eight classes
//! per power of two (at most 12.5 % more than asked). A training step allocates hundreds of distinct sizes
//! (every layer's activations and gradients); with exact sizes, the buffers freed in the backward pass could
//! only serve their own size again and the pool would hoard one idle buffer per size on top of the live ones.
//! Classes let a freed buffer serve every nearby size, and a request with no idle buffer of its class takes
//! the smallest idle one up to [`REUSE_SLACK`] times larger before a new one is created. The class never exceeds the largest binding the device
//! allows (`max` in [`BufferPool::take`]).
//!
//! **Budget.** [`BufferPool::set_budget`] bounds live + idle bytes: when a new buffer would cross it, idle
//! buffers are released first (trimming under pressure). Live bytes above the budget are not refused here —
//! the caller sized its batches from a measured peak (`train::memory`); the budget only stops idle hoarding.
//!
//! Counters ([`PoolStats`]) expose what is live (held by tensors) and what is idle (in the pool), and the
//! high-water marks since [`BufferPool::reset_peak`]: `peak_live_bytes` (what tensors held at once, PyTorch's
//! `max_memory_allocated`) and `peak_bytes` (live + idle, the memory the process held on the device, PyTorch's
//! `max_memory_reserved`).
//!
//! **Stale reads.** A recycled buffer holds whatever its last tensor left there, a new one is zeroed by wgpu:
//! a kernel that reads an element no kernel wrote would compute with stale data on some runs and zeros on
//! others. Every op writes each element of the storage it allocates (or clears it first); the debug mode
//! `SITSGPU_POISON_POOL=1` ([`poison_enabled`]) checks that empirically: every buffer the pool hands out, new
//! or reused, is first filled with NaN (`Gpu::pooled` allocates and poisons; the pool knows no GPU), so a stale read shows up as NaN in the GPU parity
//! and whole-model checks (`.ci/run` runs the whole-model checks once in that mode).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Every storage buffer gets these usages: bound by kernels, filled by copies, read back by copies.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Buffer sizes are rounded up to this many bytes (also wgpu's copy alignment is 4).
pub const SIZE_ALIGN: u64 = 16;

/// A request may be served by an idle buffer up to this many times its class.
pub const REUSE_SLACK: u64 = 2;

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
    /// Highest `live_bytes` since the last [`BufferPool::reset_peak`].
    pub peak_live_bytes: u64,
    /// Highest `live_bytes + idle_bytes` since the last [`BufferPool::reset_peak`].
    pub peak_bytes: u64,
    /// Idle buffers released to stay under the budget ([`BufferPool::set_budget`]).
    pub trimmed_buffers: usize,
}

/// The size class of a request of `bytes` bytes: 16-byte steps up to 64 KiB, then eight classes per power of
/// two; never above `max` (rounded down to 16 bytes) unless `bytes` itself is.
pub fn size_class(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(1);
    let class = if b <= 1 << 16 {
        b.div_ceil(SIZE_ALIGN) * SIZE_ALIGN
    } else {
        let step = 1u64 << (63 - b.leading_zeros() - 3);
        b.div_ceil(step) * step
    };
    let exact = b.div_ceil(SIZE_ALIGN) * SIZE_ALIGN;
    if class > max {
        exact.max(max / SIZE_ALIGN * SIZE_ALIGN)
    } else {
        class
    }
}

/// Size-keyed free lists of storage buffers.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    free: BTreeMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
    budget: Option<u64>,
}

impl PoolInner {
    fn note_peak(&mut self) {
        let s = &mut self.stats;
        s.peak_live_bytes = s.peak_live_bytes.max(s.live_bytes);
        s.peak_bytes = s.peak_bytes.max(s.live_bytes + s.idle_bytes);
    }

    /// Releases idle buffers, largest first, until `extra` more bytes fit under the budget (or none is left).
    fn trim_for(&mut self, extra: u64) {
        let Some(budget) = self.budget else { return };
        while self.stats.live_bytes + self.stats.idle_bytes + extra > budget
            && self.stats.idle_buffers > 0
        {
            let Some(&size) = self.free.keys().next_back() else {
                break;
            };
            let list = self.free.get_mut(&size).expect("listed above");
            drop(list.pop());
            if list.is_empty() {
                self.free.remove(&size);
            }
            self.stats.idle_buffers -= 1;
            self.stats.idle_bytes -= size;
            self.stats.trimmed_buffers += 1;
        }
    }
}

impl BufferPool {
    /// A buffer of at least `bytes` bytes (rounded up to its [`size_class`], at most `max` unless `bytes` is
    /// larger), reused if one of that class is idle.
    pub fn take(&self, device: &wgpu::Device, bytes: u64, max: u64) -> (wgpu::Buffer, u64) {
        let size = size_class(bytes, max);
        let mut inner = self.inner.lock().unwrap();
        // Best fit: the smallest idle buffer of this class or up to twice it (a freed buffer serves nearby
        // sizes instead of idling while a new one is created).
        let fit = inner
            .free
            .range(size..=size.saturating_mul(REUSE_SLACK))
            .next()
            .map(|(&k, _)| k);
        if let Some(class) = fit {
            let list = inner.free.get_mut(&class).expect("found above");
            let buf = list.pop().expect("free lists are never left empty");
            if list.is_empty() {
                inner.free.remove(&class);
            }
            inner.stats.idle_buffers -= 1;
            inner.stats.idle_bytes -= class;
            inner.stats.live_buffers += 1;
            inner.stats.live_bytes += class;
            inner.note_peak();
            return (buf, class);
        }
        inner.trim_for(size);
        inner.stats.live_buffers += 1;
        inner.stats.live_bytes += size;
        inner.stats.created_buffers += 1;
        inner.note_peak();
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
        inner.stats.trimmed_buffers += inner.stats.idle_buffers;
        inner.stats.idle_buffers = 0;
        inner.stats.idle_bytes = 0;
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().unwrap().stats
    }

    /// Starts new high-water marks from the current live and idle bytes.
    pub fn reset_peak(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.stats.peak_live_bytes = inner.stats.live_bytes;
        inner.stats.peak_bytes = inner.stats.live_bytes + inner.stats.idle_bytes;
    }

    /// Bounds live + idle bytes: idle buffers are released before a new buffer would cross `budget`
    /// (`None`: no bound, the default). Releases idle buffers above it now.
    pub fn set_budget(&self, budget: Option<u64>) {
        let mut inner = self.inner.lock().unwrap();
        inner.budget = budget;
        inner.trim_for(0);
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
    pub fn new(pool: &'static BufferPool, device: &wgpu::Device, bytes: u64, max: u64) -> Self {
        let (buf, size) = pool.take(device, bytes, max);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        assert_eq!(size_class(1, u64::MAX), 16);
        assert_eq!(size_class(17, u64::MAX), 32);
        assert_eq!(size_class(1 << 16, u64::MAX), 1 << 16);
        // Above 64 KiB: steps of an eighth of the power of two below.
        assert_eq!(size_class((1 << 16) + 1, u64::MAX), (1 << 16) + (1 << 13));
        assert_eq!(size_class(3_000_000, u64::MAX), 3_145_728);
        for b in [70_000u64, 1 << 20, 5_555_555, 123_456_789] {
            let c = size_class(b, u64::MAX);
            assert!(c >= b && c - b <= b / 8, "{b} -> {c}");
        }
        // Never above the largest binding unless the request is.
        assert_eq!(size_class(127 << 20, 128 << 20), 128 << 20);
        assert_eq!(size_class((128 << 20) - 3, 128 << 20), 128 << 20);
        assert_eq!(size_class((128 << 20) + 3, 128 << 20), (128 << 20) + 16);
    }
}
