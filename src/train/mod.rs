//! Training: the optimizer ([`adam`]), the semantic-segmentation workflow ([`semantic`]: train / evaluate), the
//! pixel-set classification workflow ([`pixelset`]: train / evaluate / predict), what they share ([`state`]),
//! [`metrics`], [`predict`], the per-kernel [`profile`]r's workloads, progress bars and training-curve plots.

pub mod adam;
pub mod demo;
pub mod metrics;
pub mod pixelset;
pub mod plot;
pub mod predict;
pub mod profile;
pub mod progress;
pub mod semantic;
pub mod state;

pub use adam::{Adam, AdamConfig};
