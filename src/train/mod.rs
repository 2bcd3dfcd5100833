//! Training: the optimizer ([`adam`]), the semantic-segmentation workflow ([`semantic`]: train / evaluate), the
//! pixel-set classification workflow ([`pixelset`]: train / evaluate / predict), what they share ([`state`]),
//! the panoptic workflow of U-TAE + PaPs ([`panoptic`]: train / evaluate / predict, its `PanopticMeter` and
//! pictures), the semantic workflow's incomplete batches ([`drop_last`]), [`metrics`], [`predict`], the
//! per-kernel [`profile`]r's workloads, progress bars and training-curve plots; the command line's flags
//! ([`flags`]) and what each subcommand runs ([`commands`]); [`diagnose`]: why two training steps disagree
//! (decisions within float32 noise, or a bug), for the parity tests.

pub mod adam;
pub mod commands;
pub mod demo;
pub mod diagnose;
pub mod drop_last;
pub mod flags;
pub mod map;
pub mod metrics;
pub mod panoptic;
pub mod pixelset;
pub mod plot;
pub mod predict;
pub mod profile;
pub mod progress;
pub mod semantic;
pub mod state;
pub mod widths;

pub use adam::{Adam, AdamConfig};
