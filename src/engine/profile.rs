//! The per-kernel profiler: what the dispatch path records about each launch, how each launch is timed, and
//! the table that sums it all up per kernel entry point.
//!
//! Every launch goes through `Kernel::dispatch` → `Gpu::dispatch`, which hands a [`DispatchInfo`] (entry
//! point, workgroups, invocations, FLOPs / bytes / longest loop when the launcher counts them) to the
//! recorder while a profile is running ([`crate::engine::Gpu::profile_start`] / `profile_stop`):
//!
//! - **GPU timestamps** ([`Timing::Timestamps`]) where the adapter offers `TIMESTAMP_QUERY`: each dispatch is
//!   its own compute pass, so the pass's beginning and end timestamps (two queries) bound exactly that
//!   kernel. The queries are resolved once, when the profile stops: nothing waits during the step.
//! - **Synchronised wall time** ([`Timing::SyncWall`]) otherwise: the queue is drained before each dispatch,
//!   then the dispatch is submitted alone and waited for. It includes one submission round trip per kernel
//!   (about 0.1 ms on a real GPU), so it overstates short kernels; the table says which timing it used.
//!
//! [`Report`] turns the records into one row per entry point (calls, GPU time, share, achieved GFLOP/s or
//! GB/s, the largest dispatch and the longest per-invocation loop); `sitsgpu profile` prints it.

use std::collections::HashMap;
use std::fmt::Write;

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

/// How the profiler measured each kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// GPU timestamps written at the beginning and end of each dispatch's compute pass.
    Timestamps,
    /// Host wall time of each dispatch submitted alone and waited for.
    SyncWall,
}

impl Timing {
    /// How the table names it.
    pub fn describe(self) -> &'static str {
        match self {
            Timing::Timestamps => "GPU timestamps (TIMESTAMP_QUERY), one pair per dispatch",
            Timing::SyncWall => {
                "synchronised wall time (no TIMESTAMP_QUERY: each dispatch submitted alone and waited for)"
            }
        }
    }
}

/// One timed dispatch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// What was launched.
    pub info: DispatchInfo,
    /// Its GPU time in nanoseconds.
    pub ns: f64,
}

/// Queries per query set (wgpu's maximum); two per dispatch.
pub const QUERIES_PER_SET: u32 = 4096;

/// The recorder a running profile keeps inside the GPU context.
pub(crate) struct Recorder {
    pub(crate) timing: Timing,
    /// Timestamp query sets, filled in order (`QUERIES_PER_SET` queries each).
    pub(crate) sets: Vec<wgpu::QuerySet>,
    /// Every dispatch recorded so far, in order.
    pub(crate) infos: Vec<DispatchInfo>,
    /// SyncWall: the measured time of each dispatch.
    pub(crate) wall_ns: Vec<f64>,
}

impl Recorder {
    pub(crate) fn new(timing: Timing) -> Self {
        Recorder {
            timing,
            sets: Vec::new(),
            infos: Vec::new(),
            wall_ns: Vec::new(),
        }
    }

    /// For the next dispatch: the query set and the index of its beginning timestamp (the end is the next
    /// one), creating a set when the last one is full.
    pub(crate) fn next_queries(&mut self, device: &wgpu::Device) -> (usize, u32) {
        let used = 2 * self.infos.len() as u32;
        let (set, index) = ((used / QUERIES_PER_SET) as usize, used % QUERIES_PER_SET);
        if set == self.sets.len() {
            self.sets
                .push(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("sitsgpu profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: QUERIES_PER_SET,
                }));
        }
        (set, index)
    }
}

/// The per-kernel summary of a profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// How the kernels were timed.
    pub timing: Timing,
    /// One row per entry point, most GPU time first.
    pub rows: Vec<Row>,
    /// Σ GPU time of every dispatch (ns).
    pub total_ns: f64,
    /// Number of dispatches.
    pub dispatches: usize,
}

/// One kernel entry point's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Entry point.
    pub entry: &'static str,
    /// Dispatches.
    pub calls: usize,
    /// Σ GPU time (ns).
    pub ns: f64,
    /// Σ FLOPs over the dispatches that counted them (None if none did).
    pub flops: Option<u64>,
    /// Σ bytes.
    pub bytes: u64,
    /// The largest dispatch: workgroups and invocations per workgroup.
    pub max_workgroups: u32,
    /// Invocations per workgroup.
    pub wg: u32,
    /// The longest per-invocation loop declared by any of its dispatches.
    pub max_loop: Option<u64>,
}

impl Row {
    /// Achieved GFLOP/s (when FLOPs are counted).
    pub fn gflops(&self) -> Option<f64> {
        self.flops
            .filter(|_| self.ns > 0.0)
            .map(|f| f as f64 / self.ns)
    }

    /// Achieved GB/s (10^9 bytes per second).
    pub fn gbytes(&self) -> f64 {
        if self.ns > 0.0 {
            self.bytes as f64 / self.ns
        } else {
            0.0
        }
    }
}

