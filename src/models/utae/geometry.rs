//! Which input sides a U-Net of U-TAE's blocks takes (U-TAE, and U-ConvLSTM / BU-ConvLSTM, which share its
//! encoder and decoder blocks; spec §3.2), so that a workflow can refuse an input with a sentence instead of
//! failing inside a convolution or a concatenation, as the original does (PyTorch's "Padding size should
//! be less than the corresponding input dimension", or torch.cat's "Sizes of tensors must match").
//!
//! Along each spatial axis: the input convolutions (3 × 3, padding 1) need a side of at least 2 with
//! reflect padding; each level's strided convolution (kernel k, stride s, padding p) maps a side l to
//! `(l + 2p - k) / s + 1` (it needs `l + 2p >= k`, and `p < l` with reflect padding), followed by 3 × 3
//! convolutions; on the way up each transposed convolution gives `(l' - 1)·s - 2p + k`, which must equal
//! the side the encoder had at that level, for the skip connection's concatenation.

use crate::engine::ops::conv::conv2d::PaddingMode;

/// The spatial layout of a U-Net of U-TAE's blocks: its number of levels (encoder widths), the strided
/// convolutions' (kernel, stride, padding) and the padding mode of its convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetGeometry {
    /// Levels, the input's included (`encoder_widths.len()`).
    pub levels: usize,
    /// `[str_conv_k, str_conv_s, str_conv_p]`.
    pub ksp: [usize; 3],
    /// The padding of the convolutions (the strided and the 3 × 3 ones).
    pub mode: PaddingMode,
}

impl UNetGeometry {
    /// The sides of the encoder's levels for an input side, or why the network cannot take it.
    pub fn sides(&self, side: usize) -> std::result::Result<Vec<usize>, String> {
        let [k, s, p] = self.ksp;
        let reflect = self.mode == PaddingMode::Reflect;
        let conv3 = |l: usize, level: usize| {
            if l == 0 || (reflect && l < 2) {
                Err(format!(
                    "its 3 × 3 convolutions with reflect padding need a side of at least 2, and level \
                     {level} has {l}"
                ))
            } else {
                Ok(())
            }
        };
        conv3(side, 0)?;
        let mut sides = vec![side];
        for level in 1..self.levels {
            let l = sides[level - 1];
            if reflect && p >= l {
                return Err(format!(
                    "the strided convolution's reflect padding {p} needs a side above {p}, and level {} has \
                     {l}",
                    level - 1
                ));
            }
            if l + 2 * p < k {
                return Err(format!(
                    "the strided convolution's kernel {k} is larger than level {}'s padded side {}",
                    level - 1,
                    l + 2 * p
                ));
            }
            let down = (l + 2 * p - k) / s + 1;
            conv3(down, level)?;
            sides.push(down);
        }
        for level in (1..self.levels).rev() {
            let up = ((sides[level] - 1) * s + k) as isize - 2 * p as isize;
            if up != sides[level - 1] as isize {
                let path: Vec<String> = sides.iter().map(usize::to_string).collect();
                return Err(format!(
                    "its strided convolutions (kernel {k}, stride {s}, padding {p}) take the side {}, and the \
                     transposed convolution back to level {} gives {up} where the encoder had {}",
                    path.join(" → "),
                    level - 1,
                    sides[level - 1]
                ));
            }
        }
        Ok(sides)
    }

    /// Whether the network takes H × W inputs; if not, a sentence naming `model`, what fails and the
    /// nearest sides that work.
    pub fn check(&self, model: &str, h: usize, w: usize) -> std::result::Result<(), String> {
        for (axis, side) in [("height", h), ("width", w)] {
            if let Err(why) = self.sides(side) {
                let works = |l: &usize| self.sides(*l).is_ok();
                let below = (1..side).rev().find(works);
                let above = (side + 1..=2 * side + 64).find(works);
                let near = match (below, above) {
                    (Some(b), Some(a)) => format!("; the nearest sides it takes are {b} and {a}"),
                    (None, Some(a)) => format!("; the smallest side it takes above is {a}"),
                    (Some(b), None) => format!("; the nearest side it takes is {b}"),
                    (None, None) => String::new(),
                };
                return Err(format!(
                    "{model} cannot take inputs of {h} × {w} pixels ({axis} {side}): {why}{near}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAPER: UNetGeometry = UNetGeometry {
        levels: 4,
        ksp: [4, 2, 1],
        mode: PaddingMode::Reflect,
    };

    #[test]
    fn the_default_layout_takes_multiples_of_eight() {
        for side in 1..=300 {
            assert_eq!(
                PAPER.sides(side).is_ok(),
                side % 8 == 0 && side >= 16,
                "side {side}"
            );
        }
        assert_eq!(PAPER.sides(128).unwrap(), vec![128, 64, 32, 16]);
        let e = PAPER.check("U-TAE", 30, 32).unwrap_err();
        assert!(
            e.contains("30 × 32") && e.contains("height 30") && e.contains("24 and 32"),
            "{e}"
        );
        // 8 × 8 reaches a 1 × 1 level, too small for reflect padding; zero padding takes it.
        assert!(PAPER
            .check("U-TAE", 8, 8)
            .unwrap_err()
            .contains("at least 2"));
        let zeros = UNetGeometry {
            mode: PaddingMode::Zeros,
            ..PAPER
        };
        assert_eq!(zeros.sides(8).unwrap(), vec![8, 4, 2, 1]);
        assert!(zeros
            .sides(12)
            .unwrap_err()
            .contains("gives 2 where the encoder had 3"));
    }

    #[test]
    fn other_strided_convolutions() {
        // Kernel 3, stride 1, padding 1 keeps every side; kernel 2, stride 2, padding 0 halves exactly.
        let keep = UNetGeometry {
            levels: 3,
            ksp: [3, 1, 1],
            mode: PaddingMode::Reflect,
        };
        assert!((2..50).all(|l| keep.sides(l).is_ok()));
        let halve = UNetGeometry {
            levels: 3,
            ksp: [2, 2, 0],
            mode: PaddingMode::Zeros,
        };
        assert_eq!(halve.sides(12).unwrap(), vec![12, 6, 3]);
        assert!(halve.sides(10).is_err());
        // A kernel larger than the padded side.
        let big = UNetGeometry {
            levels: 2,
            ksp: [9, 2, 1],
            mode: PaddingMode::Zeros,
        };
        assert!(big.sides(6).unwrap_err().contains("kernel 9"));
    }
}
