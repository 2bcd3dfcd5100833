//! Data: file formats ([`npy`]) and the datasets built on them ([`pastis`]: PASTIS patches, spec §1).

pub mod npy;
pub mod pastis;
