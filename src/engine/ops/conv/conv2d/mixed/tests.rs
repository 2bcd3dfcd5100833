//! Tests of mixed's convolutions: the unfolding, every product path against the CPU reference (forward,
//! both gradients, the transposed convolution), the rounded-operand semantics of the autograd ops, and the
//! chunking.

use super::super::PaddingMode;
use super::*;
use crate::engine::storage::{Device, Storage};
use crate::engine::tensor::Tensor;
use crate::engine::testing::{gpu_or_skip, random_vec};

fn random_f32(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f32> {
    random_vec(n, lo, hi, seed)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// `random_f32` rounded to halves (a mixed backward pass's operands).
fn rounded_random(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f32> {
    half::cpu_rounded(&random_f32(n, lo, hi, seed))
}

/// Every `got[j]` within the float32 sum-order bound of `want[j]`: `2 · terms · 2^-24` of the sum of
/// the terms' magnitudes `mass[j]`, plus `1e-6` of it.
fn within_sum_order(got: &[f32], want: &[f32], mass: &[f32], terms: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (a, e)) in got.iter().zip(want).enumerate() {
        let bound = 2.0 * terms as f32 * 2f32.powi(-24) * mass[j] + 1e-6 * e.abs();
        assert!(
            (a - e).abs() <= bound,
            "{what} [{j}]: {a} vs {e} (bound {bound})"
        );
    }
}

fn geoms() -> Vec<Geom> {
    vec![
        // U-TAE's 3 × 3 reflect layer (C_out a multiple of the tile), a ragged zero-padded one,
        // the 4 × 4 stride-2 down-sampling, and a 1 × 1.
        Geom::new(
            &[3, 16, 12, 12],
            &[64, 16, 3, 3],
            1,
            1,
            PaddingMode::Reflect,
        ),
        Geom::new(&[2, 5, 9, 7], &[33, 5, 3, 3], 1, 1, PaddingMode::Zeros),
        Geom::new(&[2, 8, 10, 10], &[40, 8, 4, 4], 2, 1, PaddingMode::Reflect),
        Geom::new(&[2, 24, 6, 5], &[36, 24, 1, 1], 1, 0, PaddingMode::Zeros),
        // Whole 64 × 64 blocks (C_out and P = 64 multiples of 64), which the cooperative path unfolds in its
        // tiles (half_conv_coop.wgsl): two blocks of rows and a K of 45 padded to 48, then the 4 × 4
        // stride-2 down-sampling.
        Geom::new(&[2, 5, 8, 8], &[128, 5, 3, 3], 1, 1, PaddingMode::Zeros),
        Geom::new(&[2, 8, 16, 16], &[64, 8, 4, 4], 2, 1, PaddingMode::Reflect),
        // K = 576 and C_out whole blocks: the weight gradient's cooperative kernel (half_conv_dw_coop.wgsl),
        // over a P of 25 padded to 32.
        Geom::new(&[2, 64, 5, 5], &[64, 64, 3, 3], 1, 1, PaddingMode::Reflect),
    ]
}

/// The unfolding is the convolution: y[n] = W (C_out, K) · B[n], on the rounded values (CPU only).
#[test]
fn the_unfolded_product_is_the_rounded_convolution() {
    for (i, g) in geoms().into_iter().enumerate() {
        let x = random_f32(g.n * g.ci * g.h * g.w, -2.0, 2.0, 70 + i as u64);
        let w = random_f32(g.co * g.ci * g.kh * g.kw, -0.5, 0.5, 80 + i as u64);
        let want = cpu_forward(&x, &w, None, &g);
        let (k, p, _, p_p) = product_dims(&g);
        let k_p = k.next_multiple_of(half_matmul::K_STEP);
        let mut rw = w.clone();
        half::cpu_round(&mut rw);
        for n in 0..g.n {
            let words = cpu_im2col(&x, &g, n, 1);
            let b = |r: usize, q: usize| {
                let word = words[(r * p_p + q) / 2];
                half::half_value((word >> (16 * (q % 2))) as u16)
            };
            assert!((k..k_p).all(|r| (0..p_p).all(|q| b(r, q) == 0.0)));
            for o in 0..g.co {
                for q in 0..p {
                    let s: f64 = (0..k).map(|r| rw[o * k + r] as f64 * b(r, q) as f64).sum();
                    let got = want[(n * g.co + o) * p + q] as f64;
                    assert!(
                        (s - got).abs() <= 1e-5 * (1.0 + s.abs()),
                        "{g:?}: {s} vs {got}"
                    );
                }
            }
        }
    }
}

/// Every path this adapter has gives the CPU reference's values up to the order of the float32 sums,
/// whole or one image per chunk, the unfolded words are half_im2col.wgsl's bit for bit, and unfolding inside
/// the tiles gives the unfolded copy's bits. On lavapipe the unfolded path runs on f16 tiles; the
/// cooperative one where it is turned on (Mesa 26's lavapipe in .ci/coop-lavapipe, a lent GPU).
#[test]
fn gpu_paths_match_the_cpu_reference() {
    let Some(gpu) = gpu_or_skip("mixed-precision convolutions") else {
        return;
    };
    let paths = half_matmul::paths_on(gpu);
    for (i, g) in geoms().into_iter().enumerate() {
        let x = random_f32(g.n * g.ci * g.h * g.w, -2.0, 2.0, 90 + i as u64);
        let w = random_f32(g.co * g.ci * g.kh * g.kw, -0.5, 0.5, 100 + i as u64);
        let b = random_f32(g.co, -1.0, 1.0, 110 + i as u64);
        let want = cpu_forward(&x, &w, Some(&b), &g);
        let tx = Tensor::from_vec(x.clone(), &[x.len()], Device::Gpu);
        let tw = Tensor::from_vec(w.clone(), &[w.len()], Device::Gpu);
        let tb = Tensor::from_vec(b.clone(), &[b.len()], Device::Gpu);
        let gx = tx.gpu_storage("test");
        // One image a chunk, then the whole batch in one chunk.
        let chunks = (0..g.n).map(|f| (f, 1)).chain([(0, g.n)]);
        for (frame0, frames) in chunks {
            let words = Storage::Gpu(gpu_im2col(gx, &g, frame0, frames));
            let (_, _, k_p, p_p) = product_dims(&g);
            let got: Vec<u32> = words
                .to_vec(frames * k_p * p_p / 2)
                .into_iter()
                .map(f32::to_bits)
                .collect();
            let want = cpu_im2col(&x, &g, frame0, frames);
            assert_eq!(got, want, "{g:?} images {frame0}..+{frames}");
        }
        let k = g.ci * g.kh * g.kw;
        let mass: Vec<f32> = cpu_forward(
            &x.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            &w.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            None,
            &g,
        );
        let (_, _, k_p, p_p) = product_dims(&g);
        for (&path, budget) in paths
            .iter()
            .flat_map(|p| [(p, UNFOLD_BYTES), (p, 2 * k_p * p_p)])
        {
            let run = |unfolding| {
                let y = forward_in_chunks(
                    path,
                    gx,
                    tw.gpu_storage("test"),
                    Some(tb.gpu_storage("test")),
                    &g,
                    budget,
                    unfolding,
                );
                Storage::Gpu(y).to_vec(want.len())
            };
            if let HalfPath::Cooperative { tile, .. } = path {
                let whole = g.co % 64 == 0 && (g.ho * g.wo) % 64 == 0;
                let slots = gpu.half.subgroup_min >= if tile == 16 { 8 } else { 4 };
                assert_eq!(
                    in_tiles_kernel(gpu, path, &g, Implicit::Forward).is_some(),
                    whole && slots,
                    "{g:?}"
                );
            }
            let copied = run(Unfolding::Copy);
            let what = format!("{path:?} {g:?} chunks of {budget} bytes");
            within_sum_order(&copied, &want, &mass, k, &what);
            // half_conv(_coop, _coop8).wgsl stage half_im2col's words in the products' tiles: the same sums, bit for bit.
            let in_tiles = run(Unfolding::InTiles);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&in_tiles),
                bits(&copied),
                "{what}: unfolded in the tiles"
            );
        }
    }
}

