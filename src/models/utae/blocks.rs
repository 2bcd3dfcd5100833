//! U-TAE's building blocks (spec §3.2): `ConvLayer` (conv → norm → ReLU pairs), the temporally shared
//! application of a block to every real date, and the down and up blocks, with the original's state-dict
//! names.

use crate::engine::autograd::is_grad_enabled;
use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::ops::movement::copy_strided::RowAssembler;
use crate::engine::rng::Rng;
use crate::engine::{no_grad, Device, Tensor};
use crate::layers::{prefixed, BatchNorm, Conv2d, ConvTranspose2d, Ctx, Module, Norm, NormKind};
use crate::models::utae::config::N_GROUPS;

/// `ConvLayer` of utae.py: conv → norm → ReLU for each pair of widths, in a Sequential named `conv`.
pub struct ConvLayer {
    convs: Vec<Conv2d>,
    norms: Vec<Option<Norm>>,
    last_relu: bool,
}

impl ConvLayer {
    /// Widths `nkernels`, kernel k, stride s, padding p.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nkernels: &[usize],
        norm: NormKind,
        k: usize,
        s: usize,
        p: usize,
        last_relu: bool,
        mode: PaddingMode,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for w in nkernels.windows(2) {
            convs.push(Conv2d::new(w[0], w[1], k, s, p, mode, rng, device));
            norms.push(Norm::new(norm, w[1], N_GROUPS, rng, device));
        }
        ConvLayer {
            convs,
            norms,
            last_relu,
        }
    }

    /// x (N, C, H, W) → (N, C', H', W').
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let mut out = x.clone();
        let n = self.convs.len();
        for i in 0..n {
            out = self.convs[i].forward(&out);
            let relu = self.last_relu || i + 1 < n;
            out = match (&self.norms[i], relu) {
                // Norm + ReLU recomputed in the backward pass (engine::recompute): same numbers, less memory.
                (Some(norm), true) => norm.forward_relu(&out, ctx),
                (Some(norm), false) => norm.forward(&out, ctx),
                (None, true) => out.relu(),
                (None, false) => out,
            };
        }
        out
    }

    /// Whether a BatchNorm follows one of its convolutions (the dummy-pass quirk applies).
    pub fn has_batch_norm(&self) -> bool {
        self.norms.iter().flatten().any(Norm::is_batch)
    }

    /// Sequential indices: conv, [norm], [relu] per pair.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &dyn Module)) {
        let mut idx = 0;
        let n = self.convs.len();
        for i in 0..n {
            f(&format!("{prefix}conv.{idx}."), &self.convs[i]);
            idx += 1;
            if let Some(norm) = &self.norms[i] {
                f(&format!("{prefix}conv.{idx}."), norm);
                idx += 1;
            }
            if self.last_relu || i + 1 < n {
                idx += 1;
            }
        }
    }
}

impl Module for ConvLayer {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        self.visit(prefix, &mut |p, m| v.extend(m.named_parameters(p)));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        self.visit(prefix, &mut |p, m| v.extend(m.named_buffers(p)));
        v
    }
}

/// Runs `block` on the non-padded frames of x (B, T, C, H, W) only; padded frames come out as exact zeros
/// (`smart_forward` of utae.py). `real` lists the indices b·T + t of the real frames. With BatchNorm in
/// training mode the block first runs on an all-zero input of the full shape (the dummy-pass QUIRK).
///
/// With autograd off (evaluation, prediction, mapping) the frames go through `block` in chunks
/// ([`in_frame_chunks`]): the block's temporaries then exist for one chunk at a time instead of for all
/// B·T frames. Each frame's result is the same (the blocks see each frame alone: convolutions, group norm,
/// batch norm in eval mode; the only no-grad call in training mode is the dummy pass above).
pub fn temporally_shared(
    x: &Tensor,
    real: &[usize],
    quirk_dummy_pass: bool,
    block: impl Fn(&Tensor) -> Tensor,
) -> Tensor {
    let s = x.shape().to_vec();
    let (b, t) = (s[0], s[1]);
    let flat = x.reshape(&[b * t, s[2], s[3], s[4]]);
    if quirk_dummy_pass {
        no_grad(|| block(&Tensor::zeros(flat.shape(), x.device())));
    }
    let out = if !is_grad_enabled() && !real.is_empty() {
        in_frame_chunks(&flat, real, CHUNK_BYTES, &block)
    } else {
        real_frames_only(&flat, real, &block)
    };
    let os = out.shape().to_vec();
    out.reshape(&[b, t, os[1], os[2], os[3]])
}

