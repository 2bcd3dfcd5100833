//! Errors for real runtime failures: no adapter, device refused, I/O, bad file formats.
//!
//! Shape and device mismatches inside model code are programming errors and panic with
//! `<op>: expected …, got …` (see `engine::check`); what can go wrong on a user's machine or with a user's
//! files is an [`Error`] whose message says what to do next.

use std::path::PathBuf;

/// sitsgpu's error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No GPU adapter at all.
    #[error(
        "no GPU adapter found. HINT: on Linux without a GPU install Mesa's lavapipe \
         (apt-get install -y mesa-vulkan-drivers libvulkan1); run `sitsgpu info` to see what wgpu finds"
    )]
    NoAdapter,
    /// `SITSGPU_ADAPTER` matched nothing.
    #[error("SITSGPU_ADAPTER={wanted:?} matches no adapter; available: {available:?}")]
    AdapterNotFound {
        /// The substring asked for.
        wanted: String,
        /// Names of the adapters found.
        available: Vec<String>,
    },
    /// The adapter refused to create a device.
    #[error("the adapter refused to create a device: {0}")]
    RequestDevice(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file was read but its content is wrong.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Invalid user-given value (flag, config).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
