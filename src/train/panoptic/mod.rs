//! Panoptic segmentation of parcels with U-TAE + PaPs (spec §6): the metric of the original
//! ([`meter`]: `PanopticMeter` with the 2022 void fix, SQ / RQ / PQ, `test_tables.npy`) and the per-patch
//! pictures in the paper's Fig. 5 style ([`picture`]: RGB | ground-truth parcels | predicted parcels).

pub mod meter;
pub mod picture;
