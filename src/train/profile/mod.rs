//! `sitsgpu profile`: one model's training step (or evaluation forward) on synthetic inputs, timed kernel
//! by kernel. The same workloads drive `benches/utae.rs` and `benches/pse.rs`, so the profiler explains the
//! benchmark figures.
//!
//! A run: build the model with random weights and random inputs of the asked shape, run `warmup` steps, time
//! `steps` plain steps (wall time from the first recorded kernel to the end of the GPU work, and the CPU time
//! spent recording them before waiting), then run `steps` more with the per-kernel profiler on
//! (`engine::profile`: GPU timestamps where the adapter has them) and sum them per kernel entry point. A
//! training step is what training does: zero_grad, forward, loss, backward, Adam, and the loss read back
//! once at the end.

mod workload;

pub use workload::*;

use std::time::Instant;

use serde_json::{json, Value};

use crate::engine::ops::linalg::half_matmul;
use crate::engine::profile::Report;
use crate::engine::recompute::with_gradient_checkpointing;
use crate::engine::{with_precision, Device, Gpu, Precision, Result};
use crate::models::semantic::MODELS;

/// What `sitsgpu profile` runs.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// The workload.
    pub workload: Workload,
    /// Training steps (else evaluation forward passes).
    pub train: bool,
    /// Unmeasured steps first (pipelines compiled, buffer pool filled).
    pub warmup: usize,
    /// Measured steps (timed plainly, then profiled).
    pub steps: usize,
    /// Time each dispatch by host wall clock even when GPU timestamps exist.
    pub wall_clock: bool,
    /// The precision of the measured steps (`engine::precision`): training steps and evaluation forwards.
    pub precision: Precision,
    /// Training steps with the recurrent ops' gate convolutions recomputed (`engine::recompute`).
    pub gradient_checkpointing: bool,
}

/// What a profile measured.
#[derive(Debug, Clone)]
pub struct ProfileOutcome {
    /// The adapter ("name (backend, type)").
    pub adapter: String,
    /// The workload's description.
    pub workload: String,
    /// Training steps (else forward passes).
    pub train: bool,
    /// The steps' precision.
    pub precision: Precision,
    /// Whether the training steps ran with gradient checkpointing.
    pub gradient_checkpointing: bool,
    /// How this device computes the half-precision products of mixed (`half_matmul::path`).
    pub half_products: String,
    /// ... and its convolutions (`conv2d::mixed::path_note`).
    pub half_convolutions: String,
    /// Samples per step.
    pub batch: usize,
    /// Profiled steps.
    pub steps: usize,
    /// Mean wall time of a plain (unprofiled) step, ms.
    pub step_ms: f64,
    /// Mean CPU time spent recording a plain step before waiting for the GPU, ms.
    pub encode_ms: f64,
    /// The per-kernel report of the profiled steps.
    pub report: Report,
    /// GPU memory of the plain steps.
    pub memory: MemoryPeak,
}

/// The GPU memory a step needs, from the buffer pool's high-water marks (`engine::pool`) and, where the
/// backend reports one, wgpu's allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryPeak {
    /// Most bytes held by live tensors at once (PyTorch's `max_memory_allocated`).
    pub live_bytes: u64,
    /// Most bytes held by the pool at once, live + idle (PyTorch's `max_memory_reserved`).
    pub held_bytes: u64,
    /// wgpu's allocator after the steps: bytes in device memory blocks (`None` where the backend gives no
    /// report).
    pub allocator_bytes: Option<u64>,
}

impl MemoryPeak {
    /// The pool's marks since its last `reset_peak`, and the allocator's report now.
    pub fn measure(gpu: &Gpu) -> MemoryPeak {
        let s = gpu.pool.stats();
        MemoryPeak {
            live_bytes: s.peak_live_bytes,
            held_bytes: s.peak_bytes,
            allocator_bytes: gpu
                .device
                .generate_allocator_report()
                .map(|r| r.total_reserved_bytes),
        }
    }

    /// "412.3 MiB live, 455.0 MiB held (allocator 480.0 MiB)".
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let alloc = self.allocator_bytes.map_or(String::new(), |b| {
            format!(", wgpu allocator {:.1} MiB", mib(b))
        });
        format!(
            "{:.1} MiB live, {:.1} MiB held (the pool's buffers){alloc}",
            mib(self.live_bytes),
            mib(self.held_bytes)
        )
    }

    /// The same as JSON (bytes).
    pub fn json(&self) -> Value {
        json!({
            "peak_live_bytes": self.live_bytes,
            "peak_held_bytes": self.held_bytes,
            "allocator_bytes": self.allocator_bytes,
        })
    }
}

