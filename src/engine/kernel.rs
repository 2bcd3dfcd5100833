//! Launching a kernel: bind the buffers in the shader's binding order, upload the typed `Params` uniform, and
//! dispatch enough workgroups, folded into 2-D past the per-dimension limit.
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

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use crate::engine::gpu::Gpu;
use crate::shaders::Shader;

thread_local! {
    static FORCED_MAX: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Runs `f` with the per-dimension workgroup limit forced down to `max` on this thread (tests of the fold).
pub fn with_max_workgroups<R>(max: u32, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED_MAX.with(|m| m.set(self.0));
        }
    }
    assert!(max >= 1, "with_max_workgroups: max must be at least 1");
    let _r = Restore(FORCED_MAX.with(|m| m.replace(Some(max))));
    f()
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

/// Workgroups needed for `n` invocations of `wg` threads each.
pub fn groups(n: usize, wg: u32) -> u32 {
    u32::try_from(n.div_ceil(wg as usize)).expect("groups: workgroup count overflows u32")
}

/// Records one dispatch of `entry` from `shader` over `workgroups` (linear count, folded as needed), with
/// `buffers` at bindings 0..n and `params` as the uniform at binding n. Nothing is launched for 0
/// workgroups (empty tensors).
pub fn launch<P: Pod>(
    gpu: &Gpu,
    shader: &Shader,
    entry: &'static str,
    buffers: &[&wgpu::Buffer],
    params: &P,
    workgroups: u32,
) {
    if workgroups == 0 {
        return;
    }
    let pipeline = gpu.pipeline(shader, entry);
    let uniform = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(entry),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
    let mut entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    entries.push(wgpu::BindGroupEntry {
        binding: buffers.len() as u32,
        resource: uniform.as_entire_binding(),
    });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let (x, y, z) = fold(workgroups, max_workgroups_per_dim(gpu));
    gpu.record(|enc| {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    });
}

/// Uploads u32 values (indices, class ids) into a pooled storage buffer.
pub fn upload_u32(gpu: &'static Gpu, data: &[u32]) -> crate::engine::pool::PooledBuffer {
    let buf = crate::engine::pool::PooledBuffer::new(gpu, 4 * data.len() as u64);
    gpu.write_buffer(buf.buffer(), bytemuck::cast_slice(data));
    buf
}

/// Shape metadata for kernels that walk an N-d index space: up to 8 axes, packed as two `vec4<u32>` (WGSL
/// uniform arrays need 16-byte elements; `dims[d / 4][d % 4]` reads axis d).
pub const MAX_RANK: usize = 8;

/// Packs up to 8 sizes/strides into `[[u32; 4]; 2]`, right-aligned is NOT applied: axis d goes to slot d.
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
        assert_eq!(groups(257, 256), 2);
    }
}
