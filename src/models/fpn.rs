//! FPN-ConvLSTM (`FPNConvLSTM` of utae-paps' fpn.py, spec §5.5; `--model fpn`): a per-date feature pyramid
//! of atrous convolutions, then a ConvLSTM over the dates at full resolution.
//!
//! ```text
//! x (B, T, 10, H, W) ─ inconv (10→32→64, GN, ReLU) ─ pyramid ─ mid_conv (256→128) ─ ConvLSTM(88) → c_T ─ outconv (1×1) → logits
//! pyramid(u0): u = inconv(u0) (3×3, zero padding); [d1(u), d2(u), d4(u), max_{H,W}(u) broadcast]   (4·64 channels)
//! ```
//! Reproduced quirks: the pyramid's "global_avg_pool" is a channel-wise **max** over the H × W positions; its
//! atrous convolutions (dilation 1, 2, 4, padding = dilation) pad by **reflection** while its first
//! convolution pads with zeros; fpn.py's own ConvLayer pads every conv of inconv and mid_conv by reflection
//! with a ReLU after each; get_model passes n_levels 4 (the class default is 5), so 1,151,028 parameters
//! (the README's 1.3M differs; the code is the reference). inconv, pyramid and mid_conv skip padded frames
//! (exact zeros); the ConvLSTM runs over every date and its last cell state is the embedding.
//!
//! An atrous 3 × 3 convolution with dilation d is computed as the ordinary (2d + 1) × (2d + 1) convolution
//! whose kernel holds the 9 taps at multiples of d and zeros elsewhere (built by movement ops, so the weight
//! gradient gathers back to the 9 taps): the same values, on conv2d's implicit-GEMM kernels, at (2d + 1)²/9
//! times the arithmetic (2.8× for d = 2, 9× for d = 4) — a dilation field in conv2d's kernels would remove
//! that cost.

use serde_json::{json, Value};

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::rng::Rng;
use crate::engine::{Device, Result, Tensor};
use crate::layers::{prefixed, Conv2d, ConvLstm, Ctx, Module, NormKind};
use crate::models::kwargs::Kwargs;
use crate::models::utae::{temporally_shared, ConvLayer, PadInfo};

/// FPNConvLSTM's constructor arguments (the original's names).
#[derive(Debug, Clone, PartialEq)]
pub struct FpnConfig {
    /// Input channels.
    pub input_dim: usize,
    /// Classes.
    pub num_classes: usize,
    /// Widths of the input convolutions.
    pub inconv: Vec<usize>,
    /// Pyramid levels (n_levels − 1 atrous convolutions plus the global max).
    pub n_levels: usize,
    /// Channels per pyramid level.
    pub n_channels: usize,
    /// ConvLSTM hidden channels.
    pub hidden_size: usize,
    /// Patch side the original sized its initial states with (recorded only).
    pub input_shape: usize,
    /// Whether a conv reduces the pyramid to n_channels·n_levels/2 before the ConvLSTM.
    pub mid_conv: bool,
    /// Temporal pad value.
    pub pad_value: f32,
}

impl FpnConfig {
    /// get_model's `fpn`.
    pub fn get_model(num_classes: usize) -> FpnConfig {
        FpnConfig {
            input_dim: 10,
            num_classes,
            inconv: vec![32, 64],
            n_levels: 4,
            n_channels: 64,
            hidden_size: 88,
            input_shape: 128,
            mid_conv: true,
            pad_value: 0.0,
        }
    }

    /// `self` with the constructor arguments of `kw` applied.
    pub fn with_kwargs(mut self, kw: &Kwargs) -> Result<FpnConfig> {
        kw.check_known(&[
            "input_dim",
            "num_classes",
            "inconv",
            "n_levels",
            "n_channels",
            "hidden_size",
            "input_shape",
            "mid_conv",
            "pad_value",
        ])?;
        kw.size("input_dim", &mut self.input_dim)?;
        kw.size("num_classes", &mut self.num_classes)?;
        kw.list("inconv", &mut self.inconv)?;
        kw.size("n_levels", &mut self.n_levels)?;
        kw.size("n_channels", &mut self.n_channels)?;
        kw.size("hidden_size", &mut self.hidden_size)?;
        kw.size("input_shape", &mut self.input_shape)?;
        kw.f32("pad_value", &mut self.pad_value)?;
        if let Some(m) = kw.bool("mid_conv")? {
            self.mid_conv = m;
        }
        if self.inconv.is_empty()
            || self.n_levels < 2
            || self.n_channels == 0
            || self.hidden_size == 0
        {
            return Err(kw.bad(
                "n_levels",
                "expected a non-empty inconv, n_levels >= 2, n_channels > 0, hidden_size > 0",
            ));
        }
        Ok(self)
    }

