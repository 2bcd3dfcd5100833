//! The buffer pool: tensors live at offsets inside a few large storage buffers ("segments"), as in
//! PyTorch's caching allocator, so that GPU memory held is close to the memory tensors use and stays flat
//! over thousands of steps.
//!
//! **Why sub-allocate.** A training step allocates hundreds of distinct sizes (every layer's activations
//! and gradients). A pool of whole buffers keyed by size keeps, at a step's peak, idle buffers of sizes
//! nobody asks for then (the forward pass's temporaries while the backward pass wants gradients): measured
//! on U-TAE, 60 % above the live bytes. Here a freed range goes back into its segment, merges with free
//! neighbours, and any later request of any size can take (part of) it.
//!
//! **Layout** ([`Arena`], plain Rust, unit-tested without a GPU). Requests are rounded up to [`ALIGN`]
//! bytes (every adapter's storage-offset alignment). Small requests (≤ [`SMALL`]) come from 2 MiB
//! segments, large ones from 20 MiB segments (≤ 10 MiB) or from a segment of their own rounded to 2 MiB;
//! the two kinds never share a segment, so small long-lived tensors (parameters, Adam's moments) do not
//! pin the large ranges. A request takes the smallest free range of its kind that holds it (best fit;
//! ties by segment and offset, so the layout is deterministic) and splits off the rest when it is worth a
//! range of its own (small: any; large: more than [`SMALL`]). A freed range merges with its free
//! neighbours at once.
//!
//! **Bindings.** A tensor is bound as `(buffer, offset, size)` ([`BufSlice`]). WebGPU forbids binding one
//! buffer read-only and read-write in the same dispatch, and an input and an output may now share a
//! segment, so the engine compiles every `var<storage, read>` as `read_write` (`Gpu::pipeline`; the WGSL
//! files keep `read` to say what a kernel does; naga validates both forms).
//!
//! **Reuse without waiting.** Every later use of a range is recorded after every earlier use in the same
//! queue, and uploads go through the pending encoder (see `Gpu::write_buffer`), so wgpu orders them.
//!
//! **Budget.** [`BufferPool::set_budget`] bounds held bytes: when a new segment would cross it, entirely
//! free segments are released first (largest first). Live bytes above the budget are not refused here —
//! the caller sized its batches from a measured peak (`train::memory`); the budget only stops hoarding.
//!
//! Counters ([`PoolStats`]) expose what is live (held by tensors) and what is idle (free ranges in the
//! segments), and the high-water marks since [`BufferPool::reset_peak`]: `peak_live_bytes` (what tensors
//! held at once, PyTorch's `max_memory_allocated`) and `peak_bytes` (segments held, PyTorch's
//! `max_memory_reserved`).
//!
//! **Stale reads.** A recycled range holds whatever its last tensor left there, a new segment is zeroed by
//! wgpu: a kernel that reads an element no kernel wrote would compute with stale data on some runs and
//! zeros on others. Every op writes each element of the storage it allocates (or clears it first); the
//! debug mode `SITSGPU_POISON_POOL=1` ([`poison_enabled`]) checks that empirically: every range the pool
//! hands out, new or reused, is first filled with NaN (`Gpu::pooled` allocates and poisons; the pool knows
//! no GPU), so a stale read shows up as NaN in the GPU parity and whole-model checks (`.ci/run` runs the
//! whole-model checks once in that mode).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

/// Every segment gets these usages: bound by kernels, filled by copies, read back by copies.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Ranges start and end on multiples of this many bytes: WebGPU's largest allowed
/// `min_storage_buffer_offset_alignment`, so it suits every adapter.
pub const ALIGN: u64 = 256;

/// Requests up to this size are "small": they share 2 MiB segments.
pub const SMALL: u64 = 1 << 20;

const SMALL_SEGMENT: u64 = 2 << 20;
const LARGE_SHARED: u64 = 10 << 20;
const LARGE_SEGMENT: u64 = 20 << 20;
const ROUND_LARGE: u64 = 2 << 20;

