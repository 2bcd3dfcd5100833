//! 2-D convolution (PyTorch `nn.Conv2d`, groups = 1, dilation = 1) with stride, zero or reflect padding and
//! an optional bias.
//!
//! Math: `y[n, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]`,
//! where `xpad` is x padded by p on each side: zeros, or reflect (`x[-i] = x[i]`, `x[H-1+i] = x[H-1-i]`,
//! needs p < H and p < W). The padding is index arithmetic (`src` below), never a padded copy.
//! Shapes: x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) → y (N, C_out, H_out, W_out),
//! `H_out = (H + 2p - kH) / s + 1` (floor), likewise W_out.
//!
//! Derivatives (each forward read `x[src(..)]` contributes `dy · w` to that x element, `dy · x` to w):
//! - `dx[n, c, i, j] = Σ dy[n, o, oy, ox] w[o, c, ky, kx]` over every (o, oy, ky, ox, kx) whose read lands on
//!   (i, j); with reflect padding a border element is also reached through its mirrored positions, and those
//!   contributions add up.
//! - `dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · xpad[n, c, oy·s - p + ky, ox·s - p + kx]`.
//! - `db[o] = Σ_{n, oy, ox} dy[n, o, oy, ox]` (a composition: `dy.sum(&[0, 2, 3])`, no kernel).
//!
//! Saved for backward: x and the weight. Kernels: `conv2d.wgsl` (implicit GEMM, 64 × 64 register tiles
//! staged through workgroup memory), `conv2d_backward_input.wgsl` (gather per dx element),
//! `conv2d_backward_weight.wgsl` (partial sums over chunks of output rows, then `reduce::gpu_sum`: two
//! deterministic passes). `conv_transpose2d` reuses all three (see its doc).
//!
//! Measured (lavapipe, 2 busy CPU cores; only the ratio means anything): x (2, 64, 32, 32), 64 → 64, k3 p1
//! reflect: the tiled forward 254 ms, the same FLOPs through the one-output-per-invocation gather
//! (`conv2d_backward_input.wgsl`) 574 ms (2.3×; k4 s2: 3.3×), on par with `matmul.wgsl` on that adapter
//! (0.59 vs 0.55 GFLOP/s). Real GPUs: `cargo bench --bench ops -- conv2d`.

use crate::engine::autograd::Backward;
use crate::engine::gpu::Gpu;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::reduce;
use crate::engine::real::Real;
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// How the border is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    /// Zeros outside the input (PyTorch `padding_mode="zeros"`).
    Zeros,
    /// Mirror without repeating the edge (`padding_mode="reflect"`): `x[-1] = x[1]`, `x[H] = x[H-2]`.
    Reflect,
}

/// Shader `Params` of conv2d.wgsl, conv2d_backward_input.wgsl and conv2d_backward_weight.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    ho: u32,
    wo: u32,
    pad: u32,
    reflect: u32,
    has_bias: u32,
    chunk: u32,
    nchunks: u32,
    flip: u32,
    out_h: u32,
    out_w: u32,
    out_stride: u32,
    phase_y: u32,
    phase_x: u32,
    wkh: u32,
    wkw: u32,
    wstride: u32,
}

/// The sizes of one convolution: x (n, ci, h, w), weight (co, ci, kh, kw), y (n, co, ho, wo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    /// Batch N.
    pub n: usize,
    /// Input channels C_in.
    pub ci: usize,
    /// Input height H.
    pub h: usize,
    /// Input width W.
    pub w: usize,
    /// Output channels C_out.
    pub co: usize,
    /// Kernel height kH.
    pub kh: usize,
    /// Kernel width kW.
    pub kw: usize,
    /// Stride s (both axes).
    pub stride: usize,
    /// Padding p (both axes, each side).
    pub pad: usize,
    /// Output height H_out.
    pub ho: usize,
    /// Output width W_out.
    pub wo: usize,
    /// Padding mode.
    pub mode: PaddingMode,
}

