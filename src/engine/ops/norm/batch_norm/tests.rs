//! Tests of batch normalisation (`super`): exact values, the running update, f64 gradient checks, the
//! fused ReLU against the two ops.

use super::*;
use crate::engine::testing::{gradcheck, random_vec};

#[test]
fn exact_values_and_running_update() {
    // x (4, 1) = (1, 2, 3, 6): μ = 3, ss = 4 + 1 + 0 + 9 = 14, biased σ² = 14/4 = 3.5, unbiased 14/3.
    // eps = 0.5: rstd = 1/√4 = 1/2, y = (x − 3)/2 = (−1, −1/2, 0, 3/2).
    // Running stats from (0, 1), momentum 0.1: mean = 0.1·3 = 0.3, var = 0.9·1 + 0.1·14/3 = 0.9 + 7/15 = 41/30.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[4, 1], Device::Cpu);
    let mut st = BatchNormState::new(1, Device::Cpu);
    let y = st.forward(&x, None, None, true, 0.1, 0.5);
    assert_eq!(y.to_vec(), vec![-1.0, -0.5, 0.0, 1.5]);
    assert!((st.running_mean.item() - 0.3).abs() < 1e-7);
    assert!(
        (st.running_var.item() - 41.0 / 30.0).abs() < 1e-6,
        "{}",
        st.running_var.item()
    );
    assert_eq!(st.num_batches_tracked, 1);
    // Eval with running (0.3, 41/30), eps = 0.5, γ = 2, β = 1: x = 0.3 → y = 1 exactly.
    let w = Tensor::from_vec(vec![2.0], &[1], Device::Cpu);
    let b = Tensor::from_vec(vec![1.0], &[1], Device::Cpu);
    let x = Tensor::from_vec(vec![0.3], &[1, 1], Device::Cpu);
    assert_eq!(
        st.forward(&x, Some(&w), Some(&b), false, 0.1, 0.5).to_vec(),
        vec![1.0]
    );
    assert_eq!(st.num_batches_tracked, 1);
}

fn check(d: Dims, training: bool, seed: u64) {
    let x = random_vec(d.n * d.c * d.s, -2.0, 2.0, seed);
    let (gm, bt) = (
        random_vec(d.c, 0.5, 1.5, seed + 1),
        random_vec(d.c, -0.5, 0.5, seed + 2),
    );
    let (rm, rv) = (
        random_vec(d.c, -0.5, 0.5, seed + 3),
        random_vec(d.c, 0.5, 2.0, seed + 4),
    );
    let stats = |x: &[f64]| {
        if training {
            let (m, v, _) = cpu_batch_stats(x, d);
            (m, cpu_rstd(&v, 1e-5))
        } else {
            (rm.clone(), cpu_rstd(&rv, 1e-5))
        }
    };
    gradcheck(
        &format!("batch_norm {d:?} training={training}"),
        &[x, gm, bt],
        &[],
        |v| {
            let (m, r) = stats(&v[0]);
            cpu_forward(&v[0], &v[1], &v[2], &m, &r, d)
        },
        |v, g| {
            let (m, r) = stats(&v[0]);
            let (dx, dg, db) = cpu_backward(&v[0], &v[1], &m, &r, g, d, training);
            vec![dx, dg, db]
        },
    );
}

#[test]
fn gradcheck_f64() {
    check(Dims { n: 3, c: 4, s: 6 }, true, 31); // BatchNorm2d on (3, 4, 2, 3)
    check(Dims { n: 5, c: 4, s: 1 }, true, 41); // BatchNorm1d on (5, 4)
    check(Dims { n: 3, c: 4, s: 6 }, false, 51); // eval: a per-channel affine map
}

/// `batch_norm_relu` is `batch_norm(..).relu()` bit for bit, running statistics and returned (μ, rstd)
/// included: fused into one launch where nothing is recorded (GPU), the two ops where a gradient is (the
/// same gradients), and on the CPU; training and evaluation, (N, C) and (N, C, S).
#[test]
fn batch_norm_relu_is_the_composition() {
    let bits = |t: &Tensor| -> Vec<u32> { t.to_vec().into_iter().map(f32::to_bits).collect() };
    let mut devices = vec![Device::Cpu];
    if crate::engine::testing::gpu_or_skip("batch_norm_relu").is_some() {
        devices.push(Device::Gpu);
    }
    let f = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
    for device in devices {
        for (shape, seed) in [(vec![6, 5, 13], 1u64), (vec![40, 7], 2)] {
            let c = shape[1];
            let numel: usize = shape.iter().product();
            let x = Tensor::from_vec(f(random_vec(numel, -2.0, 2.0, seed)), &shape, device);
            let w = Tensor::from_vec(f(random_vec(c, 0.5, 1.5, seed + 10)), &[c], device);
            let b = Tensor::from_vec(f(random_vec(c, -0.5, 0.5, seed + 20)), &[c], device);
            let running = || {
                (
                    Tensor::from_vec(f(random_vec(c, -0.2, 0.2, seed + 30)), &[c], device),
                    Tensor::from_vec(f(random_vec(c, 0.5, 2.0, seed + 40)), &[c], device),
                )
            };
            for training in [true, false] {
                let what = format!("{device:?} {shape:?} training {training}");
                let (rm, rv) = running();
                let (y, st) = x.batch_norm_relu(Some(&w), Some(&b), &rm, &rv, training, 0.1, 1e-5);
                let (pm, pv) = running();
                let (py, pst) = if training {
                    x.batch_norm_train(Some(&w), Some(&b), &pm, &pv, 0.1, 1e-5)
                } else {
                    let st = x.batch_norm_from(
                        Some(&w),
                        Some(&b),
                        Stats::Running {
                            mean: &pm,
                            var: &pv,
                            training,
                            momentum: 0.1,
                        },
                        1e-5,
                    );
                    (st.0, st.1)
                };
                let py = py.relu();
                assert!(bits(&y) == bits(&py), "{what}: y");
                assert!(py.to_vec().contains(&0.0), "{what}: nothing clipped");
                assert!(bits(&st) == bits(&pst), "{what}: (μ, rstd)");
                assert!(
                    bits(&rm) == bits(&pm) && bits(&rv) == bits(&pv),
                    "{what}: running"
                );
                // Recorded: the composition's gradients.
                let grads = |fused: bool| {
                    let (xg, wg) = (x.detach().requires_grad_(), w.detach().requires_grad_());
                    let (rm, rv) = running();
                    let y = if fused {
                        xg.batch_norm_relu(Some(&wg), Some(&b), &rm, &rv, training, 0.1, 1e-5)
                            .0
                    } else {
                        xg.batch_norm(Some(&wg), Some(&b), &rm, &rv, training, 0.1, 1e-5)
                            .relu()
                    };
                    y.mul_scalar(1.5).sum_all().backward();
                    (bits(&xg.grad().unwrap()), bits(&wg.grad().unwrap()))
                };
                assert!(grads(true) == grads(false), "{what}: recorded");
            }
        }
    }
}