/// Pool counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Ranges held by live tensors.
    pub live_buffers: usize,
    /// Bytes held by live tensors.
    pub live_bytes: u64,
    /// Free ranges in the segments.
    pub idle_buffers: usize,
    /// Free bytes in the segments.
    pub idle_bytes: u64,
    /// Segments (wgpu buffers) ever created (a cache miss each).
    pub created_buffers: usize,
    /// Highest `live_bytes` since the last [`BufferPool::reset_peak`].
    pub peak_live_bytes: u64,
    /// Highest `live_bytes + idle_bytes` (segments held) since the last [`BufferPool::reset_peak`].
    pub peak_bytes: u64,
    /// Entirely free segments released ([`BufferPool::trim`], [`BufferPool::set_budget`]).
    pub trimmed_buffers: usize,
    /// The largest single request since the last [`BufferPool::reset_peak`], bytes (the memory planner
    /// keeps a micro-batch's largest tensor within the adapter's storage binding).
    pub peak_request_bytes: u64,
}

/// Small or large: which segments a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Small,
    Large,
}

/// A range handed out by the [`Arena`]: `size` bytes at `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The segment's id.
    pub segment: u32,
    /// Byte offset in the segment (a multiple of [`ALIGN`]).
    pub offset: u64,
    /// Bytes reserved (a multiple of [`ALIGN`], at least the request).
    pub size: u64,
}

struct Segment {
    kind: Kind,
    size: u64,
    /// offset -> (size, free), covering the segment without gaps.
    ranges: BTreeMap<u64, (u64, bool)>,
}

/// The allocator's bookkeeping (no GPU): segments, their ranges, the free ranges by size.
#[derive(Default)]
pub struct Arena {
    segments: BTreeMap<u32, Segment>,
    /// (kind, size, segment, offset) of every free range: best fit is the first entry at or above a size.
    free: BTreeSet<(Kind, u64, u32, u64)>,
    next_id: u32,
    stats: PoolStats,
}

/// What [`Arena::alloc`] did: the block, and the size of the segment it had to create (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The range handed out.
    pub block: Block,
    /// `Some(bytes)` when a new segment of that size (id `block.segment`) must be created.
    pub new_segment: Option<u64>,
}

impl Arena {
    fn note_peak(&mut self) {
        let s = &mut self.stats;
        s.peak_live_bytes = s.peak_live_bytes.max(s.live_bytes);
        s.peak_bytes = s.peak_bytes.max(s.live_bytes + s.idle_bytes);
    }

    /// A range for `bytes` bytes. `max_segment` bounds a new segment (the device's largest buffer);
    /// `budget` bounds held bytes: entirely free segments are released (their ids pushed on `released`)
    /// before a new one would cross it.
    pub fn alloc(
        &mut self,
        bytes: u64,
        max_segment: u64,
        budget: Option<u64>,
        released: &mut Vec<u32>,
    ) -> Allocation {
        self.stats.peak_request_bytes = self.stats.peak_request_bytes.max(bytes);
        let size = bytes.max(1).next_multiple_of(ALIGN);
        let kind = if size <= SMALL {
            Kind::Small
        } else {
            Kind::Large
        };
        let found = self
            .free
            .range((kind, size, 0, 0)..)
            .next()
            .copied()
            .filter(|f| f.0 == kind);
        let (segment, offset, have, new_segment) = match found {
            Some(f) => {
                self.free.remove(&f);
                self.stats.idle_buffers -= 1;
                (f.2, f.3, f.1, None)
            }
            None => {
                let wanted = match kind {
                    Kind::Small => SMALL_SEGMENT,
                    Kind::Large if size <= LARGE_SHARED => LARGE_SEGMENT,
                    Kind::Large => size.next_multiple_of(ROUND_LARGE),
                };
                let seg_size = if wanted <= max_segment { wanted } else { size };
                self.trim_for(seg_size, budget, released);
                let id = self.next_id;
                self.next_id += 1;
                let mut ranges = BTreeMap::new();
                ranges.insert(0, (seg_size, false));
                self.segments.insert(
                    id,
                    Segment {
                        kind,
                        size: seg_size,
                        ranges,
                    },
                );
                self.stats.created_buffers += 1;
                self.stats.idle_bytes += seg_size;
                (id, 0, seg_size, Some(seg_size))
            }
        };
        let seg = self
            .segments
            .get_mut(&segment)
            .expect("free range's segment");
        let rest = have - size;
        let split = match kind {
            Kind::Small => rest > 0,
            Kind::Large => rest > SMALL,
        };
        let taken = if split { size } else { have };
        seg.ranges.insert(offset, (taken, false));
        if split {
            seg.ranges.insert(offset + size, (rest, true));
            self.free.insert((kind, rest, segment, offset + size));
            self.stats.idle_buffers += 1;
        }
        self.stats.live_buffers += 1;
        self.stats.live_bytes += taken;
        self.stats.idle_bytes -= taken;
        self.note_peak();
        Allocation {
            block: Block {
                segment,
                offset,
                size: taken,
            },
            new_segment,
        }
    }

