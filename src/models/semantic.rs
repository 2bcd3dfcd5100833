//! The semantic segmentation models of the U-TAE paper behind one type: U-TAE and its baselines
//! (`--model utae | uconvlstm | buconvlstm | fpn | convlstm | convgru | unet3d`, as train_semantic.py's
//! get_model), built from a conf.json and run on a batch (x, dates, pad mask).
//!
//! get_model hard-codes every baseline's constructor arguments (only `num_classes` and `pad_value` come from
//! the flags): an official conf.json of a baseline builds exactly that model. Our runs record the model's
//! full constructor arguments in conf.json's `model_kwargs` (a reference case's
//! `reference.constructor_kwargs` is read the same way), so smaller or bidirectional variants
//! (`--model_kwargs`, `--bidirectional`) round-trip through conf.json.

use std::path::Path;

use serde_json::{Map, Value};

use crate::engine::autograd::is_grad_enabled;
use crate::engine::{Device, Error, Result, Tensor};
use crate::layers::{Ctx, Module};
use crate::models::conv_rnn_seg::{RecurrentSeg, RecurrentSegConfig};
use crate::models::fpn::{Fpn, FpnConfig};
use crate::models::kwargs::Kwargs;
use crate::models::recunet::{RecUNet, RecUNetConfig, Temporal};
use crate::models::unet3d::{UNet3d, UNet3dConfig};
use crate::models::utae::{PadInfo, UTae, UTaeConfig};

/// Every `--model` of the semantic task, in the README's order.
pub const MODELS: [&str; 7] = [
    "utae",
    "uconvlstm",
    "buconvlstm",
    "fpn",
    "convlstm",
    "convgru",
    "unet3d",
];

/// A semantic model's configuration: which model, and its constructor arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum SemanticConfig {
    /// U-TAE (train_semantic.py's U-TAE flags).
    UTae(UTaeConfig),
    /// RecUNet as `uconvlstm` or `buconvlstm` (the name kept for conf.json).
    RecUNet(&'static str, RecUNetConfig),
    /// FPN-ConvLSTM.
    Fpn(FpnConfig),
    /// ConvLSTM_Seg.
    ConvLstm(RecurrentSegConfig),
    /// ConvGRU_Seg.
    ConvGru(RecurrentSegConfig),
    /// U-Net 3D.
    UNet3d(UNet3dConfig),
}

impl From<UTaeConfig> for SemanticConfig {
    fn from(c: UTaeConfig) -> Self {
        SemanticConfig::UTae(c)
    }
}

