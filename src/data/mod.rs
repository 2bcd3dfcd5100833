//! Data: file formats — [`json`] files (errors naming the file, atomic writes), [`npy`] arrays, [`state_dict`]s
//! and their `.npz` files, PyTorch [`checkpoint`]s (read through the safe [`pickle`] reader; written in the
//! official format by [`torch_writer`]), numpy arrays in pickles ([`numpy_pickle`]) — numpy's legacy random
//! stream ([`numpy_random`], for the original's splits and draws) and the datasets built on them ([`pastis`]:
//! PASTIS patches, spec §1; [`geotiff`]: a user's own rasters; [`pixelset`]: Sentinel-Agri pixel sets, spec §2; [`synthetic`]: generated data in
//! both layouts).

pub mod checkpoint;
pub mod geotiff;
pub mod json;
pub mod npy;
pub mod numpy_pickle;
pub mod numpy_random;
pub mod pastis;
pub mod pickle;
pub(crate) mod pickle_writer;
pub mod pixelset;
pub mod state_dict;
pub mod synthetic;
pub mod torch_writer;
