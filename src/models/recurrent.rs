//! The GRU competitor of the L-TAE paper (`GRU` of lightweight-temporal-attention-pytorch
//! `models/competings.py`, spec §4.5): a single-layer `torch.nn.GRU` over the sequence of PSE embeddings; the
//! classification feature is the output at the last date (the final hidden state).
//!
//! ```text
//! x (B, T, C)  [+ rows 1..T of a positional table, only when positions are given]
//! gi = x W_ihᵀ + b_ih                          (B, T, 3H), all dates at once, gates ordered (r, z, n)
//! h_0 = 0;  for t = 0..T:
//!     gh = h W_hhᵀ + b_hh                      (B, 3H)
//!     r  = σ(gi_r + gh_r)     z = σ(gi_z + gh_z)
//!     n  = tanh(gi_n + r ⊙ gh_n)               (b_hn inside the reset product, as PyTorch)
//!     h  = n + z ⊙ (h − n)                      (= (1 − z) ⊙ n + z ⊙ h, in PyTorch's operation order)
//! → h_T (B, H)
//! ```
//!
//! Parameters `gru_cell.weight_ih_l0` (3H, C), `weight_hh_l0` (3H, H), `bias_ih_l0`, `bias_hh_l0` (3H);
//! `weight_init` (spec §3.9) makes the matrices orthogonal and the biases N(0, 1). A step is two matmuls and
//! the fused cell (`Tensor::gru_cell`: the gates and the update in one launch, its own backward), so the
//! gradient is back-propagation through time by the engine's autograd.
//!
//! **QUIRK** (spec §4.5): with positions, the original adds rows 1..T of a table with one row per position, so
//! with the default bespoke positions (T rows) it indexes row T and crashes; only `--positions order` (no
//! positional encoding at all) runs. We keep the behaviour (a clear panic here; the command line refuses the
//! combination before training).

use crate::engine::rng::Rng;
use crate::engine::{Device, Tensor};
use crate::layers::positional_encoding::{pe_rows, sinusoid_table};
use crate::layers::{Ctx, Module};

/// Constructor arguments of the GRU competitor (defaults of `PseGru`).
#[derive(Debug, Clone, PartialEq)]
pub struct GruConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Hidden width H.
    pub hidden_dim: usize,
    /// Positions of an additive positional table (None: no positional encoding).
    pub positions: Option<Vec<i64>>,
}

impl Default for GruConfig {
    fn default() -> Self {
        GruConfig {
            in_channels: 128,
            hidden_dim: 128,
            positions: None,
        }
    }
}

/// Positional-encoding period of the competitors (fixed at 1000 in the original).
pub const COMPETITOR_PE_PERIOD: f64 = 1000.0;

/// `torch.nn.init.orthogonal_` of a (rows, cols) matrix: the Q factor of a Gaussian matrix (of its transpose
/// when rows < cols), with the signs of R's diagonal made positive. Modified Gram–Schmidt in f64.
pub fn orthogonal(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    let (m, n) = if rows < cols {
        (cols, rows)
    } else {
        (rows, cols)
    };
    // a: m × n, column j at a[j·m .. (j+1)·m] (column-major for the orthogonalisation).
    let mut a: Vec<f64> = (0..m * n).map(|_| rng.normal()).collect();
    for j in 0..n {
        for k in 0..j {
            let dot: f64 = (0..m).map(|i| a[k * m + i] * a[j * m + i]).sum();
            for i in 0..m {
                a[j * m + i] -= dot * a[k * m + i];
            }
        }
        // Gram–Schmidt leaves R's diagonal = this norm > 0, so no sign flip is needed.
        let norm = (0..m).map(|i| a[j * m + i].powi(2)).sum::<f64>().sqrt();
        for i in 0..m {
            a[j * m + i] /= norm;
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            // Tall case: out[r, c] = Q[r, c]; wide case: out = Qᵀ, out[r, c] = Q[c, r].
            out[r * cols + c] = if rows < cols {
                a[r * m + c]
            } else {
                a[c * m + r]
            } as f32;
        }
    }
    out
}

/// The GRU temporal encoder.
pub struct Gru {
    /// Configuration.
    pub config: GruConfig,
    /// W_ih (3H, C), gates (r, z, n).
    pub weight_ih: Tensor,
    /// W_hh (3H, H).
    pub weight_hh: Tensor,
    /// b_ih (3H).
    pub bias_ih: Tensor,
    /// b_hh (3H).
    pub bias_hh: Tensor,
    /// Positional table (positions, C), a buffer, when positions are given.
    pub position_enc: Option<Tensor>,
}

