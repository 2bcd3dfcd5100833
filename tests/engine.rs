//! Engine behaviour beyond single ops: autograd bookkeeping (accumulation, no_grad, detach), determinism,
//! the buffer pool staying flat over 200 training steps, the pipeline cache, the storage-binding limit
//! error, the limits in force (`SITSGPU_LIMITS=webgpu`: exactly WebGPU's defaults), and Adam on the GPU
//! against its CPU reference.

use sitsgpu::engine::error::{catch_too_large, Error};
use sitsgpu::engine::gpu::{Gpu, LimitsMode};
use sitsgpu::engine::kernel::max_workgroups_per_dim;
use sitsgpu::engine::storage::GpuStorage;
use sitsgpu::engine::testing::{assert_close, assert_limits_in_force, gpu_or_skip, Tol};
use sitsgpu::layers::{Linear, Module};
use sitsgpu::train::{Adam, AdamConfig};
use sitsgpu::{no_grad, Device, Tensor};

#[test]
fn gradients_accumulate_until_zero_grad() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2], Device::Cpu).requires_grad_();
    // d/dx Σ 3x = 3, twice → 6.
    x.mul_scalar(3.0).sum_all().backward();
    x.mul_scalar(3.0).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    // A tensor used twice in one graph: d/dx Σ x·x = 2x.
    (&x * &x).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0]);
}

#[test]
fn no_grad_and_detach_stop_recording() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2], Device::Cpu).requires_grad_();
    let y = no_grad(|| x.mul_scalar(2.0));
    assert!(!y.requires_grad());
    let z = x.detach().mul_scalar(2.0);
    assert!(!z.requires_grad());
    // x·detach(x): only the first factor carries a gradient, d/dx = detach(x) = x.
    (&x * &x.detach()).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0, 2.0]);
}

/// A small MLP step on `device`: returns (loss, weights after one Adam step).
fn mlp_step(device: Device, steps: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let l1 = Linear::new(5, 16, true, 1, device);
    let l2 = Linear::new(16, 3, true, 2, device);
    let mut params = l1.parameters();
    params.extend(l2.parameters());
    let mut opt = Adam::new(
        params.clone(),
        AdamConfig {
            lr: 1e-2,
            weight_decay: 1e-3,
            ..Default::default()
        },
    );
    let x = Tensor::rand_uniform(&[8, 5], -1.0, 1.0, 3, device);
    let t = Tensor::from_vec((0..8).map(|i| (i % 3) as f32).collect(), &[8], device);
    let mut losses = Vec::new();
    for _ in 0..steps {
        opt.zero_grad();
        let h = l1.forward(&x).relu().dropout(0.1, 42, true);
        let loss = l2.forward(&h).cross_entropy(&t, None, -100);
        loss.backward();
        opt.step();
        losses.push(loss.item());
    }
    (losses, params.iter().map(|p| p.to_vec()).collect())
}

#[test]
fn gpu_training_matches_the_cpu_reference() {
    if gpu_or_skip("gpu_training_matches_the_cpu_reference").is_none() {
        return;
    }
    let (lc, wc) = mlp_step(Device::Cpu, 5);
    let (lg, wg) = mlp_step(Device::Gpu, 5);
    assert_close(&lg, &lc, Tol::REDUCE, "MLP losses over 5 Adam steps");
    for (k, (a, b)) in wg.iter().zip(&wc).enumerate() {
        assert_close(
            a,
            b,
            Tol::REDUCE,
            &format!("MLP parameter {k} after 5 Adam steps"),
        );
    }
    assert!(lg[4] < lg[0], "the loss decreases: {lg:?}");
}

#[test]
fn same_ops_twice_give_bit_identical_results() {
    if gpu_or_skip("same_ops_twice_give_bit_identical_results").is_none() {
        return;
    }
    let a = mlp_step(Device::Gpu, 3);
    let b = mlp_step(Device::Gpu, 3);
    assert_eq!(a, b, "two identical GPU runs differ");
}

