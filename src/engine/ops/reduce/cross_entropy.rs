//! Cross-entropy over class scores with class weights and an ignore class, with PyTorch semantics
//! (`F.cross_entropy(x, target, weight, ignore_index=…)`, reduction 'mean').
//!
//! Math: x (N, C, *) scores, t (N, *) class ids. Per position: `l = w[t] · (lse(x[:, p]) - x[t, p])`,
//! `lse` = log-sum-exp over C with the max subtracted; ignored positions (t = ignore_index) give 0 and weight
//! 0. The mean is `Σ l / Σ w[t]` — normalised by the total weight of the targets present, not the count.
//! Derivative: `dx[c, p] = dl[p] · w[t] · (softmax(x[:, p])[c] - [c = t])` (fused softmax backward).
//!
//! Structure: the op [`Tensor::cross_entropy_per_position`] (kernels `cross_entropy.wgsl`,
//! `cross_entropy_backward.wgsl`) returns `l` (N, *) and the weights; [`Tensor::cross_entropy`] composes the
//! mean as `sum(l) / sum(w)`. Targets are an f32 tensor of class ids (exact up to 2^24 classes).

use crate::engine::autograd::{no_grad, Backward};
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of cross_entropy.wgsl and cross_entropy_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    c: u32,
    p: u32,
    ignore_index: i32,
}

fn class_of(t: f64, c: usize, ignore_index: i64) -> Option<usize> {
    let ti = t as i64;
    if ti == ignore_index {
        return None;
    }
    assert!(
        ti >= 0 && (ti as usize) < c && t == ti as f64,
        "cross_entropy: target {t} is not a class id in 0..{c} nor ignore_index {ignore_index}"
    );
    Some(ti as usize)
}

/// `cross_entropy.wgsl`: per-pixel weighted losses.
pub const CROSS_ENTROPY: Kernel =
    Kernel::new::<Params>(&shaders::CROSS_ENTROPY, "cross_entropy", 6);
