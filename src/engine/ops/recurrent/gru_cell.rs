//! One step of `torch.nn.GRU`'s recurrence as one fused op (the PSE + GRU classifier of the L-TAE paper,
//! `models::recurrent`).
//!
//! Math, per sample and hidden unit, gates ordered (r, z, n) as PyTorch: with gi = x_t W_ihᵀ + b_ih and
//! gh = h W_hhᵀ + b_hh (matmuls, outside this op),
//! `r = σ(gh_r + gi_r)`, `z = σ(gh_z + gi_z)`, `n = tanh(gi_n + gh_n · r)`, `h' = (h − n) · z + n`.
//! Derivatives (D = dL/dh'): `dn = D − D·z`, `dz = D·(h − n)`, `dh = D·z` (h's direct part; the part through
//! gh is the matmul's), `da_n = dn·(1 − n²)` → `dgi_n = da_n`, `dgh_n = da_n·r`, `dr = da_n·gh_n`;
//! `da_r = dr·r·(1 − r)` → `dgi_r = dgh_r`; `da_z = dz·z·(1 − z)` → `dgi_z = dgh_z`. These are the products of
//! the composition it replaces (narrow, add, sigmoid, tanh, mul, sub), in the same order, so the numbers are
//! the composition's; what changes is one launch a step instead of about fifteen, which made the GRU's
//! recurrence bound by the host's recording (issue: no idle launches).
//!
//! Saved for backward: the inputs gi, gh, h (the gates are recomputed). Shapes: gi, gh (B, 3·Hd), h (B, Hd)
//! → h' (B, Hd). Kernels: `gru_cell.wgsl`, `gru_cell_backward.wgsl`.

use crate::engine::autograd::{is_grad_enabled, Backward};
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of gru_cell.wgsl and gru_cell_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    hd: u32,
    _pad: [u32; 2],
}

impl Params {
    fn new(b: usize, hd: usize) -> Params {
        Params {
            n: u32::try_from(b * hd).expect("gru_cell: B·Hd overflows u32"),
            hd: hd as u32,
            _pad: [0; 2],
        }
    }
}

/// gru_cell.wgsl: gi, gh (B, 3·Hd), h (B, Hd) → h' (B, Hd).
pub const GRU_CELL: Kernel = Kernel::new::<Params>(&shaders::GRU_CELL, "gru_cell", 5);
/// gru_cell_backward.wgsl: gi, gh, h, dh' → dgi, dgh, dh.
pub const GRU_CELL_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::GRU_CELL_BACKWARD, "gru_cell_backward", 8);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[GRU_CELL, GRU_CELL_BACKWARD];

// ---- CPU reference ----

fn sigmoid<T: Real>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

/// The gates of element i: (r, z, n, gh_n, index of its r gate in gi / gh).
fn gates<T: Real>(gi: &[T], gh: &[T], hd: usize, i: usize) -> (T, T, T, T, usize) {
    let g = (i / hd) * 3 * hd + i % hd;
    let r = sigmoid(gh[g] + gi[g]);
    let z = sigmoid(gh[g + hd] + gi[g + hd]);
    let ghn = gh[g + 2 * hd];
    let n = (gi[g + 2 * hd] + ghn * r).tanh();
    (r, z, n, ghn, g)
}

/// h' = (h − n)·z + n per element. gi, gh: (B, 3·Hd), h: (B, Hd) → (B, Hd).
pub fn cpu_forward<T: Real>(gi: &[T], gh: &[T], h: &[T], hd: usize) -> Vec<T> {
    (0..h.len())
        .map(|i| {
            let (_, z, n, _, _) = gates(gi, gh, hd, i);
            (h[i] - n) * z + n
        })
        .collect()
}

/// (dgi, dgh, dh) for the upstream gradient `dout` (module doc).
pub fn cpu_backward<T: Real>(
    gi: &[T],
    gh: &[T],
    h: &[T],
    dout: &[T],
    hd: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (mut dgi, mut dgh, mut dh) = (
        vec![T::zero(); gi.len()],
        vec![T::zero(); gh.len()],
        vec![T::zero(); h.len()],
    );
    let one = T::one();
    for i in 0..h.len() {
        let (r, z, n, ghn, g) = gates(gi, gh, hd, i);
        let d = dout[i];
        let dn = d - d * z;
        let dz = d * (h[i] - n);
        dh[i] = d * z;
        let dan = dn * (one - n * n);
        let dr = dan * ghn;
        let dar = dr * r * (one - r);
        let daz = dz * z * (one - z);
        dgi[g] = dar;
        dgi[g + hd] = daz;
        dgi[g + 2 * hd] = dan;
        dgh[g] = dar;
        dgh[g + hd] = daz;
        dgh[g + 2 * hd] = dan * r;
    }
    (dgi, dgh, dh)
}

