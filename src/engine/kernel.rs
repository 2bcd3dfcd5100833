//! Kernels and the one dispatch path: every launch of every WGSL kernel in the crate goes through
//! [`Kernel::dispatch`].
//!
//! A [`Kernel`] is one entry point of one `.wgsl` file, declared beside its op's `Params` in
//! `engine/ops/<family>/<op>.rs`:
//!
//! ```ignore
//! pub const RELU: Kernel = Kernel::new::<ParamsN>(&shaders::RELU, "relu", 3);
//! // and launched in one line:
//! RELU.dispatch(gpu, &[x.buffer(), y.buffer()], &ParamsN::new(n), Grid::threads(n));
//! ```
//!
//! `dispatch` binds the buffers in the shader's binding order, uploads the typed `Params` uniform, picks the
//! workgroup count from the [`Grid`] (invocations, or whole workgroups for tiled kernels), folds it to the
//! adapter's limit and records one labelled compute pass. The [`Grid`] optionally carries the dispatch's
//! arithmetic (FLOPs), memory traffic (bytes) and longest per-invocation loop, which the per-kernel profiler
//! (`engine::profile`) prints beside each kernel's GPU time.
//!
//! **Binding convention.** Storage buffers take bindings 0..n in the order the shader header lists them;
//! the `Params` uniform takes binding n (the last one).
//!
//! **The 2-D fold, explained once.** WebGPU allows at most 65,535 workgroups per dispatch dimension
//! (`max_compute_workgroups_per_dimension`). A kernel needing `n` workgroups is dispatched as
//! `(x, y, 1)` with `x = min(n, max)` and `y = ceil(n / x)`; every shader recovers its linear workgroup index
//! as `wid.x + (wid.y + wid.z * nwg.y) * nwg.x` (`nwg` = `@builtin(num_workgroups)`) and returns early past
//! `n` elements. Only if `y` itself exceeds the limit (never at real sizes: that is 4 · 10^9 workgroups, but
//! possible when tests force a limit of 2 or 3) does the fold spill into z.
//! Tests force a tiny limit with [`with_max_workgroups`] so the fold path runs at small sizes.

use std::cell::Cell;
use std::mem::size_of;

use bytemuck::Pod;

use crate::engine::gpu::{DispatchInfo, Gpu};
use crate::engine::pool::{BufSlice, PooledBuffer};
use crate::shaders::Wgsl;

/// Workgroup size of the one-dimensional kernels (`const WG: u32 = 256u;` in their files).
pub const WG: u32 = 256;

/// One entry point of one WGSL file, with what the launcher and the naga tests need to know about it.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The WGSL file.
    pub shader: &'static Wgsl,
    /// Entry point; also the label of its pipeline, bind groups and passes (wgpu errors name it).
    pub entry: &'static str,
    /// Workgroup size (`const WG` in the file; checked by the naga tests).
    pub wg: u32,
    /// Number of bindings, the `Params` uniform (the last one) included.
    pub bindings: u32,
    /// Size in bytes of the Rust `Params` the launcher uploads (checked against the WGSL struct).
    pub params_bytes: usize,
}

impl Kernel {
    /// Entry point `entry` of `shader`, with `bindings` bindings (the `P` uniform last) and [`WG`]
    /// invocations per workgroup.
    pub const fn new<P: Pod>(shader: &'static Wgsl, entry: &'static str, bindings: u32) -> Kernel {
        Kernel {
            shader,
            entry,
            wg: WG,
            bindings,
            params_bytes: size_of::<P>(),
        }
    }

    /// The same kernel with `wg` invocations per workgroup (the file's `const WG`).
    pub const fn with_wg(self, wg: u32) -> Kernel {
        Kernel { wg, ..self }
    }

    /// Records one dispatch: `buffers` at bindings 0..n, `params` as the uniform at binding n, over the
    /// workgroups `grid` asks for (folded to the adapter's limit). Nothing is recorded for an empty grid
    /// (empty tensors).
    pub fn dispatch<P: Pod>(&self, gpu: &Gpu, buffers: &[BufSlice], params: &P, grid: Grid) {
        assert_eq!(
            size_of::<P>(),
            self.params_bytes,
            "{}: Params of {} bytes given, {} declared",
            self.entry,
            size_of::<P>(),
            self.params_bytes
        );
        assert_eq!(
            buffers.len() as u32 + 1,
            self.bindings,
            "{}: {} storage buffers given, the kernel has {} bindings (the uniform last)",
            self.entry,
            buffers.len(),
            self.bindings
        );
        let workgroups = match grid.work {
            Work::Threads(n) => n.div_ceil(self.wg as u64),
            Work::Groups(n) => n,
        };
        if workgroups == 0 {
            return;
        }
        let workgroups =
            u32::try_from(workgroups).expect("dispatch: workgroup count overflows u32");
        let bytes = grid
            .bytes
            .unwrap_or_else(|| buffers.iter().map(|b| b.size).sum());
        let info = DispatchInfo {
            entry: self.entry,
            workgroups,
            wg: self.wg,
            flops: grid.flops,
            bytes,
            loop_len: grid.loop_len,
        };
        let pipeline = gpu.pipeline(self.shader.name, self.shader.source, self.entry);
        let (x, y, z) = fold(workgroups, max_workgroups_per_dim(gpu));
        gpu.dispatch(
            &pipeline,
            buffers,
            bytemuck::bytes_of(params),
            (x, y, z),
            info,
        );
    }
}