/// `cross_entropy_backward.wgsl`: dlogits.
pub const CROSS_ENTROPY_BACKWARD: Kernel = Kernel::new::<Params>(
    &shaders::CROSS_ENTROPY_BACKWARD,
    "cross_entropy_backward",
    6,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[CROSS_ENTROPY, CROSS_ENTROPY_BACKWARD];

// ---- CPU reference ----

/// x (N, C, P), t (N, P), w (C) → (loss (N, P), weight of each target (N, P)).
pub fn cpu_forward<T: Real>(
    x: &[T],
    t: &[T],
    w: &[T],
    n: usize,
    c: usize,
    p: usize,
    ignore_index: i64,
) -> (Vec<T>, Vec<T>) {
    let mut loss = vec![T::zero(); n * p];
    let mut wt = vec![T::zero(); n * p];
    for s in 0..n {
        for q in 0..p {
            let Some(tc) = class_of(t[s * p + q].to_f64(), c, ignore_index) else {
                continue;
            };
            let at = |k: usize| x[(s * c + k) * p + q];
            let mut m = at(0);
            for k in 1..c {
                m = m.max(at(k));
            }
            let mut sum = T::zero();
            for k in 0..c {
                sum += (at(k) - m).exp();
            }
            let lse = m + sum.ln();
            loss[s * p + q] = w[tc] * (lse - at(tc));
            wt[s * p + q] = w[tc];
        }
    }
    (loss, wt)
}

/// dl (N, P) → dx (N, C, P).
#[allow(clippy::too_many_arguments)]
pub fn cpu_backward<T: Real>(
    x: &[T],
    t: &[T],
    w: &[T],
    dl: &[T],
    n: usize,
    c: usize,
    p: usize,
    ignore_index: i64,
) -> Vec<T> {
    let mut dx = vec![T::zero(); n * c * p];
    for s in 0..n {
        for q in 0..p {
            let Some(tc) = class_of(t[s * p + q].to_f64(), c, ignore_index) else {
                continue;
            };
            let at = |k: usize| (s * c + k) * p + q;
            let mut m = x[at(0)];
            for k in 1..c {
                m = m.max(x[at(k)]);
            }
            let mut sum = T::zero();
            for k in 0..c {
                sum += (x[at(k)] - m).exp();
            }
            let g = dl[s * p + q] * w[tc];
            for k in 0..c {
                let prob = (x[at(k)] - m).exp() / sum;
                dx[at(k)] = g * (prob - if k == tc { T::one() } else { T::zero() });
            }
        }
    }
    dx
}

// ---- GPU ----

/// Launches cross_entropy.wgsl → (loss, wt), both (N, P).
pub fn gpu_forward(
    x: &GpuStorage,
    t: &GpuStorage,
    w: &GpuStorage,
    n: usize,
    c: usize,
    p: usize,
    ignore_index: i64,
) -> (GpuStorage, GpuStorage) {
    let loss = GpuStorage::alloc(x.gpu, n * p, "cross_entropy");
    let wt = GpuStorage::alloc(x.gpu, n * p, "cross_entropy");
    let params = Params {
        n: n as u32,
        c: c as u32,
        p: p as u32,
        ignore_index: ignore_index as i32,
    };
    let bufs = [
        x.buffer(),
        t.buffer(),
        w.buffer(),
        loss.buffer(),
        wt.buffer(),
    ];
    CROSS_ENTROPY.dispatch(x.gpu, &bufs, &params, Grid::threads(n * p));
    (loss, wt)
}

/// Launches cross_entropy_backward.wgsl → dx (N, C, P).
#[allow(clippy::too_many_arguments)]
pub fn gpu_backward(
    x: &GpuStorage,
    t: &GpuStorage,
    w: &GpuStorage,
    dl: &GpuStorage,
    n: usize,
    c: usize,
    p: usize,
    ignore_index: i64,
) -> GpuStorage {
    let dx = GpuStorage::alloc(x.gpu, n * c * p, "cross_entropy_backward");
    let params = Params {
        n: n as u32,
        c: c as u32,
        p: p as u32,
        ignore_index: ignore_index as i32,
    };
    let bufs = [x.buffer(), t.buffer(), w.buffer(), dl.buffer(), dx.buffer()];
    CROSS_ENTROPY_BACKWARD.dispatch(x.gpu, &bufs, &params, Grid::threads(n * p));
    dx
}

// ---- Autograd ----

fn dims(x: &Tensor, t: &Tensor) -> (usize, usize, usize) {
    let s = x.shape();
    assert!(
        s.len() >= 2,
        "cross_entropy: expected scores (N, C, ...), got {s:?}"
    );
    let mut ts = vec![s[0]];
    ts.extend_from_slice(&s[2..]);
    assert_eq!(
        t.shape(),
        &ts[..],
        "cross_entropy: expected targets {ts:?} for scores {s:?}, got {:?}",
        t.shape()
    );
    (s[0], s[1], s[2..].iter().product())
}

struct CrossEntropyBackward {
    x: Tensor,
    t: Tensor,
    w: Tensor,
    ignore_index: i64,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn backward(&self, dl: &Tensor) -> Vec<Option<Tensor>> {
        let (n, c, p) = dims(&self.x, &self.t);
        let op = "cross_entropy_backward";
        let (x, t, w) = (&self.x, &self.t, &self.w);
        let storage = match dl.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(
                &x.cpu_data(op),
                &t.cpu_data(op),
                &w.cpu_data(op),
                &dl.cpu_data(op),
                n,
                c,
                p,
                self.ignore_index,
            )),
            Device::Gpu => Storage::Gpu(gpu_backward(
                x.gpu_storage(op),
                t.gpu_storage(op),
                w.gpu_storage(op),
                dl.gpu_storage(op),
                n,
                c,
                p,
                self.ignore_index,
            )),
        };
        vec![Some(Tensor::from_storage(x.shape(), storage)), None, None]
    }
}