/// Recorded under mixed, conv2d and conv_transpose2d are exactly the plain ops on the rounded input and
/// weight, gradients included (straight through: the input's gradient is the rounded input's; the
/// backward passes read their incoming gradient rounded as a float16 gradient),
/// on the CPU and on the GPU's rounded path (the unfolded paths sum in another order: `gpu_paths_match_...`).
#[test]
fn mixed_is_the_plain_op_on_rounded_operands() {
    use crate::engine::precision::{with_precision, Precision};
    // 24 output channels (below MIN_CO): the GPU takes the rounded path, the same kernels as fp32.
    let co = 24;
    let mut devices = vec![Device::Cpu];
    if let Some(gpu) = gpu_or_skip("mixed convolutions' autograd") {
        let g = Geom::new(&[2, 6, 10, 10], &[co, 6, 3, 3], 1, 1, PaddingMode::Reflect);
        assert_eq!(path(gpu, &g), HalfPath::RoundedF32);
        devices.push(Device::Gpu);
    }
    for d in devices {
        // An activation (made by a recorded op) and a leaf weight, both with values halves cannot hold.
        let x0 = Tensor::rand_uniform(&[2, 6, 10, 10], -2.0, 2.0, 11, d).requires_grad_();
        let w = Tensor::rand_uniform(&[co, 6, 3, 3], -0.5, 0.5, 12, d).requires_grad_();
        let wt = Tensor::rand_uniform(&[co, 5, 4, 4], -0.5, 0.5, 13, d).requires_grad_();
        let b = Tensor::rand_uniform(&[co], -0.5, 0.5, 14, d).requires_grad_();
        let net = |x: &Tensor, w: &Tensor, wt: &Tensor| {
            let y = x.conv2d(w, Some(&b), 1, 1, PaddingMode::Reflect);
            y.conv_transpose2d(wt, None, 2, 1)
        };
        let grads = |ts: &[&Tensor]| -> Vec<Vec<f32>> {
            ts.iter()
                .map(|t| t.grad().expect("grad").to_vec())
                .collect()
        };
        let zero = || {
            for t in [&x0, &w, &wt, &b] {
                t.zero_grad();
            }
        };
        zero();
        let x = &x0 * 1.0;
        let z = with_precision(Precision::Mixed, || net(&x, &w, &wt));
        let loss = (&z * &z).sum_all();
        loss.backward();
        let mixed = (loss.item(), grads(&[&x0, &w, &wt, &b]));
        // Plain: conv2d on h(x), h(w); conv_transpose2d on h(y), h(wt) — y rounded by hand, its
        // gradient passed straight through.
        zero();
        let r = |t: &Tensor| t.to_half().to_f32();
        let (hx, hw, hwt) = (
            r(&(&x0 * 1.0)).requires_grad_(),
            r(&w).requires_grad_(),
            r(&wt).requires_grad_(),
        );
        let y = hx.conv2d(&hw, Some(&b), 1, 1, PaddingMode::Reflect);
        let hy = r(&y).requires_grad_();
        let z = hy.conv_transpose2d(&hwt, None, 2, 1);
        let loss = (&z * &z).sum_all();
        // The products' incoming gradients rounded as float16 gradients (d(Σ z²)/dz = 2z, exact).
        z.backward_with((&z * 2.0).rounded_gradient());
        y.backward_with(hy.grad().expect("grad").rounded_gradient());
        let plain = (loss.item(), grads(&[&hx, &hw, &hwt, &b]));
        assert_eq!(mixed, plain, "{d:?}");
        assert_ne!(r(&w).to_vec(), w.to_vec(), "nothing was rounded");
    }
}

