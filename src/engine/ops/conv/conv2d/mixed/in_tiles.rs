//! Mixed's convolutions with the input unfolded inside the product's tiles: implicit GEMMs, no unfolded
//! operand in memory (module doc of `conv2d::mixed`). Six kernels, by product and tiles: the forward
//! (`half_conv.wgsl` on the f16 tiles, `half_conv_coop.wgsl` / `half_conv_coop8.wgsl` on 16 × 16 / 8 × 8
//! cooperative tiles) and the weight gradient (`half_conv_dw*.wgsl`). Each gives the unfolded copy's bits
//! (`half_im2col.wgsl` + the product kernel); [`in_tiles_kernel`] says which runs where, [`unfolding_on`]
//! whether this device unfolds inside the tiles (the cooperative path, once [`in_tiles_self_test`] passed) or
//! into memory (the f16 tiles), `SITSGPU_CONV_UNFOLDING=tiles|copy` overriding both.

use super::super::geom::Geom;
use super::{backward_weight_in_chunks, forward_in_chunks, UNFOLD_BYTES};
use crate::engine::gpu::Gpu;
use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::linalg::half_matmul::{self, HalfPath};
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of half_conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    m: u32,
    n: u32,
    k_p: u32,
    frames: u32,
    m_p: u32,
    n_p: u32,
    c_offset: u32,
    has_bias: u32,
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
    frame0: u32,
    per_wg: u32,
    _pad: [u32; 3],
}

/// `half_conv.wgsl`: the convolution as an implicit product on the f16 tiles (needs `SHADER_F16`).
pub const HALF_CONV: Kernel = Kernel::new::<ConvParams>(&shaders::HALF_CONV, "half_conv", 5);
/// `half_conv_coop.wgsl`: the convolution as an implicit product on 16 × 16 cooperative tiles, 64
/// invocations a workgroup.
pub const HALF_CONV_COOP: Kernel =
    Kernel::new::<ConvParams>(&shaders::HALF_CONV_COOP, "half_conv_coop", 5).with_wg(64);
/// `half_conv_dw.wgsl`: the weight gradient as an implicit product on the f16 tiles, per image.
pub const HALF_CONV_DW: Kernel =
    Kernel::new::<ConvParams>(&shaders::HALF_CONV_DW, "half_conv_dw", 4);
/// `half_conv_dw_coop.wgsl`: the weight gradient as an implicit product on 16 × 16 cooperative tiles, per
/// image, 64 invocations a workgroup.
pub const HALF_CONV_DW_COOP: Kernel =
    Kernel::new::<ConvParams>(&shaders::HALF_CONV_DW_COOP, "half_conv_dw_coop", 4).with_wg(64);
/// `half_conv_coop8.wgsl`: [`HALF_CONV_COOP`] on 8 × 8 cooperative tiles.
pub const HALF_CONV_COOP8: Kernel =
    Kernel::new::<ConvParams>(&shaders::HALF_CONV_COOP8, "half_conv_coop8", 5).with_wg(64);
/// `half_conv_dw_coop8.wgsl`: [`HALF_CONV_DW_COOP`] on 8 × 8 cooperative tiles.
pub const HALF_CONV_DW_COOP8: Kernel =
    Kernel::new::<ConvParams>(&shaders::HALF_CONV_DW_COOP8, "half_conv_dw_coop8", 4).with_wg(64);
/// Where the unfolded convolutions on `path` take their unfolded operand from: inside the tiles on the
/// cooperative path (an implicit GEMM: on a GPU the unfolded copy is memory traffic and up to
/// [`UNFOLD_BYTES`] of transient memory) once the device has passed [`in_tiles_self_test`], unfolded into
/// memory on the f16 tiles (software adapters only, where which is faster depends on the driver's compiler:
/// benches/README.md § "Convolutions unfolded inside the tiles"); `SITSGPU_CONV_UNFOLDING=tiles|copy`
/// decides for every path ([`unfolding_override`]).
pub fn unfolding_on(gpu: &'static Gpu, path: HalfPath) -> Unfolding {
    let wanted = unfolding_override().unwrap_or(match path {
        HalfPath::Cooperative { .. } => Unfolding::InTiles,
        _ => Unfolding::Copy,
    });
    let coop = matches!(path, HalfPath::Cooperative { .. });
    let checked = || {
        *gpu.conv_in_tiles_ok.get_or_init(|| {
            let ok = in_tiles_self_test(path);
            if !ok {
                eprintln!(
                    "sitsgpu: the convolutions unfolded inside the cooperative tiles disagree with the \
                     unfolded copy on this adapter; unfolding into memory instead"
                );
            }
            ok
        })
    };
    if wanted == Unfolding::InTiles && coop && !checked() {
        return Unfolding::Copy;
    }
    wanted
}