/// `block` on the real frames of `flat` (N, C, H, W) at once; padded rows come out zero.
fn real_frames_only(flat: &Tensor, real: &[usize], block: &impl Fn(&Tensor) -> Tensor) -> Tensor {
    let n = flat.shape()[0];
    if real.len() == n {
        return block(flat);
    }
    let o = block(&flat.index_select(0, real));
    let mut zero_shape = o.shape().to_vec();
    zero_shape[0] = 1;
    let with_zero = Tensor::cat(&[&o, &Tensor::zeros(&zero_shape, flat.device())], 0);
    let mut map = vec![real.len(); n];
    for (k, &f) in real.iter().enumerate() {
        map[f] = k;
    }
    with_zero.index_select(0, &map)
}

/// Bytes of a frame chunk's input or output (the larger) when a temporally shared block runs in chunks.
pub const CHUNK_BYTES: usize = 16 << 20;

/// Inference: `block` on the real frames of `flat` (N, C, H, W) in runs of consecutive real frames, each
/// result written into its rows of the output as soon as it exists (`RowAssembler`); padded rows are zero.
/// The first run holds `chunk_bytes / 8` of input (a block may widen its input up to eight times), the
/// others `chunk_bytes` of the larger of a frame's input and output. When the real frames fit one chunk, the
/// block runs on them at once (`real_frames_only`, one launch per kernel as in training).
pub fn in_frame_chunks(
    flat: &Tensor,
    real: &[usize],
    chunk_bytes: usize,
    block: &impl Fn(&Tensor) -> Tensor,
) -> Tensor {
    let n = flat.shape()[0];
    let frame_in = 4 * flat.shape()[1..].iter().product::<usize>().max(1);
    let mut per = (chunk_bytes / 8 / frame_in).max(1);
    if real.len() <= per {
        return real_frames_only(flat, real, block);
    }
    let mut out: Option<RowAssembler> = None;
    let mut i = 0;
    while i < real.len() {
        let start = real[i];
        let mut len = 1;
        while len < per && i + len < real.len() && real[i + len] == start + len {
            len += 1;
        }
        let y = block(&flat.narrow(0, start, len));
        if out.is_none() {
            let frame_out = 4 * y.shape()[1..].iter().product::<usize>().max(1);
            per = (chunk_bytes / frame_in.max(frame_out)).max(1);
        }
        out.get_or_insert_with(|| RowAssembler::new(&y, n, real.len() < n))
            .put(start, &y);
        i += len;
    }
    out.expect("at least one real frame").finish()
}

/// `DownConvBlock`: strided conv (halves H, W), then conv1 and a residual conv2.
pub struct DownConvBlock {
    down: ConvLayer,
    conv1: ConvLayer,
    conv2: ConvLayer,
}

impl DownConvBlock {
    /// `DownConvBlock(d_in, d_out, k, s, p, norm, padding_mode)`: the strided `down` conv keeps d_in channels.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        din: usize,
        dout: usize,
        [k, s, p]: [usize; 3],
        norm: NormKind,
        mode: PaddingMode,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        let layer = |ws: &[usize], k, s, p, rng: &mut Rng| {
            ConvLayer::new(ws, norm, k, s, p, true, mode, rng, device)
        };
        DownConvBlock {
            down: layer(&[din, din], k, s, p, rng),
            conv1: layer(&[din, dout], 3, 1, 1, rng),
            conv2: layer(&[dout, dout], 3, 1, 1, rng),
        }
    }

    /// Whether its `down` conv is followed by a BatchNorm (the dummy-pass quirk).
    pub fn has_batch_norm(&self) -> bool {
        self.down.has_batch_norm()
    }

    /// x (N, d_in, H, W) → (N, d_out, H/2, W/2).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Tensor {
        let a = self.conv1.forward(&self.down.forward(x, ctx), ctx);
        &a + &self.conv2.forward(&a, ctx)
    }
}

impl Module for DownConvBlock {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.down.named_parameters(&prefixed(p, "down"));
        v.extend(self.conv1.named_parameters(&prefixed(p, "conv1")));
        v.extend(self.conv2.named_parameters(&prefixed(p, "conv2")));
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.down.named_buffers(&prefixed(p, "down"));
        v.extend(self.conv1.named_buffers(&prefixed(p, "conv1")));
        v.extend(self.conv2.named_buffers(&prefixed(p, "conv2")));
        v
    }
}

/// `UpConvBlock`: transposed conv up, 1×1 conv on the skip, concatenation [up, skip], conv1 and residual conv2.
pub struct UpConvBlock {
    skip_conv: Conv2d,
    skip_bn: BatchNorm,
    up: ConvTranspose2d,
    up_bn: BatchNorm,
    conv1: ConvLayer,
    conv2: ConvLayer,
}

