//! Ragged crops: many rectangles of different sizes cut out of planes (or out of resized maps) and packed
//! one after the other into one vector — how PaPs builds its per-instance masks without a Python loop
//! (spec §6.3 step 9):
//! - [`Tensor::crop_ragged`]: crop m of plane `src_m` at `(y0_m, x0_m)`, size `h_m × w_m` (the saliency under
//!   each instance's box). Derivative: `dx[p, yy, xx] = Σ_m` of the packed gradients of the crops that contain
//!   the pixel (a gather over crops, in increasing m; crops may overlap).
//! - [`Tensor::resize_crop`]: instance m's S × S shape logits resized bilinearly (align_corners = False, up or
//!   down, no antialiasing: `F.interpolate(s, size=(s_y, s_x), mode="bilinear")`) to its box size, then the
//!   `h_m × w_m` part starting at `(y0_m, x0_m)` of the resized map (the part inside the image). Only the
//!   cropped outputs are computed. The taps are `upsample`'s (same f32 scale `S / size` from the host, same
//!   index arithmetic; see `ops/upsample.rs`). Derivative: y is linear in x, `dx[m, i, j] = Σ_{r, c}
//!   wy(y0 + r, i)·wx(x0 + c, j)·dy[m, r, c]` (a gather per input value over its crop's rows and columns).
//!
//! Layout: crop m occupies `offset_m .. offset_m + h_m·w_m` of the packed vector, row-major; offsets are the
//! prefix sums in the order the crops are given ([`Crop::layout`]). Saved for backward: the crop table.
//! Kernels: `crop_ragged.wgsl`, `crop_ragged_backward.wgsl`, `crop_resize.wgsl`, `crop_resize_backward.wgsl`;
//! each forward invocation finds its crop by binary search over the offsets.

use crate::engine::autograd::Backward;
use crate::engine::kernel::{upload_u32, Grid, Kernel};
use crate::engine::ops::pool::upsample_bilinear::{scale, taps};
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of the four crop kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    m: u32,
    total: u32,
    h: u32,
    w: u32,
    planes: u32,
    s: u32,
    max_h: u32,
    max_w: u32,
}

/// `crop_ragged.wgsl`: planes → packed crops.
pub const CROP_RAGGED: Kernel = Kernel::new::<Params>(&shaders::CROP_RAGGED, "crop_ragged", 4);
/// `crop_ragged_backward.wgsl`: packed gradient → plane gradient.
pub const CROP_RAGGED_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::CROP_RAGGED_BACKWARD, "crop_ragged_backward", 4);
/// `crop_resize.wgsl`: (M, S, S) → packed resized crops.
pub const CROP_RESIZE: Kernel = Kernel::new::<Params>(&shaders::CROP_RESIZE, "crop_resize", 4);
/// `crop_resize_backward.wgsl`: packed gradient → (M, S, S) gradient.
pub const CROP_RESIZE_BACKWARD: Kernel =
    Kernel::new::<Params>(&shaders::CROP_RESIZE_BACKWARD, "crop_resize_backward", 4);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    CROP_RAGGED,
    CROP_RAGGED_BACKWARD,
    CROP_RESIZE,
    CROP_RESIZE_BACKWARD,
];

/// One crop: `h × w` values starting at `(y0, x0)` of plane `src` (for [`Tensor::resize_crop`]: of map `src`
/// resized to `full_h × full_w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// Plane (or map) index.
    pub src: usize,
    /// First row.
    pub y0: usize,
    /// First column.
    pub x0: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Resized height (resize_crop only).
    pub full_h: usize,
    /// Resized width (resize_crop only).
    pub full_w: usize,
}

impl Crop {
    /// The packed offsets of `crops` (prefix sums of h·w) and the total length.
    pub fn layout(crops: &[Crop]) -> (Vec<usize>, usize) {
        let mut off = Vec::with_capacity(crops.len());
        let mut total = 0;
        for c in crops {
            off.push(total);
            total += c.h * c.w;
        }
        (off, total)
    }
}

