//! Data: file formats — [`npy`] arrays, [`state_dict`]s and their `.npz` files, PyTorch [`checkpoint`]s (read
//! through the safe [`pickle`] reader) — and the datasets built on them ([`pastis`]: PASTIS patches, spec §1).

pub mod checkpoint;
pub mod npy;
pub mod pastis;
pub mod pickle;
pub mod state_dict;
pub mod synthetic;