    /// Returns `block` to its segment, merged with its free neighbours.
    pub fn free(&mut self, block: Block) {
        let seg = self
            .segments
            .get_mut(&block.segment)
            .expect("live block's segment");
        let kind = seg.kind;
        let (mut offset, mut size) = (block.offset, block.size);
        assert_eq!(
            seg.ranges.get(&offset),
            Some(&(size, false)),
            "pool: freeing a range that is not live"
        );
        self.stats.live_buffers -= 1;
        self.stats.live_bytes -= size;
        self.stats.idle_bytes += size;
        let next = seg
            .ranges
            .range(offset + size..)
            .next()
            .map(|(&o, &r)| (o, r));
        if let Some((o, (s, true))) = next {
            seg.ranges.remove(&o);
            self.free.remove(&(kind, s, block.segment, o));
            self.stats.idle_buffers -= 1;
            size += s;
        }
        let prev = seg
            .ranges
            .range(..offset)
            .next_back()
            .map(|(&o, &r)| (o, r));
        if let Some((o, (s, true))) = prev {
            seg.ranges.remove(&offset);
            self.free.remove(&(kind, s, block.segment, o));
            self.stats.idle_buffers -= 1;
            offset = o;
            size += s;
        }
        seg.ranges.insert(offset, (size, true));
        self.free.insert((kind, size, block.segment, offset));
        self.stats.idle_buffers += 1;
    }

    /// Ids of the segments with nothing live in them, largest first.
    fn empty_segments(&self) -> Vec<u32> {
        let mut ids: Vec<(u64, u32)> = self
            .segments
            .iter()
            .filter(|(_, s)| s.ranges.len() == 1 && s.ranges.values().all(|r| r.1))
            .map(|(&id, s)| (s.size, id))
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn release(&mut self, id: u32) {
        let seg = self.segments.remove(&id).expect("segment to release");
        self.free.remove(&(seg.kind, seg.size, id, 0));
        self.stats.idle_buffers -= 1;
        self.stats.idle_bytes -= seg.size;
        self.stats.trimmed_buffers += 1;
    }

    /// Releases entirely free segments, largest first, until `extra` more bytes fit under `budget`.
    fn trim_for(&mut self, extra: u64, budget: Option<u64>, released: &mut Vec<u32>) {
        let Some(budget) = budget else { return };
        for id in self.empty_segments() {
            if self.stats.live_bytes + self.stats.idle_bytes + extra <= budget {
                break;
            }
            self.release(id);
            released.push(id);
        }
    }

    /// Releases every entirely free segment; returns their ids.
    pub fn trim(&mut self) -> Vec<u32> {
        let ids = self.empty_segments();
        for &id in &ids {
            self.release(id);
        }
        ids
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }
}

/// The pool: an [`Arena`] and the wgpu buffer of each of its segments.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    arena: Arena,
    buffers: BTreeMap<u32, wgpu::Buffer>,
    budget: Option<u64>,
}

impl PoolInner {
    fn drop_segments(&mut self, ids: &[u32]) {
        for id in ids {
            self.buffers.remove(id);
        }
    }
}