impl Geom {
    /// Checks x (N, C_in, H, W) and weight (C_out, C_in, kH, kW) and derives H_out, W_out; panics with
    /// `conv2d: expected …, got …` otherwise.
    pub fn new(x: &[usize], w: &[usize], stride: usize, pad: usize, mode: PaddingMode) -> Geom {
        assert!(
            x.len() == 4 && w.len() == 4 && x[1] == w[1],
            "conv2d: expected x (N, C_in, H, W) and weight (C_out, C_in, kH, kW), got {x:?} and {w:?}"
        );
        assert!(stride >= 1, "conv2d: expected stride >= 1, got 0");
        assert!(
            x[2] + 2 * pad >= w[2] && x[3] + 2 * pad >= w[3],
            "conv2d: expected a kernel no larger than the padded input, got x {x:?}, weight {w:?}, padding {pad}"
        );
        assert!(
            mode == PaddingMode::Zeros || (pad < x[2] && pad < x[3]),
            "conv2d: expected reflect padding smaller than H and W, got padding {pad} for x {x:?}"
        );
        let ho = (x[2] + 2 * pad - w[2]) / stride + 1;
        let wo = (x[3] + 2 * pad - w[3]) / stride + 1;
        let [n, ci, h, ww] = [x[0], x[1], x[2], x[3]];
        let (co, kh, kw) = (w[0], w[2], w[3]);
        Geom {
            n,
            ci,
            h,
            w: ww,
            co,
            kh,
            kw,
            stride,
            pad,
            ho,
            wo,
            mode,
        }
    }

    /// The source index along an axis of length `len` of padded position `t`; `None` in zero padding.
    fn src(&self, t: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        match self.mode {
            _ if (0..n).contains(&t) => Some(t as usize),
            PaddingMode::Zeros => None,
            PaddingMode::Reflect if t < 0 => Some((-t) as usize),
            PaddingMode::Reflect => Some((2 * (n - 1) - t) as usize),
        }
    }

    /// The forward kernels' `Params` for this geometry (benchmarks and tests launch the variants directly).
    pub fn kernel_params(&self, has_bias: bool) -> Params {
        self.params(has_bias, 0, 0)
    }

    fn params(&self, has_bias: bool, chunk: usize, nchunks: usize) -> Params {
        let u = |v: usize| u32::try_from(v).expect("conv2d: size overflows u32");
        Params {
            n: u(self.n),
            ci: u(self.ci),
            h: u(self.h),
            w: u(self.w),
            co: u(self.co),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.stride),
            ho: u(self.ho),
            wo: u(self.wo),
            pad: u(self.pad),
            reflect: (self.mode == PaddingMode::Reflect) as u32,
            has_bias: has_bias as u32,
            chunk: u(chunk),
            nchunks: u(nchunks),
            flip: 0,
            out_h: u(self.ho),
            out_w: u(self.wo),
            out_stride: 1,
            phase_y: 0,
            phase_x: 0,
            wkh: u(self.kh),
            wkw: u(self.kw),
            wstride: 1,
        }
    }
}

/// `conv2d.wgsl`: implicit-GEMM forward, 64 × 128 tiles.
pub const CONV2D: Kernel = Kernel::new::<Params>(&shaders::CONV2D, "conv2d", 5);
/// `conv2d_narrow.wgsl`: the same with 16 × 256 tiles (few output channels).
pub const CONV2D_NARROW: Kernel =
    Kernel::new::<Params>(&shaders::CONV2D_NARROW, "conv2d_narrow", 5);
/// `conv2d_backward_weight_narrow.wgsl`: the same with 16 output channels × 64 K-columns per workgroup.
pub const CONV2D_BACKWARD_WEIGHT_NARROW: Kernel = Kernel::new::<Params>(
    &shaders::CONV2D_BACKWARD_WEIGHT_NARROW,
    "conv2d_backward_weight_narrow",
    4,
);
/// `conv2d_direct.wgsl`: the forward without workgroup memory (software adapters).
pub const CONV2D_DIRECT: Kernel =
    Kernel::new::<Params>(&shaders::CONV2D_DIRECT, "conv2d_direct", 5);
