//! Errors for real runtime failures: no adapter, device refused, I/O, bad file formats, a tensor larger than
//! the adapter can bind.
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
    /// One tensor is larger than the adapter can bind ([`TensorTooLarge`], caught by [`catch_too_large`]).
    #[error(
        "{0}. HINT: fewer samples at once (a smaller --batch_size; with --max_memory, training, evaluation and \
         prediction plan their batches in parts that fit), or fewer dates per sample or smaller patches"
    )]
    TensorTooLarge(TensorTooLarge),
}

/// A tensor over the adapter's largest storage binding: what `engine::storage::GpuStorage::alloc` raises.
/// Ops return tensors, not results, so it travels as a panic payload (`std::panic::panic_any`) up to the
/// nearest [`catch_too_large`] — the command boundary in `main`, and the memory planner's probes
/// (`train::memory`), which turn it into a smaller micro-batch or a clear [`Error::TensorTooLarge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorTooLarge {
    /// The op that asked.
    pub op: String,
    /// f32 elements asked for.
    pub numel: usize,
    /// The adapter's largest storage binding (and buffer), bytes.
    pub max_bytes: u64,
}

impl std::fmt::Display for TensorTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: a tensor of {} f32 ({} bytes, {:.1} MiB) exceeds this adapter's maximum storage binding ({} bytes, \
             {:.1} MiB)",
            self.op,
            self.numel,
            4 * self.numel as u64,
            (4 * self.numel as u64) as f64 / (1u64 << 20) as f64,
            self.max_bytes,
            self.max_bytes as f64 / (1u64 << 20) as f64
        )
    }
}

thread_local! {
    /// How many [`catch_too_large`] frames this thread is inside (the panic hook stays quiet there).
    static CATCHING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Raises [`TensorTooLarge`] (module doc of [`TensorTooLarge`]): caught by the nearest [`catch_too_large`];
/// outside one, an ordinary panic whose message is the error's.
pub fn raise_too_large(t: TensorTooLarge) -> ! {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let Some(t) = info.payload().downcast_ref::<TensorTooLarge>() else {
                return previous(info);
            };
            if CATCHING.with(|c| c.get()) == 0 {
                let thread = std::thread::current();
                let at = info
                    .location()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                eprintln!(
                    "thread '{}' panicked{at}:\n{t}",
                    thread.name().unwrap_or("<unnamed>")
                );
            }
        }));
    });
    std::panic::panic_any(t)
}

/// Runs `f`; a [`TensorTooLarge`] raised inside it becomes `Err(Error::TensorTooLarge)` (quietly: the panic
/// hook prints nothing for it here). Any other panic goes on unwinding.
pub fn catch_too_large<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    match r {
        Ok(r) => r,
        Err(payload) => match payload.downcast::<TensorTooLarge>() {
            Ok(t) => Err(Error::TensorTooLarge(*t)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
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
