//! Dropout, inverted and seeded: `y = keep ? x / (1 - p) : 0`, where `keep(i)` is a pure function of
//! (seed, i) — the PCG hash in `engine::rng` and `dropout.wgsl` — so CPU and GPU masks agree bit for bit and
//! the same seed gives the same mask.
//!
//! Derivative: `dx = keep ? dy / (1 - p) : 0`: the forward kernel applied to dy with the same seed (no
//! backward kernel). Saved: the seed and p. In eval mode (or p = 0) dropout is the identity.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::rng::hash_u32;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

/// `round(p · 2^32)`, saturated: an element is kept when its hash is at least this.
pub fn threshold(p: f32) -> u32 {
    ((p as f64) * 4294967296.0).round().min(u32::MAX as f64) as u32
}

/// Whether element `i` is kept.
pub fn keep(seed: u32, i: u32, threshold: u32) -> bool {
    hash_u32(seed ^ hash_u32(i)) >= threshold
}

/// The scale of kept elements, `1 / (1 - p)` in f32.
pub fn scale(p: f32) -> f32 {
    1.0 / (1.0 - p)
}

/// `dropout.wgsl`: x → y (seeded keep mask, inverted scaling).
pub const DROPOUT: Kernel = Kernel::new::<Params>(&shaders::DROPOUT, "dropout", 3);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[DROPOUT];

// ---- CPU reference ----

/// x (n) → y (n).
pub fn cpu_forward<T: Real>(x: &[T], p: f32, seed: u32) -> Vec<T> {
    let (t, s) = (threshold(p), T::from_f64(scale(p) as f64));
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if keep(seed, i as u32, t) {
                v * s
            } else {
                T::zero()
            }
        })
        .collect()
}

// ---- GPU ----

/// Launches dropout.wgsl.
pub fn gpu_forward(x: &GpuStorage, n: usize, p: f32, seed: u32) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, n, "dropout");
    let params = Params {
        n: n as u32,
        seed,
        threshold: threshold(p),
        scale: scale(p),
    };
    DROPOUT.dispatch(x.gpu, &[x.buffer(), y.buffer()], &params, Grid::threads(n));
    y
}

// ---- Autograd ----

fn run(x: &Tensor, p: f32, seed: u32) -> Storage {
    match x.device() {
        Device::Cpu => Tensor::cpu_storage(cpu_forward(&x.cpu_data("dropout"), p, seed)),
        Device::Gpu => Storage::Gpu(gpu_forward(x.gpu_storage("dropout"), x.numel(), p, seed)),
    }
}

struct DropoutBackward {
    p: f32,
    seed: u32,
}

impl Backward for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(Tensor::from_storage(
            dy.shape(),
            run(dy, self.p, self.seed),
        ))]
    }
}

impl Tensor {
    /// Inverted dropout with probability `p` and mask seed `seed` when `training`; the identity otherwise.
    pub fn dropout(&self, p: f32, seed: u32, training: bool) -> Tensor {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout: expected 0 <= p < 1, got {p}"
        );
        if !training || p == 0.0 {
            return self.clone();
        }
        Tensor::from_op(
            self.shape(),
            run(self, p, seed),
            &[self],
            DropoutBackward { p, seed },
        )
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_one_minus_p_and_scales() {
        let x = vec![1.0f64; 20000];
        let y = cpu_forward(&x, 0.25, 7);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / x.len() as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept fraction {kept}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        // Same seed, same mask; another seed, another mask.
        assert_eq!(cpu_forward(&x, 0.25, 7), y);
        assert_ne!(cpu_forward(&x, 0.25, 8), y);
    }

    #[test]
    fn gradcheck_f64() {
        // Given the mask, dropout is linear: its backward is the forward applied to dy with the same seed.
        let x = crate::engine::testing::random_vec(40, -1.0, 1.0, 81);
        crate::engine::testing::gradcheck(
            "dropout",
            &[x],
            &[],
            |v| cpu_forward(&v[0], 0.3, 11),
            |_, g| vec![cpu_forward(g, 0.3, 11)],
        );
    }

    #[test]
    fn gradient_is_the_same_mask() {
        let x = Tensor::from_vec(
            (0..50).map(|v| v as f32 + 1.0).collect(),
            &[50],
            Device::Cpu,
        )
        .requires_grad_();
        let y = x.dropout(0.5, 3, true);
        y.sum_all().backward();
        let g = x.grad().unwrap().to_vec();
        for (yi, gi) in y.to_vec().iter().zip(&g) {
            assert_eq!(*yi == 0.0, *gi == 0.0);
            assert!(*gi == 0.0 || *gi == 2.0);
        }
    }
}