/// The kernels' table: per crop `src, y0, x0, h, w, offset, r_y bits, r_x bits` (r = s / full size, f32).
fn table(crops: &[Crop], s: usize) -> Vec<u32> {
    let (off, _) = Crop::layout(crops);
    let mut t = Vec::with_capacity(8 * crops.len());
    for (c, o) in crops.iter().zip(off) {
        let (ry, rx) = if c.full_h > 0 && c.full_w > 0 {
            (scale(s, c.full_h), scale(s, c.full_w))
        } else {
            (0.0, 0.0)
        };
        t.extend([c.src, c.y0, c.x0, c.h, c.w, o].map(|v| v as u32));
        t.extend([ry.to_bits(), rx.to_bits()]);
    }
    t
}

fn params(crops: &[Crop], planes: usize, h: usize, w: usize, s: usize) -> Params {
    let (_, total) = Crop::layout(crops);
    Params {
        m: crops.len() as u32,
        total: total as u32,
        h: h as u32,
        w: w as u32,
        planes: planes as u32,
        s: s as u32,
        max_h: crops.iter().map(|c| c.h).max().unwrap_or(0) as u32,
        max_w: crops.iter().map(|c| c.w).max().unwrap_or(0) as u32,
    }
}

// ---- CPU reference ----

/// x (P, H, W) → packed crops (Σ h·w).
pub fn cpu_crop<T: Real>(x: &[T], crops: &[Crop], h: usize, w: usize) -> Vec<T> {
    let mut y = Vec::new();
    for c in crops {
        for r in 0..c.h {
            let row = (c.src * h + c.y0 + r) * w + c.x0;
            y.extend_from_slice(&x[row..row + c.w]);
        }
    }
    y
}

/// dy (Σ h·w) → dx (P, H, W), crops added in increasing m.
pub fn cpu_crop_backward<T: Real>(
    dy: &[T],
    crops: &[Crop],
    planes: usize,
    h: usize,
    w: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); planes * h * w];
    let (off, _) = Crop::layout(crops);
    for (c, o) in crops.iter().zip(off) {
        for r in 0..c.h {
            for q in 0..c.w {
                dx[(c.src * h + c.y0 + r) * w + c.x0 + q] += dy[o + r * c.w + q];
            }
        }
    }
    dx
}

/// x (M, S, S) → packed resized crops (Σ h·w).
pub fn cpu_resize_crop<T: Real>(x: &[T], crops: &[Crop], s: usize) -> Vec<T> {
    let mut y = Vec::new();
    for c in crops {
        let (ty, tx) = (taps::<T>(s, c.full_h), taps::<T>(s, c.full_w));
        let at = |i: usize, j: usize| x[(c.src * s + i) * s + j];
        for &(y0, y1, wy0, wy1) in &ty[c.y0..c.y0 + c.h] {
            for &(x0, x1, wx0, wx1) in &tx[c.x0..c.x0 + c.w] {
                let top = wx0 * at(y0, x0) + wx1 * at(y0, x1);
                let bottom = wx0 * at(y1, x0) + wx1 * at(y1, x1);
                y.push(wy0 * top + wy1 * bottom);
            }
        }
    }
    y
}

/// dy (Σ h·w) → dx (M, S, S).
pub fn cpu_resize_crop_backward<T: Real>(dy: &[T], crops: &[Crop], s: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); crops.len() * s * s];
    let (off, _) = Crop::layout(crops);
    for (c, o) in crops.iter().zip(off) {
        let (ty, tx) = (taps::<T>(s, c.full_h), taps::<T>(s, c.full_w));
        let base = c.src * s * s;
        for (r, &(y0, y1, wy0, wy1)) in ty[c.y0..c.y0 + c.h].iter().enumerate() {
            for (q, &(x0, x1, wx0, wx1)) in tx[c.x0..c.x0 + c.w].iter().enumerate() {
                let g = dy[o + r * c.w + q];
                dx[base + y0 * s + x0] += wy0 * wx0 * g;
                dx[base + y0 * s + x1] += wy0 * wx1 * g;
                dx[base + y1 * s + x0] += wy1 * wx0 * g;
                dx[base + y1 * s + x1] += wy1 * wx1 * g;
            }
        }
    }
    dx
}

// ---- GPU ----