// ---- GPU ----

/// Launches gru_cell.wgsl.
pub fn gpu_forward(
    gi: &GpuStorage,
    gh: &GpuStorage,
    h: &GpuStorage,
    b: usize,
    hd: usize,
) -> GpuStorage {
    let out = GpuStorage::alloc(gi.gpu, b * hd, "gru_cell");
    let bufs = [gi.buffer(), gh.buffer(), h.buffer(), out.buffer()];
    GRU_CELL.dispatch(gi.gpu, &bufs, &Params::new(b, hd), Grid::threads(b * hd));
    out
}

/// Launches gru_cell_backward.wgsl: (dgi, dgh, dh).
pub fn gpu_backward(
    gi: &GpuStorage,
    gh: &GpuStorage,
    h: &GpuStorage,
    dout: &GpuStorage,
    b: usize,
    hd: usize,
) -> (GpuStorage, GpuStorage, GpuStorage) {
    let op = "gru_cell_backward";
    let (dgi, dgh, dh) = (
        GpuStorage::alloc(gi.gpu, 3 * b * hd, op),
        GpuStorage::alloc(gi.gpu, 3 * b * hd, op),
        GpuStorage::alloc(gi.gpu, b * hd, op),
    );
    let bufs = [
        gi.buffer(),
        gh.buffer(),
        h.buffer(),
        dout.buffer(),
        dgi.buffer(),
        dgh.buffer(),
        dh.buffer(),
    ];
    GRU_CELL_BACKWARD.dispatch(gi.gpu, &bufs, &Params::new(b, hd), Grid::threads(b * hd));
    (dgi, dgh, dh)
}

// ---- Autograd ----

impl Tensor {
    /// One GRU step: `self` = gi (B, 3·Hd) = x_t W_ihᵀ + b_ih, `gh` (B, 3·Hd) = h W_hhᵀ + b_hh, `h` (B, Hd) →
    /// h' (B, Hd) (module doc).
    pub fn gru_cell(&self, gh: &Tensor, h: &Tensor) -> Tensor {
        let op = "gru_cell";
        let hs = h.shape();
        assert!(
            hs.len() == 2 && self.shape() == [hs[0], 3 * hs[1]] && gh.shape() == self.shape(),
            "{op}: expected gi and gh (B, 3·Hd) and h (B, Hd), got {:?}, {:?}, {hs:?}",
            self.shape(),
            gh.shape()
        );
        let (b, hd) = (hs[0], hs[1]);
        let inputs = [self, gh, h];
        let storage = match Tensor::same_device(op, &inputs) {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(
                &self.cpu_data(op),
                &gh.cpu_data(op),
                &h.cpu_data(op),
                hd,
            )),
            Device::Gpu => Storage::Gpu(gpu_forward(
                self.gpu_storage(op),
                gh.gpu_storage(op),
                h.gpu_storage(op),
                b,
                hd,
            )),
        };
        let y = Tensor::from_storage(&[b, hd], storage);
        if !(is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())) {
            return y;
        }
        let back = GruCellBackward {
            gi: self.clone(),
            gh: gh.clone(),
            h: h.clone(),
        };
        y.attach_op(&inputs, back)
    }
}

struct GruCellBackward {
    gi: Tensor,
    gh: Tensor,
    h: Tensor,
}

