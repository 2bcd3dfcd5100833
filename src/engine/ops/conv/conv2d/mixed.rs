//! conv2d under `--precision mixed` (`engine::precision`): what autocast's float16 convolution computes,
//! input and weight rounded to binary16, products summed in float32, the bias added in float32:
//! `y = b + conv(h(x), h(w))`, `h` = round to the nearest half, ties to even (`ops::elementwise::half`).
//! Each product of two halves is exact in float32, so the paths below differ only in the order of the
//! float32 sums (relative error ≤ K · 2^-24 of Σ|w·x|, K = C_in · kH · kW), on top of the roundings they all
//! share.
//!
//! The backward pass reads the same rounded operands (`Conv2dBackward`): dx from h(w), dw from h(x), and dy
//! rounded as a float16 gradient (autocast's backward; the loss is scaled for it: `engine::precision`), with
//! float32 sums. Its two products take the same paths as the forward's where they pay:
//! - **dw** ([`gpu_backward_weight`]): per image, `dwᵀ (K, C_out) = B[n] (K, P) · dy[n]ᵀ (P, C_out)`,
//!   `B[n]` the A operand (unfolded inside the tiles as the forward's B, or by `half_im2col.wgsl`), summed
//!   over the images;
//! - **dx** ([`gpu_backward_input`]): the padded input's gradient is, for each stride phase, the full
//!   convolution of dy by the phase's taps of the weight, flipped and transposed: mixed's own forward, then
//!   folded back (`conv2d_pad_fold.wgsl`). The transposed convolution's forward is this computation too
//!   (`conv_transpose2d`). Phases that are not square (a 3 × 3 kernel at stride 2) take
//!   `conv2d_backward_input`'s phases on the rounded operands.
//!
//! On a software adapter the backward products unfold one image at a time
//! ([`BACKWARD_UNFOLD_BYTES_SOFTWARE`]).
//!
//! Paths, by the device's product path (`ops::linalg::half_matmul::path`):
//! - **Cooperative matrices** (tensor cores): the convolution as a product, `y[n] (C_out, P) = h(W)
//!   (C_out, K) · B[n] (K, P)`, P = H_out · W_out, `B[n]` the image unfolded (rounded, padded to the tiles).
//!   Where C_out and P are multiples of 64 (U-TAE's layers), `half_conv_coop.wgsl` (16 × 16 tiles;
//!   `half_conv_coop8.wgsl` for 8 × 8) unfolds B inside the product, a slab at a time in workgroup memory:
//!   an implicit GEMM, no unfolded operand in memory (the weight gradient's `half_conv_dw_coop(8).wgsl`
//!   likewise, where K and C_out are multiples of 64). Elsewhere (ragged shapes) `half_im2col.wgsl` unfolds a
//!   chunk of images into memory and `half_matmul_coop(8).wgsl` multiplies; the unfolded operand is kH · kW
//!   halves per input value, so the images go in chunks of at most [`UNFOLD_BYTES`] of it. Either way each chunk's
//!   product is written into its images of y and the accumulators start from the bias (a bias tile,
//!   `half_matmul::gpu_bias_tile`), so neither the chunks nor the bias take a pass of their own over y.
//!   Convolutions with fewer than [`MIN_CO`] output channels (a classifier's last layer) would waste most of
//!   a 64-row tile and take the last path.
//! - **Software adapters with `SHADER_F16`** (lavapipe): the f16 tiles (`half_matmul.wgsl`), B unfolded
//!   into memory (or inside the tiles by `half_conv.wgsl`, the weight gradient's A by `half_conv_dw.wgsl`,
//!   when asked), in chunks of at most [`UNFOLD_BYTES_SOFTWARE`] of unfolded operand: there the float32
//!   convolution is `conv2d_direct.wgsl` (no workgroup memory), and the tiled product ran 3× faster on
//!   U-TAE's layers (benches/README.md § `conv2d_half`).
//! - **Every other device**: the operands are rounded (a rounded copy each, one launch of
//!   `half_round.wgsl`) and `conv2d.wgsl` and its variants run on them. On a GPU the f16 tiles
//!   would compute the same arithmetic as `conv2d.wgsl` after converting, so only tensor cores are worth it.
//!
//! The unfolding inside the tiles (`mixed/in_tiles.rs`) gives the unfolded copy's sums bit for bit (the same
//! operand values, the same tiles). It is the cooperative path's default and the f16 tiles' option ([`unfolding_on`]:
//! `SITSGPU_CONV_UNFOLDING=tiles|copy` decides for both, to compare the two on a device). The tests run
//! every path the adapter has ([`gpu_forward_on`]), both ways; the product kernels are self-tested by the
//! device before first use.
//!
//! CPU reference: [`cpu_forward`] rounds both operands and runs `conv2d::cpu_forward`.

