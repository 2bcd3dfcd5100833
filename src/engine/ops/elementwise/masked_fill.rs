//! masked_fill: `y = mask ? value : x`, with a 0/1 float mask that broadcasts to x (torch.masked_fill; the
//! L-TAE attention masks padded dates with -1000 this way).
//!
//! Derivative: `dx = mask ? 0 : dy`, which is masked_fill(dy, mask, 0): the backward reuses the forward
//! kernel. The mask gets no gradient. Saved: the (expanded) mask. Kernel: `masked_fill.wgsl`.
//! Shapes: x any; mask broadcastable to x (expanded on the device first when it differs).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of masked_fill.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    value: f32,
    _pad: [u32; 2],
}

/// `masked_fill.wgsl`: x, mask → y.
pub const MASKED_FILL: Kernel = Kernel::new::<Params>(&shaders::MASKED_FILL, "masked_fill", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[MASKED_FILL];

// ---- CPU reference ----

/// x, mask (n) → y (n).
pub fn cpu_forward<T: Real>(x: &[T], mask: &[T], value: T) -> Vec<T> {
    x.iter()
        .zip(mask)
        .map(|(&v, &m)| if m != T::zero() { value } else { v })
        .collect()
}

/// dy, mask (n) → dx (n).
pub fn cpu_backward<T: Real>(dy: &[T], mask: &[T]) -> Vec<T> {
    cpu_forward(dy, mask, T::zero())
}

// ---- GPU ----

/// Launches masked_fill.wgsl.
pub fn gpu_forward(x: &GpuStorage, mask: &GpuStorage, value: f32, n: usize) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, n, "masked_fill");
    let p = Params {
        n: n as u32,
        value,
        _pad: [0; 2],
    };
    MASKED_FILL.dispatch(
        x.gpu,
        &[x.buffer(), mask.buffer(), y.buffer()],
        &p,
        Grid::threads(n),
    );
    y
}

// ---- Autograd ----

fn fill(x: &Tensor, mask: &Tensor, value: f32) -> Storage {
    match Tensor::same_device("masked_fill", &[x, mask]) {
        Device::Cpu => Tensor::cpu_storage(cpu_forward(
            &x.cpu_data("masked_fill"),
            &mask.cpu_data("masked_fill"),
            value,
        )),
        Device::Gpu => Storage::Gpu(gpu_forward(
            x.gpu_storage("masked_fill"),
            mask.gpu_storage("masked_fill"),
            value,
            x.numel(),
        )),
    }
}

struct MaskedFillBackward {
    mask: Tensor,
}

impl Backward for MaskedFillBackward {
    fn name(&self) -> &'static str {
        "masked_fill"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        vec![
            Some(Tensor::from_storage(dy.shape(), fill(dy, &self.mask, 0.0))),
            None,
        ]
    }
}

impl Tensor {
    /// `value` where `mask` (0/1, broadcastable to self) is non-zero, self elsewhere.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Tensor {
        let m = crate::engine::autograd::no_grad(|| mask.expand(self.shape()));
        let storage = fill(self, &m, value);
        Tensor::from_op(
            self.shape(),
            storage,
            &[self, mask],
            MaskedFillBackward { mask: m.detach() },
        )
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        assert_eq!(
            cpu_forward(&[1.0f32, 2.0, 3.0], &[0.0, 1.0, 0.0], -1000.0),
            vec![1.0, -1000.0, 3.0]
        );
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu).requires_grad_();
        let m = Tensor::from_vec(vec![1.0, 0.0], &[1, 2], Device::Cpu);
        let y = x.masked_fill(&m, 9.0);
        assert_eq!(y.to_vec(), vec![9.0, 2.0, 9.0, 4.0]);
        y.sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn gradcheck_f64() {
        let mask: Vec<f64> = (0..10).map(|i| (i % 3 == 0) as u8 as f64).collect();
        let m2 = mask.clone();
        gradcheck(
            "masked_fill",
            &[random_vec(10, -1.0, 1.0, 41)],
            &[],
            |v| cpu_forward(&v[0], &mask, -1000.0),
            |_, g| vec![cpu_backward(g, &m2)],
        );
    }
}