impl SemanticConfig {
    /// The `--model` name.
    pub fn name(&self) -> &'static str {
        match self {
            SemanticConfig::UTae(_) => "utae",
            SemanticConfig::RecUNet(n, _) => n,
            SemanticConfig::Fpn(_) => "fpn",
            SemanticConfig::ConvLstm(_) => "convlstm",
            SemanticConfig::ConvGru(_) => "convgru",
            SemanticConfig::UNet3d(_) => "unet3d",
        }
    }

    /// A baseline as get_model builds it (`num_classes`, `pad_value` from the flags), then `kwargs`
    /// (constructor arguments, from `path`) applied. `None` for `utae` and unknown names.
    pub fn baseline(
        name: &str,
        num_classes: usize,
        pad_value: f32,
        kwargs: &Value,
        path: &Path,
    ) -> Result<Option<SemanticConfig>> {
        let kw = Kwargs::new(kwargs, path);
        Ok(Some(match name {
            "uconvlstm" | "buconvlstm" => {
                let mut c = RecUNetConfig::get_model(
                    if name == "uconvlstm" { 64 } else { 30 },
                    num_classes,
                );
                c.pad_value = pad_value;
                let c = c.with_kwargs(&kw)?;
                if c.encoder {
                    return Err(kw.bad(
                        "encoder",
                        "encoder mode is PaPs' backbone (--task panoptic --backbone uconvlstm), not a semantic model",
                    ));
                }
                SemanticConfig::RecUNet(
                    if name == "uconvlstm" {
                        "uconvlstm"
                    } else {
                        "buconvlstm"
                    },
                    c,
                )
            }
            "fpn" => SemanticConfig::Fpn(
                FpnConfig {
                    pad_value,
                    ..FpnConfig::get_model(num_classes)
                }
                .with_kwargs(&kw)?,
            ),
            "convlstm" => SemanticConfig::ConvLstm(
                RecurrentSegConfig::get_model(160, num_classes).with_kwargs(&kw)?,
            ),
            "convgru" => SemanticConfig::ConvGru(
                RecurrentSegConfig::get_model(180, num_classes).with_kwargs(&kw)?,
            ),
            "unet3d" => SemanticConfig::UNet3d(
                UNet3dConfig {
                    pad_value,
                    ..UNet3dConfig::get_model(num_classes)
                }
                .with_kwargs(&kw)?,
            ),
            _ => return Ok(None),
        }))
    }

    /// From a conf.json object: `model` (default utae); U-TAE from its keys, a baseline from get_model's
    /// arguments with `model_kwargs` (or `reference.constructor_kwargs`) applied.
    pub fn from_conf(conf: &Value, path: &Path) -> Result<SemanticConfig> {
        let name = conf.get("model").and_then(Value::as_str).unwrap_or("utae");
        let kwargs = conf
            .get("model_kwargs")
            .or_else(|| conf.pointer("/reference/constructor_kwargs"))
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if name == "utae" {
            // U-TAE's arguments are conf.json's own keys (train_semantic.py's flags), what a user edits; a
            // fixture's `reference.constructor_kwargs` repeats them.
            return Ok(SemanticConfig::UTae(UTaeConfig::from_json(conf, path)?));
        }
        let classes = conf
            .get("num_classes")
            .and_then(Value::as_u64)
            .unwrap_or(20) as usize;
        let pad = conf.get("pad_value").and_then(Value::as_f64).unwrap_or(0.0) as f32;
        SemanticConfig::baseline(name, classes, pad, &kwargs, path)?.ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "model {name:?} is not a semantic model (expected one of {})",
                    MODELS.join(", ")
                ),
            )
        })
    }

    /// The constructor arguments conf.json records (`model_kwargs`); `None` for U-TAE (its own keys).
    pub fn kwargs(&self) -> Option<Value> {
        match self {
            SemanticConfig::UTae(_) => None,
            SemanticConfig::RecUNet(_, c) => Some(c.kwargs()),
            SemanticConfig::Fpn(c) => Some(c.kwargs()),
            SemanticConfig::ConvLstm(c) | SemanticConfig::ConvGru(c) => Some(c.kwargs()),
            SemanticConfig::UNet3d(c) => Some(c.kwargs()),
        }
    }

    /// Number of classes the model outputs.
    pub fn num_classes(&self) -> usize {
        match self {
            SemanticConfig::UTae(c) => *c.out_conv.last().unwrap_or(&0),
            SemanticConfig::RecUNet(_, c) => *c.out_conv.last().unwrap_or(&0),
            SemanticConfig::Fpn(c) => c.num_classes,
            SemanticConfig::ConvLstm(c) | SemanticConfig::ConvGru(c) => c.num_classes,
            SemanticConfig::UNet3d(c) => c.n_classes,
        }
    }

    /// RecUNet's bidirectional variant (`--bidirectional`); an error for the other models.
    pub fn bidirectional(self) -> std::result::Result<SemanticConfig, String> {
        match self {
            SemanticConfig::RecUNet(n, mut c) => {
                c.temporal = Temporal::Blstm;
                Ok(SemanticConfig::RecUNet(n, c))
            }
            other => Err(format!(
                "--bidirectional: only uconvlstm and buconvlstm have it, not {}",
                other.name()
            )),
        }
    }

    /// Whether the model takes inputs of `shape` (B, T, C, H, W) (`SemanticModel::check_input`, from the
    /// configuration alone).
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        match self {
            SemanticConfig::UTae(c) => c.check_input(shape),
            SemanticConfig::RecUNet(_, c) => c.check_input(shape),
            SemanticConfig::UNet3d(c) => c.check_input(shape),
            SemanticConfig::Fpn(c) => check_channels("FPN-ConvLSTM", shape, c.input_dim),
            SemanticConfig::ConvLstm(c) | SemanticConfig::ConvGru(c) => {
                check_channels(RECURRENT, shape, c.input_dim)
            }
        }
    }

    /// The model, freshly initialised from `seed`.
    pub fn build(&self, seed: u64, device: Device) -> SemanticModel {
        match self.clone() {
            SemanticConfig::UTae(c) => SemanticModel::UTae(UTae::new(c, seed, device)),
            SemanticConfig::RecUNet(_, c) => SemanticModel::RecUNet(RecUNet::new(c, seed, device)),
            SemanticConfig::Fpn(c) => SemanticModel::Fpn(Fpn::new(c, seed, device)),
            SemanticConfig::ConvLstm(c) => {
                SemanticModel::Recurrent(RecurrentSeg::new(c, false, seed, device))
            }
            SemanticConfig::ConvGru(c) => {
                SemanticModel::Recurrent(RecurrentSeg::new(c, true, seed, device))
            }
            SemanticConfig::UNet3d(c) => SemanticModel::UNet3d(UNet3d::new(c, seed, device)),
        }
    }
}