/// `conv2d_backward_weight_direct.wgsl`: the weight gradient without workgroup memory (software adapters).
pub const CONV2D_BACKWARD_WEIGHT_DIRECT: Kernel = Kernel::new::<Params>(
    &shaders::CONV2D_BACKWARD_WEIGHT_DIRECT,
    "conv2d_backward_weight_direct",
    4,
);
/// `conv2d_pad_fold.wgsl`: the padded input's gradient folded onto the input.
pub const CONV2D_PAD_FOLD: Kernel =
    Kernel::new::<Params>(&shaders::CONV2D_PAD_FOLD, "conv2d_pad_fold", 3);
/// `conv2d_backward_input.wgsl`: dx (gather).
pub const CONV2D_BACKWARD_INPUT: Kernel =
    Kernel::new::<Params>(&shaders::CONV2D_BACKWARD_INPUT, "conv2d_backward_input", 4);
/// `conv2d_backward_weight.wgsl`: dw partials over chunks of rows.
pub const CONV2D_BACKWARD_WEIGHT: Kernel = Kernel::new::<Params>(
    &shaders::CONV2D_BACKWARD_WEIGHT,
    "conv2d_backward_weight",
    4,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[
    CONV2D,
    CONV2D_NARROW,
    CONV2D_DIRECT,
    CONV2D_PAD_FOLD,
    CONV2D_BACKWARD_INPUT,
    CONV2D_BACKWARD_WEIGHT,
    CONV2D_BACKWARD_WEIGHT_NARROW,
    CONV2D_BACKWARD_WEIGHT_DIRECT,
];

// ---- CPU reference ----

/// Calls `f(y index, x index, weight index)` for every product of the forward, in a fixed order.
fn for_each_tap(g: &Geom, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..g.n {
        for o in 0..g.co {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let yi = ((n * g.co + o) * g.ho + oy) * g.wo + ox;
                    for c in 0..g.ci {
                        for ky in 0..g.kh {
                            let Some(iy) =
                                g.src((oy * g.stride + ky) as isize - g.pad as isize, g.h)
                            else {
                                continue;
                            };
                            for kx in 0..g.kw {
                                let t = (ox * g.stride + kx) as isize - g.pad as isize;
                                let Some(ix) = g.src(t, g.w) else { continue };
                                let xi = ((n * g.ci + c) * g.h + iy) * g.w + ix;
                                f(yi, xi, ((o * g.ci + c) * g.kh + ky) * g.kw + kx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) → y (N, C_out, H_out, W_out).
pub fn cpu_forward<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
    let mut y = vec![T::zero(); g.n * g.co * g.ho * g.wo];
    for_each_tap(g, |yi, xi, wi| y[yi] += w[wi] * x[xi]);
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / (g.ho * g.wo)) % g.co];
        }
    }
    y
}

/// (dx (N, C_in, H, W), dw (C_out, C_in, kH, kW), db (C_out)) from x, weight and dy (N, C_out, H_out, W_out):
/// every forward product `y += w · x` sends `dy · w` to x and `dy · x` to w (mirrored reads included).
pub fn cpu_backward<T: Real>(x: &[T], w: &[T], dy: &[T], g: &Geom) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dx = vec![T::zero(); x.len()];
    let mut dw = vec![T::zero(); w.len()];
    let mut db = vec![T::zero(); g.co];
    for_each_tap(g, |yi, xi, wi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    for (i, &v) in dy.iter().enumerate() {
        db[(i / (g.ho * g.wo)) % g.co] += v;
    }
    (dx, dw, db)
}

// ---- GPU ----

/// The tile shape of a convolution's kernels (both compute every case): the forward (`conv2d.wgsl` /
/// `conv2d_narrow.wgsl`) and the weight gradient (`conv2d_backward_weight[_narrow].wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKernel {
    /// `conv2d.wgsl`: 64 output channels × 128 pixels per workgroup.
    Wide,
    /// `conv2d_narrow.wgsl`: 16 output channels × 256 pixels per workgroup.
    Narrow,
    /// `conv2d_direct.wgsl`: no workgroup memory, 4 output channels × 1 pixel per invocation.
    Direct,
}

impl ForwardKernel {
    /// The kernels for `co` output channels on `gpu`: direct on a software adapter (a CPU: no workgroup
    /// memory to gain from, barriers to pay for), else the tile that wastes less of a workgroup — narrow up
    /// to 32 channels.
    pub fn choose(gpu: &Gpu, co: usize) -> ForwardKernel {
        if gpu.is_software() {
            ForwardKernel::Direct
        } else if co <= 32 {
            ForwardKernel::Narrow
        } else {
            ForwardKernel::Wide
        }
    }
}

/// Launches conv2d.wgsl (or its narrow variant, [`ForwardKernel::choose`]): x, weight, optional bias →
/// y (N, C_out, H_out, W_out).
pub fn gpu_forward(x: &GpuStorage, w: &GpuStorage, b: Option<&GpuStorage>, g: &Geom) -> GpuStorage {
    let p = g.params(b.is_some(), 0, 0);
    gpu_forward_with(ForwardKernel::choose(x.gpu, g.co), x, w, b, g, p)
}

/// [`gpu_forward`] with an explicit kernel and `Params` (flip = 1: the input gradient's convolution).
pub fn gpu_forward_with(
    kernel: ForwardKernel,
    x: &GpuStorage,
    w: &GpuStorage,
    b: Option<&GpuStorage>,
    g: &Geom,
    p: Params,
) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, g.n * g.ho * g.wo * g.co, "conv2d");
    // Without a bias the weight is bound as a placeholder (never read: has_bias = 0).
    let bias = b.unwrap_or(w).buffer();
    launch_forward(
        kernel,
        x.gpu,
        &[x.buffer(), w.buffer(), bias, y.buffer()],
        g,
        p,
    );
    y
}

