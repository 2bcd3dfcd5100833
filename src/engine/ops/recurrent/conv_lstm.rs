//! ConvLSTM over a whole sequence (spec §5.1), with backpropagation through time: one gate convolution
//! (conv2d) plus one fused elementwise launch per step, forward and backward.
//!
//! Math: x (B, T, C_x, H, W); h_0 = c_0 = 0; for s = 0 .. T-1 (padded frames included, as the original):
//! `gates = conv2d([x_s, h_s], W, b)` (weight (4·Hd, C_x + Hd, k, k), zero padding k/2), split into
//! `i, f, o, g` (blocks of Hd channels, in that order); `i, f, o = σ(·)`, `g = tanh(·)`;
//! `c_{s+1} = f ⊙ c_s + i ⊙ g`, `h_{s+1} = o ⊙ tanh(c_{s+1})`. The op returns **c_T** (B, Hd, H, W): every
//! model of the paper takes the last cell state as the embedding (spec §5.1).
//!
//! Derivatives (per step, going back from s = T-1; `conv_lstm_cell_backward.wgsl` has the cell's):
//! `dgates_s` from dh_{s+1}, dc_{s+1} through the cell; `d[x_s, h_s] = conv2d input gradient of dgates_s`
//! (its first C_x channels are dx_s, the rest dh_s); `dW += conv2d weight gradient(comb_s, dgates_s)`,
//! `db += Σ dgates_s`; `dc_s = dc_{s+1}' ⊙ f`.
//!
//! **One step = one convolution + one launch.** The fused cell (`conv_lstm_cell.wgsl`) writes c_{s+1} and
//! the next step's convolution input `comb_{s+1} = [x_{s+1}, h_{s+1}]` directly (no concatenation op); its
//! backward (`conv_lstm_cell_backward.wgsl`) reads dh_{s+1} straight out of the next step's input gradient and
//! copies that gradient's x part into dx. Per backward step: the fused launch, the conv2d input gradient and
//! the conv2d weight gradient (+ two small adds for dW, db).
//!
//! **Memory per step** (saved for backward, floats per pixel and sample): comb_s (C_x + Hd), the gate
//! pre-activations (4·Hd) and c_s (Hd): `C_x + 6·Hd`, so `4·B·H·W·(C_x + 6·Hd)` bytes a step — T = 60 steps of
//! the paper's RecUNet bottleneck (C_x 128, Hd 64, 16 × 16, B 4): 126 MB; of `--model convlstm` (C_x 10,
//! Hd 160, 128 × 128, B 4): 254 MB a step, 64 MB at B 1. (PyTorch's autograd keeps about twice that: the
//! concatenation, the gates before and after their activations, tanh(c) and h: 1,198 floats a pixel per date
//! at `--model convlstm`'s widths, measured, against our 970.) Under `--precision mixed` the three are kept
//! as halves (`ops::elementwise::half::KeptGpu`: half the bytes), each once the forward pass has read it for
//! the last time, and the backward pass reads the rounded values. In evaluation (no gradient recorded) only
//! the current step is kept.
//!
//! **Gradient checkpointing** (`engine::recompute::gradient_checkpointing`, `--gradient_checkpointing`): the
//! gate pre-activations are not kept; each backward step runs the gate convolution again on the kept comb_s
//! (the same kernel on the same values: the same bits in float32), so a step keeps `C_x + 2·Hd` floats a
//! pixel (330 at `--model convlstm`'s widths instead of 970) for one more convolution per step (the forward's
//! one of three). Under mixed the recomputation reads the kept, rounded comb_s.
//!
//! CPU reference: [`cpu_cell_forward`] / [`cpu_cell_backward`] (the fused cell) and [`cpu_forward`] /
//! [`cpu_backward`] (the sequence, with conv2d's reference).

use crate::engine::autograd::{is_grad_enabled, Backward};
use crate::engine::kernel::Kernel;
use crate::engine::ops::conv::conv2d::{self, Geom, PaddingMode};
use crate::engine::ops::elementwise::half::{cpu_keep, KeptGpu};
use crate::engine::real::Real;
use crate::engine::recompute::gradient_checkpointing;
use crate::engine::storage::{Device, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// Shader `Params` of conv_lstm_cell.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CellParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
    t: u32,
    t_next: u32,
    cxn: u32,
    init: u32,
}

/// Shader `Params` of conv_lstm_cell_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CellBackParams {
    batch: u32,
    hd: u32,
    p: u32,
    cx: u32,
    t: u32,
    t_dx: u32,
    has_dh: u32,
    _pad: u32,
}