fn launch(
    kernel: Kernel,
    input: &GpuStorage,
    crops: &[Crop],
    p: Params,
    out_len: usize,
    s: usize,
) -> GpuStorage {
    let out = GpuStorage::alloc(input.gpu, out_len, kernel.entry);
    let t = upload_u32(input.gpu, &table(crops, s));
    let loop_len = (p.max_h + p.max_w) as usize;
    let bufs = [input.buffer(), t.buffer(), out.buffer()];
    let grid = Grid::threads(out_len).loop_len(loop_len.max(crops.len()));
    kernel.dispatch(input.gpu, &bufs, &p, grid);
    out
}

// ---- Autograd ----

enum CropKind {
    /// Plane crops of (P, H, W) planes.
    Planes { planes: usize, h: usize, w: usize },
    /// Resized crops of (M, S, S) maps.
    Resized { s: usize },
}

struct CropBackward {
    crops: Vec<Crop>,
    kind: CropKind,
    in_shape: Vec<usize>,
}

impl Backward for CropBackward {
    fn name(&self) -> &'static str {
        match self.kind {
            CropKind::Planes { .. } => "crop_ragged",
            CropKind::Resized { .. } => "resize_crop",
        }
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let op = self.name();
        let n: usize = self.in_shape.iter().product();
        let storage = match (dy.device(), &self.kind) {
            (Device::Cpu, &CropKind::Planes { planes, h, w }) => Tensor::cpu_storage(
                cpu_crop_backward(&dy.cpu_data(op), &self.crops, planes, h, w),
            ),
            (Device::Cpu, &CropKind::Resized { s }) => {
                Tensor::cpu_storage(cpu_resize_crop_backward(&dy.cpu_data(op), &self.crops, s))
            }
            (Device::Gpu, &CropKind::Planes { planes, h, w }) => {
                let p = params(&self.crops, planes, h, w, 0);
                let g = dy.gpu_storage(op);
                Storage::Gpu(launch(CROP_RAGGED_BACKWARD, g, &self.crops, p, n, 0))
            }
            (Device::Gpu, &CropKind::Resized { s }) => {
                let p = params(&self.crops, 0, 0, 0, s);
                let g = dy.gpu_storage(op);
                Storage::Gpu(launch(CROP_RESIZE_BACKWARD, g, &self.crops, p, n, s))
            }
        };
        vec![Some(Tensor::from_storage(&self.in_shape, storage))]
    }
}

