//! The Adam update as an op: `torch.optim.Adam`'s arithmetic (betas, eps, L2 `weight_decay` added to the
//! gradient, bias correction, amsgrad off) on one parameter tensor and its two moments, in place. The
//! optimizer that owns the moments and steps every parameter is `train::adam::Adam`.
//!
//! The GPU step is `adam.wgsl` (one invocation per element); the CPU reference [`cpu_step`] follows llm.c's
//! `gpt2_update` loop and PyTorch's single-tensor implementation operation by operation:
//!
//! ```text
//! g  = g + weight_decay · p
//! m  = m + (1 - β1) (g - m)                  # exp_avg.lerp_(g, 1 - β1)
//! v  = β2 v + ((1 - β2) g) g                 # exp_avg_sq.mul_(β2).addcmul_(g, g, value = 1 - β2)
//! p  = p + ((-lr / (1 - β1^t)) m) / (sqrt(v) / sqrt(1 - β2^t) + eps)   # addcdiv_
//! ```
//! Bias corrections are computed on the host in f64 (as Python does) and passed as f32.

use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::GpuStorage;
use crate::shaders;

/// Shader `Params` of adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad: [u32; 3],
}

/// `adam.wgsl`: p, g, m, v (n) → p, m, v updated in place.
pub const ADAM: Kernel = Kernel::new::<Params>(&shaders::ADAM, "adam", 5);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[ADAM];

/// Adam hyper-parameters (PyTorch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// eps.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// The kernel parameters for step `t` (1-based) over `n` elements.
    fn params(&self, t: u64, n: usize) -> Params {
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        Params {
            n: n as u32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            step_size: (self.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            _pad: [0; 3],
        }
    }
}

// ---- CPU reference ----

/// One Adam step at step `t` (1-based) on host slices, in place. The scalars are rounded to f32 exactly as
/// the GPU receives them, so the two paths run the same arithmetic.
pub fn cpu_step<T: Real>(cfg: &AdamConfig, t: u64, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let k = cfg.params(t, p.len());
    let f = |x: f32| T::from_f64(x as f64);
    let (b2, eps, wd) = (f(k.beta2), f(k.eps), f(k.weight_decay));
    let (step, bc2s, omb1, omb2) = (
        f(k.step_size),
        f(k.bc2_sqrt),
        f(k.one_minus_beta1),
        f(k.one_minus_beta2),
    );
    for i in 0..p.len() {
        let grad = g[i] + wd * p[i];
        m[i] = m[i] + omb1 * (grad - m[i]);
        v[i] = v[i] * b2 + (omb2 * grad) * grad;
        let denom = v[i].sqrt() / bc2s + eps;
        p[i] += (-step * m[i]) / denom;
    }
}

// ---- GPU ----

/// Launches adam.wgsl at step `t` (1-based): p, m, v (n) updated in place from g (n).
pub fn gpu_step(cfg: &AdamConfig, t: u64, [p, g, m, v]: [&GpuStorage; 4], n: usize) {
    let bufs = [p.buffer(), g.buffer(), m.buffer(), v.buffer()];
    ADAM.dispatch(
        p.gpu,
        &bufs,
        &cfg.params(t, n),
        Grid::threads(n).flops(12 * n).bytes(28 * n),
    );
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_by_hand() {
        // Step 1 from m = v = 0 with g = 0.5, lr 0.1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25,
        // p -= 0.1 · 0.5 / (0.5 + 1e-8) ≈ 0.1 → p = 1 - 0.1 = 0.9 (Adam's first step is ±lr).
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let (mut p, mut m, mut v) = (vec![1.0f64], vec![0.0], vec![0.0]);
        cpu_step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v);
        assert!((m[0] - 0.05).abs() < 1e-8 && (v[0] - 0.00025).abs() < 1e-9);
        assert!((p[0] - 0.9).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn weight_decay_adds_to_the_gradient() {
        // g = 0, wd = 0.5, p = 2: the effective gradient is 1, so the first step is again -lr.
        let cfg = AdamConfig {
            lr: 0.01,
            weight_decay: 0.5,
            ..Default::default()
        };
        let (mut p, mut m, mut v) = (vec![2.0f64], vec![0.0], vec![0.0]);
        cpu_step(&cfg, 1, &mut p, &[0.0], &mut m, &mut v);
        assert!((p[0] - 1.99).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn two_steps_by_hand() {
        // g = 1 then g = -1, lr 1, β1 0.9, β2 0.999. Step 2: m = 0.1 + 0.1(-1 - 0.1) = -0.01,
        // v = 0.999e-3 + 1e-3 = 1.999e-3, m̂ = -0.01 / 0.19, v̂ = 1.999e-3 / 1.999e-3 = 1,
        // p2 = p1 + (1/0.19)(0.01) / (1 + 1e-8) with p1 = 0 - 1 → p2 = -1 + 0.0526315...
        let cfg = AdamConfig {
            lr: 1.0,
            ..Default::default()
        };
        let (mut p, mut m, mut v) = (vec![0.0f64], vec![0.0], vec![0.0]);
        cpu_step(&cfg, 1, &mut p, &[1.0], &mut m, &mut v);
        cpu_step(&cfg, 2, &mut p, &[-1.0], &mut m, &mut v);
        assert!((p[0] - (-1.0 + 0.01 / 0.19)).abs() < 1e-6, "{}", p[0]);
    }
}