impl Backward for GruCellBackward {
    fn name(&self) -> &'static str {
        "gru_cell"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "gru_cell_backward";
        let (gi, gh, h) = (&self.gi, &self.gh, &self.h);
        let (b, hd) = (h.shape()[0], h.shape()[1]);
        let (dgi, dgh, dh) = match Tensor::same_device(op, &[gi, gh, h, dy]) {
            Device::Cpu => {
                let (a, c, e) = cpu_backward(
                    &gi.cpu_data(op),
                    &gh.cpu_data(op),
                    &h.cpu_data(op),
                    &dy.cpu_data(op),
                    hd,
                );
                (
                    Tensor::cpu_storage(a),
                    Tensor::cpu_storage(c),
                    Tensor::cpu_storage(e),
                )
            }
            Device::Gpu => {
                let (a, c, e) = gpu_backward(
                    gi.gpu_storage(op),
                    gh.gpu_storage(op),
                    h.gpu_storage(op),
                    dy.gpu_storage(op),
                    b,
                    hd,
                );
                (Storage::Gpu(a), Storage::Gpu(c), Storage::Gpu(e))
            }
        };
        vec![
            Some(Tensor::from_storage(gi.shape(), dgi)),
            Some(Tensor::from_storage(gh.shape(), dgh)),
            Some(Tensor::from_storage(h.shape(), dh)),
        ]
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // gi = gh = 0, h = 0.5: r = z = 1/2, n = 0, h' = 0.25; with D = 1: dh = 0.5, dz = 0.5 → da_z = 0.125,
        // dn = 0.5 → da_n = 0.5, dgh_n = 0.25, dr = da_n · gh_n = 0 → da_r = 0.
        let (gi, gh, h) = (vec![0.0f32; 3], vec![0.0f32; 3], vec![0.5f32]);
        assert_eq!(cpu_forward(&gi, &gh, &h, 1), vec![0.25]);
        let (dgi, dgh, dh) = cpu_backward(&gi, &gh, &h, &[1.0], 1);
        assert_eq!(dgi, vec![0.0, 0.125, 0.5]);
        assert_eq!(dgh, vec![0.0, 0.125, 0.25]);
        assert_eq!(dh, vec![0.5]);
    }

    #[test]
    fn gradcheck_f64() {
        let (b, hd) = (2, 3);
        gradcheck(
            "gru_cell",
            &[
                random_vec(b * 3 * hd, -1.5, 1.5, 1),
                random_vec(b * 3 * hd, -1.5, 1.5, 2),
                random_vec(b * hd, -1.0, 1.0, 3),
            ],
            &[],
            |x| cpu_forward(&x[0], &x[1], &x[2], hd),
            |x, g| {
                let (a, c, e) = cpu_backward(&x[0], &x[1], &x[2], g, hd);
                vec![a, c, e]
            },
        );
    }

    #[test]
    fn same_numbers_as_the_composition_it_replaces() {
        // The ops the GRU used before: narrow, add, sigmoid, tanh, mul, sub. Forward and every gradient
        // bit for bit on the CPU.
        let (b, hd) = (3, 4);
        let t = |v: Vec<f64>, s: &[usize]| {
            Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), s, Device::Cpu).requires_grad_()
        };
        let gi = t(random_vec(b * 3 * hd, -2.0, 2.0, 4), &[b, 3 * hd]);
        let gh = t(random_vec(b * 3 * hd, -2.0, 2.0, 5), &[b, 3 * hd]);
        let h = t(random_vec(b * hd, -1.0, 1.0, 6), &[b, hd]);
        let up = Tensor::from_vec(
            random_vec(b * hd, -1.0, 1.0, 7)
                .iter()
                .map(|&x| x as f32)
                .collect(),
            &[b, hd],
            Device::Cpu,
        );
        let fused = gi.gru_cell(&gh, &h);
        fused.backward_with(up.clone());
        let grads = |xs: [&Tensor; 3]| -> Vec<Vec<f32>> {
            xs.iter()
                .map(|x| x.grad().expect("a gradient").to_vec())
                .collect()
        };
        let want_grads = grads([&gi, &gh, &h]);
        let (gi2, gh2, h2) = (
            gi.detach().requires_grad_(),
            gh.detach().requires_grad_(),
            h.detach().requires_grad_(),
        );
        let gate = |g: &Tensor, k: usize| g.narrow(1, k * hd, hd);
        let r = (&gate(&gh2, 0) + &gate(&gi2, 0)).sigmoid();
        let z = (&gate(&gh2, 1) + &gate(&gi2, 1)).sigmoid();
        let n = (&gate(&gi2, 2) + &(&gate(&gh2, 2) * &r)).tanh();
        let composed = &(&(&h2 - &n) * &z) + &n;
        composed.backward_with(up);
        assert_eq!(fused.to_vec(), composed.to_vec());
        assert_eq!(want_grads, grads([&gi2, &gh2, &h2]));
    }
}
