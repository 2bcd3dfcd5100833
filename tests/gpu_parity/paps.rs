//! Rows of the PaPs ops (max pooling, segment argmax, pixel gather, ragged crops, loss terms): odd sizes,
//! repeated picks and overlapping crops; `check` runs each again with the dispatch fold forced.

use super::{check, constant, input, Gen, In};
use sitsgpu::engine::kernel::with_max_workgroups;
use sitsgpu::engine::ops::paps::crop::Crop;
use sitsgpu::engine::ops::paps::paps_loss::Term;
use sitsgpu::engine::ops::paps::segment_argmax::Segments;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::testing::{gpu_or_skip, Tol};
use sitsgpu::{Device, Tensor};

#[test]
fn max_pool2d_same() {
    for (s, k) in [([2, 3, 7, 9], 3), ([1, 2, 13, 5], 5), ([3, 1, 1, 4], 3)] {
        check(
            &format!("max_pool2d {s:?} k{k}"),
            &[input(&s, -1.0, 1.0)],
            Tol::KERNEL,
            |x| x[0].max_pool2d_same(k),
        );
    }
    // Plateaus (values from {0, 1, 2}): ties go to the first maximum on both devices.
    check(
        "max_pool2d plateaus",
        &[In {
            shape: vec![2, 1, 9, 11],
            gen: Gen::Int(3),
            grad: true,
        }],
        Tol::KERNEL,
        |x| x[0].max_pool2d_same(3),
    );
}

#[test]
fn segment_argmax() {
    if gpu_or_skip("segment_argmax").is_none() {
        return;
    }
    // 2 samples × 23 × 17 pixels in 37 zones, values with many ties (16 levels), one zone of 300 pixels
    // (more than the workgroup), zones given as unsorted members.
    let n = 2 * 23 * 17;
    let mut rng = Rng::new(5);
    let keys: Vec<u32> = (0..n)
        .map(|i| if i % 3 == 0 { 99 } else { rng.below(36) as u32 })
        .collect();
    let values: Vec<f32> = (0..n).map(|_| rng.below(16) as f32 / 16.0).collect();
    let (mut seg, _) = Segments::group_by(&keys);
    seg.members.reverse();
    let mut off: Vec<u32> = seg.offsets.iter().map(|&o| n as u32 - o).collect();
    off.reverse();
    seg.offsets = off;
    let want = Tensor::from_vec(values.clone(), &[n], Device::Cpu).segment_argmax(&seg);
    let x = Tensor::from_vec(values, &[n], Device::Gpu);
    assert_eq!(x.segment_argmax(&seg), want, "segment_argmax");
    let folded = with_max_workgroups(3, || x.segment_argmax(&seg));
    assert_eq!(folded, want, "segment_argmax [forced 2-D fold]");
}

#[test]
fn gather_pixels() {
    let pixels = [
        (1, 6, 8),
        (0, 0, 0),
        (1, 6, 8),
        (0, 4, 3),
        (1, 0, 7),
        (0, 0, 0),
    ];
    check(
        "gather_pixels",
        &[input(&[2, 5, 7, 9], -1.0, 1.0)],
        Tol::KERNEL,
        |x| x[0].gather_pixels(&pixels),
    );
}

fn crop(src: usize, y0: usize, x0: usize, h: usize, w: usize, fh: usize, fw: usize) -> Crop {
    Crop {
        src,
        y0,
        x0,
        h,
        w,
        full_h: fh,
        full_w: fw,
    }
}

#[test]
fn crop_ragged_and_resize_crop() {
    let crops: Vec<Crop> = vec![
        crop(2, 3, 4, 8, 9, 0, 0),
        crop(0, 0, 0, 11, 13, 0, 0),
        crop(2, 5, 5, 1, 1, 0, 0),
        crop(1, 10, 12, 1, 1, 0, 0),
        crop(2, 0, 6, 11, 7, 0, 0),
    ];
    check(
        "crop_ragged",
        &[input(&[3, 11, 13], -1.0, 1.0)],
        Tol::KERNEL,
        |x| x[0].crop_ragged(&crops),
    );
    // Up (5 → 37 × 29, cropped), down (5 → 3 × 2), 1 × 1, identity, one tall and thin.
    let resized = vec![
        crop(0, 4, 2, 30, 27, 37, 29),
        crop(1, 0, 0, 3, 2, 3, 2),
        crop(2, 0, 0, 1, 1, 1, 1),
        crop(3, 1, 0, 4, 5, 5, 5),
        crop(4, 0, 0, 21, 1, 21, 2),
    ];
    check(
        "resize_crop",
        &[input(&[5, 5, 5], -1.0, 1.0)],
        Tol::REDUCE,
        |x| x[0].resize_crop(&resized),
    );
}

#[test]
fn paps_loss_terms() {
    let n = 777;
    // Center: every 5th pixel a positive (a = −1), the others weights in [0, 1).
    check(
        "center_loss_terms",
        &[
            input(&[n], 0.02, 0.98),
            constant(&[n], Gen::Uniform(0.0, 1.0)),
        ],
        Tol::KERNEL,
        |x| {
            let a: Vec<f32> = x[1]
                .to_vec()
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 5 == 0 { -1.0 } else { v })
                .collect();
            let a = Tensor::from_vec(a, &[n], x[0].device());
            x[0].paps_loss_terms(Term::Center, &a, 1e-8)
        },
    );
    check(
        "size_loss_terms",
        &[input(&[n], 0.5, 9.0), constant(&[n], Gen::Int(9))],
        Tol::KERNEL,
        |x| x[0].paps_loss_terms(Term::Size, &x[1], 1e-8),
    );
    check(
        "shape_loss_terms",
        &[input(&[n], 0.0, 1.0), constant(&[n], Gen::Int(3))],
        Tol::KERNEL,
        |x| {
            // a ∈ {−1, 0, 1}.
            let a = x[1].add_scalar(-1.0);
            x[0].paps_loss_terms(Term::Shape, &a, 1e-8)
        },
    );
}
