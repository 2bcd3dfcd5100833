//! The Pixel-Set Encoder's masked mean and standard deviation over the pixels of each set (spec §4.1), fused
//! into one kernel each way, with the original's quirks.
//!
//! ## Math
//! f (N, S, K): K features of S pixels for each of N sets; m (N, S): 1 for a real pixel, 0 for a padding copy.
//! For every (n, k), with M = Σ_s m_s:
//! ```text
//! μ = Σ_s m_s f_s / M
//! d = M, except d = 2 where M = 1            (QUIRK: one real pixel gives a divisor 1, not 0)
//! c_s = m_s (f_s − μ),   V = Σ_s c_s² / (d − 1),   σ = sqrt(V + 1e-31)   (the original's `10e-32`)
//! ```
//! Output (2, N, K): `[0]` = μ, `[1]` = σ (the PSE takes what its pooling string asks for).
//!
//! ## Derivatives
//! `∂μ/∂f_j = m_j / M`; with `Q = Σ_s c_s m_s` (0 for a 0/1 mask, kept for general weights),
//! `∂σ/∂f_j = (c_j m_j − (m_j / M) Q) / ((d − 1) σ)`, so
//! `df_j = gμ m_j / M + gσ (c_j m_j − m_j Q / M) / ((d − 1) σ)`. The mask gets no gradient.
//! Saved: f (only its recipe when it is recomputable, `engine::recompute`) and m (μ, σ and Q are recomputed
//! in the backward kernel, two passes over the S pixels).
//!
//! ## Kernels
//! `masked_pool.wgsl` (one invocation per (n, k), two loops over S) and `masked_pool_backward.wgsl` (one
//! invocation per (n, k), three loops, writing the S gradients it owns — a gather, deterministic). This replaces
//! a composition of ten elementwise and reduction ops over the (N, S, K) activations, each a full pass.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::recompute::Saved;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// The constant under the square root (`10e-32` in the original).
pub const STD_EPS: f64 = 1e-31;

/// Shader `Params` of masked_pool*.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    s: u32,
    k: u32,
    _pad: u32,
}

/// Sizes: N sets, S pixels, K features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// N.
    pub n: usize,
    /// S.
    pub s: usize,
    /// K.
    pub k: usize,
}

impl Dims {
    fn params(self) -> Params {
        Params {
            n: self.n as u32,
            s: self.s as u32,
            k: self.k as u32,
            _pad: 0,
        }
    }
}

/// `masked_pool.wgsl`: x, mask → masked mean and std.
pub const MASKED_POOL: Kernel = Kernel::new::<Params>(&shaders::MASKED_POOL, "masked_pool", 4);
/// `masked_pool_backward.wgsl`: dx.
pub const MASKED_POOL_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::MASKED_POOL_BACKWARD, "masked_pool_backward", 5);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[MASKED_POOL, MASKED_POOL_BACKWARD];

// ---- CPU reference ----

/// (M, μ, d − 1, σ, Q) of set n, feature k.
fn stats<T: Real>(f: &[T], m: &[T], d: Dims, n: usize, k: usize) -> (T, T, T, T, T) {
    let at = |s: usize| f[(n * d.s + s) * d.k + k];
    let (mut msum, mut fsum) = (T::zero(), T::zero());
    for s in 0..d.s {
        msum += m[n * d.s + s];
        fsum += m[n * d.s + s] * at(s);
    }
    let mu = fsum / msum;
    let dm1 = if msum == T::one() {
        T::one()
    } else {
        msum - T::one()
    };
    let (mut sq, mut q) = (T::zero(), T::zero());
    for s in 0..d.s {
        let c = m[n * d.s + s] * (at(s) - mu);
        sq += c * c;
        q += c * m[n * d.s + s];
    }
    let sigma = (sq / dm1 + T::from_f64(STD_EPS)).sqrt();
    (msum, mu, dm1, sigma, q)
}

/// f (N, S, K), m (N, S) → (2, N, K): masked mean, then masked std.
pub fn cpu_forward<T: Real>(f: &[T], m: &[T], d: Dims) -> Vec<T> {
    let mut out = vec![T::zero(); 2 * d.n * d.k];
    for n in 0..d.n {
        for k in 0..d.k {
            let (_, mu, _, sigma, _) = stats(f, m, d, n, k);
            out[n * d.k + k] = mu;
            out[(d.n + n) * d.k + k] = sigma;
        }
    }
    out
}

/// df (N, S, K) from dout (2, N, K).
pub fn cpu_backward<T: Real>(f: &[T], m: &[T], dout: &[T], d: Dims) -> Vec<T> {
    let mut df = vec![T::zero(); f.len()];
    for n in 0..d.n {
        for k in 0..d.k {
            let (msum, mu, dm1, sigma, q) = stats(f, m, d, n, k);
            let (gmu, gsigma) = (dout[n * d.k + k], dout[(d.n + n) * d.k + k]);
            for s in 0..d.s {
                let i = (n * d.s + s) * d.k + k;
                let mj = m[n * d.s + s];
                let c = mj * (f[i] - mu);
                df[i] = gmu * mj / msum + gsigma * (c * mj - mj * q / msum) / (dm1 * sigma);
            }
        }
    }
    df
}