/// `conv_lstm_cell.wgsl`: gates, c_prev, x → c, next = [x_{s+1}, h_{s+1}].
pub const CONV_LSTM_CELL: Kernel =
    Kernel::new::<CellParams>(&shaders::CONV_LSTM_CELL, "conv_lstm_cell", 6);
/// `conv_lstm_cell_backward.wgsl`: gates, c_prev, dnext, dc → dgates, dc_prev, dx (one frame).
pub const CONV_LSTM_CELL_BACKWARD: Kernel = Kernel::new::<CellBackParams>(
    &shaders::CONV_LSTM_CELL_BACKWARD,
    "conv_lstm_cell_backward",
    8,
);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[CONV_LSTM_CELL, CONV_LSTM_CELL_BACKWARD];

/// The sizes of a convolutional recurrence (ConvLSTM, ConvGRU): x (B, T, C_x, H, W), Hd hidden channels,
/// k × k gate convolutions with zero padding k / 2 (k odd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch B.
    pub b: usize,
    /// Steps T.
    pub t: usize,
    /// Input channels C_x.
    pub cx: usize,
    /// Hidden channels Hd.
    pub hd: usize,
    /// Height H.
    pub h: usize,
    /// Width W.
    pub w: usize,
    /// Kernel size k.
    pub k: usize,
}

impl Dims {
    /// Checks x (B, T, C_x, H, W) against a gate weight (`gates`·Hd, C_x + Hd, k, k); panics with
    /// `<op>: expected …, got …`.
    pub fn new(op: &str, x: &[usize], w: &[usize], gates: usize) -> Dims {
        assert!(
            x.len() == 5 && x[1] >= 1,
            "{op}: expected x (B, T, C_x, H, W) with T >= 1, got {x:?}"
        );
        let hd = w.first().copied().unwrap_or(0) / gates;
        assert!(
            w.len() == 4 && hd > 0 && w[0] == gates * hd && w[1] == x[2] + hd && w[2] == w[3] && w[2] % 2 == 1,
            "{op}: expected a weight ({gates}·Hd, C_x + Hd, k, k) with C_x = {} and k odd, got {w:?}",
            x[2]
        );
        Dims {
            b: x[0],
            t: x[1],
            cx: x[2],
            hd,
            h: x[3],
            w: x[4],
            k: w[2],
        }
    }

    /// Pixels H·W.
    pub fn p(&self) -> usize {
        self.h * self.w
    }

    /// The gate convolution: [x_s, h] (B, C_x + Hd, H, W) → `out` channels.
    pub fn geom(&self, out: usize) -> Geom {
        let c = self.cx + self.hd;
        Geom::new(
            &[self.b, c, self.h, self.w],
            &[out, c, self.k, self.k],
            1,
            self.k / 2,
            PaddingMode::Zeros,
        )
    }

    /// `[x_s, h]` (B, C_x + Hd, P) on the CPU: frame s of x (B, T, C_x, P), then h (B, Hd, P).
    pub fn comb<T: Real>(&self, x: &[T], s: usize, h: &[T]) -> Vec<T> {
        let (p, c) = (self.p(), self.cx + self.hd);
        let mut out = Vec::with_capacity(self.b * c * p);
        for b in 0..self.b {
            let f = (b * self.t + s) * self.cx * p;
            out.extend_from_slice(&x[f..f + self.cx * p]);
            out.extend_from_slice(&h[b * self.hd * p..(b + 1) * self.hd * p]);
        }
        out
    }

    /// Splits a gradient of `[x_s, h]` (B, C_x + Hd, P): adds its x part into frame s of dx (B, T, C_x, P)
    /// and returns its h part (B, Hd, P).
    pub fn split_comb<T: Real>(&self, d: &[T], s: usize, dx: &mut [T]) -> Vec<T> {
        let (p, c) = (self.p(), self.cx + self.hd);
        let mut dh = Vec::with_capacity(self.b * self.hd * p);
        for b in 0..self.b {
            for i in 0..self.cx * p {
                dx[(b * self.t + s) * self.cx * p + i] += d[b * c * p + i];
            }
            dh.extend_from_slice(&d[(b * c + self.cx) * p..(b + 1) * c * p]);
        }
        dh
    }
}

/// σ(v) = 1 / (1 + e^-v).
pub fn sigmoid<T: Real>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

// ---- CPU reference ----

