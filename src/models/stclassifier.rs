//! The pixel-set classifiers of lightweight-temporal-attention-pytorch `models/stclassifier.py` (spec §4):
//! a Pixel-Set Encoder per date ([`crate::models::pse`]), a temporal encoder over the dates, and the MLP decoder.
//! The four classes of the original differ only in their temporal encoder:
//!
//! | original class | `temporal_encoder` | file | attention |
//! |---|---|---|---|
//! | `PseLTae` (default) | L-TAE (master queries) | [`crate::models::ltae1d`] | (H, B, T) |
//! | `PseTae` | TAE (mean query, full-width values) | [`crate::models::tae`] | (H, B, T) |
//! | `PseGru` | single-layer GRU, last hidden state | [`crate::models::recurrent`] | — |
//! | `PseTempCNN` | 1-D convolutions + flattening MLP | [`crate::models::tempcnn`] | — |
//!
//! [`PixelSetModelConfig::from_json`] reads either the constructor's keyword arguments (missing keys take that
//! class's defaults) or a `conf.json` of `train.py` (the model chosen by its `tae` / `gru` / `tcnn` flags, or by
//! our `model` key). [`paper_variant`] holds the `config_fig2.json` settings of the L-TAE paper's
//! parameter/performance figure (the "9k" L-TAE, …), whose parameter counts the tests check against the spec.

use serde_json::{json, Value};

use crate::engine::error::{Error, Result};
use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::{prefixed, Ctx, Module};
use crate::models::ltae1d::{Ltae1d, Ltae1dConfig};
use crate::models::pse::{parse_pooling, Decoder, PixelSetEncoder, Pooling};
use crate::models::recurrent::{Gru, GruConfig};
use crate::models::tae::{Tae, TaeConfig};
use crate::models::tempcnn::{TempCnn, TempCnnConfig};

/// Which temporal encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalKind {
    /// L-TAE (`PseLTae`).
    Ltae,
    /// TAE (`PseTae`).
    Tae,
    /// GRU (`PseGru`).
    Gru,
    /// TempCNN (`PseTempCNN`).
    TempCnn,
}

impl TemporalKind {
    /// From a model name: `pse_ltae`/`ltae`, `pse_tae`/`tae`, `pse_gru`/`gru`, `pse_tempcnn`/`tempcnn`/`tcnn`
    /// (case-insensitive), or an original class name (`PseLTae`, `PseTae`, `PseGru`, `PseTempCNN`).
    pub fn parse(name: &str) -> Option<TemporalKind> {
        let n = name.to_ascii_lowercase();
        let n = n
            .strip_prefix("pse_")
            .or(n.strip_prefix("pse"))
            .unwrap_or(&n);
        match n {
            "ltae" | "l-tae" => Some(TemporalKind::Ltae),
            "tae" => Some(TemporalKind::Tae),
            "gru" => Some(TemporalKind::Gru),
            "tempcnn" | "tcnn" => Some(TemporalKind::TempCnn),
            _ => None,
        }
    }

    /// Our model name (`pse_ltae`, `pse_tae`, `pse_gru`, `pse_tempcnn`).
    pub fn name(self) -> &'static str {
        match self {
            TemporalKind::Ltae => "pse_ltae",
            TemporalKind::Tae => "pse_tae",
            TemporalKind::Gru => "pse_gru",
            TemporalKind::TempCnn => "pse_tempcnn",
        }
    }

    /// The kind a `conf.json` / kwargs object describes: our `model` key, else train.py's flags (`tae` first,
    /// then `gru`, then `tcnn`, as train.py tests them), else L-TAE.
    pub fn of_conf(v: &Value, path: &std::path::Path) -> Result<TemporalKind> {
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            return TemporalKind::parse(m).ok_or_else(|| {
                Error::format(
                    path,
                    format!("\"model\": {m:?} is not a pixel-set model (pse_ltae, pse_tae, pse_gru, pse_tempcnn)"),
                )
            });
        }
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(if flag("tae") {
            TemporalKind::Tae
        } else if flag("gru") {
            TemporalKind::Gru
        } else if flag("tcnn") {
            TemporalKind::TempCnn
        } else {
            TemporalKind::Ltae
        })
    }
}

