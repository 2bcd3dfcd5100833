//! U-TAE (Garnot & Landrieu, ICCV 2021; `UTAE` of utae-paps, spec §3): a U-Net whose encoder runs on every
//! date separately (temporally shared), an L-TAE at the lowest resolution that collapses time with
//! attention, and a decoder whose skip connections are collapsed over time with the same attention maps.
//!
//! ```text
//! x (B, T, 10, H, W) ─ in_conv ─ F0 ─ down0 ─ F1 ─ down1 ─ F2 ─ down2 ─ F3 (B, T, 128, H/8, W/8)
//!                                                            L-TAE ─┴→ O (B, 128, H/8, W/8), A (16, B, T, H/8, W/8)
//! O ─ up0(agg(F2, A)) ─ D1 ─ up1(agg(F1, A)) ─ D2 ─ up2(agg(F0, A)) ─ D3 ─ out_conv → logits (B, 20, H, W)
//! ```
//! Reproduced quirks (spec §3.2, §3.3): padded frames are skipped by the encoder blocks (their outputs are
//! exact zeros); with `encoder_norm = batch` in training mode each encoder block first runs once on an
//! all-zero input of the full shape, which updates its BatchNorm running statistics; the class scores are
//! BatchNorm + ReLU outputs; L-TAE's in_norm sees the padded dates. Parameter names are the original
//! state_dict keys (Appendix A.1).

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{no_grad, Device, Error, Result, Tensor};
use crate::layers::{prefixed, BatchNorm, Conv2d, ConvTranspose2d, Ctx, Module, Norm, NormKind};
use crate::models::ltae::Ltae2d;

/// GroupNorm groups in U-TAE's conv blocks.
pub const N_GROUPS: usize = 4;

/// Skip-connection temporal aggregation (spec §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggMode {
    /// Each channel group uses its head's attention (default).
    AttGroup,
    /// Head-averaged attention for every channel.
    AttMean,
    /// Plain mean over the real dates.
    Mean,
}

impl AggMode {
    /// From the original's spelling: `att_group`, `att_mean` or `mean`.
    pub fn parse(s: &str) -> Option<AggMode> {
        match s {
            "att_group" => Some(AggMode::AttGroup),
            "att_mean" => Some(AggMode::AttMean),
            "mean" => Some(AggMode::Mean),
            _ => None,
        }
    }

    /// The original's spelling (conf.json, `--agg_mode`).
    pub fn name(self) -> &'static str {
        match self {
            AggMode::AttGroup => "att_group",
            AggMode::AttMean => "att_mean",
            AggMode::Mean => "mean",
        }
    }
}

/// `padding_mode` from the original's spelling: `reflect` or `zeros`.
pub fn parse_padding_mode(s: &str) -> Option<PaddingMode> {
    match s {
        "reflect" => Some(PaddingMode::Reflect),
        "zeros" => Some(PaddingMode::Zeros),
        _ => None,
    }
}

/// The original's spelling of `padding_mode` (conf.json, `--padding_mode`).
pub fn padding_mode_name(p: PaddingMode) -> &'static str {
    match p {
        PaddingMode::Reflect => "reflect",
        PaddingMode::Zeros => "zeros",
    }
}

/// U-TAE's constructor parameters (spec §3.1), defaults as the original class.
#[derive(Debug, Clone, PartialEq)]
pub struct UTaeConfig {
    /// Input channels (10 for PASTIS S2).
    pub input_dim: usize,
    /// Channels per encoder level.
    pub encoder_widths: Vec<usize>,
    /// Channels per decoder level (last = encoder's last).
    pub decoder_widths: Vec<usize>,
    /// Output head widths (last = number of classes).
    pub out_conv: Vec<usize>,
    /// Strided conv kernel.
    pub str_conv_k: usize,
    /// Strided conv stride.
    pub str_conv_s: usize,
    /// Strided conv padding.
    pub str_conv_p: usize,
    /// Skip aggregation.
    pub agg_mode: AggMode,
    /// Encoder norm.
    pub encoder_norm: NormKind,
    /// L-TAE heads.
    pub n_head: usize,
    /// L-TAE width.
    pub d_model: usize,
    /// L-TAE key width.
    pub d_k: usize,
    /// Temporal pad value.
    pub pad_value: f32,
    /// Spatial padding of the k3/k4 convs.
    pub padding_mode: PaddingMode,
}