#[test]
fn memory_stays_flat_over_200_steps_and_pipelines_compile_once() {
    let Some(gpu) = gpu_or_skip("memory_stays_flat_over_200_steps") else {
        return;
    };
    let l1 = Linear::new(7, 32, true, 1, Device::Gpu);
    let l2 = Linear::new(32, 4, true, 2, Device::Gpu);
    let mut params = l1.parameters();
    params.extend(l2.parameters());
    let mut opt = Adam::new(params, AdamConfig::default());
    let x = Tensor::rand_uniform(&[16, 7], -1.0, 1.0, 3, Device::Gpu);
    let step = |opt: &mut Adam| {
        opt.zero_grad();
        let loss = l2
            .forward(&l1.forward(&x).tanh())
            .softmax(-1)
            .log()
            .mean_all()
            .neg();
        loss.backward();
        opt.step();
        loss.item()
    };
    for _ in 0..5 {
        step(&mut opt);
    }
    gpu.synchronize();
    let (stats0, pipelines0) = (gpu.pool.stats(), gpu.pipeline_count());
    for _ in 0..200 {
        step(&mut opt);
    }
    gpu.synchronize();
    let (stats1, pipelines1) = (gpu.pool.stats(), gpu.pipeline_count());
    // Other tests run in parallel threads of this process, so compare what this loop could have grown:
    // with recycling, 200 steps create no new buffers beyond what concurrent tests may add.
    assert!(
        stats1.created_buffers - stats0.created_buffers < 50,
        "buffers keep being created: {stats0:?} -> {stats1:?}"
    );
    assert!(
        pipelines1 - pipelines0 <= 20,
        "pipelines recompiled: {pipelines0} -> {pipelines1}"
    );
}

#[test]
fn a_tensor_over_the_binding_limit_is_an_error_naming_the_op_and_sizes() {
    let Some(gpu) = gpu_or_skip("a_tensor_over_the_binding_limit") else {
        return;
    };
    let too_many = gpu.limits.max_storage_buffer_binding_size as usize / 4 + 1;
    // Raised inside an op, it unwinds to the nearest catch_too_large as an error value.
    let err = catch_too_large(|| {
        let _held = GpuStorage::alloc(gpu, 16, "small");
        let _big = GpuStorage::alloc(gpu, too_many, "conv2d");
        Ok(())
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::TensorTooLarge(_))
            && msg.contains("conv2d")
            && msg.contains(&format!("{too_many} f32"))
            && msg.contains("maximum storage binding")
            && msg.contains("HINT"),
        "{msg}"
    );
    // The GPU still works after the unwinding.
    let t = Tensor::from_vec(vec![1.0, 2.0], &[2], Device::Gpu);
    assert_eq!(t.to_vec(), vec![1.0, 2.0]);
    // Any other panic passes through unchanged.
    let other = std::panic::catch_unwind(|| catch_too_large::<()>(|| panic!("not mine")));
    assert_eq!(
        other.unwrap_err().downcast_ref::<&str>().copied(),
        Some("not mine")
    );
}

