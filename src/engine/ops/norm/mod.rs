//! Normalisation: batch norm (1-d/2-d/3-d, running statistics), group norm (two-pass statistics over slices) and
//! layer / instance norm composed from it.

pub mod batch_norm;
pub mod group_norm;
pub mod layer_norm;