/// Records one forward kernel over `bufs` (x, weight, bias, y) for the geometry `g`.
fn launch_forward(
    kernel: ForwardKernel,
    gpu: &Gpu,
    bufs: &[&wgpu::Buffer; 4],
    g: &Geom,
    p: Params,
) {
    let npix = g.n * g.ho * g.wo;
    let taps = g.ci * g.kh * g.kw;
    let (k, grid) = match kernel {
        ForwardKernel::Wide => (CONV2D, Grid::groups(g.co.div_ceil(64) * npix.div_ceil(128))),
        ForwardKernel::Narrow => (
            CONV2D_NARROW,
            Grid::groups(g.co.div_ceil(16) * npix.div_ceil(256)),
        ),
        ForwardKernel::Direct => (CONV2D_DIRECT, Grid::threads(g.co.div_ceil(4) * npix)),
    };
    let grid = grid
        .flops(2 * g.co * taps * npix)
        .bytes(4 * (g.n * g.ci * g.h * g.w + g.co * taps + g.co * npix))
        .loop_len(taps);
    k.dispatch(gpu, bufs, &p, grid);
}

/// dy (N, C_out, H_out, W_out), weight → dx (N, C_in, H, W) on the forward's register-tiled kernels.
///
/// The gradient of the padded input xpad (N, C_in, H + 2p, W + 2p) is a transposed convolution of dy. Row
/// `u = s·a + φ` of it gathers `dy[a - j] · w[φ + s·j]` over the taps `j < T_φ = ceil((kH - φ) / s)`: for
/// each stride phase (φy, φx) that is an ordinary stride-1 convolution of dy, zero-padded by T − 1, with
/// the phase's taps of the kernel flipped and its channel axes swapped (`conv2d.wgsl` with flip = 1, which
/// also stores pixel (a, b) at (s·a + φy, s·b + φx)). Stride 1 is one phase. Then `conv2d_pad_fold.wgsl`
/// folds the padding back onto the input (a crop, plus the mirrored positions for reflect). A phase with no
/// tap (kernel smaller than the stride) leaves its rows zero. The one-invocation-per-element gather
/// `conv2d_backward_input.wgsl` computes the same ([`gpu_backward_input_gather`]).
pub fn gpu_backward_input(dy: &GpuStorage, w: &GpuStorage, g: &Geom) -> GpuStorage {
    gpu_backward_input_with(ForwardKernel::choose(dy.gpu, g.ci), dy, w, g)
}

