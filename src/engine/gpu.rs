//! The GPU context: one wgpu instance, adapter, device and queue per process, the compiled-pipeline cache,
//! the buffer pool, and the command encoder that batches kernel launches until something must be read back.
//!
//! This is the file to read to see how a wgpu compute program is put together (it follows wgpu's own
//! `hello_compute` example, step by step):
//!
//! 1. An [`wgpu::Instance`] lists the adapters (physical GPUs, or software ones such as Mesa's lavapipe).
//! 2. We pick one (see [`Gpu::choose`]): `SITSGPU_ADAPTER=<substring>` wins, then a discrete GPU, then an
//!    integrated one, then anything else. `WGPU_BACKEND=vulkan|metal|dx12|gl` restricts the backends searched.
//! 3. We request a [`wgpu::Device`] with the **adapter's own limits** (not the WebGPU defaults), so that big
//!    storage bindings and large workgroup counts are available where the hardware has them;
//!    `SITSGPU_LIMITS=webgpu` requests WebGPU's default limits instead (128 MiB per storage binding, 8
//!    storage buffers per stage, 16 KiB of workgroup memory, 256 invocations per workgroup), the weakest
//!    adapter a user may have ([`crate::engine::limits`]). The engine reads the device's limits
//!    ([`Gpu::limits`]), never the adapter's.
//! 4. Each shader is compiled once per process into a [`wgpu::ComputePipeline`] (cached by entry point).
//! 5. Launches are recorded into one pending [`wgpu::CommandEncoder`]; it is submitted every 32 launches and
//!    when a result is read back, never waited for until then: a training step is a stream of short command
//!    buffers the GPU starts on while the host records the next ones, with one wait at its end (the loss).
//!    Each launch's `Params` go into a uniform arena written once per submission.
//!
//! The process holds a single `Gpu` ([`Gpu::get`]); tensors keep a `&'static Gpu`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::engine::error::{Error, Result};
pub use crate::engine::limits::LimitsMode;
use crate::engine::pool::{BufSlice, BufferPool, PooledBuffer};
use crate::engine::precision::{HalfFeatures, HalfPath};
pub use crate::engine::profile::DispatchInfo;
use crate::engine::profile::{Recorder, Report, Timed, Timing, QUERIES_PER_SET};

/// Launches recorded into one command encoder before it is submitted (never a wait: a submit returns at
/// once). Measured on an H200 (U-TAE training steps, `sitsgpu profile`, one run): submitting every 512
/// launches, the small config took 25.9 ms a step (19.9 ms of it recording), every 128 10.6 ms, every 32
/// 8.5 ms (8.3 ms recording, the GPU working meanwhile); the paper config 128 / 115 / 111 ms. Short command
/// buffers let the GPU start while the host records the rest of the step, and cost wgpu less to record.
/// `SITSGPU_SUBMIT_EVERY=<n>` (1..=[`MAX_PENDING_LAUNCHES`]) overrides it, for measuring.
const SUBMIT_EVERY: usize = 32;

/// The most launches one submission may hold (sizes the uniform arena).
const MAX_PENDING_LAUNCHES: usize = 512;

