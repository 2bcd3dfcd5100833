//! Batching PASTIS samples: the original `pad_collate` (spec §1.11).
//!
//! Every sample's time axis is padded **at the end** to the batch maximum T with `pad_value` (0 by default),
//! then samples are stacked on a new leading batch axis. Dates are padded the same way (the original pads the
//! int64 dates tensor with `pad_value`, which truncates it to an integer: 0 for the default). The pad mask is
//! not carried over from the lengths: like every original model, it is recomputed from the data —
//! `pad_mask[b, t]` is true iff every value of frame `x[b, t]` equals `pad_value`.

use super::PastisSample;

/// A collated batch, PyTorch order, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Inputs, (B, T_max, C, H, W): normalised frames, then `pad_value` frames at the end of each series.
    pub x: Vec<f32>,
    /// `[B, T_max, C, H, W]`.
    pub shape: [usize; 5],
    /// Day offsets as f32, (B, T_max) with padded steps = `pad_value` truncated to an integer (0 by default);
    /// (B,) when the samples carry a scalar date (mono_date ablation).
    pub dates: Vec<f32>,
    /// Shape of `dates`: `[B, T_max]`, or `[B]` for scalar dates (spec §3.4 step 5).
    pub dates_shape: Vec<usize>,
    /// (B, T_max): true where the frame is entirely `pad_value` (computed from `x`).
    pub pad_mask: Vec<bool>,
    /// Semantic targets, (B, H, W), int64 classes (empty for an unlabeled dataset, `Target::Unlabeled`).
    pub targets: Vec<i64>,
    /// Instance targets (B, H, W, 7) float32, when the dataset was opened with `Target::Instance`.
    pub instance: Option<Vec<f32>>,
    /// ID_PATCH of each sample, in batch order.
    pub ids: Vec<u64>,
}

impl Batch {
    /// Samples `start..end` of the batch (a micro-batch), padded as the batch is (same `T_max`).
    pub fn slice(&self, start: usize, end: usize) -> Batch {
        let [b, t, c, h, w] = self.shape;
        assert!(
            start < end && end <= b,
            "Batch::slice: expected a range within 0..{b}, got {start}..{end}"
        );
        let per = |n: usize| n / b.max(1);
        let cut = |v: &[f32]| v[start * per(v.len())..end * per(v.len())].to_vec();
        Batch {
            x: cut(&self.x),
            shape: [end - start, t, c, h, w],
            dates: cut(&self.dates),
            dates_shape: std::iter::once(end - start)
                .chain(self.dates_shape.iter().skip(1).copied())
                .collect(),
            pad_mask: self.pad_mask[start * t..end * t].to_vec(),
            targets: self.targets[start * per(self.targets.len())..end * per(self.targets.len())]
                .to_vec(),
            instance: self.instance.as_deref().map(cut),
            ids: self.ids[start..end].to_vec(),
        }
    }
}

/// The original `pad_collate(batch, pad_value)` on PASTIS samples: pad the time axis at the end to the batch
/// maximum with `pad_value`, stack, and derive the pad mask from the data.
///
/// # Panics
/// On an empty slice, or when samples disagree on (C, H, W), on scalar vs vector dates, or on carrying an
/// instance target (`collate: expected …, got …`): samples of one dataset never do, and
/// [`super::PastisDataset::batches`] checks this and reports an error naming the file instead.
pub fn collate(samples: &[PastisSample], pad_value: f32) -> Batch {
    assert!(
        !samples.is_empty(),
        "collate: expected at least one sample, got 0"
    );
    let first = &samples[0];
    let [_, c, h, w] = first.shape;
    for s in samples {
        assert!(
            s.shape[1..] == first.shape[1..],
            "collate: expected frames of shape (C, H, W) = {:?} (patch {}), got {:?} (patch {})",
            &first.shape[1..],
            first.id,
            &s.shape[1..],
            s.id
        );
        assert_eq!(
            s.scalar_date, first.scalar_date,
            "collate: expected all samples with scalar dates = {}, got patch {} with {}",
            first.scalar_date, s.id, s.scalar_date
        );
        assert_eq!(
            s.instance.is_some(),
            first.instance.is_some(),
            "collate: expected all samples with an instance target = {}, got patch {}",
            first.instance.is_some(),
            s.id
        );
    }
    let b = samples.len();
    let t_max = samples.iter().map(|s| s.shape[0]).max().unwrap_or(0);
    let frame = c * h * w;
    let mut x = Vec::with_capacity(b * t_max * frame);
    for s in samples {
        x.extend_from_slice(&s.data);
        x.resize(x.len() + (t_max - s.shape[0]) * frame, pad_value);
    }
    let (dates, dates_shape) = if first.scalar_date {
        (samples.iter().map(|s| s.dates[0] as f32).collect(), vec![b])
    } else {
        let date_pad = pad_value.trunc();
        let mut d = Vec::with_capacity(b * t_max);
        for s in samples {
            d.extend(s.dates.iter().map(|&v| v as f32));
            d.resize(d.len() + t_max - s.dates.len(), date_pad);
        }
        (d, vec![b, t_max])
    };
    let pad_mask = if frame == 0 {
        vec![true; b * t_max]
    } else {
        x.chunks_exact(frame)
            .map(|f| f.iter().all(|&v| v == pad_value))
            .collect()
    };
    let targets = samples
        .iter()
        .flat_map(|s| s.target.iter().copied())
        .collect();
    let instance = first.instance.is_some().then(|| {
        samples
            .iter()
            .flat_map(|s| s.instance.iter().flatten().copied())
            .collect()
    });
    Batch {
        x,
        shape: [b, t_max, c, h, w],
        dates,
        dates_shape,
        pad_mask,
        targets,
        instance,
        ids: samples.iter().map(|s| s.id).collect(),
    }
}