/// [`gpu_backward_input`] on an explicit forward kernel (benchmarks and tests compare them).
pub fn gpu_backward_input_with(
    kernel: ForwardKernel,
    dy: &GpuStorage,
    w: &GpuStorage,
    g: &Geom,
) -> GpuStorage {
    let s = g.stride;
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let n_pad = g.n * g.ci * hp * wp;
    let dxpad = GpuStorage::alloc(dy.gpu, n_pad, "conv2d_backward_input");
    if s > g.kh || s > g.kw {
        dy.gpu
            .record(|enc| enc.clear_buffer(dxpad.buffer(), 0, Some(4 * n_pad as u64)));
    }
    let bufs = [dy.buffer(), w.buffer(), w.buffer(), dxpad.buffer()];
    for py in 0..s {
        for px in 0..s {
            let (th, tw) = (
                g.kh.saturating_sub(py).div_ceil(s),
                g.kw.saturating_sub(px).div_ceil(s),
            );
            let (ah, aw) = (
                hp.saturating_sub(py).div_ceil(s),
                wp.saturating_sub(px).div_ceil(s),
            );
            if th == 0 || tw == 0 || ah == 0 || aw == 0 {
                continue;
            }
            // The phase's convolution: dy as input, C_in output channels, T taps, (ah, aw) output pixels.
            let v = Geom {
                n: g.n,
                ci: g.co,
                h: g.ho,
                w: g.wo,
                co: g.ci,
                kh: th,
                kw: tw,
                stride: 1,
                pad: th - 1,
                ho: ah,
                wo: aw,
                mode: PaddingMode::Zeros,
            };
            let mut p = v.params(false, 0, 0);
            (p.flip, p.out_h, p.out_w, p.out_stride) = (1, hp as u32, wp as u32, s as u32);
            (p.phase_y, p.phase_x, p.wkh, p.wkw, p.wstride) =
                (py as u32, px as u32, g.kh as u32, g.kw as u32, s as u32);
            launch_forward(kernel, dy.gpu, &bufs, &v, p);
        }
    }
    if g.pad == 0 {
        return dxpad;
    }
    let n = g.n * g.ci * g.h * g.w;
    let dx = GpuStorage::alloc(dy.gpu, n, "conv2d_pad_fold");
    let mut fp = g.params(false, 0, 0);
    (fp.ho, fp.wo) = (hp as u32, wp as u32);
    let grid = Grid::threads(n).bytes(4 * (n + n_pad));
    CONV2D_PAD_FOLD.dispatch(dy.gpu, &[dxpad.buffer(), dx.buffer()], &fp, grid);
    dx
}

/// Launches conv2d_backward_input.wgsl (one invocation per dx element, any stride): dy, weight → dx.
pub fn gpu_backward_input_gather(dy: &GpuStorage, w: &GpuStorage, g: &Geom) -> GpuStorage {
    let n = g.n * g.ci * g.h * g.w;
    let dx = GpuStorage::alloc(dy.gpu, n, "conv2d_backward_input");
    let bufs = [dy.buffer(), w.buffer(), dx.buffer()];
    let p = g.params(false, 0, 0);
    let grid = Grid::threads(n).flops(2 * g.n * g.co * g.ho * g.wo * g.ci * g.kh * g.kw);
    CONV2D_BACKWARD_INPUT.dispatch(dy.gpu, &bufs, &p, grid);
    dx
}

/// Output rows (n, oy) per partial sum of the direct weight gradient: about 1024 products per invocation.
const ROWS_ELEMS: usize = 1024;