/// The submission threshold in force: `SITSGPU_SUBMIT_EVERY` if valid, else [`SUBMIT_EVERY`].
fn submit_every() -> usize {
    static EVERY: OnceLock<usize> = OnceLock::new();
    *EVERY.get_or_init(|| {
        std::env::var("SITSGPU_SUBMIT_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=MAX_PENDING_LAUNCHES).contains(n))
            .unwrap_or(SUBMIT_EVERY)
    })
}
/// Bytes of the uniform arena: room for every dispatch of one submission at 256-byte alignment.
const UNIFORM_ARENA_BYTES: u64 = 256 * MAX_PENDING_LAUNCHES as u64;

/// What `sitsgpu info` prints about an adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete GPU, integrated GPU, CPU (software), virtual or other.
    pub device_type: String,
    /// Driver name and version, when reported.
    pub driver: String,
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

/// A compiled kernel: its pipeline and the bind group layout derived from the shader (fetched once: asking
/// the pipeline for it on every dispatch costs host time).
pub struct Pipeline {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Its bind group 0 layout.
    pub layout: wgpu::BindGroupLayout,
}

/// The process-wide GPU context.
pub struct Gpu {
    /// The logical device: creates buffers, pipelines, bind groups.
    pub device: wgpu::Device,
    /// The queue: receives command buffers and buffer writes.
    pub queue: wgpu::Queue,
    /// The chosen adapter.
    pub adapter: AdapterSummary,
    /// Why this adapter was chosen (printed by `sitsgpu info`).
    pub reason: String,
    /// The limits the device was created with (the adapter's own, or WebGPU's defaults: [`Gpu::limits_mode`]);
    /// everything that depends on a limit reads these.
    pub limits: wgpu::Limits,
    /// Which limits were requested (`SITSGPU_LIMITS`).
    pub limits_mode: LimitsMode,
    /// The features the adapter offers (we request `TIMESTAMP_QUERY`, for the profiler, and `SHADER_F16`
    /// when offered; the cooperative-matrix set only when asked for: [`HalfFeatures`]).
    pub features: wgpu::Features,
    /// What the device has for half-precision products (`--precision mixed`).
    pub half: HalfFeatures,
    /// The half-precision product path, decided on first use (`ops::linalg::half_matmul::path`).
    pub half_path: OnceLock<HalfPath>,
    /// Whether the cooperative path's convolutions that unfold inside their tiles gave the unfolded copy's
    /// bits on this device (`ops::conv::conv2d::mixed::unfolding_on`), checked on first use.
    pub conv_in_tiles_ok: OnceLock<bool>,
    /// Recycles storage buffers so memory stays flat over training steps.
    pub pool: BufferPool,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<Pipeline>>>,
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pending: Mutex<Pending>,
    profiler: Mutex<Option<Recorder>>,
    /// Nanoseconds the host has spent blocked waiting for the GPU (synchronize, readbacks).
    waited_ns: std::sync::atomic::AtomicU64,
    /// The uniform arena: every dispatch of one submission finds its `Params` at its own aligned offset
    /// (one `queue.write_buffer` per submission instead of one buffer per dispatch).
    uniforms: wgpu::Buffer,
    /// `min_uniform_buffer_offset_alignment`.
    uniform_align: u64,
    /// Poison mode's source of NaN bytes (grown on demand), see [`Gpu::poison`].
    nan_source: Mutex<Option<wgpu::Buffer>>,
}

/// What has been recorded since the last submit: the command encoder, and the `Params` bytes of its
/// dispatches, staged for the uniform arena (written just before the encoder is submitted).
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    launches: usize,
    params: Vec<u8>,
}

static GPU: OnceLock<std::result::Result<Gpu, Error>> = OnceLock::new();

fn backends_from_env() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

/// Every adapter the instance can see, with the backends allowed by `WGPU_BACKEND`.
pub fn enumerate_adapters() -> Vec<AdapterSummary> {
    let instance = new_instance();
    pollster::block_on(instance.enumerate_adapters(backends_from_env()))
        .iter()
        .map(|a| AdapterSummary::of(&a.get_info()))
        .collect()
}

fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends_from_env();
    wgpu::Instance::new(desc)
}

/// Out of memory and a lost device are the user's situation, not a bug: wgpu would panic; we say what
/// happened with the memory figures and what to try, and end the process with exit status 3 (a training
/// run resumes from its last epoch with `--resume`). Any other uncaptured wgpu error is an engine bug and
/// still panics with wgpu's message.
fn install_error_handlers(device: &wgpu::Device) {
    device.on_uncaptured_error(std::sync::Arc::new(|e: wgpu::Error| match e {
        wgpu::Error::OutOfMemory { .. } => {
            fatal_gpu_error(&format!("the GPU ran out of memory ({e})"))
        }
        other => panic!("wgpu error (a bug in sitsgpu, please report it): {other}"),
    }));
    device.set_device_lost_callback(|reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            fatal_gpu_error(&format!("the GPU device was lost ({reason:?}: {message})"));
        }
    });
}

