//! The Adam optimizer (`torch.optim.Adam`): the moments of every parameter and the step count. The update
//! arithmetic — its CPU reference and `adam.wgsl` — is the op `engine::ops::optim::adam`.
//!
//! On the GPU the moments of all parameters live in one pair of flat buffers (a bank each for m and v, more
//! than one only when they would exceed the device's largest binding), so that a step is a multi-tensor
//! launch per group of parameters sharing buffers (`ops::optim::adam::gpu_step`): a handful of launches
//! instead of one per parameter tensor.

use crate::engine::ops::optim::adam::{cpu_step, gpu_step, Item};
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

/// Adam over a list of parameters (leaf tensors that require grad), with its moment buffers.
pub struct Adam {
    /// Hyper-parameters.
    pub cfg: AdamConfig,
    /// Steps taken so far.
    pub t: u64,
    params: Vec<Tensor>,
    homes: Vec<Home>,
    banks: Vec<Bank>,
    /// Launches of the last GPU step.
    launches: usize,
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
        }
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
    /// buffers.
    pub fn step(&mut self) {
        self.t += 1;
        let grads: Vec<Option<Tensor>> = self.params.iter().map(|p| p.grad()).collect();
        let mut per_bank: Vec<Vec<Item>> = (0..self.banks.len()).map(|_| Vec::new()).collect();
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let p = &self.params[i];
            match &self.homes[i] {
                Home::Cpu(m, v) => {
                    let mut pv = p.to_vec();
                    let (mut mv, mut vv) = (m.to_vec(), v.to_vec());
                    cpu_step(&self.cfg, self.t, &mut pv, &g.to_vec(), &mut mv, &mut vv);
                    p.storage().write(&pv);
                    m.storage().write(&mv);
                    v.storage().write(&vv);
                }
                &Home::Gpu { bank, offset } => per_bank[bank].push(Item {
                    p: p.gpu_storage("adam"),
                    g: g.gpu_storage("adam"),
                    moments_at: offset,
                    n: p.numel(),
                }),
            }
        }
        self.launches = per_bank
            .iter()
            .zip(&self.banks)
            .map(|(items, b)| gpu_step(&self.cfg, self.t, &b.m, &b.v, items))
            .sum();
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