use super::geom::Geom;
use super::gpu::gpu_forward as gpu_forward_f32;
use crate::engine::gpu::Gpu;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::elementwise::half::{self, half_bits};
use crate::engine::ops::linalg::half_matmul::{self, HalfPath};
use crate::engine::ops::movement::copy_strided::{gpu_copy_strided, StridedCopy};
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

mod in_tiles;
use in_tiles::{coop_slots_fit, gpu_in_tiles, in_tiles_kernel, Implicit};
pub use in_tiles::{
    in_tiles_self_test, unfolding_on, unfolding_override, ConvParams, Unfolding, HALF_CONV,
    HALF_CONV_COOP, HALF_CONV_COOP8, HALF_CONV_DW, HALF_CONV_DW_COOP, HALF_CONV_DW_COOP8,
};

/// Shader `Params` of half_im2col.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Im2colParams {
    ci: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    reflect: u32,
    ho: u32,
    wo: u32,
    k: u32,
    k_p: u32,
    n_p: u32,
    frame0: u32,
    frames: u32,
    _pad: u32,
}

/// `half_im2col.wgsl`: a chunk of images unfolded into a rounded, padded product operand.
pub const HALF_IM2COL: Kernel =
    Kernel::new::<Im2colParams>(&shaders::HALF_IM2COL, "half_im2col", 3);

/// Shader `Params` of conv_flip_weight.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlipParams {
    ci: u32,
    co: u32,
    kh: u32,
    kw: u32,
    th: u32,
    tw: u32,
    stride: u32,
    py: u32,
    px: u32,
    _pad: [u32; 3],
}

/// `conv_flip_weight.wgsl`: a stride phase of the weight, flipped and transposed, in one launch.
pub const CONV_FLIP_WEIGHT: Kernel =
    Kernel::new::<FlipParams>(&shaders::CONV_FLIP_WEIGHT, "conv_flip_weight", 3);

/// This module's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    HALF_IM2COL,
    CONV_FLIP_WEIGHT,
    HALF_CONV,
    HALF_CONV_COOP,
    HALF_CONV_DW,
    HALF_CONV_DW_COOP,
    HALF_CONV_COOP8,
    HALF_CONV_DW_COOP8,
];

/// The most bytes of unfolded operand a chunk of images makes at once on a GPU (also bounded by the device's
/// largest binding): 14 images of U-TAE's widest layer (64 channels, 3 × 3, 128²: 18 MiB each), so that a
/// batch of 160 frames is a dozen chunks of three launches.
pub const UNFOLD_BYTES: usize = 256 << 20;
/// The same on a software adapter, whose memory is the host's: one image a chunk at U-TAE's widths, so
/// that the unfolding adds no more than an image's worth to a step's peak (measured on lavapipe, paper
/// config B 1 T 8 64²: 32 MiB chunks raised the training step's peak from 60.7 to 65.8 MiB, at the same
/// speed).
pub const UNFOLD_BYTES_SOFTWARE: usize = 4 << 20;
/// The same for the backward pass's products on a software adapter: one image a chunk (0 bytes: the
/// least), so that their transients stay below what the backward pass holds anyway, also at small shapes
/// (an FPN-ConvLSTM of 16 × 16 images: tests/mixed_precision.rs).
pub const BACKWARD_UNFOLD_BYTES_SOFTWARE: usize = 0;
/// Convolutions with fewer output channels take the rounded float32 path (module doc).
pub const MIN_CO: usize = 32;

// ---- CPU reference ----

/// y = b + conv(h(x), h(w)) (module doc): the operands rounded, then `conv2d::cpu_forward`.
pub fn cpu_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geom) -> Vec<f32> {
    super::cpu_forward(&half::cpu_rounded(x), &half::cpu_rounded(w), bias, g)
}

