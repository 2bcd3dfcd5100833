//! The command-line flags of `sitsgpu train --task pixelset`: lightweight-temporal-attention-pytorch
//! `train.py`'s flags with their names (underscores) and defaults, the model choice (`--tae`, `--gru`,
//! `--tcnn` or `--model`, and `--variant` for the L-TAE paper's config_fig2 settings) and ours (jitter,
//! deterministic evaluation). The flags shared with the semantic task (`--epochs`, `--batch_size`, `--n_head`,
//! ...) live in the `train` command and arrive here as [`SharedFlags`].

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::engine::{Error, Precision, Result};
use crate::models::stclassifier::TemporalKind;
use crate::train::pixelset::{model_conf_from_flags, PixelSetTrainOptions};
use crate::train::widths::Widths;

/// The pixel-set-only flags (all optional: unset flags take train.py's defaults, see
/// [`model_conf_from_flags`]).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct PixelSetFlags {
    /// pixelset: Number of folds of the cross-validation (default 5).
    #[arg(long)]
    pub kfold: Option<usize>,
    /// pixelset: Focal-loss γ (default 1).
    #[arg(long)]
    pub gamma: Option<f32>,
    /// pixelset: Pixels sampled per parcel (default 64).
    #[arg(long)]
    pub npixel: Option<usize>,
    /// pixelset: Input bands (default 10).
    #[arg(long = "input_dim")]
    pub input_dim: Option<usize>,
    /// pixelset: PSE mlp1 widths (default 10,32,64).
    #[arg(long)]
    pub mlp1: Option<Widths>,
    /// pixelset: PSE pooling: mean, std, max, min joined by _ (default mean_std).
    #[arg(long)]
    pub pooling: Option<String>,
    /// pixelset: PSE mlp2 widths (default 132,128).
    #[arg(long)]
    pub mlp2: Option<Widths>,
    /// pixelset: 1: use the geometric features (default), 0: not.
    #[arg(long)]
    pub geomfeat: Option<u8>,
    /// pixelset: Temporal MLP widths (L-TAE/TAE mlp, TempCNN's flattening MLP; default 256,128).
    #[arg(long)]
    pub mlp3: Option<Widths>,
    /// pixelset: Positional-encoding period (default 1000).
    #[arg(long = "T")]
    pub t_period: Option<f64>,
    /// pixelset: bespoke (days since the first date; default for L-TAE/TAE) or order (default for GRU/TempCNN,
    /// which crash with bespoke positions in the original).
    #[arg(long)]
    pub positions: Option<String>,
    /// pixelset: Sequence length (default 24).
    #[arg(long)]
    pub lms: Option<usize>,
    /// pixelset: Dropout (default 0.2).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// pixelset: Decoder widths (default: the temporal width, 64, 32, num_classes).
    #[arg(long)]
    pub mlp4: Option<Widths>,
    /// pixelset: TAE (PSE-TAE) instead of L-TAE.
    #[arg(long)]
    pub tae: bool,
    /// pixelset: GRU instead of L-TAE.
    #[arg(long)]
    pub gru: bool,
    /// pixelset: GRU hidden width (default 156).
    #[arg(long = "hidden_dim")]
    pub hidden_dim: Option<usize>,
    /// pixelset: TempCNN instead of L-TAE.
    #[arg(long)]
    pub tcnn: bool,
    /// pixelset: TempCNN convolution widths (default 32,32,128).
    #[arg(long)]
    pub nker: Option<Widths>,
    /// pixelset: A config_fig2.json setting of the L-TAE paper's figure: L-TAE 9k 34k 112k 288k 740k 3840k,
    /// TAE 19k 39k 76k 195k 360k 641k 2592k, GRU 15k 37k 134k 296k 636k 3545k, TempCNN 14k 45k 136k 296k 702k
    /// 3362k.
    #[arg(long)]
    pub variant: Option<String>,
    /// pixelset: Jitter sigma,clip added to every sample (default 0.01,0.05), or none.
    #[arg(long)]
    pub jitter: Option<String>,
    /// pixelset: Validation and test without jitter and with a fixed pixel draw per parcel (the original
    /// draws and jitters them too).
    #[arg(long = "deterministic_eval")]
    pub deterministic_eval: bool,
    /// pixelset: Keep the raw parcel arrays in memory.
    #[arg(long)]
    pub preload: bool,
}

/// The flags the pixel-set task shares with the semantic one (`None`: not given on the command line).
#[derive(Debug, Clone)]
pub struct SharedFlags {
    /// Folder of the dataset.
    pub dataset_folder: PathBuf,
    /// Output folder.
    pub res_dir: PathBuf,
    /// `--model` (pse_ltae, pse_tae, pse_gru, pse_tempcnn; short names too).
    pub model: Option<String>,
    /// `--n_head`.
    pub n_head: Option<usize>,
    /// `--d_k`.
    pub d_k: Option<usize>,
    /// `--d_model` (a number, or "none").
    pub d_model: Option<String>,
    /// `--batch_size` (default 128).
    pub batch_size: Option<usize>,
    /// `--rdm_seed`.
    pub rdm_seed: u64,
    /// `--epochs`.
    pub epochs: usize,
    /// `--lr`.
    pub lr: f64,
    /// `--fold`.
    pub fold: Option<usize>,
    /// `--num_classes`.
    pub num_classes: usize,
    /// `--init_weights`.
    pub init_weights: Option<PathBuf>,
    /// `--max_steps`.
    pub max_steps: Option<usize>,
    /// `--resume`.
    pub resume: bool,
    /// `--cpu` (or `--device cpu`).
    pub cpu: bool,
    /// `--max_memory`.
    pub max_memory: Option<u64>,
    /// `--precision`.
    pub precision: Precision,
}

