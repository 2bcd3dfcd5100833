//! The Adam optimizer (`torch.optim.Adam`): the moments of every parameter and the step count. The update
//! arithmetic — its CPU reference and `adam.wgsl` — is the op `engine::ops::optim::adam`.
//!
//! On the GPU the moments of all parameters live in one pair of flat buffers (a bank each for m and v, more
//! than one only when they would exceed the device's largest binding), so that a step is a multi-tensor
//! launch per group of parameters sharing buffers (`ops::optim::adam::Groups`): a handful of launches
//! instead of one per parameter tensor.
//!
//! Under `--precision mixed` the optimizer also scales the loss ([`Adam::with_loss_scaling`]: PyTorch's
//! `GradScaler`, `ops::optim::loss_scale`): [`Adam::scale_loss`] before the backward pass, and each step
//! checks the gradients, skips on an overflow, unscales, and updates the scale, on the device without a
//! readback. The step count is then the device's ([`Adam::steps`]).

use crate::engine::ops::optim::adam::{cpu_step, Groups, Item, Scaled};
use crate::engine::ops::optim::loss_scale::{self, ScaleState};
use crate::engine::pool::BufSlice;
use crate::engine::storage::{Device, GpuStorage};
use crate::engine::tensor::Tensor;
use crate::engine::Gpu;

pub use crate::engine::ops::optim::adam::AdamConfig;

// ---- The optimizer ----

/// Where one parameter's moments are.
enum Home {
    /// Host tensors (a CPU parameter).
    Cpu(Tensor, Tensor),
    /// The parameter's element count at `offset` (elements) of bank `bank`.
    Gpu { bank: usize, offset: usize },
}

/// A moment bank: m and v for consecutive parameters.
struct Bank {
    m: GpuStorage,
    v: GpuStorage,
}

/// The loss scaler of `--precision mixed` (`ops::optim::loss_scale`), on the parameters' device.
enum Scaler {
    /// The state on the host; `scale` a one-element CPU tensor holding 2^exponent.
    Cpu { state: ScaleState, scale: Tensor },
    /// The state's four words on the device, `scale` a one-element GPU tensor the update rewrites, and the
    /// bias corrections of steps 1..=`bias_len` for learning rate `bias_lr`.
    Gpu {
        state: GpuStorage,
        scale: Tensor,
        bias: GpuStorage,
        bias_len: usize,
        bias_lr: f64,
    },
}

/// Adam over a list of parameters (leaf tensors that require grad), with its moment buffers.
pub struct Adam {
    /// Hyper-parameters.
    pub cfg: AdamConfig,
    /// Steps recorded so far (since the start or the last `set_state`): the steps taken, unless the loss
    /// scaler skipped some ([`Adam::steps`]).
    t: u64,
    params: Vec<Tensor>,
    homes: Vec<Home>,
    banks: Vec<Bank>,
    /// Launches of the last GPU step.
    launches: usize,
    scaler: Option<Scaler>,
}

