//! What the dispatch path knows about each kernel launch ([`DispatchInfo`]), for the per-kernel profiler.

/// One recorded dispatch: which kernel, how big, and (when the launcher says) what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchInfo {
    /// Entry point (the kernel's name).
    pub entry: &'static str,
    /// Workgroups launched (before the fold).
    pub workgroups: u32,
    /// Invocations per workgroup.
    pub wg: u32,
    /// Floating-point operations, when the launcher counts them.
    pub flops: Option<u64>,
    /// Bytes read and written (the launcher's count, else the bound buffers' sizes).
    pub bytes: u64,
    /// The longest loop one invocation runs, when the launcher says.
    pub loop_len: Option<u64>,
}