impl BufferPool {
    /// A range of at least `bytes` bytes (rounded up to [`ALIGN`]) and its segment's buffer; a new
    /// segment (at most `max` bytes unless `bytes` is larger) is created when no free range holds it.
    pub fn take(&self, device: &wgpu::Device, bytes: u64, max: u64) -> (wgpu::Buffer, Block) {
        let mut inner = self.inner.lock().unwrap();
        let budget = inner.budget;
        let mut released = Vec::new();
        let a = inner.arena.alloc(bytes, max, budget, &mut released);
        inner.drop_segments(&released);
        if let Some(size) = a.new_segment {
            let buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sitsgpu tensors"),
                size,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            });
            inner.buffers.insert(a.block.segment, buf);
        }
        let buf = inner.buffers[&a.block.segment].clone();
        (buf, a.block)
    }

    /// Returns a range taken with [`BufferPool::take`].
    pub fn give_back(&self, block: Block) {
        self.inner.lock().unwrap().arena.free(block);
    }

    /// Releases every segment with nothing live in it (frees GPU memory after, say, a change of shapes).
    pub fn trim(&self) {
        let mut inner = self.inner.lock().unwrap();
        let ids = inner.arena.trim();
        inner.drop_segments(&ids);
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().unwrap().arena.stats()
    }

    /// Starts new high-water marks from the current live and held bytes.
    pub fn reset_peak(&self) {
        let mut inner = self.inner.lock().unwrap();
        let s = &mut inner.arena.stats;
        s.peak_live_bytes = s.live_bytes;
        s.peak_bytes = s.live_bytes + s.idle_bytes;
        s.peak_request_bytes = 0;
    }

    /// Bounds held bytes: entirely free segments are released before a new segment would cross `budget`
    /// (`None`: no bound, the default). Releases free segments above it now.
    pub fn set_budget(&self, budget: Option<u64>) {
        let mut inner = self.inner.lock().unwrap();
        inner.budget = budget;
        let mut released = Vec::new();
        inner.arena.trim_for(0, budget, &mut released);
        inner.drop_segments(&released);
    }
}

/// Where a tensor's bytes are: `size` bytes at `offset` of `buffer`. Kernels bind it, copies address it.
#[derive(Debug, Clone, Copy)]
pub struct BufSlice<'a> {
    /// The segment's wgpu buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset (a multiple of [`ALIGN`], or 0).
    pub offset: u64,
    /// Bytes (a multiple of 4).
    pub size: u64,
}

impl<'a> BufSlice<'a> {
    /// A whole buffer (staging, query resolution).
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        BufSlice {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    /// The binding resource of this range.
    pub fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// A tensor's range in the pool; it goes back when dropped.
pub struct PooledBuffer {
    buf: wgpu::Buffer,
    block: Block,
    /// Bytes bound: the request rounded to [`ALIGN`], at most the device's largest binding.
    bound: u64,
    pool: &'static BufferPool,
}

/// Whether every pooled range is filled with NaN before use: `SITSGPU_POISON_POOL=1` (read once).
pub fn poison_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SITSGPU_POISON_POOL").is_ok_and(|v| v == "1"))
}

impl PooledBuffer {
    /// Takes a range of at least `bytes` bytes from `pool` (creating a segment on `device` when no free
    /// range holds it); `max` is the device's largest binding and buffer. Kernels allocate through
    /// `Gpu::pooled`, which also poisons it in poison mode ([`poison_enabled`]).
    pub fn new(pool: &'static BufferPool, device: &wgpu::Device, bytes: u64, max: u64) -> Self {
        let (buf, block) = pool.take(device, bytes, max);
        let bound = bytes
            .max(1)
            .next_multiple_of(ALIGN)
            .min(block.size)
            .min(max / 4 * 4);
        PooledBuffer {
            buf,
            block,
            bound,
            pool,
        }
    }

    /// The range to bind or copy.
    pub fn buffer(&self) -> BufSlice<'_> {
        BufSlice {
            buffer: &self.buf,
            offset: self.block.offset,
            size: self.bound,
        }
    }