// ---- GPU ----

/// Launches masked_pool.wgsl → (2, N, K).
pub fn gpu_forward(f: &GpuStorage, m: &GpuStorage, d: Dims) -> GpuStorage {
    let out = GpuStorage::alloc(f.gpu, 2 * d.n * d.k, "masked_pool");
    MASKED_POOL.dispatch(
        f.gpu,
        &[f.buffer(), m.buffer(), out.buffer()],
        &d.params(),
        Grid::threads(d.n * d.k),
    );
    out
}

/// Launches masked_pool_backward.wgsl → df (N, S, K).
pub fn gpu_backward(f: &GpuStorage, m: &GpuStorage, dout: &GpuStorage, d: Dims) -> GpuStorage {
    let df = GpuStorage::alloc(f.gpu, d.n * d.s * d.k, "masked_pool_backward");
    MASKED_POOL_BACKWARD.dispatch(
        f.gpu,
        &[f.buffer(), m.buffer(), dout.buffer(), df.buffer()],
        &d.params(),
        Grid::threads(d.n * d.k),
    );
    df
}

// ---- Autograd ----

struct MaskedPoolBackward {
    /// f (only its recipe when it is recomputable, `engine::recompute`).
    f: Saved,
    m: Tensor,
    d: Dims,
}

impl Backward for MaskedPoolBackward {
    fn name(&self) -> &'static str {
        "masked_pool"
    }
    fn backward(&self, dout: &Tensor) -> Vec<Option<Tensor>> {
        let (f, m, op) = (&self.f.get(), &self.m, "masked_pool_backward");
        let df = match dout.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(
                &f.cpu_data(op),
                &m.cpu_data(op),
                &dout.cpu_data(op),
                self.d,
            )),
            Device::Gpu => Storage::Gpu(gpu_backward(
                f.gpu_storage(op),
                m.gpu_storage(op),
                dout.gpu_storage(op),
                self.d,
            )),
        };
        vec![Some(Tensor::from_storage(f.shape(), df)), None]
    }
}

impl Tensor {
    /// The PSE's masked mean and std over the pixel axis: `self` = f (N, S, K), `mask` (N, S) (1 real pixel,
    /// 0 padding copy; no gradient). Returns (2, N, K): `[0]` the masked mean, `[1]` the masked std with the
    /// original's divisor and epsilon (module doc).
    pub fn masked_mean_std(&self, mask: &Tensor) -> Tensor {
        let op = "masked_mean_std";
        let fs = self.shape();
        assert!(
            fs.len() == 3 && mask.shape() == [fs[0], fs[1]],
            "{op}: expected f (N, S, K) and mask (N, S), got {fs:?} and {:?}",
            mask.shape()
        );
        let d = Dims {
            n: fs[0],
            s: fs[1],
            k: fs[2],
        };
        let storage = match Tensor::same_device(op, &[self, mask]) {
            Device::Cpu => {
                Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), &mask.cpu_data(op), d))
            }
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), mask.gpu_storage(op), d)),
        };
        let mask = mask.detach();
        let back = MaskedPoolBackward {
            f: Saved::new(self),
            m: mask.clone(),
            d,
        };
        Tensor::from_op(&[2, d.n, d.k], storage, &[self, &mask], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // N = 2 sets, S = 3, K = 1. Set 0: f = (1, 3, 8), mask (1, 1, 0): μ = 2, d − 1 = 1,
        // V = (1 + 1) / 1 = 2 → σ = √2. Set 1: one real pixel f = 5 of (5, 5, 5), mask (1, 0, 0):
        // μ = 5, d = 1 → 2 so d − 1 = 1, V = 0 → σ = √(1e-31).
        let d = Dims { n: 2, s: 3, k: 1 };
        let f = [1.0f64, 3.0, 8.0, 5.0, 5.0, 5.0];
        let m = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let y = cpu_forward(&f, &m, d);
        assert_eq!(&y[..2], &[2.0, 5.0]);
        assert!((y[2] - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(y[3], 1e-31f64.sqrt());
        // Gradient of σ_0 for pixel 0: c_0 m_0 / ((d − 1) σ) = −1 / √2 (Q = 0 for a 0/1 mask); padding: 0.
        let g = cpu_backward(&f, &m, &[0.0, 0.0, 1.0, 0.0], d);
        assert!((g[0] + 1.0 / 2f64.sqrt()).abs() < 1e-15 && g[2] == 0.0);
    }

    #[test]
    fn gradcheck_f64() {
        // Fractional masks exercise the Q term; a row with a single 1 the d = 1 → 2 quirk.
        let d = Dims { n: 3, s: 5, k: 2 };
        let mut m = random_vec(15, 0.2, 1.0, 82);
        m[5..10].copy_from_slice(&[0.0, 1.0, 0.0, 0.0, 0.0]);
        gradcheck(
            "masked_pool",
            &[random_vec(30, -2.0, 2.0, 81), m],
            &[1],
            |v| cpu_forward(&v[0], &v[1], d),
            |v, g| vec![cpu_backward(&v[0], &v[1], g, d), vec![]],
        );
    }
}