impl Default for UTaeConfig {
    fn default() -> Self {
        UTaeConfig {
            input_dim: 10,
            encoder_widths: vec![64, 64, 64, 128],
            decoder_widths: vec![32, 32, 64, 128],
            out_conv: vec![32, 20],
            str_conv_k: 4,
            str_conv_s: 2,
            str_conv_p: 1,
            agg_mode: AggMode::AttGroup,
            encoder_norm: NormKind::Group,
            n_head: 16,
            d_model: 256,
            d_k: 4,
            pad_value: 0.0,
            padding_mode: PaddingMode::Reflect,
        }
    }
}

impl UTaeConfig {
    /// From an original conf.json object (train_semantic.py's `vars(config)`, or a fixture's
    /// `reference.constructor_kwargs`); absent keys keep the defaults. `path` names the file in errors.
    pub fn from_json(v: &serde_json::Value, path: &std::path::Path) -> Result<UTaeConfig> {
        let mut c = UTaeConfig::default();
        let bad = |k: &str, why: &str| Error::format(path, format!("conf.json key {k:?}: {why}"));
        let list = |k: &str| -> Result<Option<Vec<usize>>> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => serde_json::from_str::<Vec<usize>>(s)
                    .map(Some)
                    .map_err(|_| bad(k, "expected a list of integers")),
                Some(x) => serde_json::from_value::<Vec<usize>>(x.clone())
                    .map(Some)
                    .map_err(|_| bad(k, "expected a list of integers")),
            }
        };
        let int = |k: &str| -> Result<Option<usize>> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|u| Some(u as usize))
                    .ok_or_else(|| bad(k, "expected a non-negative integer")),
            }
        };
        let string = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if let Some(x) = int("input_dim")? {
            c.input_dim = x;
        }
        if let Some(x) = list("encoder_widths")? {
            c.encoder_widths = x;
        }
        if let Some(x) = list("decoder_widths")? {
            c.decoder_widths = x;
        }
        if let Some(x) = list("out_conv")? {
            c.out_conv = x;
        }
        for (k, slot) in [
            ("str_conv_k", &mut c.str_conv_k),
            ("str_conv_s", &mut c.str_conv_s),
            ("str_conv_p", &mut c.str_conv_p),
            ("n_head", &mut c.n_head),
            ("d_model", &mut c.d_model),
            ("d_k", &mut c.d_k),
        ] {
            if let Some(x) = int(k)? {
                *slot = x;
            }
        }
        if let Some(n) = int("num_classes")? {
            // train_semantic.py requires num_classes == out_conv[-1].
            if c.out_conv.last() != Some(&n) {
                return Err(bad(
                    "num_classes",
                    &format!(
                        "{n} differs from the last out_conv width {:?}",
                        c.out_conv.last()
                    ),
                ));
            }
        }
        if let Some(s) = string("agg_mode") {
            c.agg_mode = AggMode::parse(&s)
                .ok_or_else(|| bad("agg_mode", "expected att_group, att_mean or mean"))?;
        }
        if let Some(s) = string("encoder_norm") {
            c.encoder_norm = NormKind::parse(&s);
        }
        if let Some(s) = string("padding_mode") {
            c.padding_mode = parse_padding_mode(&s)
                .ok_or_else(|| bad("padding_mode", "expected reflect or zeros"))?;
        }
        if let Some(p) = v.get("pad_value").and_then(|x| x.as_f64()) {
            c.pad_value = p as f32;
        }
        c.validate().map_err(|e| Error::format(path, e))?;
        Ok(c)
    }

    /// Checks the widths fit together.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.encoder_widths.len();
        if n < 2 || self.decoder_widths.len() != n {
            return Err(format!(
                "encoder_widths {:?} and decoder_widths {:?} must have the same length >= 2",
                self.encoder_widths, self.decoder_widths
            ));
        }
        if self.decoder_widths[n - 1] != self.encoder_widths[n - 1] {
            return Err("the last decoder width must equal the last encoder width".into());
        }
        if self.out_conv.is_empty() || !self.d_model.is_multiple_of(self.n_head) {
            return Err(format!(
                "out_conv must be non-empty and d_model a multiple of n_head: {self:?}"
            ));
        }
        if self.agg_mode == AggMode::AttGroup
            && self.encoder_widths[..n - 1]
                .iter()
                .any(|&w| w % self.n_head != 0)
        {
            return Err(format!("att_group splits every skip's channels into n_head = {} groups: encoder widths {:?}", self.n_head, self.encoder_widths));
        }
        Ok(())
    }
}

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
            if let Some(norm) = &self.norms[i] {
                out = norm.forward(&out, ctx);
            }
            if self.last_relu || i + 1 < n {
                out = out.relu();
            }
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
    let out = if real.len() == b * t {
        block(&flat)
    } else {
        let o = block(&flat.index_select(0, real));
        let mut zero_shape = o.shape().to_vec();
        zero_shape[0] = 1;
        let with_zero = Tensor::cat(&[&o, &Tensor::zeros(&zero_shape, x.device())], 0);
        let mut map = vec![real.len(); b * t];
        for (k, &f) in real.iter().enumerate() {
            map[f] = k;
        }
        with_zero.index_select(0, &map)
    };
    let os = out.shape().to_vec();
    out.reshape(&[b, t, os[1], os[2], os[3]])
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
        let up = self.up_bn.forward(&self.up.forward(x), ctx).relu();
        let sk = self
            .skip_bn
            .forward(&self.skip_conv.forward(skip), ctx)
            .relu();
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