    /// Its size in bytes (the request rounded up to [`ALIGN`]).
    pub fn size(&self) -> u64 {
        self.bound
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.give_back(self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 30;

    fn alloc(a: &mut Arena, bytes: u64) -> Allocation {
        a.alloc(bytes, MAX, None, &mut Vec::new())
    }

    /// Every segment's ranges tile it exactly, free ones are listed, no two free neighbours.
    fn check(a: &Arena) {
        let mut free = 0;
        for (&id, s) in &a.segments {
            let mut at = 0;
            let mut last_free = false;
            for (&o, &(size, is_free)) in &s.ranges {
                assert_eq!(o, at, "gap in segment {id}");
                assert!(!(last_free && is_free), "unmerged free neighbours in {id}");
                if is_free {
                    assert!(a.free.contains(&(s.kind, size, id, o)));
                    free += 1;
                }
                at += size;
                last_free = is_free;
            }
            assert_eq!(at, s.size);
        }
        assert_eq!(free, a.free.len());
        assert_eq!(free, a.stats.idle_buffers);
        let held: u64 = a.segments.values().map(|s| s.size).sum();
        assert_eq!(a.stats.live_bytes + a.stats.idle_bytes, held);
    }

    #[test]
    fn small_requests_share_a_segment_and_merge_back() {
        let mut a = Arena::default();
        let x = alloc(&mut a, 1);
        let y = alloc(&mut a, 1000);
        let z = alloc(&mut a, 300);
        assert_eq!(x.new_segment, Some(SMALL_SEGMENT));
        assert_eq!((y.new_segment, z.new_segment), (None, None));
        assert_eq!(
            (x.block.offset, y.block.offset, z.block.offset),
            (0, 256, 1280)
        );
        assert_eq!((x.block.size, y.block.size, z.block.size), (256, 1024, 512));
        check(&a);
        a.free(y.block);
        check(&a);
        // A request that fits the hole takes it (best fit), a larger one goes after z.
        assert_eq!(alloc(&mut a, 700).block.offset, 256);
        check(&a);
        a.free(x.block);
        a.free(z.block);
        check(&a);
        assert_eq!(a.stats.live_buffers, 1);
        assert_eq!(a.trim(), Vec::<u32>::new(), "a live range pins its segment");
    }

    #[test]
    fn freed_ranges_coalesce_so_a_larger_request_reuses_them() {
        let mut a = Arena::default();
        let blocks: Vec<Block> = (0..4).map(|_| alloc(&mut a, 3 << 20).block).collect();
        assert!(blocks.iter().all(|b| b.segment == blocks[0].segment));
        for b in &blocks {
            a.free(*b);
            check(&a);
        }
        assert_eq!(
            a.stats.idle_buffers, 1,
            "four neighbours merged into one range"
        );
        // 12 MiB fits the merged 20 MiB segment: no new segment, nothing held beyond it.
        let big = alloc(&mut a, 12 << 20);
        assert_eq!(big.new_segment, None);
        assert_eq!(a.stats.peak_bytes, LARGE_SEGMENT);
        check(&a);
    }

    #[test]
    fn large_requests_get_their_own_segment_and_small_ones_never_enter_it() {
        let mut a = Arena::default();
        let big = alloc(&mut a, 50 << 20);
        assert_eq!(big.new_segment, Some(50 << 20));
        a.free(big.block);
        let small = alloc(&mut a, 4096);
        assert_eq!(small.new_segment, Some(SMALL_SEGMENT));
        // A large request splits the free 50 MiB range; the rest (> 1 MiB) stays free.
        let part = alloc(&mut a, 30 << 20);
        assert_eq!(part.new_segment, None);
        assert_eq!(part.block.size, 30 << 20);
        // A remainder of at most SMALL is not split off.
        let whole = alloc(&mut a, (20 << 20) - 4096);
        assert_eq!(whole.block.size, 20 << 20);
        check(&a);
        // A segment never exceeds the device's largest buffer (unless the request does).
        let capped = a.alloc(15 << 20, (15 << 20) + (1 << 19), None, &mut Vec::new());
        assert_eq!(capped.new_segment, Some(15 << 20));
    }

    #[test]
    fn the_budget_releases_empty_segments_before_creating_one() {
        let mut a = Arena::default();
        let x = alloc(&mut a, 40 << 20).block;
        a.free(x);
        let mut released = Vec::new();
        let y = a.alloc(60 << 20, MAX, Some(64 << 20), &mut released);
        assert_eq!(released, vec![x.segment]);
        assert_eq!(y.new_segment, Some(60 << 20));
        assert_eq!(a.stats.trimmed_buffers, 1);
        assert_eq!(a.stats.live_bytes + a.stats.idle_bytes, 60 << 20);
        check(&a);
    }

    #[test]
    fn the_same_sequence_gives_the_same_layout() {
        let run = || {
            let mut a = Arena::default();
            let mut live = Vec::new();
            let mut out = Vec::new();
            for i in 0..200u64 {
                let bytes = (i * 7919 % 97 + 1) * 40_000;
                let b = alloc(&mut a, bytes).block;
                out.push(b);
                live.push(b);
                if i % 3 == 0 {
                    a.free(live.remove((i as usize * 31) % live.len()));
                }
            }
            check(&a);
            out
        };
        assert_eq!(run(), run());
    }
}