/// The (K, P) of the product a convolution unfolds to, and their padded (K_p, P_p).
fn product_dims(g: &Geom) -> (usize, usize, usize, usize) {
    let (k, p) = (g.ci * g.kh * g.kw, g.ho * g.wo);
    let (_, k_p, p_p) = half_matmul::padded(g.co, k, p);
    (k, p, k_p, p_p)
}

/// half_im2col.wgsl's words for images `frame0 .. frame0 + frames` (see the shader's header).
pub fn cpu_im2col(x: &[f32], g: &Geom, frame0: usize, frames: usize) -> Vec<u32> {
    let (k, p, k_p, p_p) = product_dims(g);
    let taps = g.kh * g.kw;
    let at = |n: usize, r: usize, q: usize| -> u32 {
        if r >= k || q >= p {
            return 0;
        }
        let (c, ky, kx) = (r / taps, (r % taps) / g.kw, r % g.kw);
        let (oy, ox) = (q / g.wo, q % g.wo);
        let iy = g.src((oy * g.stride + ky) as isize - g.pad as isize, g.h);
        let ix = g.src((ox * g.stride + kx) as isize - g.pad as isize, g.w);
        match (iy, ix) {
            (Some(iy), Some(ix)) => half_bits(x[((n * g.ci + c) * g.h + iy) * g.w + ix]) as u32,
            _ => 0,
        }
    };
    let mut words = Vec::with_capacity(frames * k_p * p_p / 2);
    for n in frame0..frame0 + frames {
        for r in 0..k_p {
            for q in (0..p_p).step_by(2) {
                words.push(at(n, r, q) | at(n, r, q + 1) << 16);
            }
        }
    }
    words
}

// ---- GPU ----

/// Launches half_im2col.wgsl for images `frame0 .. frame0 + frames` (see [`cpu_im2col`]).
pub fn gpu_im2col(x: &GpuStorage, g: &Geom, frame0: usize, frames: usize) -> GpuStorage {
    let (_, _, k_p, p_p) = product_dims(g);
    gpu_im2col_padded(x, g, frame0, frames, (k_p, p_p))
}

/// [`gpu_im2col`] padded to `k_p` rows and `p_p` columns (even): the A operand of the weight gradient's
/// product takes other tiles than the forward's B.
fn gpu_im2col_padded(
    x: &GpuStorage,
    g: &Geom,
    frame0: usize,
    frames: usize,
    (k_p, p_p): (usize, usize),
) -> GpuStorage {
    let k = g.ci * g.kh * g.kw;
    let words = frames * k_p * p_p / 2;
    let out = GpuStorage::alloc(x.gpu, words.max(1), "half_im2col");
    let u = |v: usize| v as u32;
    HALF_IM2COL.dispatch(
        x.gpu,
        &[x.buffer(), out.buffer()],
        &Im2colParams {
            ci: u(g.ci),
            h: u(g.h),
            w: u(g.w),
            kh: u(g.kh),
            kw: u(g.kw),
            stride: u(g.stride),
            pad: u(g.pad),
            reflect: (g.mode == super::PaddingMode::Reflect) as u32,
            ho: u(g.ho),
            wo: u(g.wo),
            k: u(k),
            k_p: u(k_p),
            n_p: u(p_p),
            frame0: u(frame0),
            frames: u(frames),
            _pad: 0,
        },
        Grid::threads(words).bytes(4 * frames * g.ci * g.h * g.w + 2 * frames * k_p * p_p),
    );
    out
}

/// Images per chunk of the unfolded path: as many as `unfold_bytes` of unfolded operand hold, at least one,
/// and no more than one binding of it or of the product holds; `None` when one image does not fit a binding
/// (the rounded float32 path then runs).
fn chunk_frames(unfold_bytes: usize, max_binding: usize, g: &Geom) -> Option<usize> {
    let (_, _, k_p, p_p) = product_dims(g);
    let (m_p, _, _) = half_matmul::padded(g.co, k_p, p_p);
    let unfold = 2 * k_p * p_p;
    let out = 4 * m_p * p_p;
    let fit = (max_binding / unfold).min(max_binding / out);
    (fit >= 1).then(|| (unfold_bytes / unfold).clamp(1, fit).min(g.n))
}

