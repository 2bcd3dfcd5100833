//! The panoptic workflow of U-TAE + PaPs (utae-paps' `train_panoptic.py` / `test_panoptic.py`): the
//! [`meter`] (`PanopticMeter`, SQ / RQ / PQ).

pub mod meter;
#[cfg(test)]
mod meter_tests;

pub use meter::PanopticMeter;
