//! U-TAE's constructor parameters ([`UTaeConfig`], spec §3.1, from conf.json or a fixture's kwargs), the
//! skip aggregation modes ([`AggMode`], spec §3.5) and the padding-mode names.

use crate::engine::ops::conv::conv2d::PaddingMode;
use crate::engine::{Error, Result};
use crate::layers::NormKind;

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

/// With `encoder_norm = group`, every encoder convolution is followed by a GroupNorm of [`N_GROUPS`]
/// groups, which needs widths divisible by it (`nn.GroupNorm` refuses others when it is built).
pub fn check_group_norm(
    norm: NormKind,
    encoder_widths: &[usize],
) -> std::result::Result<(), String> {
    if norm == NormKind::Group && encoder_widths.iter().any(|w| w % N_GROUPS != 0) {
        return Err(format!(
            "encoder_widths {encoder_widths:?}: with encoder_norm group each width must be a multiple of \
             {N_GROUPS} (GroupNorm's groups)"
        ));
    }
    Ok(())
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
    /// The small U-TAE of the fixtures, `sitsgpu profile --config small` and the tests: widths about an eighth
    /// of the paper's, 4 heads, d_model 24.
    pub fn small() -> Self {
        UTaeConfig {
            encoder_widths: vec![8, 12, 16, 20],
            decoder_widths: vec![4, 8, 12, 20],
            out_conv: vec![8, 20],
            n_head: 4,
            d_model: 24,
            ..UTaeConfig::default()
        }
    }

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

    /// Whether U-TAE takes inputs of `shape` (B, T, C, H, W): C = input_dim and sides its U-Net takes
    /// (`UNetGeometry`); if not, why.
    pub fn check_input(&self, shape: &[usize]) -> std::result::Result<(), String> {
        let geometry = super::UNetGeometry {
            levels: self.encoder_widths.len(),
            ksp: [self.str_conv_k, self.str_conv_s, self.str_conv_p],
            mode: self.padding_mode,
        };
        super::check_unet_input("U-TAE", shape, self.input_dim, &geometry)
    }

    /// Checks the widths fit together and every size is at least 1 (the original fails on a zero width,
    /// head count or stride, each in its own way).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("input_dim", self.input_dim),
            ("str_conv_k", self.str_conv_k),
            ("str_conv_s", self.str_conv_s),
            ("n_head", self.n_head),
            ("d_model", self.d_model),
            ("d_k", self.d_k),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1, got 0"));
            }
        }
        for (name, list) in [
            ("encoder_widths", &self.encoder_widths),
            ("decoder_widths", &self.decoder_widths),
            ("out_conv", &self.out_conv),
        ] {
            if list.contains(&0) {
                return Err(format!("{name} {list:?}: every width must be at least 1"));
            }
        }
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
        if self.out_conv.is_empty() {
            return Err(
                "out_conv must hold at least one width (the last is the number of classes)".into(),
            );
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return Err(format!(
                "d_model {} must be a multiple of n_head {} (L-TAE splits it into one part per head)",
                self.d_model, self.n_head
            ));
        }
        check_group_norm(self.encoder_norm, &self.encoder_widths)?;
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