/// The U-TAE model.
pub struct UTae {
    /// Its configuration.
    pub config: UTaeConfig,
    in_conv: ConvLayer,
    down_blocks: Vec<DownConvBlock>,
    up_blocks: Vec<UpConvBlock>,
    /// The temporal encoder.
    pub temporal_encoder: Ltae2d,
    out_conv: ConvLayer,
}

/// What a forward pass returns.
pub struct UTaeOutput {
    /// Class scores (B, num_classes, H, W) — or, in encoder mode, the last decoder map D3.
    pub out: Tensor,
    /// L-TAE attention (n_head, B, T, H/8, W/8).
    pub attn: Tensor,
    /// Decoder feature maps [O, D1, D2, D3] (PaPs needs them).
    pub maps: Vec<Tensor>,
}

/// The batch's pad information: `pad_mask[b·T + t]` is true for padded dates (derived from the data by the
/// collate function, spec §1.11: a frame entirely equal to the pad value).
#[derive(Debug, Clone)]
pub struct PadInfo {
    /// (B, T) flags.
    pub mask: Vec<bool>,
}

impl PadInfo {
    /// The mask of frames of `x` (B, T, C, H, W, host data) entirely equal to `pad_value`.
    pub fn from_data(x: &[f32], shape: &[usize], pad_value: f32) -> PadInfo {
        let frame: usize = shape[2..].iter().product();
        PadInfo {
            mask: (0..shape[0] * shape[1])
                .map(|f| {
                    x[f * frame..(f + 1) * frame]
                        .iter()
                        .all(|&v| v == pad_value)
                })
                .collect(),
        }
    }
}

