//! GPU memory of training: the budget, the peak of a step, micro-batches when a batch does not fit.
//!
//! 1. **Budget** ([`Budget::detect`]): `--max_memory` when given; else what the adapter is known to have —
//!    lavapipe and other CPU adapters keep their buffers in host memory (`MemAvailable` of
//!    `/proc/meminfo`), an NVIDIA card reports its VRAM through `nvidia-smi`, a Mac's GPU shares the unified
//!    memory (three quarters of `hw.memsize`, about Metal's recommended working set). wgpu exposes no
//!    memory size, so on other adapters the budget is unknown and the batch is run whole (say
//!    `--max_memory` to bound it).
//! 2. **Peak** ([`plan`]): with a budget, the training loop measures the buffer pool's high-water mark
//!    (`engine::pool`, live bytes) of one forward + backward on 1 and on 2 samples before the first epoch,
//!    and fits `peak(n) = fixed + n · per_sample` (the model, the optimizer state and per-sample
//!    activations; the measurement leaves no trace: gradients are zeroed and batch-norm running statistics
//!    restored).
//! 3. **Micro-batches**: the largest micro-batch whose estimated peak, plus a margin for the pool's size
//!    classes, fits the budget. A batch is then run as micro-batches whose gradients accumulate before one
//!    Adam step, each micro-batch's loss weighted by its share of the batch's loss (for the cross-entropy,
//!    its share of the class weights of the batch's labelled pixels), so the accumulated gradient is the
//!    full batch's. For models whose layers see each sample alone (group norm) that is exact up to the order
//!    of float additions; a batch norm in training mode normalises each micro-batch with its own statistics
//!    and updates its running statistics once per micro-batch — the same as gradient accumulation in
//!    PyTorch, and the reason to prefer the largest micro-batch that fits. The pool is then bounded by the
//!    budget too (entirely free buffers are released rather than hoarded, `BufferPool::set_budget`).
//!
//! A micro-batch is also bounded by the adapter's largest storage binding (128 MiB on WebGPU's default
//! limits and on lavapipe): no tensor may exceed it, and the largest one (a full-resolution feature map of
//! every date) grows with the samples, so the probes record it and the plan keeps a micro-batch's below it.
//!
//! When even one sample does not fit, training stops before the first step with the numbers and what to
//! try.

use std::path::Path;

use crate::engine::error::catch_too_large;
use crate::engine::{Device, Error, Gpu, Result};

/// A memory budget and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// "--max_memory", "the adapter's VRAM (nvidia-smi)", …
    pub source: String,
}

/// `"2GB"`, `"1.5 GiB"`, `"800MB"`, `"512MiB"`, `"64k"`, or plain bytes (`"123456789"`). Decimal units are
/// powers of 1000, binary ones (`KiB`, `MiB`, `GiB`, `TiB`) of 1024; a bare `k`, `M`, `G`, `T` is decimal.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 2GB, 1.5GiB, 800MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = value * mult;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("{text:?}: a memory size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// `1536 MiB` / `2.50 GiB`.
pub fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

impl Budget {
    /// `--max_memory` when given, else the adapter's memory where it can be known (module doc); `None` on
    /// the CPU device or an adapter whose memory is unknown.
    pub fn detect(max_memory: Option<u64>, device: Device) -> Option<Budget> {
        if let Some(bytes) = max_memory {
            return Some(Budget {
                bytes,
                source: "--max_memory".into(),
            });
        }
        if device != Device::Gpu {
            return None;
        }
        let gpu = Gpu::get().ok()?;
        let a = &gpu.adapter;
        if a.device_type == "Cpu" {
            return meminfo_available(Path::new("/proc/meminfo")).map(|bytes| Budget {
                bytes,
                source: format!("available host memory ({} keeps its buffers there)", a.name),
            });
        }
        if a.name.to_ascii_lowercase().contains("nvidia") {
            return nvidia_smi_total().map(|bytes| Budget {
                bytes,
                source: "the card's memory (nvidia-smi)".into(),
            });
        }
        if a.backend == "Metal" {
            return mac_memsize().map(|total| Budget {
                bytes: total / 4 * 3,
                source: "three quarters of the Mac's unified memory".into(),
            });
        }
        None
    }
}

fn meminfo_available(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn nvidia_smi_total() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib << 20)
}