/// The temporal encoder's configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum TemporalConfig {
    /// L-TAE.
    Ltae(Ltae1dConfig),
    /// TAE.
    Tae(TaeConfig),
    /// GRU.
    Gru(GruConfig),
    /// TempCNN.
    TempCnn(TempCnnConfig),
}

impl TemporalConfig {
    /// Which encoder.
    pub fn kind(&self) -> TemporalKind {
        match self {
            TemporalConfig::Ltae(_) => TemporalKind::Ltae,
            TemporalConfig::Tae(_) => TemporalKind::Tae,
            TemporalConfig::Gru(_) => TemporalKind::Gru,
            TemporalConfig::TempCnn(_) => TemporalKind::TempCnn,
        }
    }

    /// Width of the encoder's output (the decoder's first width).
    pub fn out_width(&self) -> usize {
        match self {
            TemporalConfig::Ltae(c) => *c.n_neurons.last().unwrap_or(&0),
            TemporalConfig::Tae(c) => *c.n_neurons.last().unwrap_or(&0),
            TemporalConfig::Gru(c) => c.hidden_dim,
            TemporalConfig::TempCnn(c) => c
                .nfc
                .last()
                .copied()
                .unwrap_or(c.nker.last().unwrap_or(&c.input_size) * c.seq_len),
        }
    }

    /// The sizes the original divides by, allocates or indexes with: at least 1 (finite and positive for the
    /// positional encoding's period `T`), and a dropout probability in [0, 1).
    fn check(&self) -> std::result::Result<(), String> {
        let at_least_one = |pairs: &[(&str, usize)]| {
            pairs.iter().find(|p| p.1 == 0).map_or(Ok(()), |(k, _)| {
                Err(format!("{k} must be at least 1, got 0"))
            })
        };
        let attention = |n_head, d_k, lms, t: f64, dropout: f32, mlp3: &[usize], d_model| {
            at_least_one(&[("n_head", n_head), ("d_k", d_k), ("lms", lms)])?;
            if d_model == Some(0) {
                return Err("d_model must be at least 1, got 0".to_string());
            }
            if !(t.is_finite() && t > 0.0) {
                return Err(format!(
                    "T (the positional encoding's period) must be positive, got {t}"
                ));
            }
            if !(0.0..1.0).contains(&dropout) {
                return Err(format!("dropout must be in [0, 1), got {dropout}"));
            }
            if mlp3.contains(&0) {
                return Err(format!("mlp3 {mlp3:?}: every width must be at least 1"));
            }
            Ok(())
        };
        match self {
            TemporalConfig::Ltae(c) => attention(
                c.n_head,
                c.d_k,
                c.len_max_seq,
                c.t_period,
                c.dropout,
                &c.n_neurons,
                c.d_model,
            ),
            TemporalConfig::Tae(c) => attention(
                c.n_head,
                c.d_k,
                c.len_max_seq,
                c.t_period,
                c.dropout,
                &c.n_neurons,
                c.d_model,
            ),
            TemporalConfig::Gru(c) => at_least_one(&[("hidden_dim", c.hidden_dim)]),
            TemporalConfig::TempCnn(c) => {
                if c.nker.contains(&0) || c.nfc.contains(&0) {
                    return Err(format!(
                        "nker {:?} and the dense widths {:?}: every width must be at least 1",
                        c.nker, c.nfc
                    ));
                }
                at_least_one(&[("seq_len (lms)", c.seq_len)])
            }
        }
    }

    /// The positions of the positional encoding (None: the 1-based date order, or none at all for GRU /
    /// TempCNN).
    pub fn positions(&self) -> Option<&[i64]> {
        match self {
            TemporalConfig::Ltae(c) => c.positions.as_deref(),
            TemporalConfig::Tae(c) => c.positions.as_deref(),
            TemporalConfig::Gru(c) => c.positions.as_deref(),
            TemporalConfig::TempCnn(c) => c.positions.as_deref(),
        }
    }
}