impl Report {
    /// Sums `timed` dispatches per entry point.
    pub fn new(timing: Timing, timed: &[Timed]) -> Report {
        let mut by: HashMap<&'static str, Row> = HashMap::new();
        for t in timed {
            let r = by.entry(t.info.entry).or_insert(Row {
                entry: t.info.entry,
                calls: 0,
                ns: 0.0,
                flops: None,
                bytes: 0,
                max_workgroups: 0,
                wg: t.info.wg,
                max_loop: None,
            });
            r.calls += 1;
            r.ns += t.ns;
            if let Some(f) = t.info.flops {
                r.flops = Some(r.flops.unwrap_or(0) + f);
            }
            r.bytes += t.info.bytes;
            r.max_workgroups = r.max_workgroups.max(t.info.workgroups);
            r.max_loop = match (r.max_loop, t.info.loop_len) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let mut rows: Vec<Row> = by.into_values().collect();
        rows.sort_by(|a, b| b.ns.total_cmp(&a.ns).then(a.entry.cmp(b.entry)));
        Report {
            timing,
            total_ns: timed.iter().map(|t| t.ns).sum(),
            dispatches: timed.len(),
            rows,
        }
    }

    /// The table, one row per kernel: calls, GPU ms (per profiled step when `steps` > 1), share, GFLOP/s or
    /// GB/s, largest dispatch, longest loop.
    pub fn table(&self, steps: usize) -> String {
        let steps = steps.max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(s, "timing: {}", self.timing.describe());
        let _ = writeln!(
            s,
            "{:<34} {:>7} {:>10} {:>6} {:>11} {:>9} {:>18} {:>9}",
            "kernel", "calls", "GPU ms", "share", "GFLOP/s", "GB/s", "workgroups x inv", "max loop"
        );
        for r in &self.rows {
            let share = if self.total_ns > 0.0 {
                100.0 * r.ns / self.total_ns
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "{:<34} {:>7} {:>10.3} {:>5.1}% {:>11} {:>9.1} {:>18} {:>9}",
                r.entry,
                (r.calls as f64 / steps).round() as usize,
                r.ns / 1e6 / steps,
                share,
                r.gflops().map_or("-".into(), |g| format!("{g:.1}")),
                r.gbytes(),
                format!("{} x {}", r.max_workgroups, r.wg),
                r.max_loop.map_or("-".into(), |l| l.to_string()),
            );
        }
        let _ = writeln!(
            s,
            "{:<34} {:>7} {:>10.3}",
            "total",
            (self.dispatches as f64 / steps).round() as usize,
            self.total_ns / 1e6 / steps
        );
        s
    }

    /// The report as JSON (for scripts): timing, totals and rows (per profiled step when `steps` > 1).
    pub fn to_json(&self, steps: usize) -> serde_json::Value {
        let steps = steps.max(1) as f64;
        serde_json::json!({
            "timing": match self.timing { Timing::Timestamps => "timestamps", Timing::SyncWall => "sync_wall" },
            "gpu_ms_per_step": self.total_ns / 1e6 / steps,
            "dispatches_per_step": self.dispatches as f64 / steps,
            "kernels": self.rows.iter().map(|r| serde_json::json!({
                "entry": r.entry,
                "calls_per_step": r.calls as f64 / steps,
                "gpu_ms_per_step": r.ns / 1e6 / steps,
                "share": if self.total_ns > 0.0 { r.ns / self.total_ns } else { 0.0 },
                "gflops": r.gflops(),
                "gbytes_per_s": r.gbytes(),
                "max_workgroups": r.max_workgroups,
                "invocations_per_workgroup": r.wg,
                "max_loop": r.max_loop,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(entry: &'static str, workgroups: u32, flops: Option<u64>, bytes: u64) -> DispatchInfo {
        DispatchInfo {
            entry,
            workgroups,
            wg: 256,
            flops,
            bytes,
            loop_len: Some(workgroups as u64),
        }
    }

    #[test]
    fn rows_sum_per_kernel_and_sort_by_time() {
        // matmul: 2 calls, 1 ms each, 2·10^9 FLOPs in all → 2e9 / 2e6 ns = 1000 GFLOP/s.
        // relu: 1 call of 0.5 ms moving 10^6 bytes → 2 GB/s.
        let timed = [
            Timed {
                info: info("matmul", 4, Some(1_000_000_000), 0),
                ns: 1e6,
            },
            Timed {
                info: info("relu", 7, None, 1_000_000),
                ns: 5e5,
            },
            Timed {
                info: info("matmul", 9, Some(1_000_000_000), 0),
                ns: 1e6,
            },
        ];
        let r = Report::new(Timing::Timestamps, &timed);
        assert_eq!(r.rows.len(), 2);
        assert_eq!((r.rows[0].entry, r.rows[0].calls), ("matmul", 2));
        assert_eq!(r.rows[0].gflops(), Some(1000.0));
        assert_eq!(r.rows[0].max_workgroups, 9);
        assert_eq!(r.rows[0].max_loop, Some(9));
        assert_eq!(r.rows[1].gflops(), None);
        assert_eq!(r.rows[1].gbytes(), 2.0);
        assert_eq!(r.total_ns, 2.5e6);
        let table = r.table(1);
        assert!(
            table.contains("matmul") && table.contains("80.0%"),
            "{table}"
        );
        let j = r.to_json(2);
        assert_eq!(j["kernels"][0]["calls_per_step"], 1.0);
    }
}
