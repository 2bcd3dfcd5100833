//! The per-kernel profiler on whatever adapter exists (lavapipe in CI): a tiny U-TAE training step, a U-TAE +
//! PaPs and a U-ConvLSTM + PaPs forward, a pixel-set forward and a mixed-precision U-TAE forward, timed by GPU
//! timestamps where the adapter has them and by synchronised wall time otherwise, summed per kernel entry
//! point.

use sitsgpu::engine::profile::Timing;
use sitsgpu::engine::testing::gpu_or_skip;
use sitsgpu::engine::Precision;
use sitsgpu::train::profile::{run, ProfileArgs, ProfileOptions, Workload};

/// The profiler records every dispatch of the process: the tests of this file take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_utae_training_step_is_timed_kernel_by_kernel() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("profile utae") else {
        return;
    };
    let opts = ProfileOptions {
        workload: Workload::utae("small", 1, 3, 16).unwrap(),
        train: true,
        warmup: 1,
        steps: 2,
        wall_clock: false,
        precision: Precision::Fp32,
        gradient_checkpointing: false,
    };
    let out = run(&opts).unwrap();
    println!("{}", out.text()); // the table, for `--nocapture` readers and CI logs
    let r = &out.report;
    let has_timestamps = gpu
        .device
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY);
    assert_eq!(
        r.timing,
        if has_timestamps {
            Timing::Timestamps
        } else {
            Timing::SyncWall
        }
    );
    // Every kernel of a training step shows up: the convolution and its two gradients, the optimizer.
    for k in [
        "conv2d",
        "adam",
        "group_norm",
        "attention_weights",
        "cross_entropy",
    ] {
        assert!(
            r.rows.iter().any(|row| row.entry.starts_with(k)),
            "{k} missing:\n{}",
            out.text()
        );
    }
    // Adam is a multi-tensor launch per group of parameters sharing buffers: a handful per step (calls are
    // per profiled step × 2 steps), far fewer than the parameter tensors.
    let adam = r.rows.iter().find(|row| row.entry == "adam").unwrap();
    let params = sitsgpu::models::utae::UTae::new(
        sitsgpu::train::profile::utae_small_config(),
        0,
        sitsgpu::Device::Cpu,
    );
    use sitsgpu::layers::Module;
    let tensors = params.parameters().len();
    assert!(
        adam.calls >= 2 && adam.calls <= 2 * 4 && tensors > 50,
        "{} Adam launches in 2 steps for {tensors} parameter tensors",
        adam.calls
    );
    assert!(r.total_ns > 0.0 && out.step_ms > 0.0 && out.encode_ms > 0.0);
    assert_eq!(
        r.dispatches,
        r.rows.iter().map(|row| row.calls).sum::<usize>()
    );
    let text = out.text();
    assert!(
        text.contains(&gpu.adapter.name) && text.contains("conv2d"),
        "{text}"
    );
    let j = out.json();
    assert_eq!(
        j["profile"]["kernels"].as_array().unwrap().len(),
        r.rows.len()
    );
    // The step's memory: tensors held at the peak, never more than the pool held, the same in the JSON.
    let m = out.memory;
    assert!(m.live_bytes > 0 && m.live_bytes <= m.held_bytes, "{m:?}");
    assert!(text.contains("GPU memory: peak of a step"), "{text}");
    assert_eq!(j["memory"]["peak_live_bytes"].as_u64(), Some(m.live_bytes));
}

#[test]
fn the_wall_clock_fallback_times_a_pixel_set_forward() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if gpu_or_skip("profile pse").is_none() {
        return;
    }
    let opts = ProfileOptions {
        workload: Workload::pixel_set("pse_ltae", 4, 5, 6).unwrap(),
        train: false,
        warmup: 0,
        steps: 1,
        wall_clock: true,
        precision: Precision::Fp32,
        gradient_checkpointing: false,
    };
    let out = run(&opts).unwrap();
    assert_eq!(out.report.timing, Timing::SyncWall);
    assert!(out.report.rows.iter().any(|r| r.entry == "masked_pool"));
    assert!(out.report.rows.iter().all(|r| r.ns > 0.0));
    assert!(Workload::pixel_set("nope", 1, 1, 1).is_err());
    assert!(Workload::utae("huge", 1, 1, 8).is_err());
}

