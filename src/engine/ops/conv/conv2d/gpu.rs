//! conv2d on the GPU: the kernels and their launchers. The forward is a register-tiled implicit GEMM (two
//! tile shapes) or, on software adapters, a direct kernel; the input gradient runs each stride phase on the
//! forward's kernels (flip mode) and folds the padding back; the weight gradient is a split-K GEMM over
//! slices of the output pixels (two tiles) or, on software adapters, one invocation per weight element and
//! chunk of rows. Reductions are two deterministic passes at most: no float atomics.

use super::geom::{Geom, PaddingMode, Params};
use crate::engine::gpu::Gpu;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::reduce::reduce_sum;
use crate::engine::pool::BufSlice;
use crate::engine::storage::GpuStorage;
use crate::shaders;

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

/// Launches conv2d.wgsl (or a variant, [`ForwardKernel::choose`]): x, weight, optional bias →
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
fn launch_forward(kernel: ForwardKernel, gpu: &Gpu, bufs: &[BufSlice; 4], g: &Geom, p: Params) {
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
        dy.gpu.clear(dxpad.buffer(), 4 * n_pad as u64);
    }
    let bufs = [dy.buffer(), w.buffer(), w.buffer(), dxpad.buffer()];
    for Phase { py, px, v } in phases(g) {
        let mut p = v.params(false, 0, 0);
        (p.flip, p.out_h, p.out_w, p.out_stride) = (1, hp as u32, wp as u32, s as u32);
        (p.phase_y, p.phase_x, p.wkh, p.wkw, p.wstride) =
            (py as u32, px as u32, g.kh as u32, g.kw as u32, s as u32);
        launch_forward(kernel, dy.gpu, &bufs, &v, p);
    }
    pad_fold(dxpad, g)
}

/// One stride phase of the input gradient ([`gpu_backward_input`]): the rows `s·a + py` and columns
/// `s·b + px` of the padded input's gradient, `a < v.ho`, `b < v.wo`, are the stride-1 convolution `v` of dy
/// (dy as the input, C_in output channels, the phase's `v.kh × v.kw` taps, zero padding `v.kh - 1`) by the
/// phase's taps of the kernel, flipped and with the channel axes swapped.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// The phase's first row of the padded input.
    pub py: usize,
    /// The phase's first column.
    pub px: usize,
    /// The phase's convolution.
    pub v: Geom,
}

/// The stride phases of `g`'s input gradient that have taps and rows (all `stride²` of them when the
/// stride is at most the kernel: then they cover every position of the padded input exactly once).
pub fn phases(g: &Geom) -> Vec<Phase> {
    let s = g.stride;
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let mut out = Vec::new();
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
            out.push(Phase { py, px, v });
        }
    }
    out
}

/// The input gradient from the gradient of the padded input (N, C_in, H + 2p, W + 2p): the padding's
/// entries folded back onto the pixels they copy (reflect) or dropped (zeros), `conv2d_pad_fold.wgsl`.
pub fn pad_fold(dxpad: GpuStorage, g: &Geom) -> GpuStorage {
    if g.pad == 0 {
        return dxpad;
    }
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let n_pad = g.n * g.ci * hp * wp;
    let n = g.n * g.ci * g.h * g.w;
    let dx = GpuStorage::alloc(dxpad.gpu, n, "conv2d_pad_fold");
    let mut fp = g.params(false, 0, 0);
    (fp.ho, fp.wo) = (hp as u32, wp as u32);
    let grid = Grid::threads(n).bytes(4 * (n + n_pad));
    CONV2D_PAD_FOLD.dispatch(dxpad.gpu, &[dxpad.buffer(), dx.buffer()], &fp, grid);
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
/// Invocations the direct weight gradient aims for: chunks of rows only until weight elements × chunks
/// reach it (a software adapter has a few cores; a large weight needs no chunks, and its partial sums would
/// cost a copy of the weight per chunk: 60 MiB at ConvLSTM's 640 × 170 × 3 × 3 over 16 chunks).
const DIRECT_INVOCATIONS: usize = 1 << 16;

/// conv2d_backward_weight_direct.wgsl (one invocation per weight element and chunk of output rows), then
/// the partials summed in chunk order.
fn gpu_backward_weight_rows(x: &GpuStorage, dy: &GpuStorage, g: &Geom) -> GpuStorage {
    let rows = g.n * g.ho;
    let nw = g.co * g.ci * g.kh * g.kw;
    let want = DIRECT_INVOCATIONS.div_ceil(nw.max(1));
    let chunk = (ROWS_ELEMS / g.wo.max(1))
        .max(rows.div_ceil(want))
        .clamp(1, rows.max(1));
    let nchunks = rows.div_ceil(chunk).max(1);
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
        reduce_sum::gpu_sum(&partial, 1, nchunks, nw)
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
        reduce_sum::gpu_sum(&partial, 1, nchunks, nw)
    }
}