impl UpConvBlock {
    /// `UpConvBlock(d_in, d_out, d_skip, k, s, p, norm, padding_mode)`: skip_conv and the transposed conv are
    /// always followed by BatchNorm; conv1 and conv2 by `norm`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [din, dout, dskip]: [usize; 3],
        [k, s, p]: [usize; 3],
        norm: NormKind,
        mode: PaddingMode,
        rng: &mut Rng,
        device: Device,
    ) -> Self {
        UpConvBlock {
            skip_conv: Conv2d::new(dskip, dskip, 1, 1, 0, PaddingMode::Zeros, rng, device),
            skip_bn: BatchNorm::new(dskip, rng, device),
            up: ConvTranspose2d::new(din, dout, k, s, p, rng, device),
            up_bn: BatchNorm::new(dout, rng, device),
            conv1: ConvLayer::new(
                &[dout + dskip, dout],
                norm,
                3,
                1,
                1,
                true,
                mode,
                rng,
                device,
            ),
            conv2: ConvLayer::new(&[dout, dout], norm, 3, 1, 1, true, mode, rng, device),
        }
    }

    /// x (N, d_in, h, w) and the aggregated skip (N, d_skip, 2h, 2w) → (N, d_out, 2h, 2w).
    pub fn forward(&self, x: &Tensor, skip: &Tensor, ctx: &Ctx) -> Tensor {
        let up = self.up_bn.forward_relu(&self.up.forward(x), ctx);
        let sk = self
            .skip_bn
            .forward_relu(&self.skip_conv.forward(skip), ctx);
        let a = self.conv1.forward(&Tensor::cat(&[&up, &sk], 1), ctx);
        &a + &self.conv2.forward(&a, ctx)
    }
}

impl Module for UpConvBlock {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.skip_conv.named_parameters(&prefixed(p, "skip_conv.0"));
        v.extend(self.skip_bn.named_parameters(&prefixed(p, "skip_conv.1")));
        v.extend(self.up.named_parameters(&prefixed(p, "up.0")));
        v.extend(self.up_bn.named_parameters(&prefixed(p, "up.1")));
        v.extend(self.conv1.named_parameters(&prefixed(p, "conv1")));
        v.extend(self.conv2.named_parameters(&prefixed(p, "conv2")));
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.skip_bn.named_buffers(&prefixed(p, "skip_conv.1"));
        v.extend(self.up_bn.named_buffers(&prefixed(p, "up.1")));
        v.extend(self.conv1.named_buffers(&prefixed(p, "conv1")));
        v.extend(self.conv2.named_buffers(&prefixed(p, "conv2")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::gpu_or_skip;

    /// A conv → group norm → ReLU layer over B 2 · T 3 frames, frames 2 and 5 padded.
    fn case(device: Device) -> (ConvLayer, Tensor) {
        let mut rng = Rng::new(7);
        let layer = ConvLayer::new(
            &[3, 8, 8],
            NormKind::Group,
            3,
            1,
            1,
            true,
            PaddingMode::Reflect,
            &mut rng,
            device,
        );
        let x: Vec<f32> = (0..2 * 3 * 3 * 6 * 6)
            .map(|_| rng.normal() as f32)
            .collect();
        (layer, Tensor::from_vec(x, &[2, 3, 3, 6, 6], device))
    }

    const REAL: [usize; 4] = [0, 1, 3, 4];

    #[test]
    fn inference_chunks_give_each_frame_the_same_result() {
        let (layer, x) = case(Device::Cpu);
        let block = |f: &Tensor| layer.forward(f, &Ctx::eval());
        // With autograd on: all real frames at once (the training path).
        let whole = temporally_shared(&x, &REAL, false, block).to_vec();
        let flat = x.reshape(&[6, 3, 6, 6]);
        for chunk_bytes in [1, 4 * 3 * 36 * 8 * 2, CHUNK_BYTES] {
            let chunked = no_grad(|| in_frame_chunks(&flat, &REAL, chunk_bytes, &block));
            assert_eq!(chunked.shape(), &[6, 8, 6, 6]);
            assert_eq!(chunked.to_vec(), whole, "chunks of {chunk_bytes} bytes");
        }
        // Padded frames are exact zeros.
        let frame = 8 * 36;
        assert!(whole[2 * frame..3 * frame].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn inference_chunks_on_the_gpu_match_the_cpu() {
        let Some(_) = gpu_or_skip("inference chunks of a temporally shared block") else {
            return;
        };
        let (cpu_layer, x) = case(Device::Cpu);
        let (gpu_layer, xg) = case(Device::Gpu);
        let want =
            temporally_shared(&x, &REAL, false, |f| cpu_layer.forward(f, &Ctx::eval())).to_vec();
        let flat = xg.reshape(&[6, 3, 6, 6]);
        let got = no_grad(|| {
            in_frame_chunks(&flat, &REAL, 1, &|f: &Tensor| {
                gpu_layer.forward(f, &Ctx::eval())
            })
        })
        .to_vec();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                "element {i}: {a} vs {b}"
            );
        }
    }
}