/// Images per chunk of the weight gradient's product (see [`gpu_backward_weight`]): as many as
/// `unfold_bytes` of the unfolded A operand hold, at least one, no more than one binding of A, B or C holds;
/// `None` when one image does not fit.
fn weight_chunk_frames(unfold_bytes: usize, max_binding: usize, g: &Geom) -> Option<usize> {
    let (m_p, k_p, n_p) = half_matmul::padded(g.ci * g.kh * g.kw, g.ho * g.wo, g.co);
    let a = 2 * m_p * k_p;
    let largest = a.max(2 * k_p * n_p).max(4 * m_p * n_p);
    let fit = max_binding / largest;
    (fit >= 1).then(|| (unfold_bytes / a).clamp(1, fit).min(g.n))
}

/// How this device computes mixed's convolutions (printed by `info`, `profile` and the training log).
pub fn path_note(gpu: &'static Gpu) -> String {
    let path = half_matmul::path(gpu);
    let forced = if unfolding_override().is_some() {
        " (SITSGPU_CONV_UNFOLDING)"
    } else {
        ""
    };
    let in_tiles = unfolding_on(gpu, path) == Unfolding::InTiles;
    match path {
        HalfPath::Cooperative { tile, .. } => {
            let eight = if tile == 8 { "8" } else { "" };
            if in_tiles && coop_slots_fit(gpu, tile) {
                format!(
                    "unfolded inside the cooperative tiles{forced} (half_conv_coop{eight}.wgsl where C_out and \
                     H_out · W_out are multiples of 64, the weight gradient's half_conv_dw_coop{eight}.wgsl \
                     where C_in · kH · kW and C_out are), else into memory first (half_im2col.wgsl), from \
                     {MIN_CO} output channels; float32 kernels on rounded operands below"
                )
            } else {
                format!(
                    "unfolded into memory (half_im2col.wgsl){forced}, then onto the cooperative matrices, \
                     from {MIN_CO} output channels; float32 kernels on rounded operands below"
                )
            }
        }
        HalfPath::F16Tiles if gpu.is_software() => {
            let how = if in_tiles {
                "unfolded inside the f16 tiles (half_conv.wgsl; the weight gradient's half_conv_dw.wgsl)"
            } else {
                "unfolded into memory (half_im2col.wgsl), then onto the f16 tiles (half_matmul.wgsl)"
            };
            format!(
                "{how}{forced} from {MIN_CO} output channels (a software adapter: faster than its direct \
                 float32 kernel), float32 kernels on rounded operands below"
            )
        }
        _ => "float32 kernels on rounded operands (only tensor cores would beat them)".to_string(),
    }
}

/// y (N, C_out, H_out, W_out) = b + conv(h(x), h(w)) on this device (module doc).
pub fn gpu_forward(x: &GpuStorage, w: &GpuStorage, b: Option<&GpuStorage>, g: &Geom) -> GpuStorage {
    let path = path(x.gpu, g);
    gpu_forward_on((path, unfolding_on(x.gpu, path)), x, w, b, g)
}

/// The path of a convolution: unfolded onto the cooperative matrices, or onto the f16 tiles on a software
/// adapter (there `conv2d_direct.wgsl` is the float32 kernel, and the tiled product beats it 3× on U-TAE's
/// layers: benches/README.md § `conv2d_half`), from [`MIN_CO`] output channels; else rounded float32.
pub fn path(gpu: &'static Gpu, g: &Geom) -> HalfPath {
    match half_matmul::path(gpu) {
        p @ HalfPath::Cooperative { .. } if g.co >= MIN_CO => p,
        HalfPath::F16Tiles if gpu.is_software() && g.co >= MIN_CO => HalfPath::F16Tiles,
        _ => HalfPath::RoundedF32,
    }
}

/// [`gpu_forward`] on an explicit path: rounded float32, or unfolded onto a padded product path
/// (cooperative matrices or f16 tiles; rounded float32 when an image does not fit a binding), the input
/// unfolded as `unfolding` says where the path can (`in_tiles_kernel`).
pub fn gpu_forward_on(
    (path, unfolding): (HalfPath, Unfolding),
    x: &GpuStorage,
    w: &GpuStorage,
    b: Option<&GpuStorage>,
    g: &Geom,
) -> GpuStorage {
    let budget = if x.gpu.is_software() {
        UNFOLD_BYTES_SOFTWARE
    } else {
        UNFOLD_BYTES
    };
    forward_in_chunks(path, x, w, b, g, budget, unfolding)
}

