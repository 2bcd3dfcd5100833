//! The sinusoidal positional encoding of L-TAE 2D (`PositionalEncoder` of utae-paps), computed on the CPU in
//! float32 exactly as the spec says (§3.4 step 4, §10.1 item 2): WGSL's sin/cos are only specified to about
//! 2^-11, so the table is never computed on the GPU.
//!
//! For d = d_model / n_head and i < d: `denom_i = T^(2·⌊i/2⌋/d)` (f32 `pow`, T = 1000), `angle = day / denom_i`,
//! `p_i = sin(angle)` for even i, `cos(angle)` for odd i. The d_model-vector is `repeat` copies of p.
//! The position is the raw day offset (not the index in the sequence); padded dates have day 0.

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
}