/// conv2d_backward_weight_direct.wgsl (one invocation per weight element and chunk of output rows), then
/// the partials summed in chunk order.
fn gpu_backward_weight_rows(x: &GpuStorage, dy: &GpuStorage, g: &Geom) -> GpuStorage {
    let rows = g.n * g.ho;
    let chunk = (ROWS_ELEMS / g.wo.max(1)).clamp(1, rows.max(1));
    let nchunks = rows.div_ceil(chunk).max(1);
    let nw = g.co * g.ci * g.kh * g.kw;
    let partial = GpuStorage::alloc(x.gpu, nchunks * nw, "conv2d_backward_weight_direct");
    let bufs = [x.buffer(), dy.buffer(), partial.buffer()];
    let p = g.params(false, chunk, nchunks);
    let grid = Grid::threads(nchunks * nw)
        .flops(2 * nw * g.n * g.ho * g.wo)
        .loop_len(chunk * g.wo);
    CONV2D_BACKWARD_WEIGHT_DIRECT.dispatch(x.gpu, &bufs, &p, grid);
    if nchunks == 1 {
        partial
    } else {
        reduce::gpu_sum(&partial, 1, nchunks, nw)
    }
}

/// Workgroups the weight gradient aims for (slices × tiles): enough to fill a large GPU.
const WEIGHT_GRAD_GROUPS: usize = 1024;
/// The fewest output pixels a weight-gradient slice covers.
const MIN_SLICE_PIXELS: usize = 256;

/// Launches conv2d_backward_weight.wgsl (partial products over slices of the output pixels), then sums the
/// partials in slice order: x, dy → dw (C_out, C_in, kH, kW). The slice count depends on the shape alone.
pub fn gpu_backward_weight(x: &GpuStorage, dy: &GpuStorage, g: &Geom) -> GpuStorage {
    gpu_backward_weight_with(ForwardKernel::choose(x.gpu, g.co), x, dy, g)
}

/// [`gpu_backward_weight`] with an explicit tile (`Wide`: 64 output channels per workgroup, `Narrow`: 16).
pub fn gpu_backward_weight_with(
    tile: ForwardKernel,
    x: &GpuStorage,
    dy: &GpuStorage,
    g: &Geom,
) -> GpuStorage {
    let npix = g.n * g.ho * g.wo;
    let nw = g.co * g.ci * g.kh * g.kw;
    let (kernel, bm) = match tile {
        ForwardKernel::Wide => (CONV2D_BACKWARD_WEIGHT, 64),
        ForwardKernel::Narrow => (CONV2D_BACKWARD_WEIGHT_NARROW, 16),
        ForwardKernel::Direct => return gpu_backward_weight_rows(x, dy, g),
    };
    let tiles = g.co.div_ceil(bm) * (g.ci * g.kh * g.kw).div_ceil(64);
    let want = WEIGHT_GRAD_GROUPS
        .div_ceil(tiles)
        .min(npix.div_ceil(MIN_SLICE_PIXELS))
        .max(1);
    let chunk = npix.div_ceil(want).next_multiple_of(16).max(16);
    let nchunks = npix.div_ceil(chunk).max(1);
    let partial = GpuStorage::alloc(x.gpu, nchunks * nw, "conv2d_backward_weight");
    let bufs = [x.buffer(), dy.buffer(), partial.buffer()];
    let p = g.params(false, chunk, nchunks);
    let grid = Grid::groups(nchunks * tiles)
        .flops(2 * nw * npix)
        .bytes(4 * (g.n * g.ci * g.h * g.w + g.co * npix + nchunks * nw))
        .loop_len(chunk);
    kernel.dispatch(x.gpu, &bufs, &p, grid);
    if nchunks == 1 {
        partial
    } else {
        reduce::gpu_sum(&partial, 1, nchunks, nw)
    }
}

// ---- Autograd ----

