//! The models of the U-TAE/PaPs and L-TAE/PSE papers, built from [`crate::layers`]. Each model file mirrors
//! the original PyTorch module it reproduces, with the same parameter names (`state_dict` keys).
//!
//! - [`utae`]: U-TAE (semantic segmentation of parcels), with [`ltae`]: its L-TAE 2D temporal encoder.
//! - [`pse`]: PSE + L-TAE (parcel classification from pixel sets), with [`ltae1d`]: the L-TAE 1D.

pub mod ltae;
pub mod ltae1d;
pub mod pse;
pub mod registry;
pub mod utae;
