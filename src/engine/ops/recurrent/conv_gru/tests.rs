//! Tests of the conv_gru op: the worked example, f64 gradient checks of the fused cells and of the whole
//! sequence (backpropagation through time).

use super::*;
use crate::engine::testing::{gradcheck, random_vec};

#[test]
fn worked_example() {
    // zr = 0 (z = r = 1/2), a = 0 (h~ = 0), h = 0.6: r·h = 0.3 and h' = 1/2·0.6 + 1/2·0 = 0.3.
    assert_eq!(cpu_gates_forward(&[0.0f64, 0.0], &[0.6], 1, 1), vec![0.3]);
    assert_eq!(
        cpu_update_forward(&[0.0f64, 0.0], &[0.0], &[0.6], 1, 1),
        vec![0.3]
    );
    // dh' = 1: da = z·(1 - 0) = 1/2, dz = (0 - 0.6)·1/4 = -0.15, (1 - z)·dh' = 1/2.
    let [da, dz, dh] = cpu_update_backward(&[0.0f64, 0.0], &[0.0], &[0.6], &[1.0], 1, 1);
    assert_eq!((da[0], dz[0], dh[0]), (0.5, -0.15, 0.5));
    // g = d(r·h) = 1: dr = 1·0.6·1/4 = 0.15, r·g = 1/2.
    assert_eq!(
        cpu_gates_backward(&[0.0f64, 0.0], &[0.6], &[1.0], 1, 1),
        [vec![0.15], vec![0.5]]
    );
}

#[test]
fn gradcheck_cells_f64() {
    let (b, hd, p) = (2, 3, 4);
    let ins = [
        random_vec(b * 2 * hd * p, -2.0, 2.0, 1),
        random_vec(b * hd * p, -2.0, 2.0, 2),
        random_vec(b * hd * p, -1.0, 1.0, 3),
    ];
    gradcheck(
        "conv_gru update",
        &ins,
        &[],
        |v| cpu_update_forward(&v[0], &v[1], &v[2], hd, p),
        |v, g| {
            let [da, dz, dh] = cpu_update_backward(&v[0], &v[1], &v[2], g, hd, p);
            vec![cat_halves(&dz, &vec![0.0; dz.len()], hd, p), da, dh]
        },
    );
    gradcheck(
        "conv_gru gates",
        &[ins[0].clone(), ins[2].clone()],
        &[],
        |v| cpu_gates_forward(&v[0], &v[1], hd, p),
        |v, g| {
            let [dr, dh] = cpu_gates_backward(&v[0], &v[1], g, hd, p);
            vec![cat_halves(&vec![0.0; dr.len()], &dr, hd, p), dh]
        },
    );
}

#[test]
fn gradcheck_sequence_f64() {
    let xs = [2, 3, 2, 3, 2];
    let d = Dims::new("test", &xs, &[4, 4, 3, 3], 2);
    let ins = [
        random_vec(xs.iter().product(), -1.0, 1.0, 4),
        random_vec(4 * 4 * 9, -0.5, 0.5, 5),
        random_vec(4, -0.5, 0.5, 6),
        random_vec(2 * 4 * 9, -0.5, 0.5, 7),
        random_vec(2, -0.5, 0.5, 8),
    ];
    let wt = |v: &[Vec<f64>]| -> [Vec<f64>; 4] {
        [v[1].clone(), v[2].clone(), v[3].clone(), v[4].clone()]
    };
    gradcheck(
        "conv_gru sequence",
        &ins,
        &[],
        |v| {
            let w = wt(v);
            cpu_forward(
                &v[0],
                &Weights {
                    w_in: &w[0][..],
                    b_in: &w[1][..],
                    w_out: &w[2][..],
                    b_out: &w[3][..],
                },
                &d,
            )
            .1
        },
        |v, g| {
            let w = wt(v);
            let weights = Weights {
                w_in: &w[0][..],
                b_in: &w[1][..],
                w_out: &w[2][..],
                b_out: &w[3][..],
            };
            cpu_backward(&cpu_forward(&v[0], &weights, &d).0, &weights, g, &d).to_vec()
        },
    );
}
