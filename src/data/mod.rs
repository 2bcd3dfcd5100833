//! Data: file formats ([`npy`]) — the PASTIS and pixel-set datasets build on them.

pub mod npy;
