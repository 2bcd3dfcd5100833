//! Progress bars (indicatif) for training and evaluation loops: batches done, loss, mIoU and patches/s. A
//! hidden bar when progress display is off (tests, logs).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` batches labelled `label`, hidden unless `show`.
pub fn bar(show: bool, len: u64, label: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(label.to_string());
    pb
}