/// Constructor arguments of a pixel-set classifier (defaults: `PseLTae`'s, spec §4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelSetModelConfig {
    /// Input bands.
    pub input_dim: usize,
    /// mlp1 widths (first = input_dim).
    pub mlp1: Vec<usize>,
    /// Pooling methods.
    pub pooling: Vec<Pooling>,
    /// mlp2 widths.
    pub mlp2: Vec<usize>,
    /// Extra features per date (None: with_extra false).
    pub extra_size: Option<usize>,
    /// The temporal encoder (its input width = mlp2[-1]).
    pub temporal: TemporalConfig,
    /// Decoder widths (mlp4; first = the temporal output width, last = number of classes).
    pub mlp4: Vec<usize>,
}

impl Default for PixelSetModelConfig {
    fn default() -> Self {
        PixelSetModelConfig {
            input_dim: 10,
            mlp1: vec![10, 32, 64],
            pooling: vec![Pooling::Mean, Pooling::Std],
            mlp2: vec![132, 128],
            extra_size: Some(4),
            temporal: TemporalConfig::Ltae(Ltae1dConfig::default()),
            mlp4: vec![128, 64, 32, 20],
        }
    }
}

/// Reads `k` of `v` as a list of integers: a JSON list, or a string such as `"[10,32,64]"` (train.py's flag
/// syntax).
fn int_list(v: &Value, k: &str) -> Option<std::result::Result<Vec<usize>, ()>> {
    let x = v.get(k)?;
    let parsed = match x {
        Value::Array(a) => a
            .iter()
            .map(|n| n.as_u64().map(|n| n as usize))
            .collect::<Option<Vec<_>>>(),
        Value::String(s) => s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse().ok())
            .collect(),
        _ => None,
    };
    Some(parsed.ok_or(()))
}

impl PixelSetModelConfig {
    /// From constructor kwargs or a train.py conf.json. The model is [`TemporalKind::of_conf`]; keys present
    /// override the defaults of that class (`PseLTae`, `PseTae`, `PseGru`, `PseTempCNN`): `input_dim`,
    /// `mlp1`, `pooling`, `mlp2`, `with_extra`/`geomfeat`, `extra_size`, `mlp4`; L-TAE and TAE: `n_head`,
    /// `d_k`, `mlp3`, `dropout`, `T`, `len_max_seq`/`lms`, `d_model` (null: none), `positions`; GRU:
    /// `hidden_dim`, `positions`; TempCNN: `nker`, `mlp3`, `seq_len`, `positions`. `positions` is a list, null
    /// or "order" (none), or "bespoke" (the dataset's date positions, which must then be given). `path` names
    /// the file in errors.
    pub fn from_json(
        v: &Value,
        bespoke_positions: Option<&[i64]>,
        path: &std::path::Path,
    ) -> Result<Self> {
        let kind = TemporalKind::of_conf(v, path)?;
        Self::from_json_as(kind, v, bespoke_positions, path)
    }

    /// [`Self::from_json`] for a given model kind (e.g. from a fixture's constructor name).
    pub fn from_json_as(
        kind: TemporalKind,
        v: &Value,
        bespoke_positions: Option<&[i64]>,
        path: &std::path::Path,
    ) -> Result<Self> {
        let c = Self::from_json_unchecked(kind, v, bespoke_positions, path)?;
        c.check().map_err(|e| Error::format(path, e))?;
        Ok(c)
    }