#[test]
fn the_device_has_the_limits_sitsgpu_limits_asks_for() {
    let Some(gpu) = gpu_or_skip("limits_in_force") else {
        return;
    };
    let mode = assert_limits_in_force(gpu);
    // Whatever the mode, everything that depends on a limit reads the device's: the dispatch fold
    // and the storage-binding check (the test above).
    assert_eq!(
        max_workgroups_per_dim(gpu),
        gpu.limits.max_compute_workgroups_per_dimension
    );
    if mode == LimitsMode::WebGpuDefaults {
        assert_eq!(gpu.limits.max_storage_buffer_binding_size, 128 << 20);
        assert_eq!(gpu.limits.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(gpu.limits.max_compute_workgroup_storage_size, 16 << 10);
        assert_eq!(gpu.limits.max_compute_invocations_per_workgroup, 256);
    }
}

/// Whether the device accepts a compute pipeline binding `storage` storage buffers with `wg` invocations per
/// workgroup (a validation error scope catches the refusal).
fn device_accepts(gpu: &Gpu, storage: u32, wg: u32) -> bool {
    let mut src = String::new();
    for i in 0..storage {
        src += &format!("@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;\n");
    }
    src += &format!(
        "@compute @workgroup_size({wg})\nfn main(@builtin(global_invocation_id) id: vec3<u32>) {{\n"
    );
    for i in 0..storage {
        src += &format!("    b{i}[id.x] = 1.0;\n");
    }
    src += "}\n";
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("limits probe"),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    let _pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("limits probe"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    pollster::block_on(scope.pop()).is_none()
}

#[test]
fn the_device_refuses_a_kernel_over_its_limits() {
    // What makes the SITSGPU_LIMITS=webgpu pass worth running: there, on lavapipe (32 storage buffers, 1024
    // invocations), a kernel with a 9th storage buffer or 512 invocations is refused as on the weakest adapter.
    // (Workgroup memory is not checked by wgpu at all: the naga test `every_kernel_fits_webgpu_default_limits`
    // covers it.)
    let Some(gpu) = gpu_or_skip("device_refuses_over_limits") else {
        return;
    };
    let l = &gpu.limits;
    let storage = l.max_storage_buffers_per_shader_stage;
    let wg = l
        .max_compute_invocations_per_workgroup
        .min(l.max_compute_workgroup_size_x);
    assert!(device_accepts(gpu, storage, wg), "{storage} buffers, {wg}");
    assert!(
        !device_accepts(gpu, storage + 1, 64),
        "{} buffers",
        storage + 1
    );
    assert!(!device_accepts(gpu, 1, 2 * wg), "{} invocations", 2 * wg);
}

#[test]
fn adam_on_the_gpu_matches_the_reference_over_three_steps() {
    if gpu_or_skip("adam_on_the_gpu").is_none() {
        return;
    }
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    };
    let mut out = Vec::new();
    for device in [Device::Cpu, Device::Gpu] {
        let p = Tensor::rand_uniform(&[1000], -1.0, 1.0, 9, device).requires_grad_();
        let mut opt = Adam::new(vec![p.clone()], cfg);
        for s in 0..3u64 {
            opt.zero_grad();
            let g = Tensor::rand_uniform(&[1000], -1.0, 1.0, 10 + s, device);
            (&p * &g).sum_all().backward(); // gradient = g
            opt.step();
        }
        out.push(p.to_vec());
    }
    assert_close(&out[1], &out[0], Tol::KERNEL, "Adam GPU vs CPU, 3 steps");
}

/// The multi-tensor step (one launch per group of tensors sharing buffers, `ops::optim::adam::Groups`)
/// gives exactly what one launch per tensor gives — same bits in the parameters and the moments — in fewer
/// launches, skips a parameter without a gradient as PyTorch does, and agrees with the CPU reference.
#[test]
fn adam_steps_many_tensors_in_a_few_launches_exactly_as_one_by_one() {
    if gpu_or_skip("adam multi-tensor").is_none() {
        return;
    }
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    };
    let shapes: [&[usize]; 6] = [&[7], &[300], &[1], &[64, 33], &[5, 5, 3], &[1000]];
    let make = |device| -> Vec<Tensor> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Tensor::rand_uniform(s, -1.0, 1.0, 20 + i as u64, device).requires_grad_()
            })
            .collect()
    };
    // a: one optimizer (multi-tensor launches); b: one optimizer per tensor; c: the CPU reference.
    let (a, b, c) = (make(Device::Gpu), make(Device::Gpu), make(Device::Cpu));
    let mut all = Adam::new(a.clone(), cfg);
    let mut one: Vec<Adam> = b.iter().map(|p| Adam::new(vec![p.clone()], cfg)).collect();
    let mut cpu = Adam::new(c.clone(), cfg);
    for step in 0..3u64 {
        for ps in [&a, &b, &c] {
            for p in ps {
                p.zero_grad();
            }
            // Parameter 2 has no gradient on the first step: it is skipped, not stepped with zeros.
            let mut loss: Option<Tensor> = None;
            for (i, p) in ps.iter().enumerate().filter(|&(i, _)| step > 0 || i != 2) {
                let g =
                    Tensor::rand_uniform(p.shape(), -1.0, 1.0, 100 * step + i as u64, p.device());
                let term = (p * &g).sum_all();
                loss = Some(match loss {
                    Some(l) => &l + &term,
                    None => term,
                });
            }
            loss.unwrap().backward();
        }
        all.step();
        for o in &mut one {
            o.step();
        }
        cpu.step();
        assert!(
            (1..=3).contains(&all.last_launches()),
            "{} launches for {} tensors",
            all.last_launches(),
            a.len()
        );
    }
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for i in 0..a.len() {
        assert_eq!(bits(a[i].to_vec()), bits(b[i].to_vec()), "parameter {i}");
        let (ma, va) = all.moments(i);
        let (mb, vb) = one[i].moments(0);
        assert_eq!(bits(ma.clone()), bits(mb), "m {i}");
        assert_eq!(bits(va), bits(vb), "v {i}");
        let what = format!("Adam parameter {i}, multi-tensor GPU vs CPU");
        assert_close(&a[i].to_vec(), &c[i].to_vec(), Tol::KERNEL, &what);
        assert_close(&ma, &cpu.moments(i).0, Tol::KERNEL, &what);
    }
}