/// Runs, on the GPU, a convolution and its weight gradient whose products are whole 64 × 64 blocks (so the
/// cooperative kernels that unfold inside their tiles take them: `half_conv_coop(8).wgsl`,
/// `half_conv_dw_coop(8).wgsl`) both ways on `path`, and says whether unfolding inside the tiles gave the
/// unfolded copy's bits, as it must (the same operands in the same tiles). Those kernels read cooperative
/// tiles from workgroup memory, which the products' own self-test (`half_matmul::path_self_test`) does not
/// exercise; a driver that gets it wrong loses the implicit convolutions, not the right answers.
pub fn in_tiles_self_test(path: HalfPath) -> bool {
    let g = Geom::new(
        &[1, 64, 8, 8],
        &[64, 64, 3, 3],
        1,
        1,
        super::super::PaddingMode::Reflect,
    );
    let values = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed) % 101) as f32 - 50.0) / 29.0)
            .collect()
    };
    let upload = |v: Vec<f32>| {
        let n = v.len();
        Tensor::from_vec(v, &[n], Device::Gpu)
    };
    let x = upload(values(g.n * g.ci * g.h * g.w, 1));
    let w = upload(values(g.co * g.ci * g.kh * g.kw, 2));
    let b = upload(values(g.co, 3));
    let dy = upload(values(g.n * g.co * g.ho * g.wo, 4));
    let (gx, gw, gb, gdy) = (
        x.gpu_storage("self-test"),
        w.gpu_storage("self-test"),
        b.gpu_storage("self-test"),
        dy.gpu_storage("self-test"),
    );
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let y_len = g.n * g.co * g.ho * g.wo;
    let forward = |u| {
        let y = forward_in_chunks(path, gx, gw, Some(gb), &g, UNFOLD_BYTES, u);
        bits(Storage::Gpu(y).to_vec(y_len))
    };
    let weight = |u| bits(backward_weight_in_chunks(path, gx, gdy, &g, UNFOLD_BYTES, u).to_vec());
    forward(Unfolding::InTiles) == forward(Unfolding::Copy)
        && weight(Unfolding::InTiles) == weight(Unfolding::Copy)
}

/// `SITSGPU_CONV_UNFOLDING`: `tiles` or `copy` for every unfolded convolution of this process (to compare
/// the two on a device: benches/device/run.sh); unset, [`unfolding_on`] decides by path.
pub fn unfolding_override() -> Option<Unfolding> {
    static CHOICE: std::sync::OnceLock<Option<Unfolding>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var("SITSGPU_CONV_UNFOLDING").as_deref() {
        Ok("copy") => Some(Unfolding::Copy),
        Ok("tiles") => Some(Unfolding::InTiles),
        Err(_) => None,
        Ok(other) => {
            eprintln!(
                "sitsgpu: SITSGPU_CONV_UNFOLDING={other} is neither tiles nor copy: ignored (the default \
                 by path)"
            );
            None
        }
    })
}

/// Where an unfolded path's B operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfolding {
    /// Unfolded into memory by half_im2col.wgsl, then multiplied (every padded path).
    Copy,
    /// Unfolded inside the product's tiles (`in_tiles_kernel`'s kernels), where the shape allows.
    InTiles,
}

/// Which product an implicit convolution kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Implicit {
    /// `y[n] (C_out, P) = h(W) (C_out, K) · B[n] (K, P)`: half_conv.wgsl, half_conv_coop.wgsl.
    Forward,
    /// `dwᵀ[n] (K, C_out) = B[n] (K, P) · dy[n]ᵀ (P, C_out)`: half_conv_dw.wgsl, half_conv_dw_coop.wgsl.
    WeightGradient,
}

impl Implicit {
    /// The product's logical (M, K, N).
    pub(super) fn dims(self, g: &Geom) -> (usize, usize, usize) {
        let (k, p) = (g.ci * g.kh * g.kw, g.ho * g.wo);
        match self {
            Implicit::Forward => (g.co, k, p),
            Implicit::WeightGradient => (k, p, g.co),
        }
    }
}

/// Whether the cooperative kernels with `tile` × `tile` tiles have a slot of workgroup memory for every
/// subgroup of a 64-invocation workgroup on this adapter: 8 slots for 16 × 16 tiles (subgroups of 8 or
/// more), 16 for 8 × 8 (4 or more).
pub(super) fn coop_slots_fit(gpu: &Gpu, tile: u32) -> bool {
    gpu.half.subgroup_min >= if tile == 16 { 8 } else { 4 }
}

