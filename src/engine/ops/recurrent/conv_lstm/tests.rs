//! Tests of the conv_lstm op: the worked example, f64 gradient checks of the fused cells and of the whole
//! sequence (backpropagation through time).

use super::*;
use crate::engine::testing::{gradcheck, random_vec};

#[test]
fn worked_example() {
    // All pre-activations 0 and c = 2: i = f = o = σ(0) = 1/2, g = tanh(0) = 0, so
    // c' = 1/2·2 + 1/2·0 = 1 and h' = 1/2·tanh(1) = 0.38079707797788...
    let (h, c) = cpu_cell_forward(&[0.0f64; 4], &[2.0], 1, 1);
    assert_eq!(c, vec![1.0]);
    assert!(
        (h[0] - 0.5 * 1f64.tanh()).abs() < 1e-15 && (h[0] - 0.380_797_077_977_882_8).abs() < 1e-15
    );
    // Backward with dh' = 1, dc' = 0: dc'' = 1 · o · (1 - tanh²1) = 1/2 · 0.41997... = 0.2099871708;
    // do = tanh(1) = 0.76159..., so d(o pre-act) = tanh(1) · 1/4; di = dc''·g = 0; dg = dc''·i;
    // d(g pre-act) = dc''/2 · (1 - 0) ; df = dc''·c = 2·dc'', d(f pre-act) = 2·dc''/4; dc = dc''·f = dc''/2.
    let (dg, dc) = cpu_cell_backward(&[0.0f64; 4], &[2.0], &[1.0], &[0.0], 1, 1);
    let dcn = 0.5 * (1.0 - 1f64.tanh().powi(2));
    let want = [0.0, 2.0 * dcn / 4.0, 1f64.tanh() / 4.0, dcn / 2.0];
    for (a, b) in dg.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{dg:?} vs {want:?}");
    }
    assert!((dc[0] - dcn / 2.0).abs() < 1e-15);
}

#[test]
fn gradcheck_cell_f64() {
    let (b, hd, p) = (2, 3, 5);
    let ins = [
        random_vec(b * 4 * hd * p, -2.0, 2.0, 1),
        random_vec(b * hd * p, -1.5, 1.5, 2),
    ];
    // Both outputs at once: y = [h', c'].
    gradcheck(
        "conv_lstm cell",
        &ins,
        &[],
        |v| {
            let (h, c) = cpu_cell_forward(&v[0], &v[1], hd, p);
            [h, c].concat()
        },
        |v, g| {
            let n = b * hd * p;
            let (dg, dc) = cpu_cell_backward(&v[0], &v[1], &g[..n], &g[n..], hd, p);
            vec![dg, dc]
        },
    );
}

#[test]
fn gradcheck_sequence_f64() {
    // B 2, T 3, C_x 2, Hd 2, 3 × 4 pixels, k 3: x, weight and bias through three steps of BPTT.
    let (xs, ws) = ([2, 3, 2, 3, 4], [8, 4, 3, 3]);
    let d = Dims::new("test", &xs, &ws, 4);
    let ins = [
        random_vec(xs.iter().product(), -1.0, 1.0, 3),
        random_vec(ws.iter().product(), -0.5, 0.5, 4),
        random_vec(8, -0.5, 0.5, 5),
    ];
    gradcheck(
        "conv_lstm sequence",
        &ins,
        &[],
        |v| cpu_forward(&v[0], &v[1], &v[2], &d).cs[d.t].clone(),
        |v, g| cpu_backward(&cpu_forward(&v[0], &v[1], &v[2], &d), &v[1], &v[2], g, &d).to_vec(),
    );
}

#[test]
fn one_step_from_zero_is_the_cell_of_the_convolution() {
    // T = 1: c_1 = i ⊙ g with the gates of conv2d([x_0, 0]).
    let (xs, ws) = ([1, 1, 2, 2, 2], [4, 3, 3, 3]);
    let d = Dims::new("test", &xs, &ws, 4);
    let (x, w, b) = (
        random_vec(8, -1.0, 1.0, 6),
        random_vec(108, -1.0, 1.0, 7),
        random_vec(4, -1.0, 1.0, 8),
    );
    let gates = conv2d::cpu_forward(&d.comb(&x, 0, &[0.0; 4]), &w, Some(&b), &d.geom(4));
    let want = cpu_cell_forward(&gates, &[0.0; 4], 1, 4).1;
    assert_eq!(cpu_forward(&x, &w, &b, &d).cs[1], want);
}