/// [`gpu_forward_on`] with chunks of at most `unfold_bytes` of unfolded operand.
fn forward_in_chunks(
    path: HalfPath,
    x: &GpuStorage,
    w: &GpuStorage,
    b: Option<&GpuStorage>,
    g: &Geom,
    unfold_bytes: usize,
    unfolding: Unfolding,
) -> GpuStorage {
    let gpu = x.gpu;
    let max_binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size) as usize;
    let wn = g.co * g.ci * g.kh * g.kw;
    let frames = chunk_frames(unfold_bytes, max_binding, g);
    let (HalfPath::Cooperative { .. } | HalfPath::F16Tiles, Some(frames)) = (path, frames) else {
        let rx = half::gpu_rounded(x, g.n * g.ci * g.h * g.w);
        return gpu_forward_f32(&rx, &half::gpu_rounded(w, wn), b, g);
    };
    let (k, p, k_p, _) = product_dims(g);
    let (m_p, _, _) = half_matmul::padded(g.co, k, p);
    let pw = half_matmul::gpu_pack_operand(w, 1, (g.co, k), false, (m_p, k_p));
    // Each chunk's product is written into its images of y (no copy), starting from the bias.
    let y = GpuStorage::alloc(gpu, (g.n * g.co * p).max(1), "conv2d");
    let bias_tile = b.map(|b| half_matmul::gpu_bias_tile(b, g.co));
    let in_tiles = in_tiles_kernel(gpu, path, g, Implicit::Forward);
    let mut frame0 = 0;
    while frame0 < g.n {
        let n = frames.min(g.n - frame0);
        if let Some(kernel) = in_tiles.filter(|_| unfolding == Unfolding::InTiles) {
            let out = (&y, frame0 * g.co * p);
            let images = (frame0, n);
            gpu_in_tiles(
                kernel,
                Implicit::Forward,
                &pw,
                x,
                out,
                bias_tile.as_ref(),
                g,
                images,
            );
        } else {
            let cols = gpu_im2col(x, g, frame0, n);
            half_matmul::gpu_packed_product_into(
                path,
                (&pw, 1),
                (&cols, n),
                (n, g.co, k, p),
                (&y, frame0 * g.co * p),
                bias_tile.as_ref(),
            );
        }
        frame0 += n;
    }
    y
}

/// The input gradient under mixed, dx = the padded input's gradient folded back (`pad_fold`), from dy already
/// rounded (`Conv2dBackward`) and w rounded here (the unfolded path as it packs the flipped phases, the
/// float32 phases in a rounded copy; a rounded w stays what it is), and the transposed convolution's forward
/// (`conv_transpose2d`: the same computation). The padded input's gradient is, for each stride phase (`gpu::phases`: one at stride
/// 1), a stride-1 convolution of dy by the phase's taps of the weight flipped and transposed,
/// `w̃[c, o, m, l] = w[o, c, py + s·(T - 1 - m), px + s·(T - 1 - l)]`, zero padding T - 1: mixed's own forward
/// ([`gpu_forward`]'s paths: the unfolded product when the input has [`MIN_CO`] channels or more), written
/// into the phase's rows and columns (`copy_strided.wgsl`; at stride 1 the phase is the whole). That needs
/// square phases (T × T taps: U-TAE's 4 × 4 stride-2 layers, every square stride-1 kernel) and a stride no
/// larger than the kernel (the phases then cover every position); other shapes, and the float32 path, take
/// `conv2d_backward_input`'s phases on the same operands.
pub fn gpu_backward_input(dy: &GpuStorage, w: &GpuStorage, g: &Geom) -> GpuStorage {
    match unfolded_input_path(dy.gpu, g) {
        Some((path, phases)) => unfolded_input(path, &phases, dy, w, g),
        None => {
            let rw = half::gpu_rounded(w, g.co * g.ci * g.kh * g.kw);
            super::gpu::gpu_backward_input(dy, &rw, g)
        }
    }
}

/// The transposed convolution's forward under mixed, [`gpu_backward_input`]'s computation on h(x) and h(w),
/// from x and w not yet rounded: the unfolded path rounds them as it unfolds and packs them (the same
/// roundings, without copies of the activation and the weight); the float32 phases take rounded copies.
pub fn gpu_transposed(x: &GpuStorage, w: &GpuStorage, g: &Geom) -> GpuStorage {
    match unfolded_input_path(x.gpu, g) {
        Some((path, phases)) => unfolded_input(path, &phases, x, w, g),
        None => {
            let rx = half::gpu_rounded(x, g.n * g.co * g.ho * g.wo);
            let rw = half::gpu_rounded(w, g.co * g.ci * g.kh * g.kw);
            super::gpu::gpu_backward_input(&rx, &rw, g)
        }
    }
}