/// How much work one dispatch launches, and (optionally) what it costs, for the profiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    work: Work,
    flops: Option<u64>,
    bytes: Option<u64>,
    loop_len: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Threads(u64),
    Groups(u64),
}

impl Grid {
    /// `n` invocations, one per output element: `ceil(n / wg)` workgroups.
    pub fn threads(n: usize) -> Grid {
        Grid::of(Work::Threads(n as u64))
    }

    /// `n` whole workgroups (tiled kernels, where a workgroup owns a tile or a row).
    pub fn groups(n: usize) -> Grid {
        Grid::of(Work::Groups(n as u64))
    }

    fn of(work: Work) -> Grid {
        Grid {
            work,
            flops: None,
            bytes: None,
            loop_len: None,
        }
    }

    /// The floating-point operations the dispatch performs (a multiply-add counts 2).
    pub fn flops(self, flops: usize) -> Grid {
        Grid {
            flops: Some(flops as u64),
            ..self
        }
    }

    /// The bytes it reads and writes (default: the sizes of the bound storage buffers).
    pub fn bytes(self, bytes: usize) -> Grid {
        Grid {
            bytes: Some(bytes as u64),
            ..self
        }
    }

    /// The longest loop one invocation runs (the profiler flags long serial loops).
    pub fn loop_len(self, len: usize) -> Grid {
        Grid {
            loop_len: Some(len as u64),
            ..self
        }
    }
}

thread_local! {
    static FORCED_MAX: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Runs `f` with the per-dimension workgroup limit forced down to `max` on this thread (tests of the fold).
pub fn with_max_workgroups<R>(max: u32, f: impl FnOnce() -> R) -> R {
    assert!(max >= 1, "with_max_workgroups: max must be at least 1");
    crate::engine::scoped::with_set(&FORCED_MAX, Some(max), f)
}

/// The per-dimension limit in force on this thread.
pub fn max_workgroups_per_dim(gpu: &Gpu) -> u32 {
    FORCED_MAX
        .with(|m| m.get())
        .unwrap_or(gpu.limits.max_compute_workgroups_per_dimension)
}

/// Splits `n` workgroups into a legal `(x, y, z)` grid (see the module doc).
pub fn fold(n: u32, max: u32) -> (u32, u32, u32) {
    if n <= max {
        return (n, 1, 1);
    }
    let rows = n.div_ceil(max);
    if rows <= max {
        return (max, rows, 1);
    }
    // z only bounded by WebGPU's guaranteed 65,535: a forced tiny limit applies to x and y.
    let z = rows.div_ceil(max);
    assert!(
        z <= 65535,
        "fold: {n} workgroups do not fit in {max} x {max} x 65535"
    );
    (max, max, z)
}

/// Uploads u32 values (indices, class ids) into a pooled storage buffer.
pub fn upload_u32(gpu: &'static Gpu, data: &[u32]) -> PooledBuffer {
    let buf = gpu.pooled(4 * data.len() as u64);
    gpu.write_buffer(buf.buffer(), bytemuck::cast_slice(data));
    buf
}

/// Shape metadata for kernels that walk an N-d index space: up to 8 axes, packed as two `vec4<u32>` (WGSL
/// uniform arrays need 16-byte elements; `dims[d / 4][d % 4]` reads axis d).
pub const MAX_RANK: usize = 8;

/// Packs up to 8 sizes/strides into `[[u32; 4]; 2]`: axis d goes to slot d (no right-alignment).
pub fn pack8(v: &[usize]) -> [[u32; 4]; 2] {
    assert!(
        v.len() <= MAX_RANK,
        "pack8: rank {} exceeds {MAX_RANK}",
        v.len()
    );
    let mut out = [[0u32; 4]; 2];
    for (d, &x) in v.iter().enumerate() {
        out[d / 4][d % 4] = u32::try_from(x).expect("pack8: value overflows u32");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_respects_the_limit() {
        assert_eq!(fold(10, 65535), (10, 1, 1));
        assert_eq!(fold(65536, 65535), (65535, 2, 1));
        assert_eq!(fold(10, 4), (4, 3, 1));
        assert_eq!(fold(10, 2), (2, 2, 3));
    }

    #[test]
    fn grid_counts_workgroups_from_invocations_or_takes_them_as_given() {
        assert_eq!(Grid::threads(257).work, Work::Threads(257));
        assert_eq!(Grid::groups(3).flops(10).flops, Some(10));
        assert_eq!(Grid::threads(1).bytes(8).loop_len(4).loop_len, Some(4));
    }
}