impl Gru {
    /// A freshly initialised GRU (orthogonal matrices, N(0, 1) biases).
    pub fn new(config: GruConfig, rng: &mut Rng, device: Device) -> Self {
        let (c, h) = (config.in_channels, config.hidden_dim);
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, device).requires_grad_();
        let normal = |rng: &mut Rng, n: usize| crate::layers::conv::normal(rng, n, 1.0);
        let position_enc = config.positions.as_ref().map(|p| {
            let pos: Vec<f64> = p.iter().map(|&v| v as f64).collect();
            let table = sinusoid_table(&pos, c, COMPETITOR_PE_PERIOD, 1);
            Tensor::from_vec(table, &[pos.len(), c], device)
        });
        Gru {
            weight_ih: t(orthogonal(rng, 3 * h, c), &[3 * h, c]),
            weight_hh: t(orthogonal(rng, 3 * h, h), &[3 * h, h]),
            bias_ih: t(normal(rng, 3 * h), &[3 * h]),
            bias_hh: t(normal(rng, 3 * h), &[3 * h]),
            position_enc,
            config,
        }
    }

    /// x (B, T, C) → h_T (B, H).
    pub fn forward(&self, x: &Tensor, _ctx: &Ctx) -> Tensor {
        let (c, h) = (self.config.in_channels, self.config.hidden_dim);
        let s = x.shape();
        assert!(
            s.len() == 3 && s[2] == c,
            "Gru: expected x (B, T, {c}), got {s:?}"
        );
        let (b, t) = (s[0], s[1]);
        let x = match &self.position_enc {
            // Rows 1..T whatever the positions (the original's indexing; see the QUIRK in the module doc).
            Some(table) => x + &pe_rows(table, false, t, "Gru (positions given)"),
            None => x.clone(),
        };
        let gi = (&x
            .reshape(&[b * t, c])
            .matmul(&self.weight_ih.transpose(0, 1))
            + &self.bias_ih)
            .reshape(&[b, t, 3 * h]);
        let w_hh = self.weight_hh.transpose(0, 1);
        let mut hid = Tensor::zeros(&[b, h], x.device());
        for step in 0..t {
            let gi_t = gi.narrow(1, step, 1).reshape(&[b, 3 * h]);
            let gh = &hid.matmul(&w_hh) + &self.bias_hh;
            // r, z, n and h' in one launch (engine::ops::recurrent::gru_cell), the same numbers as the
            // composed ops.
            hid = gi_t.gru_cell(&gh, &hid);
        }
        hid
    }
}

impl Module for Gru {
    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (
                format!("{prefix}gru_cell.weight_ih_l0"),
                self.weight_ih.clone(),
            ),
            (
                format!("{prefix}gru_cell.weight_hh_l0"),
                self.weight_hh.clone(),
            ),
            (format!("{prefix}gru_cell.bias_ih_l0"), self.bias_ih.clone()),
            (format!("{prefix}gru_cell.bias_hh_l0"), self.bias_hh.clone()),
        ]
    }
    fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.position_enc
            .iter()
            .map(|t| (format!("{prefix}position_enc.weight"), t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_rows_or_columns() {
        for (rows, cols) in [(6, 4), (3, 5)] {
            let q = orthogonal(&mut Rng::new(3), rows, cols);
            // The smaller side is orthonormal: QᵀQ = I (tall) or QQᵀ = I (wide).
            let (n, len) = (rows.min(cols), rows.max(cols));
            let at = |i: usize, k: usize| {
                if rows >= cols {
                    q[k * cols + i] as f64 // column i, entry k
                } else {
                    q[i * cols + k] as f64 // row i, entry k
                }
            };
            for i in 0..n {
                for j in 0..n {
                    let d: f64 = (0..len).map(|k| at(i, k) * at(j, k)).sum();
                    let e = if i == j { 1.0 } else { 0.0 };
                    assert!((d - e).abs() < 1e-6, "{rows}x{cols} ({i},{j}): {d}");
                }
            }
        }
    }

    #[test]
    fn one_step_by_hand() {
        // C = H = 1, T = 1, x = 2, all weights 0.5 and biases 0: h0 = 0 so gh = 0;
        // r = σ(1), z = σ(1), n = tanh(1 + r·0) = tanh 1, h = n + z (0 − n) = (1 − σ(1)) tanh 1.
        let g = Gru::new(
            GruConfig {
                in_channels: 1,
                hidden_dim: 1,
                positions: None,
            },
            &mut Rng::new(0),
            Device::Cpu,
        );
        g.weight_ih.storage().write(&[0.5; 3]);
        g.weight_hh.storage().write(&[0.5; 3]);
        g.bias_ih.storage().write(&[0.0; 3]);
        g.bias_hh.storage().write(&[0.0; 3]);
        let y = g
            .forward(
                &Tensor::from_vec(vec![2.0], &[1, 1, 1], Device::Cpu),
                &Ctx::eval(),
            )
            .item();
        let sig = 1.0 / (1.0 + (-1.0f64).exp());
        let e = (1.0 - sig) * 1f64.tanh();
        assert!((y as f64 - e).abs() < 1e-6, "{y} vs {e}");
    }

    #[test]
    #[should_panic(expected = "positional table")]
    fn bespoke_positions_crash_as_the_original() {
        // T = 3 dates with a 3-row table: rows 1..=3 are needed.
        let g = Gru::new(
            GruConfig {
                in_channels: 2,
                hidden_dim: 2,
                positions: Some(vec![0, 10, 20]),
            },
            &mut Rng::new(0),
            Device::Cpu,
        );
        g.forward(&Tensor::zeros(&[1, 3, 2], Device::Cpu), &Ctx::eval());
    }
}
