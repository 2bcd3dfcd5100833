//! Data: file formats — [`npy`] arrays, [`state_dict`]s and their `.npz` files, PyTorch [`checkpoint`]s (read
//! through the safe [`pickle`] reader) — the PASTIS and pixel-set datasets build on them.

pub mod checkpoint;
pub mod npy;
pub mod pickle;
pub mod state_dict;