impl Tensor {
    /// Crops of the planes of x (P, H, W) (any leading axes are flattened into P), packed → (Σ h·w).
    pub fn crop_ragged(&self, crops: &[Crop]) -> Tensor {
        let op = "crop_ragged";
        let sh = self.shape();
        assert!(sh.len() >= 2, "{op}: expected planes (…, H, W), got {sh:?}");
        let (h, w) = (sh[sh.len() - 2], sh[sh.len() - 1]);
        let planes = self.numel() / (h * w).max(1);
        for c in crops {
            assert!(
                c.src < planes && c.h > 0 && c.w > 0 && c.y0 + c.h <= h && c.x0 + c.w <= w,
                "{op}: expected non-empty crops inside {planes} planes of {h} × {w}, got {c:?}"
            );
        }
        let (_, total) = Crop::layout(crops);
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_crop(&self.cpu_data(op), crops, h, w)),
            Device::Gpu => {
                let p = params(crops, planes, h, w, 0);
                Storage::Gpu(launch(
                    CROP_RAGGED,
                    self.gpu_storage(op),
                    crops,
                    p,
                    total,
                    0,
                ))
            }
        };
        let back = CropBackward {
            crops: crops.to_vec(),
            kind: CropKind::Planes { planes, h, w },
            in_shape: sh.to_vec(),
        };
        Tensor::from_op(&[total], storage, &[self], back)
    }

    /// Map m of x (M, S, S) (or (M, 1, S, S)) resized to `full_h × full_w` of crop m, then cropped, packed →
    /// (Σ h·w). Crop m must name map m (`src = m`).
    pub fn resize_crop(&self, crops: &[Crop]) -> Tensor {
        let op = "resize_crop";
        let sh = self.shape();
        let s = sh[sh.len() - 1];
        assert!(
            sh.len() >= 2 && sh[sh.len() - 2] == s && s > 0 && self.numel() == crops.len() * s * s,
            "{op}: expected {} square maps (M, S, S), got {sh:?}",
            crops.len()
        );
        for (m, c) in crops.iter().enumerate() {
            assert!(
                c.src == m
                    && c.h > 0
                    && c.w > 0
                    && c.y0 + c.h <= c.full_h
                    && c.x0 + c.w <= c.full_w,
                "{op}: expected crop {m} of map {m} inside its resized size, got {c:?}"
            );
        }
        let (_, total) = Crop::layout(crops);
        let storage = match self.device() {
            Device::Cpu => Tensor::cpu_storage(cpu_resize_crop(&self.cpu_data(op), crops, s)),
            Device::Gpu => {
                let p = params(crops, 0, 0, 0, s);
                Storage::Gpu(launch(
                    CROP_RESIZE,
                    self.gpu_storage(op),
                    crops,
                    p,
                    total,
                    s,
                ))
            }
        };
        let back = CropBackward {
            crops: crops.to_vec(),
            kind: CropKind::Resized { s },
            in_shape: sh.to_vec(),
        };
        Tensor::from_op(&[total], storage, &[self], back)
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    fn crop(src: usize, y0: usize, x0: usize, h: usize, w: usize, fh: usize, fw: usize) -> Crop {
        Crop {
            src,
            y0,
            x0,
            h,
            w,
            full_h: fh,
            full_w: fw,
        }
    }

    #[test]
    fn exact_values() {
        // Plane 0 of a 3 × 3 stack [[0, 1, 2], [3, 4, 5], [6, 7, 8]], plane 1 = +9. Crops: plane 1 rows 1-2
        // column 2 → (14, 17); plane 0 row 0 columns 0-1 → (0, 1); an overlapping 2 × 2 of plane 0 → (0, 1, 3, 4).
        let x: Vec<f64> = (0..18).map(f64::from).collect();
        let crops = [
            crop(1, 1, 2, 2, 1, 0, 0),
            crop(0, 0, 0, 1, 2, 0, 0),
            crop(0, 0, 0, 2, 2, 0, 0),
        ];
        assert_eq!(
            cpu_crop(&x, &crops, 3, 3),
            vec![14.0, 17.0, 0.0, 1.0, 0.0, 1.0, 3.0, 4.0]
        );
        // dy = 1: pixels (0, 0) and (0, 1) are in two crops.
        let dx = cpu_crop_backward(&[1.0f64; 8], &crops, 2, 3, 3);
        assert_eq!(&dx[..9], &[2.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(dx[9 + 5] + dx[9 + 8], 2.0);
        // Resize a 2 × 2 map [[0, 4], [8, 12]] to 1 × 4 (rows: r = 2, src = 0.5 → λ 0.5: the mean of the two
        // rows [4, 8]; columns as upsample's exact case: 4, 5, 7, 8), keep columns 1..3: (5, 7).
        let s = [0.0f64, 4.0, 8.0, 12.0];
        assert_eq!(
            cpu_resize_crop(&s, &[crop(0, 0, 1, 1, 2, 1, 4)], 2),
            vec![5.0, 7.0]
        );
    }

    #[test]
    fn gradcheck_f64() {
        let crops = [
            crop(1, 0, 1, 3, 2, 0, 0),
            crop(0, 1, 0, 2, 4, 0, 0),
            crop(1, 1, 1, 2, 2, 0, 0),
        ];
        let x = random_vec(2 * 3 * 4, -1.0, 1.0, 4);
        gradcheck(
            "crop_ragged",
            &[x],
            &[],
            |i| cpu_crop(&i[0], &crops, 3, 4),
            |_, g| vec![cpu_crop_backward(g, &crops, 2, 3, 4)],
        );
        // Up (5 → 7 × 9), down (5 → 3 × 2) and 1 × 1, each cropped.
        let crops = [
            crop(0, 2, 3, 4, 5, 7, 9),
            crop(1, 0, 0, 3, 2, 3, 2),
            crop(2, 0, 0, 1, 1, 1, 1),
        ];
        let x = random_vec(3 * 25, -1.0, 1.0, 5);
        gradcheck(
            "resize_crop",
            &[x],
            &[],
            |i| cpu_resize_crop(&i[0], &crops, 5),
            |_, g| vec![cpu_resize_crop_backward(g, &crops, 5)],
        );
    }
}