/// A kernel that unfolds the input inside its tiles, as [`in_tiles_kernel`] picks it.
#[derive(Clone, Copy, Debug)]
pub(super) struct InTiles {
    kernel: Kernel,
    /// Blocks a workgroup (1 on the f16 tiles).
    per_wg: u32,
    /// The edge of the block of output a workgroup (f16 tiles) or a subgroup (cooperative) computes.
    block: usize,
}

/// The kernel that computes `what` for `g` on `path` with the input unfolded inside its tiles
/// ([`Unfolding::InTiles`]): the f16 tiles' kernel; the cooperative ones (16 × 16 or 8 × 8 tiles) where the
/// product's M and N are whole 64-row blocks (they store whole blocks straight into the output) and the
/// adapter's subgroups are large enough for their slots of workgroup memory (8 slots for 16 × 16 tiles:
/// subgroups of 8 or more; 16 for 8 × 8: 4 or more); `None` elsewhere (ragged shapes), where the unfolded
/// copy runs.
pub(super) fn in_tiles_kernel(
    gpu: &Gpu,
    path: HalfPath,
    g: &Geom,
    what: Implicit,
) -> Option<InTiles> {
    let (m, _, n) = what.dims(g);
    let whole = m.is_multiple_of(half_matmul::BLOCK) && n.is_multiple_of(half_matmul::BLOCK);
    let forward = what == Implicit::Forward;
    match path {
        HalfPath::F16Tiles => Some(InTiles {
            kernel: if forward { HALF_CONV } else { HALF_CONV_DW },
            per_wg: 1,
            block: half_matmul::BLOCK,
        }),
        HalfPath::Cooperative { per_wg, tile } if whole && coop_slots_fit(gpu, tile) => {
            let (kernel, block) = match (tile, forward) {
                (16, true) => (HALF_CONV_COOP, 64),
                (16, false) => (HALF_CONV_DW_COOP, 64),
                (_, true) => (HALF_CONV_COOP8, 32),
                (_, false) => (HALF_CONV_DW_COOP8, 32),
            };
            Some(InTiles {
                kernel,
                per_wg,
                block,
            })
        }
        _ => None,
    }
}

/// One launch of an [`in_tiles_kernel`] over images `frame0 .. frame0 + frames`: `operand` the other
/// operand, packed (the forward's h(W), or the weight gradient's dy of these images transposed), the
/// product written into `out` from element `c_offset` on (the forward's into its images of y, from the bias
/// tile when there is one).
#[allow(clippy::too_many_arguments)]
pub(super) fn gpu_in_tiles(
    InTiles {
        kernel,
        per_wg,
        block,
    }: InTiles,
    what: Implicit,
    operand: &GpuStorage,
    x: &GpuStorage,
    (out, c_offset): (&GpuStorage, usize),
    bias_tile: Option<&GpuStorage>,
    g: &Geom,
    (frame0, frames): (usize, usize),
) {
    let (m, k, n) = what.dims(g);
    let (m_p, k_p, n_p) = half_matmul::padded(m, k, n);
    let u = |v: usize| v as u32;
    let params = ConvParams {
        m: u(m),
        n: u(n),
        k_p: u(k_p),
        frames: u(frames),
        m_p: u(m_p),
        n_p: u(n_p),
        c_offset: u(c_offset),
        has_bias: bias_tile.is_some() as u32,
        ci: u(g.ci),
        h: u(g.h),
        w: u(g.w),
        kh: u(g.kh),
        kw: u(g.kw),
        stride: u(g.stride),
        pad: u(g.pad),
        reflect: (g.mode == super::super::PaddingMode::Reflect) as u32,
        ho: u(g.ho),
        wo: u(g.wo),
        k: u(g.ci * g.kh * g.kw),
        frame0: u(frame0),
        per_wg,
        _pad: [0; 3],
    };
    let blocks = frames * (m_p / block) * (n_p / block);
    // The packed operand is read once a block row or column; the input once; the output written once.
    let packed = match what {
        Implicit::Forward => m_p * k_p,
        Implicit::WeightGradient => frames * k_p * n_p,
    };
    let grid = Grid::groups(blocks.div_ceil(per_wg as usize))
        .flops(2 * frames * m_p * n_p * k_p)
        .bytes(2 * packed + 4 * frames * (g.ci * g.h * g.w + m * n))
        .loop_len(k_p);
    let mut buffers = vec![operand.buffer(), x.buffer(), out.buffer()];
    if what == Implicit::Forward {
        // Without a bias the kernel never reads binding 3: any buffer does.
        buffers.push(bias_tile.unwrap_or(operand).buffer());
    }
    kernel.dispatch(x.gpu, &buffers, &params, grid);
}
