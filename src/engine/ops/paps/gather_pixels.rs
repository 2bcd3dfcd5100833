//! gather_pixels: the C-vector of a list of pixels of a (B, C, H, W) map — PaPs' multi-level feature stack,
//! one gather per decoder level at the center's pixel of that level (spec §6.3 step 6; the stack is the `cat`
//! of the four gathers along the feature axis).
//!
//! Math: `y[m, c] = x[b_m, c, y_m, x_m]` for M pixels (b_m, y_m, x_m), pixels may repeat (several centers fall
//! in one coarse pixel). Derivative: `dx[b, c, y, x] = Σ_{m : (b_m, y_m, x_m) = (b, y, x)} dy[m, c]`, computed as
//! a gather (each input element sums the entries that picked it, no atomics) through an inverse index built on
//! the host: for every pixel the increasing list of the entries m that picked it (CSR), so each input element
//! reads only its own picks. Saved for backward: the pixel list and the input shape. Kernels:
//! `gather_pixels.wgsl`, `gather_pixels_backward.wgsl`. Shapes: x (B, C, H, W) → y (M, C).

use crate::engine::autograd::Backward;
use crate::engine::kernel::{upload_u32, Grid, Kernel};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of gather_pixels.wgsl and gather_pixels_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    m: u32,
    c: u32,
    hw: u32,
    n_pixels: u32,
}

/// `gather_pixels.wgsl`: x, pix → y.
pub const GATHER_PIXELS: Kernel =
    Kernel::new::<Params>(&shaders::GATHER_PIXELS, "gather_pixels", 4);
/// `gather_pixels_backward.wgsl`: dy, offsets, list → dx.
pub const GATHER_PIXELS_BACKWARD: Kernel = Kernel::new::<Params>(
    &shaders::GATHER_PIXELS_BACKWARD,
    "gather_pixels_backward",
    5,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[GATHER_PIXELS, GATHER_PIXELS_BACKWARD];

/// Sizes: x (B, C, H·W), M picks.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// B.
    pub b: usize,
    /// C.
    pub c: usize,
    /// H·W.
    pub hw: usize,
}

impl Dims {
    fn params(self, m: usize) -> Params {
        Params {
            m: m as u32,
            c: self.c as u32,
            hw: self.hw as u32,
            n_pixels: (self.b * self.hw) as u32,
        }
    }
}

/// The inverse index of `pix` (flat pixels b·H·W + y·W + x): CSR offsets over the `n_pixels` pixels and the
/// increasing list of the entries that picked each.
pub fn inverse_index(pix: &[u32], n_pixels: usize) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; n_pixels + 1];
    for &q in pix {
        counts[q as usize + 1] += 1;
    }
    for i in 0..n_pixels {
        counts[i + 1] += counts[i];
    }
    let mut next = counts.clone();
    let mut list = vec![0u32; pix.len()];
    for (m, &q) in pix.iter().enumerate() {
        list[next[q as usize] as usize] = m as u32;
        next[q as usize] += 1;
    }
    (counts, list)
}

// ---- CPU reference ----

/// x (B, C, H·W), pix (M) flat pixels → y (M, C).
pub fn cpu_forward<T: Real>(x: &[T], pix: &[u32], d: Dims) -> Vec<T> {
    let mut y = Vec::with_capacity(pix.len() * d.c);
    for &q in pix {
        let (b, p) = (q as usize / d.hw, q as usize % d.hw);
        for c in 0..d.c {
            y.push(x[(b * d.c + c) * d.hw + p]);
        }
    }
    y
}

/// dy (M, C) → dx (B, C, H·W), picks summed in increasing m.
pub fn cpu_backward<T: Real>(dy: &[T], pix: &[u32], d: Dims) -> Vec<T> {
    let mut dx = vec![T::zero(); d.b * d.c * d.hw];
    for (m, &q) in pix.iter().enumerate() {
        let (b, p) = (q as usize / d.hw, q as usize % d.hw);
        for c in 0..d.c {
            dx[(b * d.c + c) * d.hw + p] += dy[m * d.c + c];
        }
    }
    dx
}

// ---- GPU ----