    /// [`Self::from_json_as`] without the consistency checks of [`Self::check`] (the widths may not chain).
    pub fn from_json_unchecked(
        kind: TemporalKind,
        v: &Value,
        bespoke_positions: Option<&[i64]>,
        path: &std::path::Path,
    ) -> Result<Self> {
        let bad = |k: &str, what: &str| Error::format(path, format!("{k:?}: {what}"));
        let usize_of = |k: &str| -> Result<Option<usize>> {
            v.get(k)
                .map(|x| {
                    x.as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| bad(k, "expected a non-negative integer"))
                })
                .transpose()
        };
        let list = |k: &str| -> Result<Option<Vec<usize>>> {
            int_list(v, k)
                .transpose()
                .map_err(|_| bad(k, "expected a list of integers"))
        };
        let float = |k: &str| -> Result<Option<f64>> {
            v.get(k)
                .map(|x| x.as_f64().ok_or_else(|| bad(k, "expected a number")))
                .transpose()
        };
        let mut c = PixelSetModelConfig::default();
        if let Some(n) = usize_of("input_dim")? {
            c.input_dim = n;
        }
        if let Some(l) = list("mlp1")? {
            c.mlp1 = l;
        }
        if let Some(p) = v.get("pooling") {
            c.pooling = p
                .as_str()
                .and_then(parse_pooling)
                .ok_or_else(|| bad("pooling", "expected methods mean/std/max/min joined by _"))?;
        }
        if let Some(l) = list("mlp2")? {
            c.mlp2 = l;
        }
        let with_extra = match v.get("with_extra").or(v.get("geomfeat")) {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(x) => x.as_i64().map(|n| n != 0).unwrap_or(true),
        };
        c.extra_size = with_extra.then_some(usize_of("extra_size")?.unwrap_or(4));
        let positions = match v.get("positions") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "order" => None,
            Some(Value::String(s)) if s == "bespoke" => Some(
                bespoke_positions
                    .ok_or_else(|| {
                        bad(
                            "positions",
                            "\"bespoke\" needs the dataset's date positions",
                        )
                    })?
                    .to_vec(),
            ),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(Value::as_i64)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("positions", "expected a list of integers"))?,
            ),
            Some(_) => {
                return Err(bad(
                    "positions",
                    "expected \"bespoke\", \"order\" or a list",
                ))
            }
        };
        let in_channels = *c.mlp2.last().ok_or_else(|| bad("mlp2", "empty"))?;
        let d_model = |default: Option<usize>| -> Result<Option<usize>> {
            Ok(match v.get("d_model") {
                None => default,
                Some(Value::Null) => None,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("none") => None,
                Some(_) => usize_of("d_model")?,
            })
        };
        let lms = usize_of("len_max_seq")?.or(usize_of("lms")?);
        c.temporal = match kind {
            TemporalKind::Ltae => {
                let d = Ltae1dConfig::default();
                TemporalConfig::Ltae(Ltae1dConfig {
                    in_channels,
                    n_head: usize_of("n_head")?.unwrap_or(d.n_head),
                    d_k: usize_of("d_k")?.unwrap_or(d.d_k),
                    n_neurons: list("mlp3")?.unwrap_or(d.n_neurons),
                    dropout: float("dropout")?.map_or(d.dropout, |x| x as f32),
                    d_model: d_model(d.d_model)?,
                    t_period: float("T")?.unwrap_or(d.t_period),
                    len_max_seq: lms.unwrap_or(d.len_max_seq),
                    positions,
                })
            }
            TemporalKind::Tae => {
                let d = TaeConfig::default();
                TemporalConfig::Tae(TaeConfig {
                    in_channels,
                    n_head: usize_of("n_head")?.unwrap_or(d.n_head),
                    d_k: usize_of("d_k")?.unwrap_or(d.d_k),
                    n_neurons: list("mlp3")?.unwrap_or(d.n_neurons),
                    dropout: float("dropout")?.map_or(d.dropout, |x| x as f32),
                    d_model: d_model(d.d_model)?,
                    t_period: float("T")?.unwrap_or(d.t_period),
                    len_max_seq: lms.unwrap_or(d.len_max_seq),
                    positions,
                })
            }
            TemporalKind::Gru => TemporalConfig::Gru(GruConfig {
                in_channels,
                hidden_dim: usize_of("hidden_dim")?.unwrap_or(GruConfig::default().hidden_dim),
                positions,
            }),
            TemporalKind::TempCnn => {
                let d = TempCnnConfig::default();
                TemporalConfig::TempCnn(TempCnnConfig {
                    input_size: in_channels,
                    nker: list("nker")?.unwrap_or(d.nker),
                    seq_len: usize_of("seq_len")?.unwrap_or(d.seq_len),
                    nfc: list("mlp3")?.unwrap_or(d.nfc),
                    positions,
                })
            }
        };
        if let Some(x) = list("mlp4")? {
            c.mlp4 = x;
        }
        Ok(c)
    }

    /// The consistency checks the original asserts (or crashes on), as an error message.
    pub fn check(&self) -> std::result::Result<(), String> {
        // The temporal encoder first: mlp4 starts with its output width.
        self.temporal.check()?;
        for (name, list) in [
            ("mlp1", &self.mlp1),
            ("mlp2", &self.mlp2),
            ("mlp4", &self.mlp4),
        ] {
            if list.contains(&0) {
                return Err(format!("{name} {list:?}: every width must be at least 1"));
            }
        }
        if self.mlp1.first() != Some(&self.input_dim) {
            return Err(format!(
                "mlp1 {:?} must start with input_dim {}",
                self.mlp1, self.input_dim
            ));
        }
        let inter =
            self.mlp1.last().unwrap_or(&0) * self.pooling.len() + self.extra_size.unwrap_or(0);
        if self.mlp2.first() != Some(&inter) {
            return Err(format!(
                "mlp2 {:?} must start with mlp1[-1] · {} poolings + extra features = {inter}",
                self.mlp2,
                self.pooling.len()
            ));
        }
        match &self.temporal {
            TemporalConfig::Ltae(l) => {
                let dm = l.d_model.unwrap_or(l.in_channels);
                if l.n_neurons.first() != Some(&dm) || !dm.is_multiple_of(l.n_head) {
                    return Err(format!(
                        "L-TAE: mlp3 {:?} must start with d_model {dm}, a multiple of n_head {}",
                        l.n_neurons, l.n_head
                    ));
                }
            }
            TemporalConfig::Tae(t) => {
                let dm = t.d_model.unwrap_or(t.in_channels);
                if t.n_neurons.first() != Some(&(t.n_head * dm)) {
                    return Err(format!(
                        "TAE: mlp3 {:?} must start with n_head · d_model = {}",
                        t.n_neurons,
                        t.n_head * dm
                    ));
                }
            }
            TemporalConfig::Gru(_) | TemporalConfig::TempCnn(_) => {}
        }
        if self.mlp4.len() < 2 || self.mlp4[0] != self.temporal.out_width() {
            return Err(format!(
                "mlp4 {:?} must have at least two widths and start with the temporal encoder's output width {}",
                self.mlp4,
                self.temporal.out_width()
            ));
        }
        Ok(())
    }

    /// Number of classes (mlp4[-1]).
    pub fn num_classes(&self) -> usize {
        *self.mlp4.last().unwrap_or(&0)
    }
}