/// Resuming on the GPU: the moments read from the banks (`Adam::moments`) and written into a fresh optimizer
/// (`Adam::set_state`) continue exactly as the optimizer that never stopped — same bits.
#[test]
fn adam_state_round_trips_through_the_moment_banks() {
    if gpu_or_skip("adam state").is_none() {
        return;
    }
    let shapes: [&[usize]; 3] = [&[5], &[17, 3], &[64]];
    let make = || -> Vec<Tensor> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Tensor::rand_uniform(s, -1.0, 1.0, 50 + i as u64, Device::Gpu).requires_grad_()
            })
            .collect()
    };
    let step = |ps: &[Tensor], opt: &mut Adam, s: u64| {
        opt.zero_grad();
        let mut loss = Tensor::scalar(0.0, Device::Gpu);
        for (i, p) in ps.iter().enumerate() {
            let g = Tensor::rand_uniform(p.shape(), -1.0, 1.0, 10 * s + i as u64, Device::Gpu);
            loss = &loss + &(p * &g).sum_all();
        }
        loss.backward();
        opt.step();
    };
    let a = make();
    let mut running = Adam::new(a.clone(), AdamConfig::default());
    for s in 0..2 {
        step(&a, &mut running, s);
    }
    // A fresh optimizer over copies of the weights, given the saved state.
    let b: Vec<Tensor> = a
        .iter()
        .map(|p| Tensor::from_vec(p.to_vec(), p.shape(), Device::Gpu).requires_grad_())
        .collect();
    let mut resumed = Adam::new(b.clone(), AdamConfig::default());
    let (m, v): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..a.len()).map(|i| running.moments(i)).unzip();
    assert!(m.iter().all(|m| m.iter().any(|&x| x != 0.0)));
    resumed.set_state(running.steps(), m, v);
    step(&a, &mut running, 2);
    step(&b, &mut resumed, 2);
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for i in 0..a.len() {
        assert_eq!(bits(a[i].to_vec()), bits(b[i].to_vec()), "parameter {i}");
        assert_eq!(
            bits(running.moments(i).1),
            bits(resumed.moments(i).1),
            "v {i}"
        );
    }
}

