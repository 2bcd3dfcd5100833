//! The GPU half of the conv_lstm op: the forward loop (one launch of the fused cell per convolution) and
//! backpropagation through time, on conv2d's kernels and this op's fused ones.

use super::{CellBackParams, CellParams, Dims, Trace, CONV_LSTM_CELL, CONV_LSTM_CELL_BACKWARD};
use crate::engine::kernel::Grid;
use crate::engine::ops::conv::conv2d;
use crate::engine::ops::elementwise::half::{F32View, KeptGpu};
use crate::engine::ops::movement::copy_strided::{gpu_copy_strided, StridedCopy};
use crate::engine::storage::{GpuStorage, Storage};
use crate::engine::tensor::Tensor;

/// The forward on the GPU: the trace (empty when `keep` is false: evaluation; without the gates unless
/// `keep_gates`: gradient checkpointing) and c_T. Each buffer joins the trace once the forward has read it
/// for the last time, as halves under `--precision mixed` ([`KeptGpu::keep`]).
pub fn gpu_forward(
    x: &GpuStorage,
    w: &GpuStorage,
    bias: &GpuStorage,
    d: &Dims,
    keep: bool,
    keep_gates: bool,
) -> (Trace<KeptGpu>, GpuStorage) {
    let (gpu, g, p) = (x.gpu, d.geom(4 * d.hd), d.p());
    let n_c = d.b * d.hd * p;
    let mut prm = CellParams {
        batch: d.b as u32,
        hd: d.hd as u32,
        p: p as u32,
        cx: d.cx as u32,
        t: d.t as u32,
        t_next: 0,
        cxn: d.cx as u32,
        init: 1,
    };
    let launch = |gates: &GpuStorage, c_prev: &GpuStorage, prm: &CellParams| {
        let c = GpuStorage::alloc(gpu, n_c, "conv_lstm_cell");
        let next = GpuStorage::alloc(gpu, next_len(prm, d), "conv_lstm_cell");
        let bufs = [
            gates.buffer(),
            c_prev.buffer(),
            x.buffer(),
            c.buffer(),
            next.buffer(),
        ];
        CONV_LSTM_CELL.dispatch(gpu, &bufs, prm, Grid::threads(next_len(prm, d)));
        (c, next)
    };
    // Before step 0: comb_0 = [x_0, 0], c_0 = 0 (gates and c_prev are placeholders, not read).
    let (mut c, mut comb) = launch(x, x, &prm);
    let mut tr = Trace {
        combs: vec![],
        gates: keep_gates.then(Vec::new),
        cs: vec![],
    };
    prm.init = 0;
    for s in 0..d.t {
        let gates = conv2d::gpu_forward(&comb, w, Some(bias), &g);
        (prm.t_next, prm.cxn) = ((s + 1) as u32, if s + 1 < d.t { d.cx as u32 } else { 0 });
        let (c_next, next) = launch(&gates, &c, &prm);
        let (comb_s, c_s) = (
            std::mem::replace(&mut comb, next),
            std::mem::replace(&mut c, c_next),
        );
        if keep {
            tr.combs
                .push(KeptGpu::keep(comb_s, d.b * (d.cx + d.hd) * p));
            if let Some(kept) = tr.gates.as_mut() {
                kept.push(KeptGpu::keep(gates, d.b * 4 * d.hd * p));
            }
            tr.cs.push(KeptGpu::keep(c_s, n_c));
        }
    }
    (tr, c)
}

fn next_len(prm: &CellParams, d: &Dims) -> usize {
    d.b * (prm.cxn as usize + d.hd) * d.p()
}

/// Backpropagation through time on the GPU from dc_T → (dx, dW, db) as tensors; the bias is read only to
/// recompute the gates (gradient checkpointing: the forward's kernel on the kept comb_s).
pub fn gpu_backward(
    tr: &Trace<KeptGpu>,
    w: &Tensor,
    bias: &Tensor,
    dc_t: &GpuStorage,
    d: &Dims,
) -> [Tensor; 3] {
    let (gpu, g, p) = (dc_t.gpu, d.geom(4 * d.hd), d.p());
    let gw = w.gpu_storage("conv_lstm_backward");
    let dx = GpuStorage::alloc(gpu, d.b * d.t * d.cx * p, "conv_lstm_backward");
    let (mut dw, mut db): (Option<Tensor>, Option<Tensor>) = (None, None);
    let mut dnext: Option<GpuStorage> = None;
    let mut dc: Option<GpuStorage> = None;
    for s in (0..d.t).rev() {
        let dgates = GpuStorage::alloc(gpu, d.b * 4 * d.hd * p, "conv_lstm_cell_backward");
        let dc_prev = GpuStorage::alloc(gpu, d.b * d.hd * p, "conv_lstm_cell_backward");
        let dc_in = dc.as_ref().unwrap_or(dc_t);
        let prm = CellBackParams {
            batch: d.b as u32,
            hd: d.hd as u32,
            p: p as u32,
            cx: d.cx as u32,
            t: d.t as u32,
            t_dx: (s + 1) as u32,
            has_dh: dnext.is_some() as u32,
            _pad: 0,
        };
        let dn = dnext.as_ref().unwrap_or(dc_in);
        let (gates, c_prev) = (
            match &tr.gates {
                Some(kept) => kept[s].get(),
                None => F32View::Unpacked(conv2d::gpu_forward(
                    &tr.combs[s].get(),
                    gw,
                    Some(bias.gpu_storage("conv_lstm_backward")),
                    &g,
                )),
            },
            tr.cs[s].get(),
        );
        let bufs = [
            gates.buffer(),
            c_prev.buffer(),
            dn.buffer(),
            dc_in.buffer(),
            dgates.buffer(),
            dc_prev.buffer(),
            dx.buffer(),
        ];
        let n = d.b * (d.cx + d.hd) * p;
        CONV_LSTM_CELL_BACKWARD.dispatch(gpu, &bufs, &prm, Grid::threads(n));
        drop((gates, c_prev));
        let dws = Tensor::from_storage(
            w.shape(),
            Storage::Gpu(conv2d::gpu_backward_weight(&tr.combs[s].get(), &dgates, &g)),
        );
        dnext = Some(conv2d::gpu_backward_input(&dgates, gw, &g));
        let dbs =
            Tensor::from_storage(&[d.b, 4 * d.hd, p], Storage::Gpu(dgates)).sum(&[0, 2], false);
        dw = Some(dw.map_or(dws.clone(), |a| &a + &dws));
        db = Some(db.map_or(dbs.clone(), |a| &a + &dbs));
        dc = Some(dc_prev);
    }
    // Frame 0 of dx: the x part of step 0's input gradient.
    let c = d.cx + d.hd;
    let copy = StridedCopy {
        shape: vec![d.b, d.cx * p],
        src_offset: 0,
        src_strides: vec![c * p, 1],
        dst_offset: 0,
        dst_strides: vec![d.t * d.cx * p, 1],
    };
    gpu_copy_strided(dnext.as_ref().expect("T >= 1"), &dx, &copy);
    let dx = Tensor::from_storage(&[d.b, d.t, d.cx, d.h, d.w], Storage::Gpu(dx));
    [dx, dw.expect("T >= 1"), db.expect("T >= 1")]
}