impl Tensor {
    /// 2-D convolution of x (N, C_in, H, W) with weight (C_out, C_in, kH, kW) and an optional bias (C_out):
    /// stride and padding on both axes, zero or reflect padding → (N, C_out, H_out, W_out),
    /// `H_out = (H + 2·padding - kH) / stride + 1`. Reflect padding needs padding < H and < W.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        mode: PaddingMode,
    ) -> Tensor {
        let g = Geom::new(self.shape(), weight.shape(), stride, padding, mode);
        if let Some(b) = bias {
            assert_eq!(
                b.shape(),
                [g.co],
                "conv2d: expected bias ({}), got {:?}",
                g.co,
                b.shape()
            );
        }
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let storage = match Tensor::same_device("conv2d", &inputs) {
            Device::Cpu => {
                let b = bias.map(|b| b.cpu_data("conv2d").clone());
                let y = cpu_forward(
                    &self.cpu_data("conv2d"),
                    &weight.cpu_data("conv2d"),
                    b.as_deref(),
                    &g,
                );
                Tensor::cpu_storage(y)
            }
            Device::Gpu => Storage::Gpu(gpu_forward(
                self.gpu_storage("conv2d"),
                weight.gpu_storage("conv2d"),
                bias.map(|b| b.gpu_storage("conv2d")),
                &g,
            )),
        };
        let back = Conv2dBackward {
            x: self.clone(),
            w: weight.clone(),
            has_bias: bias.is_some(),
            g,
        };
        Tensor::from_op(&[g.n, g.co, g.ho, g.wo], storage, &inputs, back)
    }
}

struct Conv2dBackward {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
    g: Geom,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let (x, w, g) = (&self.x, &self.w, &self.g);
        let mut grads = match Tensor::same_device("conv2d_backward", &[x, w, dy]) {
            Device::Cpu => {
                let (dx, dw, db) = cpu_backward(
                    &x.cpu_data("conv2d"),
                    &w.cpu_data("conv2d"),
                    &dy.cpu_data("conv2d"),
                    g,
                );
                let db = self.has_bias.then(|| dy.new_like(db, &[g.co]));
                vec![
                    Some(x.new_like(dx, x.shape())),
                    Some(w.new_like(dw, w.shape())),
                    db,
                ]
            }
            Device::Gpu => {
                let (gx, gw, gdy) = (
                    x.gpu_storage("conv2d"),
                    w.gpu_storage("conv2d"),
                    dy.gpu_storage("conv2d"),
                );
                let dx = x.requires_grad().then(|| {
                    Tensor::from_storage(x.shape(), Storage::Gpu(gpu_backward_input(gdy, gw, g)))
                });
                let dw = w.requires_grad().then(|| {
                    Tensor::from_storage(w.shape(), Storage::Gpu(gpu_backward_weight(gx, gdy, g)))
                });
                vec![dx, dw, self.has_bias.then(|| dy.sum(&[0, 2, 3], false))]
            }
        };
        grads.truncate(2 + self.has_bias as usize);
        grads
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{gradcheck, random_vec};

    #[test]
    fn exact_values_3x3_input_2x2_kernel() {
        // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], w = [[1, 0], [0, -1]], b = 0.5, no padding, stride 1:
        // y[i, j] = x[i, j] - x[i+1, j+1] + 0.5 = -4 + 0.5 everywhere → [[-3.5, -3.5], [-3.5, -3.5]].
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let g = Geom::new(&[1, 1, 3, 3], &[1, 1, 2, 2], 1, 0, PaddingMode::Zeros);
        assert_eq!(
            cpu_forward(&x, &[1.0, 0.0, 0.0, -1.0], Some(&[0.5]), &g),
            vec![-3.5; 4]
        );
        // With dy = 1 everywhere: dw[ky, kx] = sum of the 2×2 window of x starting at (ky, kx):
        // (1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9) = (12, 16, 24, 28); db = 4;
        // dx = w[0,0] · (cover count of the top-left taps) - (bottom-right taps):
        // [[1, 1, 0], [1, 0, -1], [0, -1, -1]].
        let (dx, dw, db) = cpu_backward(&x, &[1.0, 0.0, 0.0, -1.0], &[1.0; 4], &g);
        assert_eq!(dw, vec![12.0, 16.0, 24.0, 28.0]);
        assert_eq!(db, vec![4.0]);
        assert_eq!(dx, vec![1.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, -1.0]);
    }

