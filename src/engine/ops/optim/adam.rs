//! The Adam update as an op: `torch.optim.Adam`'s arithmetic (betas, eps, L2 `weight_decay` added to the
//! gradient, bias correction, amsgrad off) on one parameter tensor and its two moments, in place. The
//! optimizer that owns the moments and steps every parameter is `train::adam::Adam`.
//!
//! The GPU step is `adam.wgsl`, a multi-tensor launch: one invocation per element of a group of tensors whose
//! parameters lie in one pooled buffer and whose gradients lie in one pooled buffer (each bound whole, the
//! tensors found by their offsets in a small table), with their moments in the optimizer's moment bank. A
//! model's parameters are allocated together, so a step is a handful of launches instead of one per tensor
//! ([`Groups::step`]). The CPU reference [`cpu_step`] follows llm.c's `gpt2_update` loop and PyTorch's
//! single-tensor implementation operation by operation:
//!
//! ```text
//! g  = g + weight_decay · p
//! m  = m + (1 - β1) (g - m)                  # exp_avg.lerp_(g, 1 - β1)
//! v  = β2 v + ((1 - β2) g) g                 # exp_avg_sq.mul_(β2).addcmul_(g, g, value = 1 - β2)
//! p  = p + ((-lr / (1 - β1^t)) m) / (sqrt(v) / sqrt(1 - β2^t) + eps)   # addcdiv_
//! ```
//! Bias corrections are computed on the host in f64 (as Python does) and passed as f32. Under loss scaling
//! (`ops::optim::loss_scale`, `--precision mixed`) the kernel reads them from a table of such values indexed
//! by the device's step count, since only the device knows which steps its scaler skipped.

use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::optim::loss_scale;
use crate::engine::pool::BufSlice;
use crate::engine::real::Real;
use crate::engine::storage::GpuStorage;
use crate::shaders;

/// Shader `Params` of adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    first: u32,
    count: u32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    scaled: u32,
    _pad: u32,
}

/// `adam.wgsl`: p, g (buffers holding a group's tensors), m, v (the moment bank), table, the loss scaler's
/// state and bias-correction table → p, m, v updated in place.
pub const ADAM: Kernel = Kernel::new::<Params>(&shaders::ADAM, "adam", 8);
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
    /// The bias corrections of step `t` (1-based) as the kernel receives them: (step_size, bc2_sqrt), computed
    /// in f64 and rounded to f32 (the loss scaler's table, `ops::optim::loss_scale`).
    pub fn bias_corrections(&self, t: u64) -> [f32; 2] {
        let k = self.params(t, 0, 0, 0);
        [k.step_size, k.bc2_sqrt]
    }

    /// The kernel parameters for step `t` (1-based) over `n` elements: table entries `first..first + count`.
    fn params(&self, t: u64, n: usize, first: usize, count: usize) -> Params {
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        Params {
            n: n as u32,
            first: first as u32,
            count: count as u32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            step_size: (self.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            scaled: 0,
            _pad: 0,
        }
    }
}

// ---- CPU reference ----

/// One Adam step at step `t` (1-based) on host slices, in place. The scalars are rounded to f32 exactly as
/// the GPU receives them, so the two paths run the same arithmetic.
pub fn cpu_step<T: Real>(cfg: &AdamConfig, t: u64, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let k = cfg.params(t, p.len(), 0, 1);
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

/// One parameter tensor of a GPU step: its storage, its gradient's, and where its moments start in the moment
/// bank (elements).
pub struct Item<'a> {
    /// The parameter (updated in place).
    pub p: &'a GpuStorage,
    /// Its gradient.
    pub g: &'a GpuStorage,
    /// Offset of its moments in the bank, f32 elements.
    pub moments_at: usize,
    /// Elements.
    pub n: usize,
}

/// What binds one launch: a buffer bound whole (when the device can bind it) or one tensor's own range.
fn binding<'a>(s: BufSlice<'a>, max: u64) -> BufSlice<'a> {
    let whole = BufSlice::whole(s.buffer);
    if whole.size <= max {
        whole
    } else {
        s
    }
}

fn same(a: &BufSlice, b: &BufSlice) -> bool {
    a.buffer == b.buffer && a.offset == b.offset
}

/// The loss scaler's buffers an Adam step reads under `--precision mixed` (`ops::optim::loss_scale`).
#[derive(Clone, Copy)]
pub struct Scaled<'a> {
    /// The scaler's four words (found, tracker, steps taken, exponent).
    pub state: BufSlice<'a>,
    /// (step_size, bc2_sqrt) of steps 1, 2, ... ([`AdamConfig::bias_corrections`]), at least up to the
    /// step being recorded.
    pub bias: BufSlice<'a>,
}