impl Tensor {
    /// Per-position weighted loss (N, *) and the weight of each position's target (N, *), for scores
    /// `self` (N, C, *) and class ids `target` (N, *). `weight` (C) defaults to ones.
    pub fn cross_entropy_per_position(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: i64,
    ) -> (Tensor, Tensor) {
        let (n, c, p) = dims(self, target);
        let w = weight
            .cloned()
            .unwrap_or_else(|| Tensor::ones(&[c], self.device()));
        assert_eq!(
            w.shape(),
            &[c],
            "cross_entropy: expected class weights ({c}), got {:?}",
            w.shape()
        );
        let op = "cross_entropy";
        let (loss, wt) = match Tensor::same_device(op, &[self, target, &w]) {
            Device::Cpu => {
                let (l, wt) = cpu_forward(
                    &self.cpu_data(op),
                    &target.cpu_data(op),
                    &w.cpu_data(op),
                    n,
                    c,
                    p,
                    ignore_index,
                );
                (Tensor::cpu_storage(l), Tensor::cpu_storage(wt))
            }
            Device::Gpu => {
                let (l, wt) = gpu_forward(
                    self.gpu_storage(op),
                    target.gpu_storage(op),
                    w.gpu_storage(op),
                    n,
                    c,
                    p,
                    ignore_index,
                );
                (Storage::Gpu(l), Storage::Gpu(wt))
            }
        };
        let back = CrossEntropyBackward {
            x: self.clone(),
            t: target.detach(),
            w: w.detach(),
            ignore_index,
        };
        let l = Tensor::from_op(target.shape(), loss, &[self, target, &w], back);
        (l, Tensor::from_storage(target.shape(), wt))
    }

    /// `F.cross_entropy(self, target, weight, ignore_index)` with reduction 'mean': the weighted mean over
    /// the positions whose target is not ignored (NaN when every target is ignored, as PyTorch).
    pub fn cross_entropy(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: i64,
    ) -> Tensor {
        let (l, wt) = self.cross_entropy_per_position(target, weight, ignore_index);
        let total_weight = no_grad(|| wt.sum_all());
        l.sum_all().div(&total_weight)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // Two classes with equal scores: loss = ln 2 per position. Weights (1, 3), targets (0, 1, ignored):
        // mean = (1·ln2 + 3·ln2) / (1 + 3) = ln 2.
        let x = Tensor::from_vec(vec![0.0; 6], &[3, 2], Device::Cpu);
        let t = Tensor::from_vec(vec![0.0, 1.0, -100.0], &[3], Device::Cpu);
        let w = Tensor::from_vec(vec![1.0, 3.0], &[2], Device::Cpu);
        let l = x.cross_entropy(&t, Some(&w), -100).item();
        assert!((l - std::f32::consts::LN_2).abs() < 1e-6, "{l}");
    }

    #[test]
    fn gradcheck_f64() {
        let (n, c, p) = (2, 4, 3);
        let t: Vec<f64> = vec![0.0, 3.0, 19.0, 1.0, 2.0, 2.0];
        let w = vec![0.5, 1.0, 2.0, 0.0];
        let (t2, w2) = (t.clone(), w.clone());
        gradcheck(
            "cross_entropy",
            &[random_vec(n * c * p, -2.0, 2.0, 51)],
            &[],
            |v| cpu_forward(&v[0], &t, &w, n, c, p, 19).0,
            |v, g| vec![cpu_backward(&v[0], &t2, &w2, g, n, c, p, 19)],
        );
    }

    #[test]
    fn autograd_mean_matches_the_composition() {
        // d mean / dx = dx(per position) / Σw: check one entry against the reference.
        let x = Tensor::from_vec(vec![0.1, 0.7, -0.3, 0.2], &[2, 2], Device::Cpu).requires_grad_();
        let t = Tensor::from_vec(vec![1.0, 0.0], &[2], Device::Cpu);
        x.cross_entropy(&t, None, -100).backward();
        let g = x.grad().unwrap().to_vec();
        let r = cpu_backward(
            &[0.1f64, 0.7, -0.3, 0.2],
            &[1.0, 0.0],
            &[1.0, 1.0],
            &[0.5, 0.5],
            2,
            2,
            1,
            -100,
        );
        for (a, b) in g.iter().zip(&r) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }
}
