//! The GPU half of the conv_gru op: the forward loop (one launch of the fused cell per convolution) and
//! backpropagation through time, on conv2d's kernels and this op's fused ones.

use super::{
    GatesBackParams, GatesParams, Inner, Trace, UpdateBackParams, UpdateParams, Weights,
    CONV_GRU_GATES, CONV_GRU_GATES_BACKWARD, CONV_GRU_UPDATE, CONV_GRU_UPDATE_BACKWARD,
};
use crate::engine::kernel::Grid;
use crate::engine::ops::conv::conv2d;
use crate::engine::ops::elementwise::half::{F32View, KeptGpu};
use crate::engine::ops::recurrent::conv_lstm::Dims;
use crate::engine::storage::{GpuStorage, Storage};
use crate::engine::tensor::Tensor;

/// zr, [x_s, r ⊙ h_s] and a of a step from [x_s, h_s]: in_conv, `conv_gru_gates.wgsl`, out_conv.
fn gpu_step(
    comb: &GpuStorage,
    wt: &Weights<GpuStorage>,
    d: &Dims,
) -> (GpuStorage, GpuStorage, GpuStorage) {
    let (gpu, p, u) = (comb.gpu, d.p(), |v: usize| v as u32);
    let gp = GatesParams {
        batch: u(d.b),
        hd: u(d.hd),
        p: u(p),
        cx: u(d.cx),
    };
    let zr = conv2d::gpu_forward(comb, wt.w_in, Some(wt.b_in), &d.geom(2 * d.hd));
    let n = d.b * (d.cx + d.hd) * p;
    let comb2 = GpuStorage::alloc(gpu, n, "conv_gru_gates");
    let bufs = [zr.buffer(), comb.buffer(), comb2.buffer()];
    CONV_GRU_GATES.dispatch(gpu, &bufs, &gp, Grid::threads(n));
    let a = conv2d::gpu_forward(&comb2, wt.w_out, Some(wt.b_out), &d.geom(d.hd));
    (zr, comb2, a)
}

/// The forward on the GPU: the trace (empty when `keep` is false: evaluation; only [x_s, h_s] unless
/// `keep_inner`: gradient checkpointing) and h_T. Each buffer joins the trace once the forward has read it
/// for the last time, as halves under `--precision mixed` ([`KeptGpu::keep`]).
pub fn gpu_forward(
    x: &GpuStorage,
    wt: &Weights<GpuStorage>,
    d: &Dims,
    keep: bool,
    keep_inner: bool,
) -> (Trace<KeptGpu>, GpuStorage) {
    let (gpu, p) = (x.gpu, d.p());
    let u = |v: usize| v as u32;
    let mut up = UpdateParams {
        batch: u(d.b),
        hd: u(d.hd),
        p: u(p),
        cx: u(d.cx),
        t: u(d.t),
        t_next: 0,
        cxn: u(d.cx),
        init: 1,
    };
    let update = |zr: &GpuStorage, a: &GpuStorage, comb: &GpuStorage, up: &UpdateParams| {
        let n = d.b * (up.cxn as usize + d.hd) * p;
        let next = GpuStorage::alloc(gpu, n, "conv_gru_update");
        let bufs = [
            zr.buffer(),
            a.buffer(),
            comb.buffer(),
            x.buffer(),
            next.buffer(),
        ];
        CONV_GRU_UPDATE.dispatch(gpu, &bufs, up, Grid::threads(n));
        next
    };
    let mut comb = update(x, x, x, &up); // [x_0, 0]; zr, a, comb not read
    up.init = 0;
    let (mut combs, mut zrs, mut comb2s, mut acts) = (vec![], vec![], vec![], vec![]);
    for s in 0..d.t {
        let (zr, comb2, a) = gpu_step(&comb, wt, d);
        (up.t_next, up.cxn) = (u(s + 1), if s + 1 < d.t { u(d.cx) } else { 0 });
        let next = update(&zr, &a, &comb, &up);
        let (nc, hp) = (d.b * (d.cx + d.hd) * p, d.b * d.hd * p);
        if keep {
            combs.push(KeptGpu::keep(std::mem::replace(&mut comb, next), nc));
        } else {
            comb = next;
        }
        if keep_inner {
            zrs.push(KeptGpu::keep(zr, 2 * hp));
            comb2s.push(KeptGpu::keep(comb2, nc));
            acts.push(KeptGpu::keep(a, hp));
        }
    }
    let inner = keep_inner.then_some(Inner { zrs, comb2s, acts });
    (Trace { combs, inner }, comb)
}

/// Where a backward step's [x_s, r ⊙ h_s] comes from: the trace, or made again with zr (checkpointing).
enum Comb2<'a> {
    Kept(&'a KeptGpu),
    Made(GpuStorage),
}