impl UTae {
    /// A freshly initialised U-TAE (weights from `seed`, U-TAE's weight_init distributions).
    pub fn new(config: UTaeConfig, seed: u64, device: Device) -> Self {
        config
            .validate()
            .unwrap_or_else(|e| panic!("UTae::new: {e}"));
        let mut rng = Rng::new(seed);
        let c = &config;
        let n = c.encoder_widths.len();
        let (k, s, p, mode) = (c.str_conv_k, c.str_conv_s, c.str_conv_p, c.padding_mode);
        let in_conv = ConvLayer::new(
            &[c.input_dim, c.encoder_widths[0], c.encoder_widths[0]],
            c.encoder_norm,
            3,
            1,
            1,
            true,
            mode,
            &mut rng,
            device,
        );
        let down_blocks = (0..n - 1)
            .map(|i| {
                let (din, dout) = (c.encoder_widths[i], c.encoder_widths[i + 1]);
                DownConvBlock::new(din, dout, [k, s, p], c.encoder_norm, mode, &mut rng, device)
            })
            .collect();
        let up_blocks = (1..n)
            .rev()
            .map(|i| {
                let widths = [
                    c.decoder_widths[i],
                    c.decoder_widths[i - 1],
                    c.encoder_widths[i - 1],
                ];
                UpConvBlock::new(widths, [k, s, p], NormKind::Batch, mode, &mut rng, device)
            })
            .collect();
        let last = c.encoder_widths[n - 1];
        let temporal_encoder =
            Ltae2d::new(last, c.d_model, c.n_head, c.d_k, last, &mut rng, device);
        let mut head = vec![c.decoder_widths[0]];
        head.extend(&c.out_conv);
        let out_conv = ConvLayer::new(
            &head,
            NormKind::Batch,
            3,
            1,
            1,
            true,
            mode,
            &mut rng,
            device,
        );
        UTae {
            config,
            in_conv,
            down_blocks,
            up_blocks,
            temporal_encoder,
            out_conv,
        }
    }

    /// Number of classes (last out_conv width).
    pub fn num_classes(&self) -> usize {
        *self.config.out_conv.last().expect("out_conv non-empty")
    }

    /// The forward pass. x (B, T, C, H, W) on the model's device; `days` (B, T) day offsets (0 on padded
    /// dates); `pad` the batch's pad mask. `encoder`: return D3 instead of class scores (PaPs).
    pub fn forward(
        &self,
        x: &Tensor,
        days: &[f32],
        pad: &PadInfo,
        ctx: &Ctx,
        encoder: bool,
    ) -> UTaeOutput {
        let s = x.shape();
        assert_eq!(s.len(), 5, "UTae: expected x (B, T, C, H, W), got {s:?}");
        let (b, t) = (s[0], s[1]);
        assert_eq!(
            pad.mask.len(),
            b * t,
            "UTae: expected a ({b}, {t}) pad mask, got {} flags",
            pad.mask.len()
        );
        let real: Vec<usize> = (0..b * t).filter(|&f| !pad.mask[f]).collect();
        let any_pad = real.len() < b * t;
        let mask = any_pad.then(|| {
            Tensor::from_vec(
                pad.mask.iter().map(|&m| m as u8 as f32).collect(),
                &[b, t],
                x.device(),
            )
        });
        let quirk = ctx.training && self.config.encoder_norm == NormKind::Batch;

        // Encoder, temporally shared, skipping padded frames.
        let mut feature_maps = vec![temporally_shared(
            x,
            &real,
            quirk && self.in_conv.has_batch_norm(),
            |f| self.in_conv.forward(f, ctx),
        )];
        for block in &self.down_blocks {
            let prev = feature_maps.last().expect("at least one map");
            let q = quirk && block.has_batch_norm();
            feature_maps.push(temporally_shared(prev, &real, q, |f| block.forward(f, ctx)));
        }
        // Temporal encoding at the lowest resolution.
        let lt = self.temporal_encoder.forward(
            feature_maps.last().expect("maps"),
            days,
            mask.as_ref(),
            ctx,
        );
        let mut out = lt.out;
        let mut maps = vec![out.clone()];
        // Decoder with temporally aggregated skips.
        for (i, up) in self.up_blocks.iter().enumerate() {
            let skip = self.aggregate(
                &feature_maps[feature_maps.len() - 2 - i],
                &lt.attn,
                mask.as_ref(),
            );
            out = up.forward(&out, &skip, ctx);
            maps.push(out.clone());
        }
        if !encoder {
            out = self.out_conv.forward(&out, ctx);
        }
        UTaeOutput {
            out,
            attn: lt.attn,
            maps,
        }
    }

