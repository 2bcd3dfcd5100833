//! The Adam optimizer (`torch.optim.Adam`): the moments of every parameter and the step count. The update
//! arithmetic — its CPU reference and `adam.wgsl` — is the op `engine::ops::optim::adam`; one GPU step records one
//! `adam.wgsl` launch per parameter tensor into the pending command encoder.

use crate::engine::ops::optim::adam::{cpu_step, gpu_step};
use crate::engine::storage::Device;
use crate::engine::tensor::Tensor;

pub use crate::engine::ops::optim::adam::AdamConfig;

// ---- The optimizer ----

/// Adam over a list of parameters (leaf tensors that require grad), with its moment buffers.
pub struct Adam {
    /// Hyper-parameters.
    pub cfg: AdamConfig,
    /// Steps taken so far.
    pub t: u64,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// An optimizer for `params` (moments start at zero on each parameter's device).
    pub fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Self {
        let m = params
            .iter()
            .map(|p| Tensor::zeros(p.shape(), p.device()))
            .collect();
        let v = params
            .iter()
            .map(|p| Tensor::zeros(p.shape(), p.device()))
            .collect();
        Adam {
            cfg,
            t: 0,
            params,
            m,
            v,
        }
    }

    /// The moment estimates (m, v) of parameter `i` (for checkpoints).
    pub fn moments(&self, i: usize) -> (&Tensor, &Tensor) {
        (&self.m[i], &self.v[i])
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
            self.m[i].storage().write(&m[i]);
            self.v[i].storage().write(&v[i]);
        }
    }

    /// One step: every parameter with a gradient is updated in place (parameters without one are skipped,
    /// as PyTorch skips `p.grad is None`).
    pub fn step(&mut self) {
        self.t += 1;
        for i in 0..self.params.len() {
            let p = &self.params[i];
            let Some(g) = p.grad() else { continue };
            match p.device() {
                Device::Cpu => {
                    let mut pv = p.to_vec();
                    let (mut mv, mut vv) = (self.m[i].to_vec(), self.v[i].to_vec());
                    cpu_step(&self.cfg, self.t, &mut pv, &g.to_vec(), &mut mv, &mut vv);
                    p.storage().write(&pv);
                    self.m[i].storage().write(&mv);
                    self.v[i].storage().write(&vv);
                }
                Device::Gpu => {
                    let op = "adam";
                    let (m, v) = (self.m[i].gpu_storage(op), self.v[i].gpu_storage(op));
                    let (pg, gg) = (p.gpu_storage(op), g.gpu_storage(op));
                    gpu_step(&self.cfg, self.t, [pg, gg, m, v], p.numel());
                }
            }
        }
    }

    /// Forgets every parameter's gradient.
    pub fn zero_grad(&self) {
        for p in &self.params {
            p.zero_grad();
        }
    }
}