impl ProfileOutcome {
    /// Samples (patches or parcels) per second of a plain step.
    pub fn samples_per_s(&self) -> f64 {
        self.batch as f64 / (self.step_ms / 1e3)
    }

    /// The human-readable summary and table.
    pub fn text(&self) -> String {
        let what = if self.train {
            "training step"
        } else {
            "evaluation forward"
        };
        let products = if self.precision == Precision::Mixed {
            format!(
                "; products: {}; convolutions: {}",
                self.half_products, self.half_convolutions
            )
        } else {
            String::new()
        };
        let checkpointing = if self.gradient_checkpointing {
            "; gradient checkpointing"
        } else {
            ""
        };
        format!(
            "adapter: {}\nworkload: {} ({what}, precision {}{products}{checkpointing})\nstep: {:.3} ms wall ({:.1} samples/s), \
             {:.3} ms CPU recording, {:.3} ms summed kernel time (per step, mean of {} steps)\nGPU memory: peak \
             of a step {}\n{}",
            self.adapter,
            self.workload,
            self.precision,
            self.step_ms,
            self.samples_per_s(),
            self.encode_ms,
            self.report.total_ns / 1e6 / self.steps as f64,
            self.steps,
            self.memory.text(),
            self.report.table(self.steps)
        )
    }

    /// The same as JSON.
    pub fn json(&self) -> Value {
        json!({
            "adapter": self.adapter,
            "workload": self.workload,
            "train": self.train,
            "precision": self.precision.to_string(),
            "gradient_checkpointing": self.gradient_checkpointing,
            "half_products": self.half_products,
            "half_convolutions": self.half_convolutions,
            "batch": self.batch,
            "steps": self.steps,
            "step_ms": self.step_ms,
            "samples_per_s": self.samples_per_s(),
            "encode_ms": self.encode_ms,
            "profile": self.report.to_json(self.steps),
            "memory": self.memory.json(),
        })
    }
}

/// Runs a profile on the GPU (see the module doc).
pub fn run(opts: &ProfileOptions) -> Result<ProfileOutcome> {
    opts.workload.check()?;
    let gpu = Gpu::get()?;
    let steps = opts.steps.max(1);
    let mut prepared = opts.workload.prepare(Device::Gpu);
    let step = |p: &mut Prepared| {
        if opts.train {
            let _ = with_precision(opts.precision, || {
                with_gradient_checkpointing(opts.gradient_checkpointing, || p.train_step())
            });
        } else {
            with_precision(opts.precision, || p.forward());
        }
    };
    for _ in 0..opts.warmup {
        step(&mut prepared);
    }
    gpu.synchronize();
    // The peak of a steady step (the pool warm): the marks restart from what the model and optimizer hold.
    gpu.pool.reset_peak();
    let (mut wall, mut encode) = (0.0, 0.0);
    for _ in 0..steps {
        // CPU recording time = the step's wall time minus the time the host spent blocked on the GPU.
        let (start, waited) = (Instant::now(), gpu.wait_time());
        step(&mut prepared);
        gpu.synchronize();
        let total = start.elapsed();
        wall += total.as_secs_f64() * 1e3;
        encode += total.saturating_sub(gpu.wait_time() - waited).as_secs_f64() * 1e3;
    }
    let memory = MemoryPeak::measure(gpu);
    gpu.profile_start(opts.wall_clock);
    for _ in 0..steps {
        step(&mut prepared);
    }
    let report = gpu.profile_stop().expect("the profile was started");
    Ok(ProfileOutcome {
        adapter: format!(
            "{} ({}, {})",
            gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type
        ),
        workload: opts.workload.describe(),
        train: opts.train,
        precision: opts.precision,
        gradient_checkpointing: opts.train && opts.gradient_checkpointing,
        half_products: half_matmul::path(gpu).to_string(),
        half_convolutions: crate::engine::ops::conv::conv2d::mixed::path_note(gpu),
        batch: opts.workload.batch,
        steps,
        step_ms: wall / steps as f64,
        encode_ms: encode / steps as f64,
        report,
        memory,
    })
}

