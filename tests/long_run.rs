//! Long runs: GPU memory stays flat over 2,000 training steps of the small U-TAE (the fixtures' widths, an
//! eighth of the paper's) on one tiny batch (B 1, T 2, 16 × 16), so that a buffer leaked or left out of the
//! pool's recycling shows up as growing counters.
//!
//! The buffer pool's counters (`gpu.pool.stats()`, `src/engine/pool.rs`) after step 50 (once every shape of a
//! step has been allocated: forward, backward and Adam's moments) must equal those after step 2,000: live and
//! free ranges and bytes, and no buffer created in between.
//!
//! Ignored by default (a few minutes on lavapipe); `.ci/run` runs it after the main suite:
//!
//! ```sh
//! cargo test --test long_run -- --ignored --nocapture
//! ```
//! `SITSGPU_LONG_RUN_STEPS=N` changes the step count (default 2,000). Without an adapter it prints a loud
//! SKIPPED line (a failure with `SITSGPU_REQUIRE_GPU=1`).

use std::time::Instant;

use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::train::profile::Workload;
use sitsgpu::Device;

/// Steps after which every buffer a step needs exists.
const WARM_UP: usize = 50;

#[test]
#[ignore = "long: 2,000 U-TAE training steps (a few minutes on lavapipe); run with --ignored"]
fn pool_stays_flat_over_2000_utae_training_steps() {
    let Some(gpu) = gpu_or_skip("pool_stays_flat_over_2000_utae_training_steps") else {
        return;
    };
    let steps: usize = std::env::var("SITSGPU_LONG_RUN_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    assert!(
        steps > WARM_UP,
        "SITSGPU_LONG_RUN_STEPS must exceed {WARM_UP}"
    );
    let workload = Workload::utae("small", 1, 2, 16).expect("the small U-TAE");
    println!("long run: {} on {}", workload.describe(), gpu.adapter.name);
    let mut prepared = workload.prepare(Device::Gpu);
    let start = Instant::now();
    let mut warm = None;
    let mut first_loss = f32::NAN;
    let mut loss = f32::NAN;
    for step in 1..=steps {
        loss = prepared.train_step();
        assert!(loss.is_finite(), "step {step}: loss {loss}");
        if step == 1 {
            first_loss = loss;
        }
        if step == WARM_UP {
            gpu.synchronize();
            warm = Some(gpu.pool.stats());
        }
        if step % 500 == 0 {
            println!(
                "step {step}: loss {loss:.4}, {:.1} s, pool {:?}",
                start.elapsed().as_secs_f64(),
                gpu.pool.stats()
            );
        }
    }
    gpu.synchronize();
    let (warm, end) = (warm.expect("warm-up stats"), gpu.pool.stats());
    let secs = start.elapsed().as_secs_f64();
    println!(
        "long run: {steps} steps in {secs:.1} s ({:.1} ms/step), loss {first_loss:.4} -> {loss:.4}\n\
         after step {WARM_UP}: {warm:?}\nafter step {steps}: {end:?}",
        1e3 * secs / steps as f64
    );
    assert_eq!(
        (warm.live_buffers, warm.live_bytes),
        (end.live_buffers, end.live_bytes),
        "live buffers grew between step {WARM_UP} and step {steps}"
    );
    assert_eq!(
        (warm.idle_buffers, warm.idle_bytes),
        (end.idle_buffers, end.idle_bytes),
        "free ranges grew between step {WARM_UP} and step {steps}"
    );
    assert_eq!(
        warm.created_buffers, end.created_buffers,
        "buffers were still being created after step {WARM_UP}"
    );
    assert!(
        loss < first_loss,
        "2,000 steps on one batch should lower the loss: {first_loss} -> {loss}"
    );
}