/// The `config_fig2.json` settings of the L-TAE paper's figure 2 (temporal modules of 9k to 3.8M parameters),
/// as overrides of the default flags: `(kind, label)` → JSON object. Labels: L-TAE 9k 34k 112k 288k 740k 3840k;
/// TAE 19k 39k 76k 195k 360k 641k 2592k; GRU 15k 37k 134k 296k 636k 3545k; TempCNN 14k 45k 136k 296k 702k 3362k.
/// (The 9k and 34k L-TAEs need `d_model` None, which train.py's command line cannot express, spec §4.3.)
pub fn paper_variant(kind: TemporalKind, label: &str) -> Option<Value> {
    let v = match (kind, label) {
        (TemporalKind::Ltae, "9k") => {
            json!({"n_head": 8, "d_k": 8, "mlp3": [128], "d_model": null})
        }
        (TemporalKind::Ltae, "34k") => {
            json!({"n_head": 16, "d_k": 8, "mlp3": [128, 128], "d_model": null})
        }
        (TemporalKind::Ltae, "112k") => {
            json!({"n_head": 16, "d_k": 8, "mlp3": [256, 128], "d_model": 256})
        }
        (TemporalKind::Ltae, "288k") => {
            json!({"n_head": 32, "d_k": 8, "mlp3": [512, 128], "d_model": 512})
        }
        (TemporalKind::Ltae, "740k") => {
            json!({"n_head": 32, "d_k": 8, "mlp3": [1024, 256, 128], "d_model": 1024})
        }
        (TemporalKind::Ltae, "3840k") => {
            json!({"n_head": 64, "d_k": 8, "mlp3": [2048, 1024, 256, 128], "d_model": 2048})
        }
        (TemporalKind::Tae, "19k") => {
            json!({"n_head": 2, "d_k": 8, "mlp2": [132, 64], "mlp3": [128, 128], "d_model": null})
        }
        (TemporalKind::Tae, "39k") => {
            json!({"n_head": 4, "d_k": 8, "mlp2": [132, 64], "mlp3": [256, 128], "d_model": null})
        }
        (TemporalKind::Tae, "76k") => {
            json!({"n_head": 4, "d_k": 8, "mlp3": [512, 128], "d_model": null})
        }
        (TemporalKind::Tae, "195k") => {
            json!({"n_head": 4, "d_k": 8, "mlp3": [1024, 128], "d_model": 256})
        }
        (TemporalKind::Tae, "360k") => {
            json!({"n_head": 4, "d_k": 8, "mlp3": [1024, 256, 128], "d_model": 256})
        }
        (TemporalKind::Tae, "641k") => {
            json!({"n_head": 8, "d_k": 8, "mlp3": [2048, 256, 128], "d_model": 256})
        }
        (TemporalKind::Tae, "2592k") => {
            json!({"n_head": 8, "d_k": 16, "mlp3": [8192, 256, 128], "d_model": 1024})
        }
        (TemporalKind::Gru, "15k") => json!({"hidden_dim": 32, "mlp4": [32, 64, 32, 20]}),
        (TemporalKind::Gru, "37k") => json!({"hidden_dim": 64, "mlp4": [64, 64, 32, 20]}),
        (TemporalKind::Gru, "134k") => json!({"hidden_dim": 156, "mlp4": [156, 64, 32, 20]}),
        (TemporalKind::Gru, "296k") => json!({"hidden_dim": 256, "mlp4": [256, 64, 32, 20]}),
        (TemporalKind::Gru, "636k") => json!({"hidden_dim": 400, "mlp4": [400, 64, 32, 20]}),
        (TemporalKind::Gru, "3545k") => {
            json!({"hidden_dim": 1024, "mlp4": [1024, 128, 32, 20]})
        }
        (TemporalKind::TempCnn, "14k") => {
            json!({"nker": [16, 16, 16], "mlp3": [16, 16], "mlp4": [16, 32, 32, 20]})
        }
        (TemporalKind::TempCnn, "45k") => {
            json!({"nker": [32, 32, 32], "mlp3": [32, 32], "mlp4": [32, 32, 32, 20]})
        }
        (TemporalKind::TempCnn, "136k") => {
            json!({"nker": [64, 64], "mlp3": [64], "mlp4": [64, 32, 20]})
        }
        (TemporalKind::TempCnn, "296k") => {
            json!({"nker": [128, 128], "mlp3": [64], "mlp4": [64, 32, 32, 20]})
        }
        (TemporalKind::TempCnn, "702k") => {
            json!({"nker": [128, 128, 128], "mlp3": [180], "mlp4": [180, 32, 32, 20]})
        }
        (TemporalKind::TempCnn, "3362k") => {
            json!({"nker": [64, 128, 256], "mlp3": [512, 128], "mlp4": [128, 64, 32, 20]})
        }
        _ => return None,
    };
    Some(v)
}