/// How the errors of [`check_channels`] name ConvLSTM_Seg and ConvGRU_Seg.
const RECURRENT: &str = "the ConvLSTM / ConvGRU";

/// Whether `shape` is (B, T, C, H, W) with C = `input_dim`: what a model that takes any size asks.
fn check_channels(
    model: &str,
    shape: &[usize],
    input_dim: usize,
) -> std::result::Result<(), String> {
    match shape {
        [_, _, c, _, _] if *c == input_dim => Ok(()),
        [_, _, c, _, _] => Err(format!(
            "{model} takes {input_dim} channels (input_dim), got inputs of {c}"
        )),
        _ => Err(format!(
            "{model} takes inputs (B, T, C, H, W), got {shape:?}"
        )),
    }
}

/// A semantic model.
pub enum SemanticModel {
    /// U-TAE.
    UTae(UTae),
    /// RecUNet (uconvlstm, buconvlstm).
    RecUNet(RecUNet),
    /// FPN-ConvLSTM.
    Fpn(Fpn),
    /// ConvLSTM_Seg or ConvGRU_Seg.
    Recurrent(RecurrentSeg),
    /// U-Net 3D.
    UNet3d(UNet3d),
}

/// What a forward pass returns.
pub struct SemanticOutput {
    /// Class scores (B, num_classes, H, W).
    pub logits: Tensor,
    /// U-TAE's attention masks (n_head, B, T, h, w); `None` for the baselines.
    pub attn: Option<Tensor>,
}

impl SemanticModel {
    /// x (B, T, C, H, W) on the model's device, `days` (B, T) day offsets (U-TAE only), the batch's pad mask.
    ///
    /// In evaluation without autograd (`!ctx.training`, inside `no_grad`), a batch whose input exceeds
    /// `ctx.split_input_bytes` (64 MiB by default) runs in parts of as many samples as keep a part's input
    /// within it (at least one), and the outputs are concatenated: every layer sees each sample alone at
    /// inference (convolutions, group norm, batch norm with its running statistics, attention over a sample's
    /// own dates), so the scores are the whole batch's, and the peak memory is a part's feature maps instead
    /// of the batch's (U-TAE paper config, 61 dates at 128 × 128: one sample a part, about 340 MiB). Small
    /// batches, and anything recording gradients, run whole.
    pub fn forward(&self, x: &Tensor, days: &[f32], pad: &PadInfo, ctx: &Ctx) -> SemanticOutput {
        let s = x.shape();
        let (b, t) = (s[0], s[1]);
        let per_sample = 4 * x.numel() / b.max(1);
        let part = (ctx.split_input_bytes / per_sample.max(1)).max(1);
        if ctx.training || is_grad_enabled() || part >= b {
            return self.forward_whole(x, days, pad, ctx);
        }
        let outs: Vec<SemanticOutput> = (0..b)
            .step_by(part)
            .map(|start| {
                let end = (start + part).min(b);
                let (from, to) = (start * t, end * t);
                let mask = PadInfo {
                    mask: pad.mask[from..to].to_vec(),
                };
                let dates = if days.len() == b * t {
                    &days[from..to]
                } else {
                    days
                };
                self.forward_whole(&x.narrow(0, start, end - start), dates, &mask, ctx)
            })
            .collect();
        let logits: Vec<&Tensor> = outs.iter().map(|o| &o.logits).collect();
        let attn: Option<Vec<&Tensor>> = outs.iter().map(|o| o.attn.as_ref()).collect();
        SemanticOutput {
            logits: Tensor::cat(&logits, 0),
            attn: attn.map(|a| Tensor::cat(&a, 1)),
        }
    }