#[test]
fn a_utae_paps_forward_shows_its_own_kernels() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if gpu_or_skip("profile utae_paps").is_none() {
        return;
    }
    // Evaluation: local maxima (max_pool2d), heads at the centers (gather_pixels), the masks (resize_crop).
    let opts = ProfileOptions {
        workload: Workload::panoptic("small", 1, 2, 16).unwrap(),
        train: false,
        warmup: 0,
        steps: 1,
        wall_clock: false,
        precision: Precision::Fp32,
        gradient_checkpointing: false,
    };
    let out = run(&opts).unwrap();
    assert!(out.workload.starts_with("utae_paps"), "{}", out.workload);
    for entry in ["max_pool2d", "gather_pixels"] {
        assert!(
            out.report.rows.iter().any(|r| r.entry == entry),
            "{entry} missing from {:?}",
            out.report.rows.iter().map(|r| &r.entry).collect::<Vec<_>>()
        );
    }
    assert!(Workload::panoptic("huge", 1, 1, 8).is_err());
    // U-ConvLSTM + PaPs (`--model uconvlstm_paps`): the ConvLSTM's kernels beside the heads'.
    let args = ProfileArgs {
        model: "uconvlstm_paps".into(),
        config: "small".into(),
        batch_size: Some(1),
        dates: Some(2),
        size: Some(16),
        pixels: 64,
        train: false,
        warmup: 0,
        steps: 1,
        wall_clock: false,
        precision: Precision::Fp32,
        gradient_checkpointing: false,
        json: false,
        split_mib: None,
    };
    let opts = ProfileOptions {
        workload: args.workload().unwrap(),
        train: false,
        warmup: 0,
        steps: 1,
        wall_clock: false,
        precision: Precision::Fp32,
        gradient_checkpointing: false,
    };
    let out = run(&opts).unwrap();
    assert!(
        out.workload.starts_with("uconvlstm_paps"),
        "{}",
        out.workload
    );
    assert!(out.report.rows.iter().any(|r| r.entry == "gather_pixels"));
    assert!(Workload::paps("fpn", "small", 1, 1, 8).is_err());
}

/// `--precision mixed`: the profile says how the products and convolutions run, and shows it. On a software
/// adapter with f16 (lavapipe) U-TAE's convolutions of 32 output channels or more are unfolded
/// (`half_im2col`) onto the f16 tiles (`half_matmul`); elsewhere they round their operands
/// (`half_round`) for the float32 kernels.
#[test]
fn a_mixed_forward_shows_how_its_convolutions_run() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("profile mixed") else {
        return;
    };
    let opts = ProfileOptions {
        workload: Workload::utae("paper", 1, 2, 16).unwrap(),
        train: false,
        warmup: 0,
        steps: 1,
        wall_clock: false,
        precision: Precision::Mixed,
        gradient_checkpointing: false,
    };
    let out = run(&opts).unwrap();
    let json = out.json();
    let convs = json["half_convolutions"].as_str().unwrap_or_default();
    assert!(!json["half_products"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(out.text().contains("convolutions: "), "{}", out.text());
    let entries: Vec<&str> = out.report.rows.iter().map(|r| r.entry).collect();
    let want = if gpu.is_software() && gpu.half.f16 {
        assert!(convs.contains("f16 tiles"), "{convs}");
        ["half_im2col", "half_matmul"]
    } else {
        ["half_round", "conv2d"]
    };
    for entry in want {
        assert!(entries.contains(&entry), "{entry} missing from {entries:?}");
    }
}