/// The weight gradient on every path this adapter has, whole and one image per chunk, against the CPU
/// reference on the same rounded operands, within the order of its float32 sums (N · P terms); unfolded
/// inside the tiles (half_conv_dw(_coop, _coop8).wgsl), the unfolded copy's bits.
#[test]
fn gpu_weight_gradients_match_the_cpu_reference() {
    let Some(gpu) = gpu_or_skip("mixed-precision weight gradients") else {
        return;
    };
    let paths = half_matmul::paths_on(gpu);
    for (i, g) in geoms().into_iter().enumerate() {
        let x = rounded_random(g.n * g.ci * g.h * g.w, -2.0, 2.0, 120 + i as u64);
        let dy = rounded_random(g.n * g.co * g.ho * g.wo, -1.0, 1.0, 130 + i as u64);
        let w = vec![0.0; g.co * g.ci * g.kh * g.kw];
        let want = super::super::cpu_backward(&x, &w, &dy, &g).1;
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mass = super::super::cpu_backward(&abs(&x), &w, &abs(&dy), &g).1;
        let tx = Tensor::from_vec(x.clone(), &[x.len()], Device::Gpu);
        let tdy = Tensor::from_vec(dy.clone(), &[dy.len()], Device::Gpu);
        let (m_p, k_p, _) = half_matmul::padded(g.ci * g.kh * g.kw, g.ho * g.wo, g.co);
        for (&path, budget) in paths
            .iter()
            .flat_map(|p| [(p, UNFOLD_BYTES), (p, 2 * m_p * k_p)])
        {
            let run = |unfolding| {
                backward_weight_in_chunks(
                    path,
                    tx.gpu_storage("test"),
                    tdy.gpu_storage("test"),
                    &g,
                    budget,
                    unfolding,
                )
                .to_vec()
            };
            let copied = run(Unfolding::Copy);
            let what = format!("dw {path:?} {g:?} chunks of {budget} bytes");
            within_sum_order(&copied, &want, &mass, g.n * g.ho * g.wo, &what);
            // half_conv_dw(_coop).wgsl stage half_im2col's words in the products' tiles: the same bits.
            if let HalfPath::Cooperative { tile, .. } = path {
                let whole = (g.ci * g.kh * g.kw) % 64 == 0 && g.co % 64 == 0;
                let slots = gpu.half.subgroup_min >= if tile == 16 { 8 } else { 4 };
                assert_eq!(
                    in_tiles_kernel(gpu, path, &g, Implicit::WeightGradient).is_some(),
                    whole && slots,
                    "{g:?}"
                );
            }
            let in_tiles = run(Unfolding::InTiles);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&in_tiles),
                bits(&copied),
                "{what}: unfolded in the tiles"
            );
        }
    }
    // Below MIN_CO the float32 kernel runs (the same numbers as fp32's on these operands).
    let g = Geom::new(&[2, 3, 6, 6], &[4, 3, 3, 3], 1, 1, PaddingMode::Zeros);
    assert_eq!(path(gpu, &g), HalfPath::RoundedF32);
}