/// The product path and the stride phases of [`gpu_backward_input`]'s unfolded form, or `None` where it
/// takes the float32 phases (see there).
fn unfolded_input_path(gpu: &'static Gpu, g: &Geom) -> Option<(HalfPath, Vec<super::gpu::Phase>)> {
    let phases = super::gpu::phases(g);
    let path = path(gpu, &phases.first()?.v);
    let unfolded = path != HalfPath::RoundedF32
        && g.stride <= g.kh.min(g.kw)
        && phases.iter().all(|ph| ph.v.kh == ph.v.kw);
    unfolded.then_some((path, phases))
}

/// [`gpu_backward_input`] on the unfolded path: each phase's product written into the padded input's
/// gradient, then folded back.
fn unfolded_input(
    path: HalfPath,
    phases: &[super::gpu::Phase],
    dy: &GpuStorage,
    w: &GpuStorage,
    g: &Geom,
) -> GpuStorage {
    let gpu = dy.gpu;
    let (s, hp, wp) = (g.stride, g.h + 2 * g.pad, g.w + 2 * g.pad);
    let dxpad = if s == 1 {
        phase_product(path, dy, w, g, &phases[0])
    } else {
        let dxpad = GpuStorage::alloc(gpu, g.n * g.ci * hp * wp, "conv2d_backward_input");
        for ph in phases {
            let part = phase_product(path, dy, w, g, ph);
            let v = &ph.v;
            gpu_copy_strided(
                &part,
                &dxpad,
                &StridedCopy {
                    shape: vec![g.n * g.ci, v.ho, v.wo],
                    src_offset: 0,
                    src_strides: vec![v.ho * v.wo, v.wo, 1],
                    dst_offset: ph.py * wp + ph.px,
                    dst_strides: vec![hp * wp, s * wp, s],
                },
            );
        }
        dxpad
    };
    super::gpu::pad_fold(dxpad, g)
}

/// One stride phase of the padded input's gradient (N, C_in, v.ho, v.wo): dy convolved by the phase's
/// taps of w, flipped and transposed ([`gpu_backward_input`]).
fn phase_product(
    path: HalfPath,
    dy: &GpuStorage,
    w: &GpuStorage,
    g: &Geom,
    ph: &super::gpu::Phase,
) -> GpuStorage {
    let wt = gpu_flip_weight(w, g, ph);
    forward_in_chunks(
        path,
        dy,
        &wt,
        None,
        &ph.v,
        backward_budget(dy.gpu),
        unfolding_on(dy.gpu, path),
    )
}

/// The phase's weight w̃ (C_in, C_out, T_h, T_w), `w̃[c, o, m, l] = w[o, c, py + s·(T_h - 1 - m), px +
/// s·(T_w - 1 - l)]`: conv_flip_weight.wgsl's CPU reference.
pub fn cpu_flip_weight(w: &[f32], g: &Geom, ph: &super::gpu::Phase) -> Vec<f32> {
    let (th, tw, s) = (ph.v.kh, ph.v.kw, g.stride);
    let mut wt = Vec::with_capacity(g.ci * g.co * th * tw);
    for c in 0..g.ci {
        for o in 0..g.co {
            for m in 0..th {
                for l in 0..tw {
                    let (ky, kx) = (ph.py + s * (th - 1 - m), ph.px + s * (tw - 1 - l));
                    wt.push(w[((o * g.ci + c) * g.kh + ky) * g.kw + kx]);
                }
            }
        }
    }
    wt
}

/// [`cpu_flip_weight`] on the GPU: one launch of conv_flip_weight.wgsl.
pub fn gpu_flip_weight(w: &GpuStorage, g: &Geom, ph: &super::gpu::Phase) -> GpuStorage {
    let n = g.ci * g.co * ph.v.kh * ph.v.kw;
    let wt = GpuStorage::alloc(w.gpu, n.max(1), "conv_flip_weight");
    let u = |v: usize| v as u32;
    CONV_FLIP_WEIGHT.dispatch(
        w.gpu,
        &[w.buffer(), wt.buffer()],
        &FlipParams {
            ci: u(g.ci),
            co: u(g.co),
            kh: u(g.kh),
            kw: u(g.kw),
            th: u(ph.v.kh),
            tw: u(ph.v.kw),
            stride: u(g.stride),
            py: u(ph.py),
            px: u(ph.px),
            _pad: [0; 3],
        },
        Grid::threads(n).bytes(8 * n),
    );
    wt
}