/// The clear end of a run whose GPU gave out (out of memory, device lost): the message, the buffer
/// pool's figures, what to try; exit status 3.
pub fn fatal_gpu_error(what: &str) -> ! {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let figures = match GPU.get() {
        Some(Ok(gpu)) => {
            let s = gpu.pool.stats();
            format!(
                "\n  sitsgpu held {:.1} MiB in tensors and {:.1} MiB free in the pool's buffers (peak held {:.1} MiB) on {}",
                mib(s.live_bytes),
                mib(s.idle_bytes),
                mib(s.peak_bytes),
                gpu.adapter.name
            )
        }
        _ => String::new(),
    };
    eprintln!(
        "error: {what}{figures}\n  HINT: train with --max_memory set below what the card has free (batches then run \
         as micro-batches with the same gradients), a smaller --batch_size or fewer dates; evaluate, predict \
         and map with a smaller --batch_size; close other programs using the GPU. A training run continues \
         from its last finished epoch with --resume."
    );
    std::process::exit(3)
}

impl Gpu {
    /// The process-wide GPU, created on first use. Errors (no adapter, device refused) are remembered: every
    /// later call returns the same error.
    pub fn get() -> Result<&'static Gpu> {
        GPU.get_or_init(Gpu::create).as_ref().map_err(|e| e.clone())
    }

    /// Chooses among `adapters` (index, reason). `wanted` is `SITSGPU_ADAPTER`, a case-insensitive substring
    /// of the adapter name.
    pub fn choose(adapters: &[AdapterSummary], wanted: Option<&str>) -> Result<(usize, String)> {
        if adapters.is_empty() {
            return Err(Error::NoAdapter);
        }
        if let Some(w) = wanted {
            let lw = w.to_lowercase();
            return adapters
                .iter()
                .position(|a| a.name.to_lowercase().contains(&lw))
                .map(|i| (i, format!("SITSGPU_ADAPTER={w} matches its name")))
                .ok_or_else(|| Error::AdapterNotFound {
                    wanted: w.to_string(),
                    available: adapters.iter().map(|a| a.name.clone()).collect(),
                });
        }
        // High performance first: discrete, then integrated, then virtual, then software (CPU), then other.
        let rank = |t: &str| match t {
            "DiscreteGpu" => 0,
            "IntegratedGpu" => 1,
            "VirtualGpu" => 2,
            "Cpu" => 3,
            _ => 4,
        };
        let best = (0..adapters.len())
            .min_by_key(|&i| (rank(&adapters[i].device_type), i))
            .expect("non-empty");
        let reason = format!(
            "highest-performance device type among {} adapter(s) ({})",
            adapters.len(),
            adapters[best].device_type
        );
        Ok((best, reason))
    }

    fn create() -> Result<Gpu> {
        let instance = new_instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(backends_from_env()));
        let summaries: Vec<AdapterSummary> = adapters
            .iter()
            .map(|a| AdapterSummary::of(&a.get_info()))
            .collect();
        let wanted = std::env::var("SITSGPU_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        let (index, reason) = Gpu::choose(&summaries, wanted.as_deref())?;
        let adapter = &adapters[index];
        // The adapter's own limits (on real GPUs far above the WebGPU defaults, e.g. 2 GiB storage bindings
        // instead of 128 MiB), or WebGPU's defaults with SITSGPU_LIMITS=webgpu.
        let limits_mode = LimitsMode::from_env()?;
        let required_limits = limits_mode.required(&adapter.limits());
        let features = adapter.features();
        let half = HalfFeatures::of(adapter);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sitsgpu"),
            // Timestamps for the per-kernel profiler, f16 (and cooperative matrices when asked) for the
            // half-precision products; kernels that need them have a path without them.
            required_features: (features & wgpu::Features::TIMESTAMP_QUERY) | half.required(),
            required_limits,
            experimental_features: crate::engine::trusted::experimental_features(half.coop_enabled),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
        install_error_handlers(&device);
        let limits = device.limits();
        let uniform_align = limits.min_uniform_buffer_offset_alignment as u64;
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sitsgpu params arena"),
            size: UNIFORM_ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            device,
            queue,
            adapter: summaries[index].clone(),
            reason,
            limits,
            limits_mode,
            features,
            half,
            half_path: OnceLock::new(),
            conv_in_tiles_ok: OnceLock::new(),
            pool: BufferPool::default(),
            pipelines: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending::default()),
            profiler: Mutex::new(None),
            waited_ns: Default::default(),
            uniforms,
            uniform_align,
            nan_source: Mutex::new(None),
        })
    }

    /// The compute pipeline for entry point `entry` of the WGSL file `file` (text `source`), compiled on first
    /// use and cached for the process, with its read-only storage bindings made read-write
    /// ([`bind_read_write`]). The pipeline layout is derived from the shader ("auto" layout): every entry
    /// point of a file uses every binding of that file (checked by the naga tests in `engine::kernels`).
    pub fn pipeline(
        &self,
        file: &'static str,
        source: &'static str,
        entry: &'static str,
    ) -> Arc<Pipeline> {
        let key = (file, entry);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap();
            modules
                .entry(file)
                .or_insert_with(|| {
                    let source = bind_read_write(source);
                    Arc::new(if crate::engine::trusted::enabled() {
                        crate::engine::trusted::create_module(&self.device, file, &source)
                    } else {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(file),
                                source: wgpu::ShaderSource::Wgsl(source.into()),
                            })
                    })
                })
                .clone()
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        let layout = pipeline.get_bind_group_layout(0);
        let pipeline = Arc::new(Pipeline { pipeline, layout });
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        pipeline
    }

    /// Records one compute pass running `pipeline` over the `(x, y, z)` workgroup grid, with `buffers` at
    /// bindings 0..n and `params` (the bytes of the `Params` uniform) at binding n. Every kernel launch of
    /// the crate ends here, through `engine::kernel::Kernel::dispatch`; `info` describes it for the profiler.
    pub fn dispatch(
        &self,
        pipeline: &Pipeline,
        buffers: &[BufSlice],
        params: &[u8],
        (x, y, z): (u32, u32, u32),
        info: DispatchInfo,
    ) {
        let mut guard = self.profiler.lock().unwrap();
        match guard.as_mut() {
            None => {
                drop(guard);
                self.record_pass(pipeline, buffers, params, (x, y, z), info.entry, None);
            }
            Some(rec) if rec.timing == Timing::Timestamps => {
                let (set, index) = rec.next_queries(&self.device);
                rec.infos.push(info);
                let writes = wgpu::ComputePassTimestampWrites {
                    query_set: &rec.sets[set],
                    beginning_of_pass_write_index: Some(index),
                    end_of_pass_write_index: Some(index + 1),
                };
                self.record_pass(
                    pipeline,
                    buffers,
                    params,
                    (x, y, z),
                    info.entry,
                    Some(writes),
                );
            }
            Some(_) => {
                drop(guard);
                self.synchronize();
                let start = std::time::Instant::now();
                self.record_pass(pipeline, buffers, params, (x, y, z), info.entry, None);
                self.synchronize();
                let ns = start.elapsed().as_nanos() as f64;
                if let Some(rec) = self.profiler.lock().unwrap().as_mut() {
                    rec.infos.push(info);
                    rec.wall_ns.push(ns);
                }
            }
        }
    }

    /// Records one pass into the pending encoder, its `params` staged in the uniform arena, all under one lock
    /// of the pending state (another thread's submit cannot fall between the staging and the recording).
    fn record_pass(
        &self,
        pipeline: &Pipeline,
        buffers: &[BufSlice],
        params: &[u8],
        (x, y, z): (u32, u32, u32),
        label: &str,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites>,
    ) {
        let mut p = self.pending.lock().unwrap();
        let slot = (params.len() as u64).next_multiple_of(self.uniform_align);
        if p.params.len() as u64 + slot > UNIFORM_ARENA_BYTES {
            self.submit(&mut p);
        }
        let offset = p.params.len() as u64;
        p.params.extend_from_slice(params);
        p.params.resize((offset + slot) as usize, 0);
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.uniforms,
                offset,
                size: std::num::NonZeroU64::new(params.len() as u64),
            }),
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let enc = p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("sitsgpu pending"),
                })
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes,
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
        p.launches += 1;
        if p.launches >= submit_every() {
            self.submit(&mut p);
        }
    }

    /// Submits what `p` holds: the staged `Params` go into the uniform arena first (`queue.write_buffer`
    /// takes effect before the commands of the next submit, after everything submitted earlier), then the
    /// encoder.
    fn submit(&self, p: &mut Pending) {
        if !p.params.is_empty() {
            self.queue.write_buffer(&self.uniforms, 0, &p.params);
            p.params.clear();
        }
        p.launches = 0;
        if let Some(enc) = p.encoder.take() {
            // Counted with the waits: a real GPU's submit returns at once, a software adapter (lavapipe) runs
            // the commands inside it, and that is GPU time, not recording.
            let start = std::time::Instant::now();
            self.queue.submit(Some(enc.finish()));
            self.waited_ns.fetch_add(
                start.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Starts recording every dispatch for the per-kernel profiler ([`crate::engine::profile`]): GPU
    /// timestamps when the device has `TIMESTAMP_QUERY` (and `wall_clock` is false), else synchronised wall
    /// time per dispatch. Returns the timing used. Pending work is finished first, so it is not counted.
    pub fn profile_start(&self, wall_clock: bool) -> Timing {
        self.synchronize();
        let timing = if !wall_clock
            && self
                .device
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            Timing::Timestamps
        } else {
            Timing::SyncWall
        };
        *self.profiler.lock().unwrap() = Some(Recorder::new(timing));
        timing
    }

    /// Stops the profiler (finishing the GPU work) and returns the per-kernel report of what it recorded;
    /// `None` when no profile was running.
    pub fn profile_stop(&self) -> Option<Report> {
        self.synchronize();
        let rec = self.profiler.lock().unwrap().take()?;
        let timed: Vec<Timed> = match rec.timing {
            Timing::SyncWall => rec
                .infos
                .iter()
                .zip(&rec.wall_ns)
                .map(|(&info, &ns)| Timed { info, ns })
                .collect(),
            Timing::Timestamps => {
                let ticks = self.resolve_timestamps(&rec.sets, 2 * rec.infos.len() as u32);
                let period = self.queue.get_timestamp_period() as f64;
                rec.infos
                    .iter()
                    .enumerate()
                    .map(|(i, &info)| {
                        let (b, e) = (ticks[2 * i], ticks[2 * i + 1]);
                        Timed {
                            info,
                            ns: e.saturating_sub(b) as f64 * period,
                        }
                    })
                    .collect()
            }
        };
        Some(Report::new(rec.timing, &timed))
    }

    /// Reads back the first `count` timestamps written into `sets` (in ticks).
    fn resolve_timestamps(&self, sets: &[wgpu::QuerySet], count: u32) -> Vec<u64> {
        let mut out = Vec::with_capacity(count as usize);
        for (i, set) in sets.iter().enumerate() {
            let n = (count - i as u32 * QUERIES_PER_SET).min(QUERIES_PER_SET);
            let bytes = 8 * n as u64;
            let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sitsgpu profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            self.record(|enc| enc.resolve_query_set(set, 0..n, &resolved, 0));
            let raw = self.read_buffer(BufSlice::whole(&resolved), bytes);
            out.extend(
                raw.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            );
        }
        out
    }

    /// Whether the adapter is a software one (a CPU, e.g. Mesa's lavapipe): kernels that stage tiles in
    /// workgroup memory gain nothing there, so ops pick their direct variants.
    pub fn is_software(&self) -> bool {
        self.adapter.device_type == "Cpu"
    }

    /// Number of compiled pipelines (each (shader, entry point) compiled once per process).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }

    /// Records commands into the pending encoder. Submits when too many launches have piled up.
    pub fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut p = self.pending.lock().unwrap();
        let enc = p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("sitsgpu pending"),
                })
        });
        f(enc);
        p.launches += 1;
        if p.launches >= submit_every() {
            self.submit(&mut p);
        }
    }

    /// Submits the pending encoder (if any). Does not wait.
    pub fn flush(&self) {
        let mut p = self.pending.lock().unwrap();
        self.submit(&mut p);
    }

    /// Submits the pending work and blocks until the GPU has finished all of it.
    pub fn synchronize(&self) {
        self.flush();
        self.wait();
    }

    /// Blocks until the GPU has finished everything submitted, counting the time in [`Gpu::wait_time`].
    fn wait(&self) {
        let start = std::time::Instant::now();
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            fatal_gpu_error(&format!(
                "the GPU stopped responding while we waited for it ({e})"
            ));
        }
        self.waited_ns.fetch_add(
            start.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The total time the host has spent blocked on the GPU (in `synchronize`, readbacks and submits) since
    /// the context was created; the profiler subtracts it from a step's wall time to get the CPU recording
    /// time.
    pub fn wait_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.waited_ns.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Copies the first `bytes` bytes of `src` back to the host. Submits pending work first and waits for it.
    pub fn read_buffer(&self, src: BufSlice, bytes: u64) -> Vec<u8> {
        if bytes == 0 {
            return Vec::new();
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sitsgpu readback staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record(|enc| enc.copy_buffer_to_buffer(src.buffer, src.offset, &staging, 0, bytes));
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait();
        rx.recv()
            .expect("map callback dropped")
            .expect("mapping the readback buffer failed");
        let out = staging
            .get_mapped_range(..)
            .expect("mapped readback range")
            .to_vec();
        staging.unmap();
        out
    }

    /// A range of at least `bytes` bytes in this GPU's pool (`engine::pool`), filled with NaN first in poison
    /// mode ([`crate::engine::pool::poison_enabled`]). Every GPU tensor and index buffer is allocated here.
    pub fn pooled(&'static self, bytes: u64) -> PooledBuffer {
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        let buf = PooledBuffer::new(&self.pool, &self.device, bytes, max);
        if crate::engine::pool::poison_enabled() {
            self.poison(buf.buffer(), buf.size());
        }
        buf
    }

    /// Fills the first `bytes` bytes of `dst` with NaN, ordered after every launch already recorded (a copy
    /// from a NaN buffer through the pending encoder). The pool calls it on every buffer it hands out when
    /// [`crate::engine::pool::poison_enabled`] (`SITSGPU_POISON_POOL=1`), so a kernel that reads pooled
    /// memory nobody wrote gets NaN, which every parity check catches.
    pub fn poison(&self, dst: BufSlice, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut src = self.nan_source.lock().unwrap();
        if src.as_ref().is_none_or(|b| b.size() < bytes) {
            use wgpu::util::DeviceExt;
            let size = bytes.next_power_of_two().max(1 << 16);
            let nan = vec![f32::NAN; (size / 4) as usize];
            *src = Some(
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("sitsgpu poison source"),
                        contents: bytemuck::cast_slice(&nan),
                        usage: wgpu::BufferUsages::COPY_SRC,
                    }),
            );
        }
        let src = src.as_ref().expect("created above");
        self.record(|enc| enc.copy_buffer_to_buffer(src, 0, dst.buffer, dst.offset, bytes));
    }

    /// Zeroes the first `bytes` bytes of `dst`, ordered after every launch already recorded.
    pub fn clear(&self, dst: BufSlice, bytes: u64) {
        if bytes > 0 {
            self.record(|enc| enc.clear_buffer(dst.buffer, dst.offset, Some(bytes)));
        }
    }

    /// Writes `data` at the start of `dst`, ordered after every launch already recorded (the copy goes
    /// through the pending encoder, so a recycled range is never overwritten before earlier kernels read it).
    pub fn write_buffer(&self, dst: BufSlice, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        use wgpu::util::DeviceExt;
        let staging = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sitsgpu upload staging"),
                contents: data,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        let n = data.len() as u64;
        self.record(|enc| enc.copy_buffer_to_buffer(&staging, 0, dst.buffer, dst.offset, n));
    }
}

/// `source` with every `var<storage, read>` declared `read_write`, as the engine compiles it. Tensors share
/// the pool's segments (`engine::pool`), and WebGPU forbids binding one buffer read-only and read-write in
/// the same dispatch: an input beside an output in one segment would be refused. The WGSL files keep
/// `read` to say which bindings a kernel only reads (and naga validates both forms, `engine::kernels`).
pub fn bind_read_write(source: &str) -> String {
    source.replace("var<storage, read>", "var<storage, read_write>")
}
