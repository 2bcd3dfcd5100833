//! The models of the U-TAE/PaPs and L-TAE/PSE papers, built from [`crate::layers`]. Each model file mirrors
//! the original PyTorch module it reproduces, with the same parameter names (`state_dict` keys).
//!
//! - [`utae`]: U-TAE (semantic segmentation of parcels), with [`ltae`]: its L-TAE 2D temporal encoder.
//! - [`paps`]: U-TAE + PaPs (panoptic segmentation: parcels as points, instance masks, pseudo-NMS, its loss).
//! - [`stclassifier`]: the pixel-set classifiers (parcel classification from pixel sets): the [`pse`]
//!   Pixel-Set Encoder and decoder with one of [`ltae1d`] (L-TAE, the paper's model), [`tae`] (TAE),
//!   [`recurrent`] (GRU) or [`tempcnn`] (TempCNN).
//!
//! - The U-TAE paper's baselines: [`recunet`] (U-ConvLSTM), [`fpn`] (FPN-ConvLSTM), [`conv_rnn_seg`]
//!   (ConvLSTM and ConvGRU segmenters), [`unet3d`] (U-Net 3D); [`semantic`] puts them and U-TAE behind one
//!   type (`--model`).
//!
//! [`registry`] maps a conf.json to its model and its [`registry::Task`]; [`convert`] checks a state dict
//! against that model and converts checkpoints between our `.npz` and the official `model.pth.tar`.

pub mod conv_rnn_seg;
pub mod convert;
pub mod fpn;
pub mod kwargs;
pub mod ltae;
pub mod ltae1d;
pub mod paps;
pub mod pse;
pub mod recunet;
pub mod recurrent;
pub mod registry;
pub mod semantic;
pub mod stclassifier;
pub mod tae;
pub mod tempcnn;
pub mod unet3d;
pub mod utae;