/// The fused cell: gates (B, 4·Hd, P) pre-activations [i; f; o; g], c (B, Hd, P) → (h', c') (B, Hd, P).
pub fn cpu_cell_forward<T: Real>(gates: &[T], c: &[T], hd: usize, p: usize) -> (Vec<T>, Vec<T>) {
    let (mut h1, mut c1) = (vec![T::zero(); c.len()], vec![T::zero(); c.len()]);
    for (j, cv) in c.iter().enumerate() {
        let (b, kp) = (j / (hd * p), j % (hd * p));
        let gate = |q: usize| gates[(4 * b + q) * hd * p + kp];
        let (i, f, o, g) = (
            sigmoid(gate(0)),
            sigmoid(gate(1)),
            sigmoid(gate(2)),
            gate(3).tanh(),
        );
        c1[j] = f * *cv + i * g;
        h1[j] = o * c1[j].tanh();
    }
    (h1, c1)
}

/// The cell's gradient: from gates, c and the gradients dh', dc' of h', c' → (dgates (B, 4·Hd, P), dc).
pub fn cpu_cell_backward<T: Real>(
    gates: &[T],
    c: &[T],
    dh: &[T],
    dc: &[T],
    hd: usize,
    p: usize,
) -> (Vec<T>, Vec<T>) {
    let mut dgates = vec![T::zero(); gates.len()];
    let mut dc_prev = vec![T::zero(); c.len()];
    let one = T::one();
    for j in 0..c.len() {
        let (b, kp) = (j / (hd * p), j % (hd * p));
        let at = |q: usize| (4 * b + q) * hd * p + kp;
        let (i, f, o, g) = (
            sigmoid(gates[at(0)]),
            sigmoid(gates[at(1)]),
            sigmoid(gates[at(2)]),
            gates[at(3)].tanh(),
        );
        let tc = (f * c[j] + i * g).tanh();
        let dcn = dc[j] + dh[j] * o * (one - tc * tc);
        dgates[at(0)] = dcn * g * i * (one - i);
        dgates[at(1)] = dcn * c[j] * f * (one - f);
        dgates[at(2)] = dh[j] * tc * o * (one - o);
        dgates[at(3)] = dcn * i * (one - g * g);
        dc_prev[j] = dcn * f;
    }
    (dgates, dc_prev)
}

/// What the forward keeps for backpropagation through time: per step s, comb_s = [x_s, h_s], the gate
/// pre-activations (unless checkpointing), and c_s; then c_T.
pub struct Trace<S> {
    /// comb_0 .. comb_{T-1}, (B, C_x + Hd, P) each.
    pub combs: Vec<S>,
    /// Gate pre-activations of steps 0 .. T-1, (B, 4·Hd, P) each; `None` under gradient checkpointing (the
    /// backward pass convolves comb_s again).
    pub gates: Option<Vec<S>>,
    /// c_0 .. c_T, (B, Hd, P) each.
    pub cs: Vec<S>,
}

/// The sequence: x (B, T, C_x, H, W), weight (4·Hd, C_x + Hd, k, k), bias (4·Hd) → the trace (c_T last).
pub fn cpu_forward<T: Real>(x: &[T], w: &[T], bias: &[T], d: &Dims) -> Trace<Vec<T>> {
    let (g, n) = (d.geom(4 * d.hd), d.b * d.hd * d.p());
    let (mut tr, mut gates_all) = (
        Trace {
            combs: vec![],
            gates: None,
            cs: vec![vec![T::zero(); n]],
        },
        vec![],
    );
    let mut h = vec![T::zero(); n];
    for s in 0..d.t {
        let comb = d.comb(x, s, &h);
        let gates = conv2d::cpu_forward(&comb, w, Some(bias), &g);
        let (h1, c1) = cpu_cell_forward(&gates, &tr.cs[s], d.hd, d.p());
        h = h1;
        tr.combs.push(comb);
        gates_all.push(gates);
        tr.cs.push(c1);
    }
    tr.gates = Some(gates_all);
    tr
}

/// Step s's gate pre-activations: kept, or the gate convolution of comb_s again (gradient checkpointing).
fn cpu_gates<'a, T: Real>(
    tr: &'a Trace<Vec<T>>,
    w: &[T],
    bias: &[T],
    s: usize,
    d: &Dims,
) -> std::borrow::Cow<'a, [T]> {
    match &tr.gates {
        Some(gates) => std::borrow::Cow::Borrowed(&gates[s]),
        None => conv2d::cpu_forward(&tr.combs[s], w, Some(bias), &d.geom(4 * d.hd)).into(),
    }
}