    /// `Temporal_Aggregator` (spec §3.5): x (B, T, C, H', W'), attention (G, B, T, h, w), mask (B, T) 1.0 on
    /// padded dates → (B, C, H', W').
    fn aggregate(&self, x: &Tensor, attn: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let xs = x.shape();
        let (b, t, hh, ww) = (xs[0], xs[1], xs[3], xs[4]);
        let a = attn.shape();
        let keep = mask.map(|m| m.neg().add_scalar(1.0)); // 1 on real dates
        match self.config.agg_mode {
            AggMode::AttGroup => {
                let (g, h) = (a[0], a[3]);
                let flat = attn.reshape(&[g * b, t, a[3], a[4]]);
                let resized = if hh > h {
                    flat.upsample_bilinear(hh, ww)
                } else {
                    flat.avg_pool2d(h / hh, h / hh)
                };
                let mut w = resized.reshape(&[g, b, t, hh, ww]);
                if let Some(k) = &keep {
                    w = &w * &k.reshape(&[1, b, t, 1, 1]);
                }
                x.temporal_aggregate(&w)
            }
            AggMode::AttMean => {
                let mean = attn.mean(&[0], false); // (B, T, h, w)
                let mut w = mean.upsample_bilinear(hh, ww).reshape(&[1, b, t, hh, ww]);
                if let Some(k) = &keep {
                    w = &w * &k.reshape(&[1, b, t, 1, 1]);
                }
                x.temporal_aggregate(&w)
            }
            AggMode::Mean => match &keep {
                None => x.mean(&[1], false),
                Some(k) => {
                    let sum = (x * &k.reshape(&[b, t, 1, 1, 1])).sum(&[1], false);
                    let count = k.sum(&[1], false).reshape(&[b, 1, 1, 1]);
                    &sum / &count
                }
            },
        }
    }
}

impl Module for UTae {
    fn named_parameters(&self, _prefix: &str) -> Vec<(String, Tensor)> {
        let p = _prefix;
        let mut v = self.in_conv.named_parameters(&prefixed(p, "in_conv.conv"));
        for (i, d) in self.down_blocks.iter().enumerate() {
            v.extend(d.named_parameters(&prefixed(p, &format!("down_blocks.{i}"))));
        }
        for (i, u) in self.up_blocks.iter().enumerate() {
            v.extend(u.named_parameters(&prefixed(p, &format!("up_blocks.{i}"))));
        }
        v.extend(
            self.temporal_encoder
                .named_parameters(&prefixed(p, "temporal_encoder")),
        );
        v.extend(
            self.out_conv
                .named_parameters(&prefixed(p, "out_conv.conv")),
        );
        v
    }
    fn named_buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.in_conv.named_buffers(&prefixed(p, "in_conv.conv"));
        for (i, d) in self.down_blocks.iter().enumerate() {
            v.extend(d.named_buffers(&prefixed(p, &format!("down_blocks.{i}"))));
        }
        for (i, u) in self.up_blocks.iter().enumerate() {
            v.extend(u.named_buffers(&prefixed(p, &format!("up_blocks.{i}"))));
        }
        v.extend(
            self.temporal_encoder
                .named_buffers(&prefixed(p, "temporal_encoder")),
        );
        v.extend(self.out_conv.named_buffers(&prefixed(p, "out_conv.conv")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_1087260_trainable_parameters() {
        let m = UTae::new(UTaeConfig::default(), 0, Device::Cpu);
        assert_eq!(m.num_parameters(), 1_087_260);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "in_conv.conv.conv.0.weight");
        assert!(names.contains(&"up_blocks.0.up.0.weight".to_string()));
        assert!(names.contains(&"temporal_encoder.attention_heads.Q".to_string()));
        assert!(names.contains(&"out_conv.conv.conv.4.bias".to_string()));
        // 158 state_dict entries with the buffers (Appendix A.1, num_batches_tracked included).
        assert_eq!(names.len() + m.named_buffers("").len(), 158);
    }
}