/// The temporal encoder of a classifier.
pub enum TemporalEncoder {
    /// L-TAE.
    Ltae(Ltae1d),
    /// TAE.
    Tae(Tae),
    /// GRU.
    Gru(Gru),
    /// TempCNN.
    TempCnn(TempCnn),
}

impl TemporalEncoder {
    fn module(&self) -> &dyn Module {
        match self {
            TemporalEncoder::Ltae(m) => m,
            TemporalEncoder::Tae(m) => m,
            TemporalEncoder::Gru(m) => m,
            TemporalEncoder::TempCnn(m) => m,
        }
    }

    /// x (B, T, C) → (out (B, width), attention (H, B, T) for the attention encoders).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> (Tensor, Option<Tensor>) {
        match self {
            TemporalEncoder::Ltae(m) => {
                let (o, a) = m.forward(x, ctx);
                (o, Some(a))
            }
            TemporalEncoder::Tae(m) => {
                let (o, a) = m.forward(x, ctx);
                (o, Some(a))
            }
            TemporalEncoder::Gru(m) => (m.forward(x, ctx), None),
            TemporalEncoder::TempCnn(m) => (m.forward(x, ctx), None),
        }
    }
}

/// A pixel-set classifier: `spatial_encoder` (PSE), `temporal_encoder`, `decoder`.
pub struct PixelSetClassifier {
    /// Configuration.
    pub config: PixelSetModelConfig,
    /// The pixel-set encoder.
    pub spatial_encoder: PixelSetEncoder,
    /// The temporal encoder.
    pub temporal_encoder: TemporalEncoder,
    /// The MLP decoder.
    pub decoder: Decoder,
}