/// The input gradient on this adapter's path against the CPU reference on the same rounded operands,
/// within the order of its float32 sums (C_out · kH · kW terms, a reflected pixel's folded twice): each
/// stride phase as mixed's own forward of the flipped weight where the input has MIN_CO channels or
/// more and the phases are square (on lavapipe: unfolded onto the f16 tiles), else the float32 phases.
#[test]
fn gpu_input_gradients_match_the_cpu_reference() {
    if gpu_or_skip("mixed-precision input gradients").is_none() {
        return;
    }
    let mut gs = geoms();
    // More input channels than MIN_CO: the flipped weight's product is unfolded.
    gs.push(Geom::new(
        &[2, 40, 7, 6],
        &[16, 40, 3, 3],
        1,
        1,
        PaddingMode::Reflect,
    ));
    gs.push(Geom::new(
        &[1, 33, 5, 5],
        &[8, 33, 3, 3],
        1,
        1,
        PaddingMode::Zeros,
    ));
    // U-TAE's 4 × 4 stride-2 down-sampling with C_in ≥ MIN_CO: four unfolded 2 × 2 phases; with a row
    // and a column of the padded input no output reads (9 + 2 - 4 is odd), which stay zero.
    gs.push(Geom::new(
        &[2, 32, 8, 8],
        &[24, 32, 4, 4],
        2,
        1,
        PaddingMode::Reflect,
    ));
    gs.push(Geom::new(
        &[1, 36, 9, 7],
        &[8, 36, 4, 4],
        2,
        1,
        PaddingMode::Zeros,
    ));
    // 3 × 3 at stride 2: phases of 2 × 2, 2 × 1, 1 × 2 and 1 × 1 taps, the float32 phases.
    gs.push(Geom::new(
        &[1, 32, 7, 7],
        &[8, 32, 3, 3],
        2,
        1,
        PaddingMode::Zeros,
    ));
    for (i, g) in gs.into_iter().enumerate() {
        let w = rounded_random(g.co * g.ci * g.kh * g.kw, -0.5, 0.5, 140 + i as u64);
        let dy = rounded_random(g.n * g.co * g.ho * g.wo, -1.0, 1.0, 150 + i as u64);
        let x = vec![0.0; g.n * g.ci * g.h * g.w];
        let want = super::super::cpu_backward(&x, &w, &dy, &g).0;
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mass = super::super::cpu_backward(&x, &abs(&w), &abs(&dy), &g).0;
        let tw = Tensor::from_vec(w.clone(), &[w.len()], Device::Gpu);
        let tdy = Tensor::from_vec(dy.clone(), &[dy.len()], Device::Gpu);
        let got = Storage::Gpu(gpu_backward_input(
            tdy.gpu_storage("test"),
            tw.gpu_storage("test"),
            &g,
        ))
        .to_vec(want.len());
        within_sum_order(
            &got,
            &want,
            &mass,
            2 * g.co * g.kh * g.kw,
            &format!("dx {g:?}"),
        );
    }
}