    #[test]
    fn exact_values_reflect_row() {
        // x = [[1, 2, 3], [4, 5, 6]] (1, 1, 2, 3), kernel 3×3 whose middle row is ones (the rest 0), padding 1
        // reflect: each output row is its input row convolved with [1, 1, 1]. Padded row 0: [2, 1, 2, 3, 2]
        // → [2+1+2, 1+2+3, 2+3+2] = [5, 6, 7]; padded row 1: [5, 4, 5, 6, 5] → [14, 15, 16].
        // With dy = 1 at y[0, 0] only: x[0, 1] is read twice (directly and through x[0, -1] = x[0, 1]) and
        // x[0, 0] once: dx = [[1, 2, 0], [0, 0, 0]].
        let g = Geom::new(&[1, 1, 2, 3], &[1, 1, 3, 3], 1, 1, PaddingMode::Reflect);
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        assert_eq!(
            cpu_forward(&x, &w, None, &g),
            vec![5.0, 6.0, 7.0, 14.0, 15.0, 16.0]
        );
        let dy = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            cpu_backward(&x, &w, &dy, &g).0,
            vec![1.0, 2.0, 0.0, 0.0, 0.0, 0.0]
        );
        // Zero padding instead: padded rows [0, 1, 2, 3, 0], [0, 4, 5, 6, 0] → [3, 6, 5], [9, 15, 11].
        let z = Geom {
            mode: PaddingMode::Zeros,
            ..g
        };
        assert_eq!(
            cpu_forward(&x, &w, None, &z),
            vec![3.0, 6.0, 5.0, 9.0, 15.0, 11.0]
        );
    }

    #[test]
    fn gradcheck_f64_zeros_and_reflect_strides_odd_sizes() {
        let cases = [
            ([2, 3, 5, 4], [2, 3, 3, 3], 1, 1, PaddingMode::Reflect),
            ([1, 2, 6, 6], [3, 2, 4, 4], 2, 1, PaddingMode::Reflect),
            ([1, 2, 7, 5], [2, 2, 3, 3], 2, 2, PaddingMode::Reflect),
            ([2, 2, 5, 7], [3, 2, 3, 2], 2, 1, PaddingMode::Zeros),
            ([1, 3, 4, 3], [2, 3, 1, 1], 1, 0, PaddingMode::Zeros),
        ];
        for (k, (xs, ws, s, p, mode)) in cases.into_iter().enumerate() {
            let g = Geom::new(&xs, &ws, s, p, mode);
            let n = |s: [usize; 4]| s.iter().product::<usize>();
            let ins = [
                random_vec(n(xs), -1.0, 1.0, 31 + k as u64),
                random_vec(n(ws), -1.0, 1.0, 41 + k as u64),
                random_vec(ws[0], -1.0, 1.0, 51 + k as u64),
            ];
            gradcheck(
                &format!("conv2d {xs:?} {ws:?} s{s} p{p} {mode:?}"),
                &ins,
                &[],
                |v| cpu_forward(&v[0], &v[1], Some(&v[2]), &g),
                |v, dy| {
                    let (dx, dw, db) = cpu_backward(&v[0], &v[1], dy, &g);
                    vec![dx, dw, db]
                },
            );
        }
    }

    #[test]
    #[should_panic(expected = "conv2d: expected reflect padding smaller than H and W")]
    fn reflect_padding_too_large_panics() {
        Geom::new(&[1, 1, 2, 5], &[1, 1, 3, 3], 1, 2, PaddingMode::Reflect);
    }

    #[test]
    fn autograd_on_cpu_tensors() {
        // 1×1 kernel w = 2, bias 1: y = 2x + 1, so d(sum y)/dx = 2, dw = sum x = 10, db = 4.
        let x =
            Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2], Device::Cpu).requires_grad_();
        let w = Tensor::from_vec(vec![2.0], &[1, 1, 1, 1], Device::Cpu).requires_grad_();
        let b = Tensor::from_vec(vec![1.0], &[1], Device::Cpu).requires_grad_();
        let y = x.conv2d(&w, Some(&b), 1, 0, PaddingMode::Zeros);
        assert_eq!(y.to_vec(), vec![3.0, 5.0, 7.0, 9.0]);
        y.sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![2.0; 4]);
        assert_eq!(w.grad().unwrap().to_vec(), vec![10.0]);
        assert_eq!(b.grad().unwrap().to_vec(), vec![4.0]);
    }
}
