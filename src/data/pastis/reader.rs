//! Reading batches ahead on a background thread, so that the GPU does not wait on the disk.
//!
//! [`PastisDataset::batches`] spawns one reader thread that loads and collates `indices.chunks(batch_size)` in
//! order and hands them over through a bounded channel of 2 (`std::sync::mpsc::sync_channel`): at most two
//! finished batches wait in the channel (plus the one being read), so memory stays bounded. The first error
//! ends the stream.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use super::{collate, Batch, PastisDataset, DEFAULT_PAD_VALUE};
use crate::engine::error::{Error, Result};

impl PastisDataset {
    /// Reads and collates the batches `indices.chunks(batch_size)` with [`DEFAULT_PAD_VALUE`], on a background
    /// thread that stays up to two batches ahead. See [`PastisDataset::batches_with_pad`].
    pub fn batches(&self, indices: Vec<usize>, batch_size: usize) -> Batches {
        self.batches_with_pad(indices, batch_size, DEFAULT_PAD_VALUE)
    }

    /// Like [`PastisDataset::batches`] with an explicit `pad_value`. The iterator yields each batch in order;
    /// after the first error (a bad file, an index out of range, `batch_size` 0) it yields that error and
    /// ends. Dropping the iterator stops the reader.
    pub fn batches_with_pad(
        &self,
        indices: Vec<usize>,
        batch_size: usize,
        pad_value: f32,
    ) -> Batches {
        let (tx, rx) = sync_channel::<Result<Batch>>(2);
        let ds = self.clone();
        let handle = std::thread::Builder::new()
            .name("pastis-reader".into())
            .spawn(move || {
                if batch_size == 0 {
                    let _ = tx.send(Err(Error::Invalid(
                        "batches: batch_size must be at least 1".into(),
                    )));
                    return;
                }
                for chunk in indices.chunks(batch_size) {
                    let batch = ds.load_batch(chunk, pad_value);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
        match handle {
            Ok(h) => Batches {
                rx: Some(rx),
                handle: Some(h),
            },
            Err(e) => {
                // No thread: yield the error once.
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Err(Error::Invalid(format!(
                    "could not start the PASTIS reader thread: {e}"
                ))));
                Batches {
                    rx: Some(rx),
                    handle: None,
                }
            }
        }
    }

    /// Reads `indices` and collates them, checking first that the samples can be stacked.
    pub fn load_batch(&self, indices: &[usize], pad_value: f32) -> Result<Batch> {
        let samples = indices
            .iter()
            .map(|&i| self.get(i))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = samples.first() else {
            return Err(Error::Invalid("load_batch: no sample index".into()));
        };
        if let Some(odd) = samples.iter().find(|s| s.shape[1..] != first.shape[1..]) {
            return Err(Error::format(
                self.s2_path(odd.id),
                format!(
                    "frames of shape (C, H, W) = {:?} cannot be batched with patch {}'s {:?}",
                    &odd.shape[1..],
                    first.id,
                    &first.shape[1..]
                ),
            ));
        }
        Ok(collate(&samples, pad_value))
    }
}

/// Batches read ahead on a background thread ([`PastisDataset::batches`]).
pub struct Batches {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let got = self.rx.as_ref()?.recv().ok();
        if got.is_none() {
            // The reader finished (or panicked: re-raise its panic here rather than end silently).
            self.rx = None;
            if let Some(h) = self.handle.take() {
                if let Err(panic) = h.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        got
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Closing the channel makes the reader's next send fail, so it stops after at most one more batch.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