    /// Whether the model takes inputs of `shape` (B, T, C, H, W); if not, a sentence saying why (the
    /// original fails on such inputs deep inside a layer). The workflows ask before each forward pass.
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        match self {
            SemanticModel::UTae(m) => m.check_input(shape),
            SemanticModel::RecUNet(m) => m.check_input(shape),
            SemanticModel::UNet3d(m) => m.check_input(shape),
            SemanticModel::Fpn(m) => check_channels("FPN-ConvLSTM", shape, m.config.input_dim),
            SemanticModel::Recurrent(m) => check_channels(RECURRENT, shape, m.config.input_dim),
        }
    }

    /// [`SemanticModel::forward`] on the whole batch at once.
    fn forward_whole(&self, x: &Tensor, days: &[f32], pad: &PadInfo, ctx: &Ctx) -> SemanticOutput {
        let logits = match self {
            SemanticModel::UTae(m) => {
                let o = m.forward(x, days, pad, ctx, false);
                return SemanticOutput {
                    logits: o.out,
                    attn: Some(o.attn),
                };
            }
            SemanticModel::RecUNet(m) => m.forward(x, pad, ctx),
            SemanticModel::Fpn(m) => m.forward(x, pad, ctx),
            SemanticModel::Recurrent(m) => m.forward(x),
            SemanticModel::UNet3d(m) => m.forward(x, pad, ctx),
        };
        SemanticOutput { logits, attn: None }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            SemanticModel::UTae(m) => m.num_classes(),
            SemanticModel::RecUNet(m) => m.num_classes(),
            SemanticModel::Fpn(m) => m.num_classes(),
            SemanticModel::Recurrent(m) => m.num_classes(),
            SemanticModel::UNet3d(m) => m.num_classes(),
        }
    }

    fn module(&self) -> &dyn Module {
        match self {
            SemanticModel::UTae(m) => m,
            SemanticModel::RecUNet(m) => m,
            SemanticModel::Fpn(m) => m,
            SemanticModel::Recurrent(m) => m,
            SemanticModel::UNet3d(m) => m,
        }
    }
}