impl PixelSetClassifier {
    /// A freshly initialised classifier from `seed` (the original's `weight_init`; not PyTorch's RNG stream).
    /// Panics on an inconsistent configuration ([`PixelSetModelConfig::check`]).
    pub fn new(config: PixelSetModelConfig, seed: u64, device: Device) -> Self {
        if let Err(e) = config.check() {
            panic!("PixelSetClassifier: {e}");
        }
        let mut rng = Rng::new(seed);
        let spatial_encoder = PixelSetEncoder::new(
            &config.mlp1,
            config.pooling.clone(),
            &config.mlp2,
            config.extra_size,
            &mut rng,
            device,
        );
        let temporal_encoder = match &config.temporal {
            TemporalConfig::Ltae(c) => {
                TemporalEncoder::Ltae(Ltae1d::new(c.clone(), &mut rng, device))
            }
            TemporalConfig::Tae(c) => TemporalEncoder::Tae(Tae::new(c.clone(), &mut rng, device)),
            TemporalConfig::Gru(c) => TemporalEncoder::Gru(Gru::new(c.clone(), &mut rng, device)),
            TemporalConfig::TempCnn(c) => {
                TemporalEncoder::TempCnn(TempCnn::new(c.clone(), &mut rng, device))
            }
        };
        let decoder = Decoder::new(&config.mlp4, &mut rng, device);
        PixelSetClassifier {
            config,
            spatial_encoder,
            temporal_encoder,
            decoder,
        }
    }

    /// Number of classes (mlp4[-1]).
    pub fn num_classes(&self) -> usize {
        self.config.num_classes()
    }

    /// pixels (B, T, C, S), mask (B, T, S) host values, extra (B, T, E) → (logits (B, classes), attention
    /// (n_head, B, T) for L-TAE and TAE).
    pub fn forward(
        &self,
        pixels: &Tensor,
        mask: &[f32],
        extra: Option<&Tensor>,
        ctx: &Ctx,
    ) -> (Tensor, Option<Tensor>) {
        let f = self.spatial_encoder.forward(pixels, mask, extra, ctx);
        let (o, attn) = self.temporal_encoder.forward(&f, ctx);
        (self.decoder.forward(&o, ctx), attn)
    }
}

impl Module for PixelSetClassifier {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .spatial_encoder
            .named_parameters(&prefixed(prefix, "spatial_encoder"));
        v.extend(
            self.temporal_encoder
                .module()
                .named_parameters(&prefixed(prefix, "temporal_encoder")),
        );
        v.extend(self.decoder.named_parameters(&prefixed(prefix, "decoder")));
        v
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = self
            .spatial_encoder
            .named_buffers(&prefixed(prefix, "spatial_encoder"));
        v.extend(
            self.temporal_encoder
                .module()
                .named_buffers(&prefixed(prefix, "temporal_encoder")),
        );
        v.extend(self.decoder.named_buffers(&prefixed(prefix, "decoder")));
        v
    }
}

#[cfg(test)]
mod tests;