fn mac_memsize() -> Option<u64> {
    let out = std::process::Command::new("sysctl")
        .args(["-n", "hw.memsize"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// How a batch is run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Samples per micro-batch (the batch size when it fits whole).
    pub micro: usize,
    /// Estimated peak of a step at `micro` samples, bytes.
    pub peak: u64,
    /// Estimated peak of a whole batch, bytes.
    pub batch_peak: u64,
    /// The budget.
    pub budget: Budget,
    /// `Some((largest, max))` when the adapter's storage binding, not the budget, bounds the micro-batch: one
    /// sample's largest tensor and the largest binding, bytes.
    pub binding: Option<(u64, u64)>,
}

/// What a probe measured: the pool's peak of live bytes and the largest single tensor, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Peak live bytes (`PoolStats::peak_live_bytes`).
    pub peak: u64,
    /// Largest tensor asked for (`PoolStats::peak_request_bytes`).
    pub largest: u64,
}

impl Measured {
    /// The pool's figures since its last `reset_peak`.
    pub fn of(gpu: &Gpu) -> Measured {
        let s = gpu.pool.stats();
        Measured {
            peak: s.peak_live_bytes,
            largest: s.peak_request_bytes,
        }
    }
}

/// Extra room above the fitted peak of live bytes, in percent: the pool also holds the free ranges between
/// tensors in its buffers (measured 35–45 % above live at a step's peak, benches/README.md).
const MARGIN_PERCENT: u64 = 40;

/// The micro-batch size for `batch` samples under `budget`, from `probe(n)` = what a forward + backward of
/// `n` samples measured (module doc). `max_binding` is the adapter's largest storage binding: a micro-batch
/// whose largest tensor would not fit one is split further. The probe reports a tensor over it as
/// [`Error::TensorTooLarge`] (`engine::error::catch_too_large`). An error when one sample does not fit,
/// ending with `hint` (what else would make a sample smaller: [`training_hint`], from the fold loop).
pub fn plan(
    batch: usize,
    budget: Budget,
    max_binding: u64,
    min: usize,
    hint: &str,
    probe: impl FnMut(usize) -> Result<Measured>,
) -> Result<Plan> {
    plan_for(
        batch,
        budget,
        max_binding,
        min,
        "training sample",
        hint,
        probe,
    )
}

/// What the training flags can still do for a sample that does not fit: `--precision mixed` (the saved
/// activations in half precision) unless it is on, `--gradient_checkpointing` (the recurrent baselines'
/// gates) unless it is on; empty when both are.
pub fn training_hint(precision: crate::engine::Precision, checkpointing: bool) -> String {
    let mut tries = Vec::new();
    if precision == crate::engine::Precision::Fp32 {
        tries.push("--precision mixed (saved activations in half precision)");
    }
    if !checkpointing {
        tries.push(
            "--gradient_checkpointing (the recurrent baselines: ConvLSTM and ConvGRU keep a third of their \
             memory per date)",
        );
    }
    if tries.is_empty() {
        String::new()
    } else {
        format!("; or try {}", tries.join(", or "))
    }
}

/// [`plan`] for any measured peak: `what` names one sample's work in the error; `min` is the fewest samples
/// a pass may take (2 for a model whose train-mode BatchNorm normalises over the samples): the probes run
/// `min` and `min + 1` samples, and no micro-batch is smaller.
fn plan_for(
    batch: usize,
    budget: Budget,
    max_binding: u64,
    min: usize,
    what: &str,
    hint: &str,
    mut probe: impl FnMut(usize) -> Result<Measured>,
) -> Result<Plan> {
    let lo = min.clamp(1, batch.max(1));
    let fewest = if lo == 1 {
        format!("one {what}")
    } else {
        format!("{lo} {what}s (the fewest this model trains on)")
    };
    let m1 = probe(lo).map_err(|e| match e {
        Error::TensorTooLarge(t) => Error::Invalid(format!(
            "{fewest} does not fit this adapter: {t}. HINT: use fewer dates per sample or smaller patches, \
             or the CPU (--cpu){hint}"
        )),
        e => e,
    })?;
    // Activations grow with the samples: n samples' largest tensor is about n times one sample's.
    let cap = match m1.largest {
        0 => batch.max(1),
        l => ((max_binding / (l / lo as u64).max(1)) as usize).clamp(1, batch.max(1)),
    };
    let m2 = if batch > lo && cap > lo {
        match probe(lo + 1) {
            Ok(m) => Some(m),
            Err(Error::TensorTooLarge(_)) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let cap = if batch > lo && m2.is_none() { lo } else { cap };
    // Without a second point (`lo` samples per micro-batch), every byte counts as per-sample: an upper bound.
    let per = m2.map_or(m1.peak.div_ceil(lo as u64), |m| {
        m.peak.saturating_sub(m1.peak)
    });
    let fixed = m1.peak.saturating_sub(per * lo as u64);
    let estimate = |n: usize| {
        let x = fixed + per * n as u64;
        x + x * MARGIN_PERCENT / 100
    };
    if estimate(lo) > budget.bytes {
        return Err(Error::Invalid(format!(
            "{fewest} needs about {} of GPU memory, more than the budget of {} ({}); \
             raise --max_memory if the GPU has more free memory, otherwise use fewer dates or smaller \
             patches, or the CPU (--cpu){hint}",
            human(estimate(lo)),
            human(budget.bytes),
            budget.source
        )));
    }
    let fits = (lo..=batch.max(lo))
        .rev()
        .find(|&n| estimate(n) <= budget.bytes)
        .unwrap_or(lo);
    let micro = fits.min(cap).max(lo);
    Ok(Plan {
        micro,
        peak: estimate(micro),
        batch_peak: estimate(batch),
        budget,
        binding: (cap < fits).then_some((m1.largest, max_binding)),
    })
}

impl Plan {
    /// The line the training log prints once.
    pub fn line(&self, batch: usize) -> String {
        if self.micro >= batch {
            format!(
                "GPU memory: a batch of {batch} needs about {} of the {} budget ({}): no micro-batches",
                human(self.batch_peak),
                human(self.budget.bytes),
                self.budget.source
            )
        } else if let Some((largest, max)) = self.binding {
            format!(
                "GPU memory: a batch of {batch} would make tensors of about {}, over this adapter's largest \
                 storage binding ({}): running it as micro-batches of {} samples (about {} each) whose \
                 gradients add up to the batch's before each Adam step",
                human(largest * batch as u64),
                human(max),
                self.micro,
                human(self.peak)
            )
        } else {
            format!(
                "GPU memory: a batch of {batch} would need about {}, more than the {} budget ({}): running \
                 it as micro-batches of {} samples (about {} each) whose gradients add up to the batch's \
                 before each Adam step",
                human(self.batch_peak),
                human(self.budget.bytes),
                self.budget.source,
                self.micro,
                human(self.peak)
            )
        }
    }
}

/// The adapter's largest storage binding (and buffer), bytes: no tensor may be larger.
pub fn max_binding(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
}

/// How many samples of a batch of `batch` evaluation or prediction runs at once: `batch` unless a budget is
/// known (`max_memory`, [`Budget::detect`]) and the no-grad forward pass of the whole batch would exceed it,
/// estimated like training's plan from `forward(1)` and `forward(2)` (the forward pass of that many samples,
/// run here without autograd). The outputs do not depend on it for layers that see each sample alone at
/// inference (convolutions, group norm, batch norm with its running statistics), and the loss is shared as
/// in training. Says so once when it splits; an error when one sample does not fit.
pub fn inference_parts(
    batch: usize,
    max_memory: Option<u64>,
    device: Device,
    mut forward: impl FnMut(usize) -> Result<()>,
) -> Result<usize> {
    if device != Device::Gpu || batch <= 1 {
        return Ok(batch);
    }
    let Some(budget) = Budget::detect(max_memory, device) else {
        return Ok(batch);
    };
    let gpu = Gpu::get()?;
    let what = "sample's forward pass";
    let p = plan_for(batch, budget, max_binding(gpu), 1, what, "", |n| {
        gpu.synchronize();
        gpu.pool.reset_peak();
        catch_too_large(|| crate::engine::no_grad(|| forward(n)))?;
        gpu.synchronize();
        Ok(Measured::of(gpu))
    })?;
    gpu.pool.set_budget(Some(p.budget.bytes));
    if let (Some((largest, max)), true) = (p.binding, p.micro < batch) {
        println!(
            "GPU memory: a batch of {batch} would make tensors of about {} in its forward pass, over this \
             adapter's largest storage binding ({}): evaluating it in parts of {} samples",
            human(largest * batch as u64),
            human(max),
            p.micro
        );
    } else if p.micro < batch {
        println!(
            "GPU memory: a batch of {batch} would need about {} for its forward pass, more than the {} budget \
             ({}): evaluating it in parts of {} samples (about {} each)",
            human(p.batch_peak),
            human(p.budget.bytes),
            p.budget.source,
            p.micro,
            human(p.peak)
        );
    }
    Ok(p.micro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(1_610_612_736));
        assert_eq!(parse_bytes("800MB"), Ok(800_000_000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_bytes("2 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("0GB")
            .unwrap_err()
            .contains("at least one byte"));
    }

    fn budget(bytes: u64) -> Budget {
        Budget {
            bytes,
            source: "test".into(),
        }
    }

    /// peak(n) = 100 + 50 n: a budget of 500 fits 5 samples with the 40 % margin (490 ≤ 500 < 560), a budget
    /// of 100 not even one.
    /// A probe measuring peak(n) = 100 + 50 n bytes and a largest tensor of `largest` · n.
    fn linear(largest: u64) -> impl Fn(usize) -> Result<Measured> + Copy {
        move |n| {
            Ok(Measured {
                peak: 100 + 50 * n as u64,
                largest: largest * n as u64,
            })
        }
    }

    #[test]
    fn plans_the_largest_micro_batch_that_fits() {
        let probe = linear(10);
        let p = plan(8, budget(500), 1000, 1, "", probe).unwrap();
        assert_eq!((p.micro, p.peak, p.batch_peak), (5, 490, 700));
        assert_eq!(p.binding, None);
        assert!(p.line(8).contains("micro-batches of 5 samples"));
        let whole = plan(4, budget(500), 1000, 1, "", probe).unwrap();
        assert_eq!(whole.micro, 4);
        assert!(whole.line(4).contains("no micro-batches"));
        let err = plan(4, budget(100), 1000, 1, "", probe)
            .unwrap_err()
            .to_string();
        assert!(err.contains("one training sample needs about"), "{err}");
        // The training flags that would shrink a sample are named, those already on are not.
        let hint = training_hint(crate::engine::Precision::Fp32, false);
        let err = plan(4, budget(100), 1000, 1, &hint, probe)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(&hint)
                && err.contains("--precision mixed")
                && err.contains("--gradient_checkpointing"),
            "{err}"
        );
        let hint = training_hint(crate::engine::Precision::Mixed, false);
        assert!(!hint.contains("--precision") && hint.contains("--gradient_checkpointing"));
        assert_eq!(training_hint(crate::engine::Precision::Mixed, true), "");
    }

    /// A model that trains on 2 samples at the least (a train-mode BatchNorm over the samples): the probes
    /// run 2 and 3 samples, never 1, and the micro-batches are never below 2, even when the budget would
    /// take only 1.
    #[test]
    fn a_model_of_two_samples_at_least_is_probed_and_split_from_two() {
        let seen = std::cell::RefCell::new(Vec::new());
        let probe = |n: usize| {
            seen.borrow_mut().push(n);
            linear(10)(n)
        };
        let p = plan(8, budget(500), 1000, 2, "", probe).unwrap();
        assert_eq!(*seen.borrow(), vec![2, 3]);
        assert_eq!((p.micro, p.peak, p.batch_peak), (5, 490, 700));
        // 2 samples need 280 with the margin: a budget of 250 is an error naming the 2.
        let err = plan(8, budget(250), 1000, 2, "", linear(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 training samples (the fewest"), "{err}");
        // A binding of 15 bytes takes one sample's largest tensor (10) but the model needs 2: still 2.
        let p = plan(8, budget(1 << 20), 15, 2, "", linear(10)).unwrap();
        assert_eq!(p.micro, 2);
    }

    fn too_large() -> Error {
        Error::TensorTooLarge(crate::engine::error::TensorTooLarge {
            op: "conv2d".into(),
            numel: 100,
            max_bytes: 64,
        })
    }

    /// One sample's largest tensor is 30 bytes: a binding of 100 takes 3 samples' (90) but not 4, so a batch
    /// of 8 that the budget would take whole runs in micro-batches of 3, and the line says why.
    #[test]
    fn the_largest_tensor_stays_within_the_binding() {
        let probe = linear(30);
        let p = plan(8, budget(1 << 20), 100, 1, "", probe).unwrap();
        assert_eq!((p.micro, p.binding), (3, Some((30, 100))));
        let line = p.line(8);
        assert!(
            line.contains("over this adapter's largest storage binding")
                && line.contains("micro-batches of 3 samples"),
            "{line}"
        );
        // The budget binds first: no binding note.
        let p = plan(8, budget(300), 100, 1, "", probe).unwrap();
        assert_eq!((p.micro, p.binding), (2, None));
    }

    /// Two samples raise TensorTooLarge although one sample's largest tensor suggested they fit: one sample
    /// per micro-batch, every byte counted per sample. One sample raising it is an error saying so.
    #[test]
    fn a_probe_over_the_binding_means_one_sample_or_an_error() {
        let probe = |n: usize| {
            if n == 1 {
                Ok(Measured {
                    peak: 100,
                    largest: 40,
                })
            } else {
                Err(too_large())
            }
        };
        let p = plan(4, budget(1 << 20), 100, 1, "", probe).unwrap();
        assert_eq!((p.micro, p.peak, p.batch_peak), (1, 140, 560));
        assert!(p.binding.is_some());
        let err = plan(4, budget(1 << 20), 100, 1, "", |_| Err(too_large()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one training sample does not fit this adapter")
                && err.contains("conv2d")
                && err.contains("fewer dates"),
            "{err}"
        );
        // Any other probe error is passed on unchanged.
        let other = plan(4, budget(1 << 20), 100, 1, "", |_| {
            Err(Error::Invalid("x".into()))
        });
        assert_eq!(other.unwrap_err().to_string(), "x");
    }

    #[test]
    fn meminfo_is_read() {
        let dir = std::env::temp_dir().join(format!("sitsgpu-meminfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("meminfo");
        std::fs::write(&f, "MemTotal: 100 kB\nMemAvailable:   2048 kB\n").unwrap();
        assert_eq!(meminfo_available(&f), Some(2048 * 1024));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
