//! PaPs' ops (spec §6): per-zone argmax (training centers), gathers at centers, ragged crops and per-instance
//! resizes, and the loss terms.

pub mod crop;
pub mod gather_pixels;
pub mod paps_loss;
pub mod segment_argmax;