/// Loss scaling (`ops::optim::loss_scale`, PyTorch's GradScaler): with gradients `S · g` of a loss scaled
/// by `S = 2^16`, Adam steps exactly as the plain optimizer on `g` (same bits: the unscaling is exact);
/// a step whose gradient overflowed changes nothing, is not counted, and halves the scale; 2,000 clean
/// steps in a row double it; the state survives a checkpoint's round trip. On the CPU and on the GPU,
/// whose scaler decides on the device (the GPU's parameters within Adam's kernel tolerance of the CPU's).
#[test]
fn loss_scaling_steps_skips_and_grows_as_grad_scaler() {
    use sitsgpu::engine::ops::optim::loss_scale::GROWTH_INTERVAL;
    let mut devices = vec![Device::Cpu];
    if gpu_or_skip("loss scaling").is_some() {
        devices.push(Device::Gpu);
    }
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..Default::default()
    };
    let shapes: [&[usize]; 2] = [&[300], &[7, 3]];
    let mut results = Vec::new();
    for device in devices {
        let make = || -> Vec<Tensor> {
            shapes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Tensor::rand_uniform(s, -1.0, 1.0, 70 + i as u64, device).requires_grad_()
                })
                .collect()
        };
        let (a, b) = (make(), make());
        let mut plain = Adam::new(a.clone(), cfg);
        let mut scaled = Adam::new(b.clone(), cfg).with_loss_scaling();
        // Step k's gradient of parameter i: uniform, with one value of 1e35 at step 2 (S · 1e35 overflows).
        let grad = |k: u64, i: usize, shape: &[usize]| -> Tensor {
            let mut g =
                Tensor::rand_uniform(shape, -1.0, 1.0, 100 * k + i as u64, Device::Cpu).to_vec();
            if k == 2 && i == 1 {
                g[4] = 1e35;
            }
            Tensor::from_vec(g, shape, device)
        };
        let run = |ps: &[Tensor], opt: &mut Adam, k: u64| {
            opt.zero_grad();
            let mut loss = Tensor::scalar(0.0, device);
            for (i, p) in ps.iter().enumerate() {
                loss = &loss + &(p * &grad(k, i, p.shape())).sum_all();
            }
            opt.scale_loss(&loss).backward();
            opt.step();
        };
        let bits = |ps: &[Tensor]| -> Vec<Vec<u32>> {
            ps.iter()
                .map(|p| p.to_vec().iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        let mut exponents = Vec::new();
        for k in 0..5u64 {
            let before = bits(&b);
            run(&b, &mut scaled, k);
            if k == 2 {
                assert_eq!(
                    bits(&b),
                    before,
                    "{device:?}: an overflowing step changed the parameters"
                );
            } else {
                run(&a, &mut plain, k);
            }
            assert_eq!(bits(&a), bits(&b), "{device:?}: step {k}");
            exponents.push(scaled.loss_scale().unwrap().exponent);
        }
        assert_eq!(exponents, vec![16, 16, 15, 15, 15], "{device:?}");
        assert_eq!((scaled.steps(), scaled.skipped()), (4, 1), "{device:?}");
        for i in 0..a.len() {
            assert_eq!(
                plain.moments(i),
                scaled.moments(i),
                "{device:?}: moments {i}"
            );
        }
        // The 2,000th clean step in a row doubles the scale (the tracker set as a checkpoint would).
        let mut s = scaled.loss_scale().unwrap();
        assert_eq!(s.tracker, 2);
        s.tracker = GROWTH_INTERVAL - 1;
        scaled.set_loss_scale(s);
        run(&b, &mut scaled, 5);
        run(&a, &mut plain, 5);
        assert_eq!(bits(&a), bits(&b), "{device:?}: step 5");
        let s = scaled.loss_scale().unwrap();
        assert_eq!((s.exponent, s.tracker, s.steps), (16, 0, 5), "{device:?}");
        let loss = scaled.scale_loss(&Tensor::scalar(3.0, device)).to_vec();
        assert_eq!(loss, vec![3.0 * 65536.0]);
        results.push(b.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
    }
    if results.len() == 2 {
        for (g, c) in results[1].iter().zip(&results[0]) {
            assert_close(g, c, Tol::KERNEL, "loss-scaled Adam, GPU vs CPU");
        }
    }
}

#[test]
fn gpu_or_skip_respects_require_gpu() {
    // With an adapter present this just returns it; the skip path is exercised on machines without one.
    if std::env::var("SITSGPU_REQUIRE_GPU").as_deref() == Ok("1") {
        assert!(Gpu::get().is_ok(), "SITSGPU_REQUIRE_GPU=1 but no adapter");
    }
}

#[test]
fn every_dispatch_reads_its_own_params_across_many_submissions() {
    // 1,300 chained launches, each with its own scalar: more than two submissions' worth (512 launches or
    // one uniform arena each), so a dispatch reading another's Params, or a stale arena, shows up as a
    // wrong sum. x_k = x_{k-1} · 1 + k/1024 (exact in f32): x = Σ k/1024 = 1300·1301/2048.
    if gpu_or_skip("params arena").is_none() {
        return;
    }
    let mut x = Tensor::zeros(&[300], Device::Gpu);
    for k in 1..=1300 {
        x = x.add_scalar(k as f32 / 1024.0).mul_scalar(1.0);
    }
    let want = 1300.0 * 1301.0 / 2048.0;
    assert!(
        x.to_vec().iter().all(|&v| v == want),
        "{:?}",
        &x.to_vec()[..4]
    );
}

#[test]
fn norm_weight_gradients_over_no_values_are_zero_not_stale_pool_memory() {
    // An empty batch (N = 0): no workgroup of the weight-gradient reduction runs, so its outputs must be
    // cleared. Pool buffers of their size are first filled with junk and returned, so a stale read shows.
    if gpu_or_skip("norm_weight_gradients_over_no_values").is_none() {
        return;
    }
    let junk: Vec<Tensor> = (0..16)
        .map(|_| Tensor::from_vec(vec![7.0; 3], &[3], Device::Gpu))
        .collect();
    drop(junk);
    let x = Tensor::zeros(&[0, 3, 4], Device::Gpu).requires_grad_();
    let w = Tensor::ones(&[3], Device::Gpu).requires_grad_();
    let b = Tensor::zeros(&[3], Device::Gpu).requires_grad_();
    x.group_norm(3, Some(&w), Some(&b), 1e-5)
        .sum_all()
        .backward();
    assert_eq!(w.grad().unwrap().to_vec(), vec![0.0; 3]);
    assert_eq!(b.grad().unwrap().to_vec(), vec![0.0; 3]);
}