/// The transposed convolution under mixed (U-TAE's up-sampling: 4 × 4, stride 2, padding 1, 48 output
/// channels; and U-Net 3D's frames: 3 × 3, stride 2, output padding 1) against the CPU reference on the
/// rounded operands, within the order of its float32 sums (C_in · kH · kW terms): the first on mixed's
/// unfolded phases where the adapter has them, the second on the float32 phases.
#[test]
fn gpu_transposed_convolutions_match_the_cpu_reference() {
    use crate::engine::ops::conv::conv_transpose2d;
    use crate::engine::precision::{with_precision, Precision};
    if gpu_or_skip("mixed-precision transposed convolutions").is_none() {
        return;
    }
    // (x shape, weight shape, stride, padding, output padding)
    let cases = [
        ([2, 40, 6, 5], [40, 48, 4, 4], 2, 1, 0),
        ([1, 16, 5, 5], [16, 36, 3, 3], 2, 1, 1),
    ];
    for (i, (xs, ws, s, p, op)) in cases.into_iter().enumerate() {
        let (xs, ws) = (&xs[..], &ws[..]);
        let g = conv_transpose2d::conv_geom_padded(xs, ws, s, p, op);
        // Square phases (the unfolded path where the adapter has one) for the first only.
        let phases = super::super::gpu::phases(&g);
        assert_eq!(phases.iter().all(|ph| ph.v.kh == ph.v.kw), i == 0);
        assert_eq!(phases.len(), 4);
        let x = random_f32(xs.iter().product(), -2.0, 2.0, 160 + i as u64);
        let w = random_f32(ws.iter().product(), -0.5, 0.5, 170 + i as u64);
        let (hx, hw) = (half::cpu_rounded(&x), half::cpu_rounded(&w));
        let want = conv_transpose2d::cpu_forward(&hx, &hw, &g);
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mass = conv_transpose2d::cpu_forward(&abs(&hx), &abs(&hw), &g);
        let tx = Tensor::from_vec(x, xs, Device::Gpu);
        let tw = Tensor::from_vec(w, ws, Device::Gpu);
        let y = with_precision(Precision::Mixed, || {
            tx.conv_transpose2d_padded(&tw, None, s, p, op)
        });
        let terms = ws[0] * ws[2] * ws[3];
        within_sum_order(&y.to_vec(), &want, &mass, terms, &format!("{xs:?} {ws:?}"));
    }
}