impl PixelSetFlags {
    /// Whether any pixel-set-only flag was given (an error for the semantic task).
    pub fn any_given(&self) -> bool {
        *self != PixelSetFlags::default()
    }

    /// The model kind: `--model`, else `--tae` / `--gru` / `--tcnn` (at most one), else L-TAE.
    fn kind(&self, model: Option<&str>) -> Result<TemporalKind> {
        let flags: Vec<TemporalKind> = [
            (self.tae, TemporalKind::Tae),
            (self.gru, TemporalKind::Gru),
            (self.tcnn, TemporalKind::TempCnn),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        let named = model
            .map(|m| {
                TemporalKind::parse(m).ok_or_else(|| {
                    Error::Invalid(format!(
                        "--model {m:?}: not a pixel-set model (pse_ltae, pse_tae, pse_gru, pse_tempcnn)"
                    ))
                })
            })
            .transpose()?;
        match (named, flags.as_slice()) {
            (Some(k), []) => Ok(k),
            (Some(k), [f]) if *f == k => Ok(k),
            (None, []) => Ok(TemporalKind::Ltae),
            (None, [f]) => Ok(*f),
            _ => Err(Error::Invalid(
                "choose one model: --model, --tae, --gru or --tcnn".into(),
            )),
        }
    }

    /// The training options of these flags and the shared ones.
    pub fn options(&self, s: &SharedFlags) -> Result<PixelSetTrainOptions> {
        let kind = self.kind(s.model.as_deref())?;
        let mut explicit = Map::new();
        let mut put = |k: &str, v: Value| {
            explicit.insert(k.to_string(), v);
        };
        if let Some(v) = self.input_dim {
            put("input_dim", json!(v));
        }
        for (k, v) in [
            ("mlp1", &self.mlp1),
            ("mlp2", &self.mlp2),
            ("mlp3", &self.mlp3),
            ("mlp4", &self.mlp4),
            ("nker", &self.nker),
        ] {
            if let Some(v) = v {
                put(k, json!(v.0));
            }
        }
        if let Some(v) = &self.pooling {
            put("pooling", json!(v));
        }
        if let Some(v) = self.geomfeat {
            put("geomfeat", json!(v));
        }
        if let Some(v) = s.n_head {
            put("n_head", json!(v));
        }
        if let Some(v) = s.d_k {
            put("d_k", json!(v));
        }
        if let Some(v) = &s.d_model {
            let d = if v.eq_ignore_ascii_case("none") {
                Value::Null
            } else {
                json!(v.parse::<u64>().map_err(|_| Error::Invalid(format!(
                    "--d_model {v:?}: expected a width or \"none\""
                )))?)
            };
            put("d_model", d);
        }
        if let Some(v) = self.t_period {
            put("T", json!(v));
        }
        if let Some(v) = &self.positions {
            if v != "bespoke" && v != "order" {
                return Err(Error::Invalid(format!(
                    "--positions {v:?}: expected bespoke or order"
                )));
            }
            put("positions", json!(v));
        }
        if let Some(v) = self.lms {
            put("lms", json!(v));
        }
        if let Some(v) = self.dropout {
            put("dropout", json!(v));
        }
        if let Some(v) = self.hidden_dim {
            put("hidden_dim", json!(v));
        }
        let model = model_conf_from_flags(kind, self.variant.as_deref(), explicit, s.num_classes)?;
        let jitter = match self.jitter.as_deref() {
            None => Some((0.01, 0.05)),
            Some("none") | Some("None") => None,
            Some(j) => {
                let v: Vec<f64> = j
                    .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
                    .split(',')
                    .map(|p| p.trim().parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| {
                        Error::Invalid(format!("--jitter {j:?}: expected \"[sigma,clip]\" or none"))
                    })?;
                match v.as_slice() {
                    [s, c] => Some((*s, *c)),
                    _ => {
                        return Err(Error::Invalid(format!(
                            "--jitter {j:?}: expected \"[sigma,clip]\" or none"
                        )))
                    }
                }
            }
        };
        // Unset flags keep train.py's defaults, those of PixelSetTrainOptions::new.
        let mut o = PixelSetTrainOptions::new(&s.dataset_folder, &s.res_dir);
        o.model = model;
        o.run.rdm_seed = s.rdm_seed;
        o.numpy_seed()?;
        o.kfold = self.kfold.unwrap_or(o.kfold);
        o.run.epochs = s.epochs;
        o.run.batch_size = s.batch_size.unwrap_or(o.run.batch_size);
        o.run.lr = s.lr;
        o.gamma = self.gamma.unwrap_or(o.gamma);
        o.npixel = self.npixel.unwrap_or(o.npixel);
        o.num_classes = s.num_classes;
        o.jitter = jitter;
        o.deterministic_eval = self.deterministic_eval;
        o.preload = self.preload;
        o.run.fold = s.fold;
        o.run.init_weights = s.init_weights.clone();
        o.run.max_steps = s.max_steps;
        o.run.resume = s.resume;
        o.run.cpu = s.cpu;
        o.run.max_memory = s.max_memory;
        o.run.precision = s.precision;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::stclassifier::{PixelSetModelConfig, TemporalConfig};
    use std::path::Path;

    fn shared() -> SharedFlags {
        SharedFlags {
            dataset_folder: "D".into(),
            res_dir: "R".into(),
            model: None,
            n_head: None,
            d_k: None,
            d_model: None,
            batch_size: None,
            rdm_seed: 1,
            epochs: 100,
            lr: 1e-3,
            fold: None,
            num_classes: 20,
            init_weights: None,
            max_steps: None,
            resume: false,
            cpu: false,
            max_memory: None,
            precision: Precision::Fp32,
        }
    }

    fn config(o: &PixelSetTrainOptions) -> PixelSetModelConfig {
        PixelSetModelConfig::from_json(
            &Value::Object(o.model.clone()),
            Some(&[0; 24]),
            Path::new("flags"),
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_train_py_s_pse_ltae() {
        let o = PixelSetFlags::default().options(&shared()).unwrap();
        assert_eq!(
            (o.kfold, o.run.batch_size, o.npixel, o.gamma),
            (5, 128, 64, 1.0)
        );
        assert_eq!(o.jitter, Some((0.01, 0.05)));
        assert_eq!(config(&o), {
            let mut d = PixelSetModelConfig::default();
            if let TemporalConfig::Ltae(l) = &mut d.temporal {
                l.positions = Some(vec![0; 24]);
            }
            d
        });
    }

    #[test]
    fn each_model_builds_from_its_flag_alone() {
        // --tae alone is PseTae's default, --gru / --tcnn get positions order and a matching mlp4.
        let f = PixelSetFlags {
            tae: true,
            ..PixelSetFlags::default()
        };
        let c = config(&f.options(&shared()).unwrap());
        assert!(matches!(&c.temporal, TemporalConfig::Tae(t) if t.n_head == 4 && t.d_k == 32));
        let f = PixelSetFlags {
            gru: true,
            ..PixelSetFlags::default()
        };
        let c = config(&f.options(&shared()).unwrap());
        assert_eq!(c.mlp4, vec![156, 64, 32, 20]);
        assert!(c.temporal.positions().is_none());
        let f = PixelSetFlags {
            tcnn: true,
            variant: Some("14k".into()),
            ..PixelSetFlags::default()
        };
        let c = config(&f.options(&shared()).unwrap());
        assert_eq!(c.mlp4, vec![16, 32, 32, 20]);
        // The 9k L-TAE needs d_model None, which train.py cannot express; --variant 9k or --d_model none can.
        let mut s = shared();
        s.d_model = Some("none".into());
        let f = PixelSetFlags {
            mlp3: Some(Widths(vec![128])),
            ..PixelSetFlags::default()
        };
        let c = config(&f.options(&s).unwrap());
        assert!(matches!(&c.temporal, TemporalConfig::Ltae(l) if l.d_model.is_none()));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let both = PixelSetFlags {
            tae: true,
            gru: true,
            ..PixelSetFlags::default()
        };
        assert!(both
            .options(&shared())
            .unwrap_err()
            .to_string()
            .contains("choose one"));
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: PixelSetFlags,
        }
        let e = <Cli as clap::Parser>::try_parse_from(["train", "--mlp1", "[10,x]"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--mlp1") && e.contains("list of integers"),
            "{e}"
        );
        let ok = <Cli as clap::Parser>::try_parse_from(["train", "--mlp4", "64, 32,20"]).unwrap();
        assert_eq!(ok.flags.mlp4, Some(Widths(vec![64, 32, 20])));
        let bad = PixelSetFlags {
            jitter: Some("0.1".into()),
            ..PixelSetFlags::default()
        };
        assert!(bad
            .options(&shared())
            .unwrap_err()
            .to_string()
            .contains("--jitter"));
        let none = PixelSetFlags {
            jitter: Some("none".into()),
            ..PixelSetFlags::default()
        };
        assert_eq!(none.options(&shared()).unwrap().jitter, None);
        let v = PixelSetFlags {
            variant: Some("9k".into()),
            gru: true,
            ..PixelSetFlags::default()
        };
        assert!(v
            .options(&shared())
            .unwrap_err()
            .to_string()
            .contains("--variant"));
        assert!(!PixelSetFlags::default().any_given());
        assert!(PixelSetFlags {
            preload: true,
            ..PixelSetFlags::default()
        }
        .any_given());
    }
}
