//! `cargo run --release --example attention`: L-TAE's master-query attention, step by step, on the CPU
//! reference path and on the GPU (when there is one), then timed at the U-TAE paper configuration's size.
//!
//! The lesson this walks through is the module doc of `src/engine/ops/attention/` (`cargo doc --open`,
//! `sitsgpu::engine::ops::attention`): keys and master queries → scores → softmax over the dates (the padded
//! date gets −1000, so 0 weight) → the weighted sum of the values, heads concatenated; then the gradients
//! of every input from one backward pass.

use std::time::Instant;

use sitsgpu::engine::ops::attention::attention_weights::AttnDropout;
use sitsgpu::{no_grad, Device, Tensor};

fn show(name: &str, t: &Tensor) {
    let v = t.to_vec();
    let body: Vec<String> = v.iter().map(|x| format!("{x:8.4}")).collect();
    println!("  {name:<28} {:?}\n    [{}]", t.shape(), body.join(","));
}

/// One head pair on one tiny series: 2 heads, d_k 2, 1 sample, 1 pixel, 4 dates (the last padded), d_v 2.
fn walkthrough(device: Device) {
    println!("\n== {device:?} ==");
    let (heads, dk, t, dv) = (2, 2, 4, 2);
    // Keys (N = 1, T, H·d_k): head 0 sees date 1 strongly, head 1 prefers date 2.
    let keys = vec![
        0.0, 0.0, 0.0, 0.0, //
        2.0, 0.0, 0.0, 1.0, //
        0.5, 0.0, 0.0, 3.0, //
        9.0, 9.0, 9.0, 9.0, // a padded date: whatever its key, its weight is 0
    ];
    let queries = vec![1.0, 0.0, 0.0, 1.0];
    let k = Tensor::from_vec(keys.clone(), &[1, t, heads * dk], device).requires_grad_();
    let q = Tensor::from_vec(queries.clone(), &[heads, dk], device).requires_grad_();
    let pad = Tensor::from_vec(vec![0.0, 0.0, 0.0, 1.0], &[1, t], device);
    // Values (N, T, H·d_v): the date's features, split into the heads' groups of d_v channels.
    let v = Tensor::from_vec(
        (0..t * heads * dv).map(|i| i as f32 / 4.0).collect(),
        &[1, t, heads * dv],
        device,
    )
    .requires_grad_();
    show("keys k (N, T, H·d_k)", &k);
    show("master queries Q (H, d_k)", &q);
    show("pad mask (B, T)", &pad);
    let a = k.temporal_attention_weights(&q, Some(&pad), 1, AttnDropout::NONE);
    // The scores the kernel computes in registers (never stored), written out here in plain Rust.
    for head in 0..heads {
        let s: Vec<String> = (0..t)
            .map(|date| {
                if date == t - 1 {
                    return "-1000 (padded)".to_string();
                }
                let dot: f32 = (0..dk)
                    .map(|j| queries[head * dk + j] * keys[date * heads * dk + head * dk + j])
                    .sum();
                format!("{:.4}", dot / (dk as f32).sqrt())
            })
            .collect();
        println!(
            "  scores of head {head}: <Q[head], k[t, head]> / sqrt(d_k) = ({})",
            s.join(", ")
        );
    }
    show("weights a = softmax_t(s) (H, B, T, P)", &a);
    show("values v (N, T, H·d_v)", &v);
    let o = a.temporal_attention_apply(&v);
    show("output o = Σ_t a·v (N, H·d_v)", &o);
    // A loss that weighs the output channels differently, so every gradient is visible.
    let w = Tensor::from_vec(vec![1.0, 0.5, -0.5, 2.0], &[1, heads * dv], device);
    let loss = (&o * &w).sum_all();
    show("loss = Σ o·w", &loss);
    loss.backward();
    show("dL/dk", &k.grad().expect("k has a gradient"));
    show("dL/dQ", &q.grad().expect("Q has a gradient"));
    show("dL/dv", &v.grad().expect("v has a gradient"));
}

/// Forward and backward at the U-TAE paper configuration's L-TAE size: B 4, T 40, 16 × 16 pixels, 16 heads,
/// d_k 4, d_model 256.
fn timing(device: Device) {
    let (heads, dk, b, t, p, dm) = (16, 4, 4, 40, 256, 256);
    let n = b * p;
    let k = Tensor::from_vec(
        (0..n * t * heads * dk)
            .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
            .collect(),
        &[n, t, heads * dk],
        device,
    )
    .requires_grad_();
    let q = Tensor::from_vec(
        (0..heads * dk).map(|i| (i % 7) as f32 / 7.0).collect(),
        &[heads, dk],
        device,
    )
    .requires_grad_();
    let v = Tensor::from_vec(
        (0..n * t * dm)
            .map(|i| ((i * 13) % 29) as f32 / 29.0)
            .collect(),
        &[n, t, dm],
        device,
    )
    .requires_grad_();
    let step = || {
        let o = k
            .temporal_attention_weights(&q, None, p, AttnDropout::NONE)
            .temporal_attention_apply(&v);
        o.sum_all().backward();
        // Reading one gradient back waits for the device.
        q.grad().expect("Q has a gradient").to_vec()
    };
    step();
    let reps = 2;
    let start = Instant::now();
    for _ in 0..reps {
        step();
    }
    let fwd = {
        let start = Instant::now();
        for _ in 0..reps {
            no_grad(|| {
                k.temporal_attention_weights(&q, None, p, AttnDropout::NONE)
                    .temporal_attention_apply(&v)
                    .to_vec()
            });
        }
        start.elapsed().as_secs_f64() / reps as f64
    };
    let total = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "  {device:?}: forward {:.2} ms, forward + backward {:.2} ms (B {b}, T {t}, {p} pixels, {heads} heads; \
         times include the read-back)",
        fwd * 1e3,
        total * 1e3
    );
}

fn main() {
    let mut devices = vec![Device::Cpu];
    match sitsgpu::engine::Gpu::get() {
        Ok(_) => devices.push(Device::Gpu),
        Err(e) => println!("no GPU ({e}): the CPU reference path only"),
    }
    for &d in &devices {
        walkthrough(d);
    }
    println!("\n== timing ==");
    for &d in &devices {
        timing(d);
    }
}