/// Launches gather_pixels.wgsl.
pub fn gpu_forward(x: &GpuStorage, pix: &[u32], d: Dims) -> GpuStorage {
    let n = pix.len() * d.c;
    let y = GpuStorage::alloc(x.gpu, n, "gather_pixels");
    let p = upload_u32(x.gpu, pix);
    let bufs = [x.buffer(), p.buffer(), y.buffer()];
    GATHER_PIXELS.dispatch(x.gpu, &bufs, &d.params(pix.len()), Grid::threads(n));
    y
}

/// Launches gather_pixels_backward.wgsl.
pub fn gpu_backward(dy: &GpuStorage, pix: &[u32], d: Dims) -> GpuStorage {
    let n = d.b * d.c * d.hw;
    let dx = GpuStorage::alloc(dy.gpu, n, "gather_pixels_backward");
    let (offsets, list) = inverse_index(pix, d.b * d.hw);
    let (o, l) = (upload_u32(dy.gpu, &offsets), upload_u32(dy.gpu, &list));
    let bufs = [dy.buffer(), o.buffer(), l.buffer(), dx.buffer()];
    GATHER_PIXELS_BACKWARD.dispatch(dy.gpu, &bufs, &d.params(pix.len()), Grid::threads(n));
    dx
}

// ---- Autograd ----

struct GatherPixelsBackward {
    pix: Vec<u32>,
    d: Dims,
    in_shape: Vec<usize>,
}

impl Backward for GatherPixelsBackward {
    fn name(&self) -> &'static str {
        "gather_pixels"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = "gather_pixels_backward";
        let storage = match dy.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_backward(&dy.cpu_data(op), &self.pix, self.d)),
            Device::Gpu => Storage::Gpu(gpu_backward(dy.gpu_storage(op), &self.pix, self.d)),
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// The C-vectors of x (B, C, H, W) at `pixels` (b, y, x) → (M, C), M ≥ 1.
    pub fn gather_pixels(&self, pixels: &[(usize, usize, usize)]) -> Tensor {
        let op = "gather_pixels";
        let sh = self.shape();
        assert!(sh.len() == 4, "{op}: expected x (B, C, H, W), got {sh:?}");
        assert!(!pixels.is_empty(), "{op}: expected at least one pixel");
        let (b, c, h, w) = (sh[0], sh[1], sh[2], sh[3]);
        let pix: Vec<u32> = pixels
            .iter()
            .map(|&(pb, py, px)| {
                assert!(
                    pb < b && py < h && px < w,
                    "{op}: expected pixels inside ({b}, {h}, {w}), got ({pb}, {py}, {px})"
                );
                ((pb * h + py) * w + px) as u32
            })
            .collect();
        let d = Dims { b, c, hw: h * w };
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_forward(&self.cpu_data(op), &pix, d)),
            Device::Gpu => Storage::Gpu(gpu_forward(self.gpu_storage(op), &pix, d)),
        };
        let m = pix.len();
        let back = GatherPixelsBackward {
            pix,
            d,
            in_shape: sh.to_vec(),
        };
        Tensor::from_op(&[m, c], storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values() {
        // x (2, 2, 1, 2): sample 0 channels [1, 2], [3, 4]; sample 1 [5, 6], [7, 8]. Picks (1, 0, 1) and twice
        // (0, 0, 0): y = [[6, 8], [1, 3], [1, 3]]; with dy = 1 pixel (0, 0, 0) gets 2 per channel.
        let x: Vec<f64> = (1..=8).map(f64::from).collect();
        let d = Dims { b: 2, c: 2, hw: 2 };
        let pix = [3, 0, 0];
        assert_eq!(cpu_forward(&x, &pix, d), vec![6.0, 8.0, 1.0, 3.0, 1.0, 3.0]);
        assert_eq!(
            cpu_backward(&[1.0f64; 6], &pix, d),
            vec![2.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 1.0]
        );
        assert_eq!(inverse_index(&pix, 4), (vec![0, 2, 2, 2, 3], vec![1, 2, 0]));
    }

    #[test]
    fn gradcheck_f64() {
        let d = Dims { b: 2, c: 3, hw: 6 };
        let pix = [7u32, 0, 11, 7, 5];
        let x = random_vec(36, -1.0, 1.0, 9);
        gradcheck(
            "gather_pixels",
            &[x],
            &[],
            |i| cpu_forward(&i[0], &pix, d),
            |_, g| vec![cpu_backward(g, &pix, d)],
        );
    }
}