/// How many images a chunk takes.
#[test]
fn chunks_cover_the_batch() {
    let g = geoms()[0];
    let (_, _, k_p, p_p) = product_dims(&g);
    let one = 2 * k_p * p_p;
    assert_eq!(chunk_frames(UNFOLD_BYTES, usize::MAX, &g), Some(g.n));
    assert_eq!(chunk_frames(2 * one, usize::MAX, &g), Some(2));
    assert_eq!(chunk_frames(one, usize::MAX, &g), Some(1));
    assert_eq!(chunk_frames(one - 1, usize::MAX, &g), Some(1));
    // The unfolded image and the product (64 rows of float32) must fit a binding.
    assert_eq!(chunk_frames(UNFOLD_BYTES, 2 * one, &g), Some(2));
    assert_eq!(chunk_frames(UNFOLD_BYTES, one - 1, &g), None);
    assert_eq!(chunk_frames(UNFOLD_BYTES, 4 * 64 * p_p - 1, &g), None);
}

/// A phase's flipped, transposed weight: by hand on a 2 × 2 kernel, and conv_flip_weight.wgsl equal to
/// the CPU reference word for word on every phase of U-TAE's 4 × 4 stride-2 kernel, a 3 × 3 kernel at stride
/// 1, and U-Net 3D's 3 × 3 at stride 2 (phases of 2 × 2, 2 × 1, 1 × 2 and 1 × 1 taps).
#[test]
fn flipped_weights_match_the_cpu_reference() {
    use super::super::gpu::phases;
    // One output and one input channel, [[a, b], [c, d]] at stride 1: [[d, c], [b, a]].
    let g = Geom::new(&[1, 1, 4, 4], &[1, 1, 2, 2], 1, 0, PaddingMode::Zeros);
    let ph = &phases(&g)[0];
    assert_eq!(
        cpu_flip_weight(&[1.0, 2.0, 3.0, 4.0], &g, ph),
        [4.0, 3.0, 2.0, 1.0]
    );
    let Some(_) = gpu_or_skip("flipped weights") else {
        return;
    };
    let geoms = [
        Geom::new(&[1, 5, 8, 8], &[3, 5, 4, 4], 2, 1, PaddingMode::Zeros),
        Geom::new(&[1, 4, 6, 6], &[6, 4, 3, 3], 1, 1, PaddingMode::Reflect),
        Geom::new(&[1, 3, 7, 7], &[2, 3, 3, 3], 2, 1, PaddingMode::Zeros),
    ];
    for (i, g) in geoms.iter().enumerate() {
        let w = random_f32(g.co * g.ci * g.kh * g.kw, -1.0, 1.0, 180 + i as u64);
        let tw = Tensor::from_vec(w.clone(), &[w.len()], Device::Gpu);
        for ph in phases(g) {
            let want = cpu_flip_weight(&w, g, &ph);
            let got =
                Storage::Gpu(gpu_flip_weight(tw.gpu_storage("test"), g, &ph)).to_vec(want.len());
            assert_eq!(got, want, "{g:?} phase ({}, {})", ph.py, ph.px);
        }
    }
}

/// The device check behind the cooperative path's implicit convolutions (`in_tiles_self_test`: unfolding
/// inside the tiles against the unfolded copy, bit for bit) passes on every unfolded path this adapter has:
/// on lavapipe the f16 tiles, with cooperative matrices on those too.
#[test]
fn the_in_tiles_self_test_passes_on_every_unfolded_path() {
    let Some(gpu) = gpu_or_skip("the implicit convolutions' self-test") else {
        return;
    };
    for path in half_matmul::paths_on(gpu) {
        if path != HalfPath::RoundedF32 {
            assert!(in_tiles_self_test(path), "{path:?}");
        }
    }
}