impl Adam {
    /// An optimizer for `params` (moments start at zero on each parameter's device).
    pub fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Self {
        // GPU parameters: consecutive ranges of banks of at most the device's largest binding.
        let gpu = params
            .iter()
            .any(|p| p.device() == Device::Gpu)
            .then(|| Gpu::get().expect("Adam: GPU parameters without a GPU"));
        let cap = gpu.map_or(0, |g| {
            (g.limits
                .max_storage_buffer_binding_size
                .min(g.limits.max_buffer_size)
                / 4) as usize
        });
        let mut sizes: Vec<usize> = Vec::new();
        let homes = params
            .iter()
            .map(|p| match p.device() {
                Device::Cpu => Home::Cpu(
                    Tensor::zeros(p.shape(), Device::Cpu),
                    Tensor::zeros(p.shape(), Device::Cpu),
                ),
                Device::Gpu => {
                    let n = p.numel();
                    if sizes.last().is_none_or(|&s| s + n > cap) {
                        sizes.push(0);
                    }
                    let bank = sizes.len() - 1;
                    let offset = sizes[bank];
                    sizes[bank] += n;
                    Home::Gpu { bank, offset }
                }
            })
            .collect();
        let banks = match gpu {
            Some(gpu) => sizes
                .iter()
                .map(|&n| {
                    let zeroed = || {
                        let s = GpuStorage::alloc(gpu, n.max(1), "adam (moments)");
                        gpu.clear(s.buffer(), 4 * n.max(1) as u64);
                        s
                    };
                    Bank {
                        m: zeroed(),
                        v: zeroed(),
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        Adam {
            cfg,
            t: 0,
            params,
            homes,
            banks,
            launches: 0,
            scaler: None,
        }
    }

    /// This optimizer with dynamic loss scaling (`--precision mixed`; module doc), starting at the scale
    /// 2^16. The parameters must all be on one device.
    pub fn with_loss_scaling(mut self) -> Self {
        self.scale_losses();
        self
    }

    /// Turns dynamic loss scaling on ([`Adam::with_loss_scaling`]); nothing when it is on.
    pub fn scale_losses(&mut self) {
        if self.scaler.is_some() {
            return;
        }
        let state = ScaleState::starting_at(self.t);
        self.scaler = Some(match self.banks.first() {
            None => Scaler::Cpu {
                state,
                scale: Tensor::from_vec(vec![state.scale()], &[1], Device::Cpu),
            },
            Some(bank) => {
                let gpu = bank.m.gpu;
                assert!(
                    self.homes.iter().all(|h| matches!(h, Home::Gpu { .. })),
                    "Adam::with_loss_scaling: parameters on two devices"
                );
                let words = GpuStorage::alloc(gpu, 4, "loss scale (state)");
                gpu.write_buffer(words.buffer(), bytemuck::cast_slice(&state.words()));
                Scaler::Gpu {
                    state: words,
                    scale: Tensor::from_vec(vec![state.scale()], &[1], Device::Gpu),
                    bias: GpuStorage::alloc(gpu, 2, "adam (bias corrections)"),
                    bias_len: 0,
                    bias_lr: f64::NAN,
                }
            }
        });
    }

    /// `loss` multiplied by the loss scale (PyTorch's `scaler.scale(loss)`), for its backward pass; `loss`
    /// itself without loss scaling.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        match &self.scaler {
            None => loss.clone(),
            Some(Scaler::Cpu { scale, .. } | Scaler::Gpu { scale, .. }) => {
                loss * &scale.reshape(loss.shape())
            }
        }
    }

    /// The loss scaler's state (read back from the device), `None` without loss scaling.
    pub fn loss_scale(&self) -> Option<ScaleState> {
        match self.scaler.as_ref()? {
            Scaler::Cpu { state, .. } => Some(*state),
            Scaler::Gpu { state, .. } => {
                let w: Vec<u32> =
                    bytemuck::cast_slice(&state.gpu.read_buffer(state.buffer(), 16)).to_vec();
                Some(ScaleState::from_words([w[0], w[1], w[2], w[3]]))
            }
        }
    }

    /// Restores the loss scaler's state (a checkpoint's; nothing without loss scaling). Its step count
    /// becomes the optimizer's.
    pub fn set_loss_scale(&mut self, s: ScaleState) {
        self.t = s.steps;
        match &mut self.scaler {
            None => {}
            Some(Scaler::Cpu { state, scale }) => {
                *state = s;
                scale.storage().write(&[s.scale()]);
            }
            Some(Scaler::Gpu { state, scale, .. }) => {
                state
                    .gpu
                    .write_buffer(state.buffer(), bytemuck::cast_slice(&s.words()));
                scale.storage().write(&[s.scale()]);
            }
        }
    }

    /// Adam steps taken (PyTorch's `state['step']`): skipped steps of the loss scaler not counted (read back
    /// from the device under loss scaling on the GPU).
    pub fn steps(&self) -> u64 {
        self.loss_scale().map_or(self.t, |s| s.steps)
    }

    /// Steps recorded since the start or the last `set_state`, skipped ones included.
    pub fn recorded_steps(&self) -> u64 {
        self.t
    }

    /// Steps the loss scaler skipped since the start or the last `set_state` (0 without one).
    pub fn skipped(&self) -> u64 {
        self.t - self.steps()
    }

    /// The moment estimates (m, v) of parameter `i`, in its shape (for checkpoints).
    pub fn moments(&self, i: usize) -> (Vec<f32>, Vec<f32>) {
        let bytes = 4 * self.params[i].numel() as u64;
        match self.homes[i] {
            Home::Cpu(ref m, ref v) => (m.to_vec(), v.to_vec()),
            Home::Gpu { bank, offset } => {
                let read = |s: &GpuStorage| -> Vec<f32> {
                    let at = sub(s.buffer(), 4 * offset as u64, bytes);
                    bytemuck::cast_slice(&s.gpu.read_buffer(at, bytes)).to_vec()
                };
                (read(&self.banks[bank].m), read(&self.banks[bank].v))
            }
        }
    }

    /// Replaces the state (resuming from a checkpoint): step count and moments.
    pub fn set_state(&mut self, t: u64, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) {
        assert_eq!(
            m.len(),
            self.params.len(),
            "Adam::set_state: wrong number of moment tensors"
        );
        self.t = t;
        if let Some(mut s) = self.loss_scale() {
            s.steps = t;
            self.set_loss_scale(s);
        }
        for i in 0..self.params.len() {
            let n = self.params[i].numel();
            assert!(
                m[i].len() == n && v[i].len() == n,
                "Adam::set_state: moment {i} has the wrong length"
            );
            match self.homes[i] {
                Home::Cpu(ref mt, ref vt) => {
                    mt.storage().write(&m[i]);
                    vt.storage().write(&v[i]);
                }
                Home::Gpu { bank, offset } => {
                    let b = &self.banks[bank];
                    for (s, data) in [(&b.m, &m[i]), (&b.v, &v[i])] {
                        let at = sub(s.buffer(), 4 * offset as u64, 4 * n as u64);
                        s.gpu.write_buffer(at, bytemuck::cast_slice(data));
                    }
                }
            }
        }
    }

    /// One step: every parameter with a gradient is updated in place (parameters without one are skipped,
    /// as PyTorch skips `p.grad is None`). On the GPU, one launch per bank and group of parameters sharing
    /// buffers. With loss scaling, first the check of every gradient and afterwards the scaler's update
    /// (module doc): the step is skipped when a gradient overflowed.
    pub fn step(&mut self) {
        self.t += 1;
        self.ensure_bias_corrections();
        let grads: Vec<Option<Tensor>> = self.params.iter().map(|p| p.grad()).collect();
        let mut per_bank: Vec<Vec<Item>> = (0..self.banks.len()).map(|_| Vec::new()).collect();
        let mut cpu: Vec<(usize, Vec<f32>)> = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let p = &self.params[i];
            match &self.homes[i] {
                Home::Cpu(..) => cpu.push((i, g.to_vec())),
                &Home::Gpu { bank, offset } => per_bank[bank].push(Item {
                    p: p.gpu_storage("adam"),
                    g: g.gpu_storage("adam"),
                    moments_at: offset,
                    n: p.numel(),
                }),
            }
        }
        // The CPU parameters: the scaler's check, then the steps (unscaled gradients) unless it found an
        // overflow, then its update.
        let mut t = self.t;
        if let Some(Scaler::Cpu { state, .. }) = &mut self.scaler {
            for (_, g) in &cpu {
                state.cpu_find(g);
            }
            if state.found {
                cpu.clear();
            }
            let inv = state.inv_scale();
            for (_, g) in &mut cpu {
                g.iter_mut().for_each(|v| *v *= inv);
            }
            t = state.steps + 1;
        }
        for (i, g) in cpu {
            let (p, Home::Cpu(m, v)) = (&self.params[i], &self.homes[i]) else {
                continue; // (only CPU parameters are listed)
            };
            let mut pv = p.to_vec();
            let (mut mv, mut vv) = (m.to_vec(), v.to_vec());
            cpu_step(&self.cfg, t, &mut pv, &g, &mut mv, &mut vv);
            p.storage().write(&pv);
            m.storage().write(&mv);
            v.storage().write(&vv);
        }
        if let Some(Scaler::Cpu { state, scale }) = &mut self.scaler {
            state.cpu_update();
            scale.storage().write(&[state.scale()]);
        }
        // The GPU parameters.
        let scaled = match &self.scaler {
            Some(Scaler::Gpu { state, bias, .. }) => Some(Scaled {
                state: state.buffer(),
                bias: bias.buffer(),
            }),
            _ => None,
        };
        // Each bank's groups and table, built once: the check reads them before any step does.
        let groups: Vec<Option<Groups>> = per_bank.iter().map(|items| Groups::of(items)).collect();
        let mut launches = 0;
        if let Some(s) = scaled {
            launches += groups
                .iter()
                .flatten()
                .map(|gr| gr.find_overflow(s.state))
                .sum::<usize>();
        }
        launches += groups
            .iter()
            .zip(&self.banks)
            .filter_map(|(gr, b)| Some(gr.as_ref()?.step(&self.cfg, self.t, (&b.m, &b.v), scaled)))
            .sum::<usize>();
        if let Some(Scaler::Gpu { state, scale, .. }) = &self.scaler {
            loss_scale::gpu_update(
                state.gpu,
                state.buffer(),
                scale.gpu_storage("loss scale").buffer(),
            );
            launches += 1;
        }
        self.launches = launches;
    }

    /// Under loss scaling on the GPU: the bias-correction table covers step `t` (every step the device may
    /// take next) at the current learning rate, rewritten whole when it grows or the rate changed.
    fn ensure_bias_corrections(&mut self) {
        let Some(Scaler::Gpu {
            state,
            bias,
            bias_len,
            bias_lr,
            ..
        }) = &mut self.scaler
        else {
            return;
        };
        let t = self.t as usize;
        if t <= *bias_len && *bias_lr == self.cfg.lr {
            return;
        }
        let len = t.next_power_of_two().max(1024);
        let table: Vec<f32> = (1..=len as u64)
            .flat_map(|k| self.cfg.bias_corrections(k))
            .collect();
        let gpu = state.gpu;
        *bias = GpuStorage::alloc(gpu, table.len(), "adam (bias corrections)");
        gpu.write_buffer(bias.buffer(), bytemuck::cast_slice(&table));
        (*bias_len, *bias_lr) = (len, self.cfg.lr);
    }

    /// GPU launches of the last step (0 on the CPU).
    pub fn last_launches(&self) -> usize {
        self.launches
    }

    /// Forgets every parameter's gradient.
    pub fn zero_grad(&self) {
        for p in &self.params {
            p.zero_grad();
        }
    }
}

/// `bytes` bytes at `at` of a range.
fn sub(s: BufSlice<'_>, at: u64, bytes: u64) -> BufSlice<'_> {
    BufSlice {
        buffer: s.buffer,
        offset: s.offset + at,
        size: bytes,
    }
}