/// `sitsgpu profile`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// A semantic model (utae, uconvlstm, buconvlstm, fpn, convlstm, convgru, unet3d), U-TAE + PaPs
    /// (utae_paps), U-ConvLSTM + PaPs (uconvlstm_paps) or a pixel-set classifier: pse_ltae, pse_tae,
    /// pse_gru, pse_tempcnn.
    #[arg(long, default_value = "utae")]
    pub model: String,
    /// Semantic and panoptic models: small (the fixtures' widths, about an eighth of the paper's) or paper
    /// (get_model's, train_panoptic.py's).
    #[arg(long, default_value = "small")]
    pub config: String,
    /// Samples per batch (default: U-TAE small 2, paper 4; pixel sets 128).
    #[arg(long = "batch_size", visible_alias = "batch-size", value_parser = crate::train::flags::at_least_one)]
    pub batch_size: Option<usize>,
    /// Dates per sample (default: U-TAE small 8, paper 40; pixel sets 24).
    #[arg(long, value_parser = crate::train::flags::at_least_one)]
    pub dates: Option<usize>,
    /// U-TAE patch side (default: small 32, paper 128).
    #[arg(long, value_parser = crate::train::flags::at_least_one)]
    pub size: Option<usize>,
    /// Pixel sets: pixels per parcel.
    #[arg(long, default_value_t = 64, value_parser = crate::train::flags::at_least_one)]
    pub pixels: usize,
    /// Profile training steps (forward, loss, backward, Adam) instead of evaluation forward passes.
    #[arg(long)]
    pub train: bool,
    /// Steps before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Measured steps (timed plainly, then profiled).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Time each kernel by synchronised wall clock even when the adapter has GPU timestamps.
    #[arg(long = "wall_clock", visible_alias = "wall-clock")]
    pub wall_clock: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// fp32, or mixed (products on half-precision operands, activations saved for the backward pass in
    /// half precision; `sitsgpu train --precision`), for training steps and evaluation forwards.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Training steps with the recurrent baselines' gate convolutions recomputed in the backward pass
    /// (`sitsgpu train --gradient_checkpointing`).
    #[arg(
        long = "gradient_checkpointing",
        visible_alias = "gradient-checkpointing"
    )]
    pub gradient_checkpointing: bool,
    /// Semantic evaluation: run a batch whose input exceeds this many MiB in parts within it (0: one sample at a time;
    /// the default is the models' own, 64 MiB), to weigh memory against speed.
    #[arg(long = "split_mib", visible_alias = "split-mib")]
    pub split_mib: Option<usize>,
}

impl ProfileArgs {
    /// The workload these flags describe (the defaults depend on the model and config).
    pub fn workload(&self) -> Result<Workload> {
        if let Some(backbone) = self
            .model
            .strip_suffix("_paps")
            .filter(|b| ["utae", "uconvlstm"].contains(b))
        {
            let paper = self.config == "paper";
            Workload::paps(
                backbone,
                &self.config,
                self.batch_size.unwrap_or(if paper { 4 } else { 2 }),
                self.dates.unwrap_or(if paper { 40 } else { 8 }),
                self.size.unwrap_or(if paper { 128 } else { 32 }),
            )
        } else if MODELS.contains(&self.model.as_str()) {
            let paper = self.config == "paper";
            Workload::semantic(
                &self.model,
                &self.config,
                self.batch_size.unwrap_or(if paper { 4 } else { 2 }),
                self.dates.unwrap_or(if paper { 40 } else { 8 }),
                self.size.unwrap_or(if paper { 128 } else { 32 }),
            )
        } else {
            Workload::pixel_set(
                &self.model,
                self.batch_size.unwrap_or(128),
                self.dates.unwrap_or(24),
                self.pixels,
            )
        }
    }

    /// Runs the profile and prints the table (or the JSON).
    pub fn run(&self) -> Result<()> {
        let mut workload = self.workload()?;
        if let Some(mib) = self.split_mib {
            workload.split_input_bytes = mib.saturating_mul(1 << 20);
        }
        let out = run(&ProfileOptions {
            workload,
            train: self.train,
            warmup: self.warmup,
            steps: self.steps,
            wall_clock: self.wall_clock,
            precision: self.precision,
            gradient_checkpointing: self.gradient_checkpointing,
        })?;
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&out.json()).expect("JSON")
            );
        } else {
            print!("{}", out.text());
        }
        Ok(())
    }
}