/// Backpropagation through time from dc_T (B, Hd, H, W) → (dx, dW, db); the bias is read only to recompute
/// the gates (gradient checkpointing).
pub fn cpu_backward<T: Real>(
    tr: &Trace<Vec<T>>,
    w: &[T],
    bias: &[T],
    dc_t: &[T],
    d: &Dims,
) -> [Vec<T>; 3] {
    let g = d.geom(4 * d.hd);
    let mut dx = vec![T::zero(); d.b * d.t * d.cx * d.p()];
    let (mut dw, mut db) = (vec![T::zero(); w.len()], vec![T::zero(); 4 * d.hd]);
    let (mut dh, mut dc) = (vec![T::zero(); dc_t.len()], dc_t.to_vec());
    for s in (0..d.t).rev() {
        let gates = cpu_gates(tr, w, bias, s, d);
        let (dgates, dc_prev) = cpu_cell_backward(&gates, &tr.cs[s], &dh, &dc, d.hd, d.p());
        drop(gates);
        let (dcomb, dws, dbs) = conv2d::cpu_backward(&tr.combs[s], w, &dgates, &g);
        dw.iter_mut().zip(dws).for_each(|(a, v)| *a += v);
        db.iter_mut().zip(dbs).for_each(|(a, v)| *a += v);
        (dh, dc) = (d.split_comb(&dcomb, s, &mut dx), dc_prev);
    }
    [dx, dw, db]
}

// ---- GPU ----

mod gpu;
pub use gpu::{gpu_backward, gpu_forward};

// ---- Autograd ----

impl Tensor {
    /// ConvLSTM over x (B, T, C_x, H, W) with the gate convolution's weight (4·Hd, C_x + Hd, k, k) and bias
    /// (4·Hd), from h_0 = c_0 = 0 over all T steps → the last cell state c_T (B, Hd, H, W).
    pub fn conv_lstm(&self, weight: &Tensor, bias: &Tensor) -> Tensor {
        let op = "conv_lstm";
        let d = Dims::new(op, self.shape(), weight.shape(), 4);
        assert_eq!(
            bias.shape(),
            [4 * d.hd],
            "{op}: expected bias ({}), got {:?}",
            4 * d.hd,
            bias.shape()
        );
        let inputs = [self, weight, bias];
        let keep = is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let keep_gates = keep && !gradient_checkpointing();
        let (storage, trace) = match Tensor::same_device(op, &inputs) {
            Device::Cpu => {
                let mut tr = cpu_forward(
                    &self.cpu_data(op),
                    &weight.cpu_data(op),
                    &bias.cpu_data(op),
                    &d,
                );
                let c_t = tr.cs[d.t].clone();
                if !keep_gates {
                    tr.gates = None;
                }
                if keep {
                    // What the GPU keeps, as it keeps it (halves under --precision mixed).
                    for v in tr
                        .combs
                        .iter_mut()
                        .chain(tr.gates.iter_mut().flatten())
                        .chain(&mut tr.cs[..d.t])
                    {
                        cpu_keep(v);
                    }
                }
                (Tensor::cpu_storage(c_t), Saved::Cpu(tr))
            }
            Device::Gpu => {
                let (x, w, b) = (
                    self.gpu_storage(op),
                    weight.gpu_storage(op),
                    bias.gpu_storage(op),
                );
                let (tr, c_t) = gpu_forward(x, w, b, &d, keep, keep_gates);
                (Storage::Gpu(c_t), Saved::Gpu(tr))
            }
        };
        let back = ConvLstmBackward {
            w: weight.clone(),
            bias: bias.clone(),
            d,
            trace: if keep { Some(trace) } else { None },
        };
        Tensor::from_op(&[d.b, d.hd, d.h, d.w], storage, &inputs, back)
    }
}

enum Saved {
    Cpu(Trace<Vec<f32>>),
    Gpu(Trace<KeptGpu>),
}

struct ConvLstmBackward {
    w: Tensor,
    /// Read only to recompute the gates (gradient checkpointing).
    bias: Tensor,
    d: Dims,
    trace: Option<Saved>,
}

impl Backward for ConvLstmBackward {
    fn name(&self) -> &'static str {
        "conv_lstm"
    }
    fn backward(&self, dy: &Tensor) -> Vec<Option<Tensor>> {
        let d = &self.d;
        let grads = match self
            .trace
            .as_ref()
            .expect("conv_lstm: trace kept when recording")
        {
            Saved::Cpu(tr) => {
                let [dx, dw, db] = cpu_backward(
                    tr,
                    &self.w.cpu_data("conv_lstm"),
                    &self.bias.cpu_data("conv_lstm"),
                    &dy.cpu_data("conv_lstm"),
                    d,
                );
                [
                    dy.new_like(dx, &[d.b, d.t, d.cx, d.h, d.w]),
                    dy.new_like(dw, self.w.shape()),
                    dy.new_like(db, &[4 * d.hd]),
                ]
            }
            Saved::Gpu(tr) => gpu_backward(tr, &self.w, &self.bias, dy.gpu_storage("conv_lstm"), d),
        };
        grads.into_iter().map(Some).collect()
    }
}

// ---- Tests ----

#[cfg(test)]
mod tests;
