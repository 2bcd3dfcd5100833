//! The sinusoidal positional encodings, computed on the CPU (WGSL's sin/cos are only specified to about 2^-11):
//! - [`table`]: L-TAE 2D's (`PositionalEncoder` of utae-paps), in
//!   float32 exactly as the spec says (§3.4 step 4, §10.1 item 2);
//! - [`sinusoid_table`] and [`pe_rows`]: the pixel-set models' (`get_sinusoid_encoding_table` of the L-TAE
//!   repository), computed in float64 and cast, as the original's numpy table.
//!
//! For d = d_model / n_head and i < d: `denom_i = T^(2·⌊i/2⌋/d)` (f32 `pow`, T = 1000), `angle = day / denom_i`,
//! `p_i = sin(angle)` for even i, `cos(angle)` for odd i. The d_model-vector is `repeat` copies of p.
//! The position is the raw day offset (not the index in the sequence); padded dates have day 0.

use crate::engine::Tensor;

/// The encoding table for `days` (B, T) → (B, T, d · repeat), row-major.
pub fn table(days: &[f32], d: usize, t_period: f32, repeat: usize) -> Vec<f32> {
    let denom: Vec<f32> = (0..d)
        .map(|i| t_period.powf((2 * (i / 2)) as f32 / d as f32))
        .collect();
    let mut out = Vec::with_capacity(days.len() * d * repeat);
    for &day in days {
        let p: Vec<f32> = (0..d)
            .map(|i| {
                let angle = day / denom[i];
                if i % 2 == 0 {
                    angle.sin()
                } else {
                    angle.cos()
                }
            })
            .collect();
        for _ in 0..repeat {
            out.extend_from_slice(&p);
        }
    }
    out
}

/// `get_sinusoid_encoding_table(positions, d, T)` repeated `repeat` times along the features: rows
/// (positions.len(), d · repeat), computed in float64 and cast to float32.
pub fn sinusoid_table(positions: &[f64], d: usize, t_period: f64, repeat: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(positions.len() * d * repeat);
    for &p in positions {
        let row: Vec<f32> = (0..d)
            .map(|i| {
                let a = p / t_period.powf((2 * (i / 2)) as f64 / d as f64);
                (if i % 2 == 0 { a.sin() } else { a.cos() }) as f32
            })
            .collect();
        for _ in 0..repeat {
            out.extend_from_slice(&row);
        }
    }
    out
}

/// The rows of a positional table for T dates: rows 0..T for bespoke positions, 1..T+1 for the 1-based
/// order ("order"); (1, T, D) to broadcast over the batch. `what` names the caller in the panic.
pub fn pe_rows(table: &Tensor, bespoke: bool, t: usize, what: &str) -> Tensor {
    let start = usize::from(!bespoke);
    let (rows, d) = (table.shape()[0], table.shape()[1]);
    assert!(
        start + t <= rows,
        "{what}: {t} dates need rows {start}..{} of the positional table, which has {rows} rows",
        start + t
    );
    table.narrow(0, start, t).reshape(&[1, t, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denominators_and_values() {
        // Day 0: sin 0 = 0 on even channels, cos 0 = 1 on odd ones, in every copy.
        let t = table(&[0.0], 16, 1000.0, 2);
        assert_eq!(t.len(), 32);
        assert!(t
            .iter()
            .enumerate()
            .all(|(i, &v)| v == if i % 2 == 0 { 0.0 } else { 1.0 }));
        // Channel 2 has denominator 1000^(2/16) = 2.3714: day 10 → sin(10 / 2.3714).
        let t = table(&[10.0], 16, 1000.0, 1);
        assert!((t[2] - (10.0f32 / 1000f32.powf(0.125)).sin()).abs() < 1e-7);
        assert!((1000f32.powf(0.125) - 2.3714).abs() < 1e-4);
    }

    #[test]
    fn sinusoid_rows() {
        // Position 0: sin 0 = 0, cos 0 = 1; channel 2 of d = 16 has denominator 1000^(2/16).
        let t = sinusoid_table(&[0.0, 10.0], 16, 1000.0, 2);
        assert_eq!(&t[..2], &[0.0, 1.0]);
        assert_eq!(t[32 + 2], (10.0f64 / 1000f64.powf(0.125)).sin() as f32);
        assert_eq!(t[32 + 16 + 2], t[32 + 2]);
    }
}