/// The weight gradient under mixed, `dw (C_out, C_in, kH, kW) = Σ_n dy[n] · B[n]ᵀ`, from x and dy already
/// rounded (the backward pass's operands: `Conv2dBackward`), on [`path`]'s product (module doc). Unfolded,
/// it runs as the transposed product, per image n: `dwᵀ[n] (K, C_out) = B[n] (K, P) · dy[n]ᵀ (P, C_out)`,
/// with `B[n]` unfolded by `half_im2col.wgsl` as the A operand and `dy[n]` packed transposed as B; the images'
/// products are summed in a fixed order (a chunk's by `reduce_sum`, then the chunks'), and transposed.
/// Else `conv2d_backward_weight.wgsl` and its variants on the same operands. Returns dw as a (C_out, K)
/// tensor.
pub fn gpu_backward_weight(x: &GpuStorage, dy: &GpuStorage, g: &Geom) -> Tensor {
    let path = path(x.gpu, g);
    backward_weight_in_chunks(
        path,
        x,
        dy,
        g,
        backward_budget(x.gpu),
        unfolding_on(x.gpu, path),
    )
}

/// The unfolding budget of the backward pass's products ([`BACKWARD_UNFOLD_BYTES_SOFTWARE`]).
fn backward_budget(gpu: &Gpu) -> usize {
    if gpu.is_software() {
        BACKWARD_UNFOLD_BYTES_SOFTWARE
    } else {
        UNFOLD_BYTES
    }
}

/// [`gpu_backward_weight`] on an explicit path, with chunks of at most `unfold_bytes` of unfolded operand
/// (virtual when `unfolding` unfolds inside the tiles: [`in_tiles_kernel`]).
fn backward_weight_in_chunks(
    path: HalfPath,
    x: &GpuStorage,
    dy: &GpuStorage,
    g: &Geom,
    unfold_bytes: usize,
    unfolding: Unfolding,
) -> Tensor {
    let gpu = x.gpu;
    let max_binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size) as usize;
    let frames = weight_chunk_frames(unfold_bytes, max_binding, g);
    let (k, p) = (g.ci * g.kh * g.kw, g.ho * g.wo);
    let (HalfPath::Cooperative { .. } | HalfPath::F16Tiles, Some(frames)) = (path, frames) else {
        let dw = super::gpu::gpu_backward_weight(x, dy, g);
        return Tensor::from_storage(&[g.co, k], Storage::Gpu(dw));
    };
    let (k_rows, p_p, co_p) = half_matmul::padded(k, p, g.co);
    let in_tiles = in_tiles_kernel(gpu, path, g, Implicit::WeightGradient);
    let mut total: Option<Tensor> = None;
    let mut frame0 = 0;
    while frame0 < g.n {
        let n = frames.min(g.n - frame0);
        let dyt = half_matmul::gpu_pack_operand_at(
            dy,
            frame0 * g.co * p,
            n,
            (p, g.co),
            true,
            (p_p, co_p),
        );
        let prods = match in_tiles.filter(|_| unfolding == Unfolding::InTiles) {
            Some(kernel) => {
                let prods = GpuStorage::alloc(gpu, n * k * g.co, "half_conv_dw");
                let what = Implicit::WeightGradient;
                gpu_in_tiles(kernel, what, &dyt, x, (&prods, 0), None, g, (frame0, n));
                prods
            }
            None => {
                let cols = gpu_im2col_padded(x, g, frame0, n, (k_rows, p_p));
                half_matmul::gpu_packed_product(path, (&cols, n), (&dyt, n), n, k, p, g.co)
            }
        };
        drop(dyt);
        let part = Tensor::from_storage(&[n, k, g.co], Storage::Gpu(prods)).sum(&[0], false);
        total = Some(match total {
            None => part,
            Some(t) => &t + &part,
        });
        frame0 += n;
    }
    match total {
        Some(t) => t.transpose(0, 1),
        None => Tensor::zeros(&[g.co, k], Device::Gpu),
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests;