    /// The constructor arguments (conf.json's `model_kwargs`).
    pub fn kwargs(&self) -> Value {
        json!({
            "input_dim": self.input_dim, "num_classes": self.num_classes, "inconv": self.inconv,
            "n_levels": self.n_levels, "n_channels": self.n_channels, "hidden_size": self.hidden_size,
            "input_shape": [self.input_shape, self.input_shape], "mid_conv": self.mid_conv,
            "pad_value": self.pad_value,
        })
    }
}

/// The (2d + 1) × (2d + 1) kernel of an atrous 3 × 3 kernel w (C_out, C_in, 3, 3) with dilation d: w's taps
/// at (d·ky, d·kx), zeros elsewhere (movement ops: the gradient flows back to w's 9 taps).
pub fn dilate_kernel(w: &Tensor, d: usize) -> Tensor {
    if d == 1 {
        return w.clone();
    }
    let s = w.shape();
    let (co, ci, dev) = (s[0], s[1], w.device());
    let rows = Tensor::cat(
        &[
            &w.reshape(&[co, ci, 3, 1, 3, 1]),
            &Tensor::zeros(&[co, ci, 3, d - 1, 3, 1], dev),
        ],
        3,
    );
    let both = Tensor::cat(&[&rows, &Tensor::zeros(&[co, ci, 3, d, 3, d - 1], dev)], 5);
    let k = 2 * d + 1;
    both.reshape(&[co, ci, 3 * d, 3 * d])
        .narrow(2, 0, k)
        .narrow(3, 0, k)
}

/// `PyramidBlock`: a 3 × 3 conv, then the atrous convs of dilations 1, 2, 4, … and the global max.
struct Pyramid {
    inconv: Conv2d,
    convs: Vec<Conv2d>,
}

impl Pyramid {
    /// frames (N, C, H, W) → (N, n_levels·n_channels, H, W).
    fn forward(&self, x: &Tensor) -> Tensor {
        let u = self.inconv.forward(x);
        let s = u.shape().to_vec();
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let gmax = u
            .reshape(&[n, c, h * w])
            .max(2, true)
            .reshape(&[n, c, 1, 1])
            .expand(&[n, c, h, w]);
        let mut outs: Vec<Tensor> = self
            .convs
            .iter()
            .enumerate()
            .map(|(i, cv)| {
                let d = 1 << i;
                u.conv2d(
                    &dilate_kernel(&cv.weight, d),
                    cv.bias.as_ref(),
                    1,
                    d,
                    PaddingMode::Reflect,
                )
            })
            .collect();
        outs.push(gmax);
        Tensor::cat(&outs.iter().collect::<Vec<_>>(), 1)
    }
}

/// The FPN-ConvLSTM model.
pub struct Fpn {
    /// Its configuration.
    pub config: FpnConfig,
    inconv: ConvLayer,
    pyramid: Pyramid,
    mid_conv: Option<ConvLayer>,
    convlstm: ConvLstm,
    outconv: Conv2d,
}

