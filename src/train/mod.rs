//! Training, evaluation and prediction, one folder per task and what they share:
//! - the tasks: [`semantic`] (U-TAE and the baselines on PASTIS: train / evaluate / predict), [`pixelset`]
//!   (PSE + L-TAE and the pixel-set classifiers: train / evaluate / predict), [`panoptic`] (U-TAE + PaPs and
//!   U-ConvLSTM + PaPs: train / evaluate / predict, its `PanopticMeter` and pictures);
//! - what they share: the one fold loop every task's `train` runs ([`fold_loop`]: shared options, initial
//!   weights, resume, results folder, epochs, logs, checkpoints, the end-of-fold test), the one optimiser step of
//!   a batch ([`step`]: whole or in micro-batches, and the memory probe), checkpoints and resume
//!   files ([`state`]), the PASTIS rotations ([`rotations`]) and incomplete batches ([`drop_last`]), the
//!   optimizer ([`adam`]), [`metrics`], progress bars ([`progress`]) and training-curve plots ([`plot`]);
//! - the command line's flags ([`flags`]) and what each subcommand runs ([`commands`], [`demo`]); the
//!   per-kernel [`profile`]r's workloads; [`diagnose`]: why two training steps disagree (decisions within
//!   float32 noise, or a bug), for the parity tests; [`widths`] of the demo models;
//! - your own area: [`map`] (GeoTIFFs to a georeferenced class map) and [`prepare`] (GeoTIFFs and labels to
//!   a PASTIS-layout training set).

pub mod adam;
pub mod commands;
pub mod demo;
pub mod diagnose;
pub mod drop_last;
pub mod flags;
pub mod fold_loop;
pub mod map;
pub mod memory;
pub mod metrics;
pub mod panoptic;
pub mod pixelset;
pub mod plot;
pub mod prepare;
pub mod profile;
pub mod progress;
pub mod rotations;
pub mod semantic;
pub mod state;
pub mod step;
pub mod widths;

pub use adam::{Adam, AdamConfig};