/// A launch's worth of `items`: the tensors sharing a parameter buffer and a gradient buffer.
struct Group<'a> {
    p: BufSlice<'a>,
    g: BufSlice<'a>,
    /// (p_off, g_off, mv_off, start) per tensor.
    entries: Vec<[u32; 4]>,
    /// Elements.
    n: usize,
}

/// A step's launches: the GPU items in groups (in order of first appearance, so the same layout gives the
/// same launches), with the uploaded table of every group's entries, each group's followed by a sentinel
/// holding its element count. Built once a step and bank, read by the loss scaler's check and by Adam.
pub struct Groups<'a> {
    groups: Vec<Group<'a>>,
    tab: GpuStorage,
    /// The index of each group's first entry in the table.
    firsts: Vec<usize>,
}

impl<'a> Groups<'a> {
    /// The groups of `items` (`None` when no item has an element).
    pub fn of(items: &[Item<'a>]) -> Option<Groups<'a>> {
        let gpu = items.first()?.p.gpu;
        let max = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let mut groups: Vec<Group> = Vec::new();
        for it in items.iter().filter(|it| it.n > 0) {
            let (ps, gs) = (it.p.buffer(), it.g.buffer());
            let (pb, gb) = (binding(ps, max), binding(gs, max));
            let k = match groups
                .iter()
                .position(|gr| same(&gr.p, &pb) && same(&gr.g, &gb))
            {
                Some(k) => k,
                None => {
                    groups.push(Group {
                        p: pb,
                        g: gb,
                        entries: Vec::new(),
                        n: 0,
                    });
                    groups.len() - 1
                }
            };
            let gr = &mut groups[k];
            gr.entries.push([
                ((ps.offset - pb.offset) / 4) as u32,
                ((gs.offset - gb.offset) / 4) as u32,
                it.moments_at as u32,
                gr.n as u32,
            ]);
            gr.n += it.n;
        }
        if groups.is_empty() {
            return None;
        }
        let mut table: Vec<u32> = Vec::new();
        let mut firsts = Vec::new();
        for gr in &groups {
            firsts.push(table.len() / 4);
            table.extend(gr.entries.iter().flatten());
            table.extend([0, 0, 0, gr.n as u32]);
        }
        let tab = GpuStorage::alloc(gpu, table.len(), "adam (table)");
        gpu.write_buffer(tab.buffer(), bytemuck::cast_slice(&table));
        Some(Groups {
            groups,
            tab,
            firsts,
        })
    }

    /// Records Adam step `t` (1-based) of the groups, whose moments are in the bank `m`, `v`: one
    /// `adam.wgsl` launch per group. With `scaled`, the gradients are scaled and the step and its count
    /// come from the loss scaler's state (`adam.wgsl`'s header); `t` is then unused. Returns the number of
    /// launches.
    pub fn step(
        &self,
        cfg: &AdamConfig,
        t: u64,
        (m, v): (&GpuStorage, &GpuStorage),
        scaled: Option<Scaled>,
    ) -> usize {
        let tab = self.tab.buffer();
        for (gr, &first) in self.groups.iter().zip(&self.firsts) {
            let mut params = cfg.params(t.max(1), gr.n, first, gr.entries.len());
            // Without loss scaling the kernel reads neither state nor bias: any buffer binds them.
            let (state, bias) = match scaled {
                Some(s) => {
                    params.scaled = 1;
                    (s.state, s.bias)
                }
                None => (tab, tab),
            };
            ADAM.dispatch(
                m.gpu,
                &[gr.p, gr.g, m.buffer(), v.buffer(), tab, state, bias],
                &params,
                Grid::threads(gr.n).flops(12 * gr.n).bytes(28 * gr.n),
            );
        }
        self.groups.len()
    }

    /// Records the loss scaler's check of the groups' gradients (`adam_find_overflow.wgsl`, one launch per
    /// group), before any Adam step reads them. Returns the number of launches.
    pub fn find_overflow(&self, state: BufSlice) -> usize {
        for (gr, &first) in self.groups.iter().zip(&self.firsts) {
            loss_scale::gpu_find(
                self.tab.gpu,
                gr.g,
                self.tab.buffer(),
                state,
                (first, gr.entries.len(), gr.n),
            );
        }
        self.groups.len()
    }
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