impl Fpn {
    /// A freshly initialised FPN-ConvLSTM (weights from `seed`).
    pub fn new(config: FpnConfig, seed: u64, device: Device) -> Self {
        let mut rng = Rng::new(seed);
        let (c, rng) = (&config, &mut rng);
        let layer = |w: &[usize], rng: &mut Rng| {
            ConvLayer::new(
                w,
                NormKind::Group,
                3,
                1,
                1,
                true,
                PaddingMode::Reflect,
                rng,
                device,
            )
        };
        let widths: Vec<usize> = [c.input_dim]
            .into_iter()
            .chain(c.inconv.iter().copied())
            .collect();
        let inconv = layer(&widths, rng);
        let (top, nc) = (*c.inconv.last().expect("inconv non-empty"), c.n_channels);
        let pyramid = Pyramid {
            inconv: Conv2d::new(top, nc, 3, 1, 1, PaddingMode::Zeros, rng, device),
            convs: (0..c.n_levels - 1)
                .map(|i| Conv2d::new(nc, nc, 3, 1, 1 << i, PaddingMode::Reflect, rng, device))
                .collect(),
        };
        let (mid_conv, dim) = if c.mid_conv {
            let dim = nc * c.n_levels / 2;
            (Some(layer(&[nc * c.n_levels, dim], rng)), dim)
        } else {
            (None, nc * c.n_levels)
        };
        let convlstm = ConvLstm::new(dim, c.hidden_size, rng, device);
        let outconv = Conv2d::new(
            c.hidden_size,
            c.num_classes,
            1,
            1,
            0,
            PaddingMode::Zeros,
            rng,
            device,
        );
        Fpn {
            config,
            inconv,
            pyramid,
            mid_conv,
            convlstm,
            outconv,
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    /// x (B, T, C, H, W), the batch's pad mask → class scores (B, num_classes, H, W).
    pub fn forward(&self, x: &Tensor, pad: &PadInfo, ctx: &Ctx) -> Tensor {
        let s = x.shape();
        assert!(
            s.len() == 5 && pad.mask.len() == s[0] * s[1],
            "FPNConvLSTM: expected x (B, T, C, H, W) and a (B, T) pad mask, got {s:?}"
        );
        let real: Vec<usize> = (0..s[0] * s[1]).filter(|&f| !pad.mask[f]).collect();
        let mut out = temporally_shared(x, &real, false, |f| self.inconv.forward(f, ctx));
        out = temporally_shared(&out, &real, false, |f| self.pyramid.forward(f));
        if let Some(m) = &self.mid_conv {
            out = temporally_shared(&out, &real, false, |f| m.forward(f, ctx));
        }
        self.outconv.forward(&self.convlstm.forward(&out))
    }
}

impl Module for Fpn {
    fn named_parameters(&self, p: &str) -> Vec<(String, Tensor)> {
        let mut v = self.inconv.named_parameters(&prefixed(p, "inconv.conv"));
        v.extend(
            self.pyramid
                .inconv
                .named_parameters(&prefixed(p, "pyramid.inconv")),
        );
        for (i, cv) in self.pyramid.convs.iter().enumerate() {
            v.extend(cv.named_parameters(&prefixed(p, &format!("pyramid.convs.{i}"))));
        }
        if let Some(m) = &self.mid_conv {
            v.extend(m.named_parameters(&prefixed(p, "mid_conv.conv")));
        }
        v.extend(self.convlstm.named_parameters(&prefixed(p, "convlstm")));
        v.extend(self.outconv.named_parameters(&prefixed(p, "outconv")));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::random_vec;

    #[test]
    fn get_model_parameter_count_and_names() {
        // spec §5.5: inconv 21,600; pyramid 147,712; mid_conv 295,296; convlstm 684,640; outconv 1,780.
        let m = Fpn::new(FpnConfig::get_model(20), 0, Device::Cpu);
        assert_eq!(m.num_parameters(), 1_151_028);
        let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
        for k in [
            "inconv.conv.conv.4.bias",
            "pyramid.convs.2.weight",
            "mid_conv.conv.conv.1.weight",
            "convlstm.cell_list.0.conv.weight",
            "outconv.bias",
        ] {
            assert!(names.contains(&k.to_string()), "{k}");
        }
    }

    #[test]
    fn the_dilated_kernel_is_the_atrous_convolution() {
        // x (1, 1, 5, 6), w 3×3 = 1..9, dilation 2, reflect padding 2: y[i, j] = Σ w[a, b] · xpad[i + 2a, j + 2b].
        let x: Vec<f64> = random_vec(30, -1.0, 1.0, 1);
        let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let xt = Tensor::from_vec(
            x.iter().map(|&v| v as f32).collect(),
            &[1, 1, 5, 6],
            Device::Cpu,
        );
        let wt = Tensor::from_vec(w.clone(), &[1, 1, 3, 3], Device::Cpu);
        let y = xt
            .conv2d(&dilate_kernel(&wt, 2), None, 1, 2, PaddingMode::Reflect)
            .to_vec();
        let src = |t: isize, n: isize| if t < 0 { -t } else if t >= n { 2 * (n - 1) - t } else { t } as usize;
        for i in 0..5isize {
            for j in 0..6isize {
                let mut want = 0.0;
                for (a, b) in (0..9).map(|k| (k / 3, k % 3)) {
                    want += w[(a * 3 + b) as usize] as f64
                        * x[src(i + 2 * a - 2, 5) * 6 + src(j + 2 * b - 2, 6)];
                }
                assert!(
                    (y[(i * 6 + j) as usize] as f64 - want).abs() < 1e-4,
                    "({i}, {j})"
                );
            }
        }
    }
}