/// Backpropagation through time on the GPU from dh_T → [dx, dW_in, db_in, dW_out, db_out]; `weights` are
/// in_conv's weight and bias, out_conv's (the biases read only to recompute: gradient checkpointing).
pub fn gpu_backward(
    tr: &Trace<KeptGpu>,
    weights: &[Tensor; 4],
    dh_t: &GpuStorage,
    d: &Dims,
) -> [Tensor; 5] {
    let (gpu, gi, go, p) = (dh_t.gpu, d.geom(2 * d.hd), d.geom(d.hd), d.p());
    let op = "conv_gru_backward";
    let [w_in, _, w_out, _] = weights;
    let [gw_in, gb_in, gw_out, gb_out] = weights.each_ref().map(|t| t.gpu_storage(op));
    let wt = Weights {
        w_in: gw_in,
        b_in: gb_in,
        w_out: gw_out,
        b_out: gb_out,
    };
    let u = |v: usize| v as u32;
    let dx = GpuStorage::alloc(gpu, d.b * d.t * d.cx * p, op);
    let mut sums: [Option<Tensor>; 4] = [None, None, None, None];
    let mut acc =
        |k: usize, t: Tensor| sums[k] = Some(sums[k].take().map_or(t.clone(), |a| &a + &t));
    let (mut d1, mut d2): (Option<GpuStorage>, Option<GpuStorage>) = (None, None);
    for s in (0..d.t).rev() {
        let c1 = if d1.is_some() { d.cx } else { 0 };
        let d1b = d1.as_ref().unwrap_or(dh_t);
        let d2b = d2.as_ref().unwrap_or(d1b);
        let da = GpuStorage::alloc(gpu, d.b * d.hd * p, op);
        let dzr = GpuStorage::alloc(gpu, d.b * 2 * d.hd * p, op);
        let prm = UpdateBackParams {
            batch: u(d.b),
            hd: u(d.hd),
            p: u(p),
            cx: u(d.cx),
            t: u(d.t),
            t_dx: u(s + 1),
            c1: u(c1),
            has_d2: d2.is_some() as u32,
            dx_only: 0,
            _pad: [0; 3],
        };
        // Each kept buffer is read once: zr and comb by both fused launches, unpacked once for both; under
        // gradient checkpointing zr, comb2 and a are made again from comb, as the forward made them.
        let comb_s = tr.combs[s].get();
        let (zr_s, act_s, comb2_src) = match &tr.inner {
            Some(k) => (k.zrs[s].get(), k.acts[s].get(), Comb2::Kept(&k.comb2s[s])),
            None => {
                let (zr, comb2, a) = gpu_step(&comb_s, &wt, d);
                (
                    F32View::Unpacked(zr),
                    F32View::Unpacked(a),
                    Comb2::Made(comb2),
                )
            }
        };
        let bufs = [
            zr_s.buffer(),
            act_s.buffer(),
            comb_s.buffer(),
            d1b.buffer(),
            d2b.buffer(),
            da.buffer(),
            dzr.buffer(),
            dx.buffer(),
        ];
        CONV_GRU_UPDATE_BACKWARD.dispatch(gpu, &bufs, &prm, Grid::threads(d.b * (c1 + d.hd) * p));
        drop(act_s);
        let dcomb2 = conv2d::gpu_backward_input(&da, gw_out, &go);
        // [x_s, r ⊙ h_s]: made above, or unpacked now, for out_conv's weight gradient only.
        let comb2_s = match comb2_src {
            Comb2::Kept(k) => k.get(),
            Comb2::Made(c) => F32View::Unpacked(c),
        };
        acc(
            2,
            Tensor::from_storage(
                w_out.shape(),
                Storage::Gpu(conv2d::gpu_backward_weight(&comb2_s, &da, &go)),
            ),
        );
        drop(comb2_s);
        let n = d.b * (d.cx + d.hd) * p;
        let dhx = GpuStorage::alloc(gpu, n, op);
        let gprm = GatesBackParams {
            batch: u(d.b),
            hd: u(d.hd),
            p: u(p),
            cx: u(d.cx),
            c1: u(c1),
            has_d2: prm.has_d2,
            _pad: [0; 2],
        };
        let bufs = [
            zr_s.buffer(),
            comb_s.buffer(),
            dcomb2.buffer(),
            d1b.buffer(),
            d2b.buffer(),
            dzr.buffer(),
            dhx.buffer(),
        ];
        CONV_GRU_GATES_BACKWARD.dispatch(gpu, &bufs, &gprm, Grid::threads(n));
        let dcomb = conv2d::gpu_backward_input(&dzr, gw_in, &gi);
        acc(
            0,
            Tensor::from_storage(
                w_in.shape(),
                Storage::Gpu(conv2d::gpu_backward_weight(&comb_s, &dzr, &gi)),
            ),
        );
        acc(
            3,
            Tensor::from_storage(&[d.b, d.hd, p], Storage::Gpu(da)).sum(&[0, 2], false),
        );
        acc(
            1,
            Tensor::from_storage(&[d.b, 2 * d.hd, p], Storage::Gpu(dzr)).sum(&[0, 2], false),
        );
        (d1, d2) = (Some(dhx), Some(dcomb));
    }
    // Frame 0 of dx: the x parts of step 0's two partial input gradients (dx_only; da, dzr not written).
    let (d1, d2) = (d1.expect("T >= 1"), d2.expect("T >= 1"));
    let (sa, sb) = (GpuStorage::alloc(gpu, 1, op), GpuStorage::alloc(gpu, 1, op));
    let prm = UpdateBackParams {
        batch: u(d.b),
        hd: u(d.hd),
        p: u(p),
        cx: u(d.cx),
        t: u(d.t),
        t_dx: 0,
        c1: u(d.cx),
        has_d2: 1,
        dx_only: 1,
        _pad: [0; 3],
    };
    let bufs = [
        d1.buffer(),
        d1.buffer(),
        d1.buffer(),
        d1.buffer(),
        d2.buffer(),
        sa.buffer(),
        sb.buffer(),
        dx.buffer(),
    ];
    CONV_GRU_UPDATE_BACKWARD.dispatch(gpu, &bufs, &prm, Grid::threads(d.b * (d.cx + d.hd) * p));
    let [dwi, dbi, dwo, dbo] = sums.map(|t| t.expect("T >= 1"));
    [
        Tensor::from_storage(&[d.b, d.t, d.cx, d.h, d.w], Storage::Gpu(dx)),
        dwi,
        dbi,
        dwo,
        dbo,
    ]
}
