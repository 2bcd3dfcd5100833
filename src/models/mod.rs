//! The models of the U-TAE/PaPs and L-TAE/PSE papers, built from [`crate::layers`]. Each model file mirrors
//! the original PyTorch module it reproduces, with the same parameter names (`state_dict` keys).
//!
//! This release ships the engine and the layers the models are made of; the model files arrive with the
//! model work (U-TAE first).