impl Module for SemanticModel {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.module().named_parameters(prefix)
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.module().named_buffers(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_model_from_its_name_with_the_papers_parameter_counts() {
        // spec §5.7.
        let want = [
            1_087_260, 1_520_540, 1_209_508, 1_151_028, 1_008_660, 956_360, 1_553_796,
        ];
        for (name, n) in MODELS.iter().zip(want) {
            let c = SemanticConfig::from_conf(&json!({ "model": name }), Path::new("conf.json"))
                .unwrap();
            assert_eq!(c.name(), *name);
            assert_eq!(c.build(0, Device::Cpu).num_parameters(), n, "{name}");
        }
        let e =
            SemanticConfig::from_conf(&json!({"model": "nope"}), Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    /// An evaluation batch run in parts gives the whole batch's scores and attention: bit for bit
    /// on the CPU reference, within the kernels' tolerance on the GPU (kernel plans may depend on the batch).
    /// One sample has padded dates, the others none (the whole batch masks; a lone sample without pads
    /// does not).
    #[test]
    fn evaluation_in_parts_gives_the_whole_batchs_outputs() {
        use crate::engine::testing::{assert_close, gpu_or_skip, Tol};
        let config = UTaeConfig {
            out_conv: vec![8, 5],
            ..UTaeConfig::small()
        };
        let (b, t, c, hw) = (3, 4, 10, 16);
        let mut data = Tensor::rand_uniform(&[b, t, c, hw, hw], -1.0, 1.0, 7, Device::Cpu).to_vec();
        let frame = c * hw * hw;
        data[(t + 3) * frame..(t + 4) * frame].fill(0.0); // sample 1, last date: padding
        let pad = PadInfo::from_data(&data, &[b, t, c, hw, hw], 0.0);
        assert_eq!(pad.mask.iter().filter(|&&m| m).count(), 1);
        let days: Vec<f32> = (0..b * t).map(|i| (i * 7 % 40) as f32).collect();
        let mut devices = vec![Device::Cpu];
        if gpu_or_skip("semantic split evaluation").is_some() {
            devices.push(Device::Gpu);
        }
        for device in devices {
            let model = SemanticModel::UTae(UTae::new(config.clone(), 3, device));
            let x = Tensor::from_vec(data.clone(), &[b, t, c, hw, hw], device);
            let whole_ctx = Ctx::eval().split_above(usize::MAX);
            // Parts of one sample; of two samples, then one (a sample's input is 40 KiB).
            let ones = Ctx::eval().split_above(0);
            let twos = Ctx::eval().split_above(2 * 4 * t * frame);
            let (whole, ones, twos) = crate::engine::no_grad(|| {
                (
                    model.forward(&x, &days, &pad, &whole_ctx),
                    model.forward(&x, &days, &pad, &ones),
                    model.forward(&x, &days, &pad, &twos),
                )
            });
            let (wl, wa) = (whole.logits.to_vec(), whole.attn.unwrap().to_vec());
            let mut pairs = Vec::new();
            for (o, parts) in [(ones, "one-sample parts"), (twos, "two-sample parts")] {
                pairs.push((wl.clone(), o.logits.to_vec(), format!("logits, {parts}")));
                pairs.push((
                    wa.clone(),
                    o.attn.unwrap().to_vec(),
                    format!("attention, {parts}"),
                ));
            }
            for (w, s, what) in pairs {
                let what = what.as_str();
                assert_eq!(w.len(), s.len());
                if device == Device::Cpu {
                    assert!(
                        w.iter().zip(&s).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{what}"
                    );
                } else {
                    assert_close(&s, &w, Tol::KERNEL, what);
                }
            }
        }
    }

    #[test]
    fn model_kwargs_round_trip_through_conf_json() {
        let path = Path::new("conf.json");
        let kw = json!({"hidden_dim": 5, "encoder_widths": [4, 8, 12], "decoder_widths": [4, 8, 12], "out_conv": [4, 3]});
        let c =
            SemanticConfig::from_conf(&json!({"model": "buconvlstm", "model_kwargs": kw}), path)
                .unwrap();
        let c = c.bidirectional().unwrap();
        let back = SemanticConfig::from_conf(
            &json!({"model": c.name(), "model_kwargs": c.kwargs()}),
            path,
        )
        .unwrap();
        assert_eq!(back, c);
        for name in ["fpn", "convlstm", "convgru", "unet3d"] {
            let c =
                SemanticConfig::from_conf(&json!({"model": name, "num_classes": 7}), path).unwrap();
            assert_eq!(c.num_classes(), 7);
            let back = SemanticConfig::from_conf(
                &json!({"model": name, "model_kwargs": c.kwargs()}),
                path,
            )
            .unwrap();
            assert_eq!(back, c, "{name}");
        }
        let typo = SemanticConfig::from_conf(
            &json!({"model": "fpn", "model_kwargs": {"hiden_size": 3}}),
            path,
        );
        assert!(typo.unwrap_err().to_string().contains("hiden_size"));
    }
}
