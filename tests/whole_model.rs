//! Whole models on the GPU against the CPU reference: every model of [`models`] — the small U-TAE with every
//! `agg_mode` × encoder norm, the U-TAE paper's baselines (UConvLSTM, BUConvLSTM, FPN-ConvLSTM, ConvLSTM, ConvGRU,
//! U-Net 3D at their `small` widths), U-TAE + PaPs and U-ConvLSTM + PaPs (small, one center per zone of
//! synthetic parcels), PSE + L-TAE / TAE / GRU / TempCNN (new models join by adding a line there) —
//! built with seeded random weights in randomly drawn situations; one training step each way (forward in
//! training mode with dropout, loss, backward, one Adam step), compared: class scores, loss, every parameter
//! gradient and every updated weight.
//!
//! **Situations** (drawn from the seed): U-TAE and the baselines batch 1–3 (U-Net 3D with 4 dates or more), pixel sets 3–4 (their decoder's train-mode
//! BatchNorm1d normalises over the samples: one is undefined — PyTorch refuses it — and two always map to
//! ±1 whatever the inputs, so the gradient through it is pure rounding noise; measured: 0.5 % GPU-vs-CPU
//! differences in the pixel-set encoder's gradients at B = 2, far below at B = 3). U-TAE: 1–9 dates per
//! sample, padded to the longest as the collate function pads, height and width multiples of 8 from 16 to
//! 40 drawn separately (rectangular patches; 16 is the least: the reflect padding of the lowest
//! resolution's 3×3 convolutions needs 2 pixels). Pixel sets: 1–9 dates, 4–20 pixels, each parcel with all
//! its pixels, some (the rest copies of pixel 0, masked), exactly one (the masked pool's divisor quirk) or
//! none (the loader's empty parcel: zeros, mask `[1, 0, …]`).
//!
//! **Decisions within float32 noise.** Both runs record every ReLU / max decision and its input
//! (`engine::decisions`). The GPU may decide an element differently from the CPU only where that layer's
//! inputs agree within float32 noise — their largest difference at most `1e-3` of the layer's RMS (tens of
//! layers of different summation orders reach 1e-5..1e-4; a bug corrupts activations far beyond) — and then
//! only for elements within that difference of the boundary; anything else fails as a bug, naming the layer.
//! The noise-level decisions are flipped in the GPU's backward pass to the CPU's (the forward untouched) and
//! the step runs again, so the comparison below checks the arithmetic, not the conditioning; the situation's
//! line says how many were aligned. A failure also prints the forward drift of every decision site (the
//! first layer far above noise is where to look).
//!
//! **Tolerances** (f32 rounding, different summation orders, the GPU's exp / sqrt within a few ulp):
//! - class scores: `max |gpu − cpu| ≤ 1e-4 · max |cpu| + 1e-6`; loss: relative `1e-5`;
//! - gradients, per tensor: `max |gpu − cpu| ≤ 1e-3 · max |cpu of the tensor| + 1e-5 · max |cpu, all
//!   tensors|` — the absolute part covers gradients that are zero in exact arithmetic (a bias before a
//!   train-mode BatchNorm: rounding noise on both sides, of the order of 1e-6 of the largest gradient); a
//!   wrong gradient is off by the tensor's own scale;
//! - updated weights, per element: Adam's first step is `−lr · g / (|g| + eps)`, so two gradients g₁, g₂
//!   give steps at most `lr · min(2, 2 |g₁ − g₂| / (max(|g₁|, |g₂|) + eps))` apart; each weight must be
//!   within that (from the measured gradients) plus `1e-6 · (1 + |w|)`. The elements whose first step took
//!   opposite signs (gradients within noise of zero) are counted in the line.
//!
//! Some situations are ill-conditioned: a train-mode norm over values of small spread amplifies every
//! absolute rounding error by up to 1/sqrt(eps) (L-TAE's out_norm, a GroupNorm over 5 channels of sparse
//! post-ReLU, post-dropout values, took the decoder activations of a B 1 U-TAE 1e-3 apart; without dropout
//! the same situation agrees to 1e-4). When the fixed rules fail, a second opinion measures this
//! situation's own float32 sensitivity: the CPU step again with every weight moved by one ulp (its decisions
//! aligned to the CPU's); the GPU's decisions may then differ where its drift is within 16× the nudge's at
//! that layer, and each quantity passes within 16× of how far the nudge moved it. The GPU's rounding is not a
//! weight nudge — it lands elsewhere, and measured GPU / nudge drift ratios are 0.6–1.8 through the encoder
//! and up to 5 after such a norm — hence 16; a bug moves results by their own size, far beyond. The line
//! then says `ill-conditioned` and what the fixed rules said.
//!
//! **Replay.** Each situation is `<model>:<seed>`; a failure prints `SITSGPU_WHOLE_MODEL_CASE=<model>:<seed>`
//! (that variable runs just that one). `SITSGPU_WHOLE_MODEL_SITUATIONS=N` draws N situations per model
//! (default 2), `SITSGPU_WHOLE_MODEL_SEED=S` shifts the seeds. With `SITSGPU_POISON_POOL=1` every pooled GPU
//! buffer starts as NaN (`engine::pool`), so a kernel reading memory it did not write fails here; `.ci/run`
//! runs this test once that way, and once with `SITSGPU_LIMITS=webgpu` (WebGPU's default limits instead of the
//! adapter's own; the test checks first that the device really has them).

use std::collections::BTreeMap;

use sitsgpu::engine::decisions::{self, Kind, Options, Site};
use sitsgpu::engine::gpu::LimitsMode;
use sitsgpu::engine::rng::Rng;
use sitsgpu::engine::storage::{GpuStorage, Storage};
use sitsgpu::engine::testing::{assert_limits_in_force, gpu_or_skip};
use sitsgpu::layers::{Ctx, NormKind};
use sitsgpu::models::semantic::SemanticConfig;
use sitsgpu::models::stclassifier::TemporalKind;
use sitsgpu::models::utae::AggMode;
use sitsgpu::train::profile::{utae_small_config, ModelSpec, Workload};
use sitsgpu::Device;

/// Every model the check covers, by name. New models join here.
fn models() -> Vec<(String, ModelSpec)> {
    let mut v = Vec::new();
    for agg in [AggMode::AttGroup, AggMode::AttMean, AggMode::Mean] {
        for (norm, nname) in [
            (NormKind::Group, "group"),
            (NormKind::Batch, "batch"),
            (NormKind::Instance, "instance"),
        ] {
            let mut cfg = utae_small_config();
            cfg.agg_mode = agg;
            cfg.encoder_norm = norm;
            v.push((
                format!("utae-{}-{nname}", agg.name()),
                ModelSpec::Semantic(SemanticConfig::UTae(cfg)),
            ));
        }
    }
    // The U-TAE paper's baselines at their `small` widths (train::profile::small_kwargs).
    for name in [
        "uconvlstm",
        "buconvlstm",
        "fpn",
        "convlstm",
        "convgru",
        "unet3d",
    ] {
        let w = Workload::semantic(name, "small", 1, 1, 16).expect("a known model");
        v.push((name.to_string(), w.model));
    }
    // U-TAE + PaPs at the fixture's size (shapes 8 × 8), trained with one center per zone of synthetic
    // parcels (train::profile::synthetic_parcels).
    let w = Workload::panoptic("small", 1, 1, 16).expect("small");
    v.push(("utae_paps".to_string(), w.model));
    // U-ConvLSTM + PaPs: the small RecUNet of the baselines (encoder mode), the same heads.
    let w = Workload::paps("uconvlstm", "small", 1, 1, 16).expect("small");
    v.push(("uconvlstm_paps".to_string(), w.model));
    for kind in [
        TemporalKind::Ltae,
        TemporalKind::Tae,
        TemporalKind::Gru,
        TemporalKind::TempCnn,
    ] {
        v.push((kind.name().to_string(), ModelSpec::PixelSet(kind)));
    }
    v
}

/// The situation of `seed` for `spec` (module doc).
fn situation(spec: &ModelSpec, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut pick = |lo: u64, hi: u64| (lo + rng.below(hi - lo + 1)) as usize;
    match spec {
        ModelSpec::Semantic(_) | ModelSpec::Panoptic(..) => {
            let batch = pick(1, 3);
            // U-Net 3D pools time twice: its batch needs 4 dates or more (padding included).
            let least = match spec {
                ModelSpec::Semantic(cfg) if cfg.name() == "unet3d" => 4,
                _ => 1,
            };
            let mut lengths: Vec<usize> = (0..batch).map(|_| pick(1, 9)).collect();
            lengths[0] = lengths[0].max(least);
            let (h, w) = (8 * pick(2, 5), 8 * pick(2, 5));
            Workload {
                model: spec.clone(),
                batch,
                dates: *lengths.iter().max().expect("batch ≥ 1"),
                size: h,
                pixels: 0,
                width: Some(w),
                lengths,
                real_pixels: Vec::new(),
                seed,
                split_input_bytes: sitsgpu::layers::EVAL_SPLIT_BYTES,
            }
        }
        ModelSpec::PixelSet(_) => {
            let batch = pick(3, 4);
            let (dates, pixels) = (pick(1, 9), pick(4, 20));
            let real_pixels = (0..batch)
                .map(|_| match pick(0, 3) {
                    0 => pixels,
                    1 => pick(2, pixels as u64 - 1),
                    2 => 1,
                    _ => 0,
                })
                .collect();
            Workload {
                model: spec.clone(),
                batch,
                dates,
                size: 0,
                pixels,
                width: None,
                lengths: Vec::new(),
                real_pixels,
                seed,
                split_input_bytes: sitsgpu::layers::EVAL_SPLIT_BYTES,
            }
        }
    }
}

fn describe(w: &Workload) -> String {
    match w.model {
        ModelSpec::Semantic(_) | ModelSpec::Panoptic(..) => format!(
            "B{} dates {:?} {}x{}",
            w.batch,
            w.lengths,
            w.size,
            w.width.unwrap_or(w.size)
        ),
        ModelSpec::PixelSet(_) => format!(
            "B{} T{} S{} real pixels {:?}",
            w.batch, w.dates, w.pixels, w.real_pixels
        ),
    }
}

/// One training step of `w` on `device`, decisions recorded (and `flips` reversed in the backward pass).
struct Step {
    out: Vec<f32>,
    loss: f32,
    params: Vec<Param>,
    sites: Vec<Site>,
}

/// One parameter tensor through the step.
struct Param {
    name: String,
    before: Vec<f32>,
    grad: Vec<f32>,
    after: Vec<f32>,
}

/// The step; `nudge`: first move every weight by one ulp up or down (seeded), a float32-sized perturbation
/// of every layer that measures how far rounding alone can move this situation's results.
fn step(w: &Workload, device: Device, flips: BTreeMap<usize, Vec<usize>>, nudge: bool) -> Step {
    let mut p = w.prepare(device);
    let named = p.module().named_parameters("");
    if nudge {
        let mut rng = Rng::new(w.seed ^ 0x9e37_79b9);
        for (_, t) in &named {
            let v: Vec<f32> = t
                .to_vec()
                .into_iter()
                .map(|x| {
                    let up = rng.below(2) == 1;
                    f32::from_bits(if up == (x >= 0.0) {
                        x.to_bits() + 1
                    } else {
                        x.to_bits().saturating_sub(1)
                    })
                })
                .collect();
            t.storage().write(&v);
        }
    }
    let before: Vec<Vec<f32>> = named.iter().map(|(_, t)| t.to_vec()).collect();
    p.optimizer().zero_grad();
    let opts = Options {
        flips,
        keep_decisions: true,
        ..Options::default()
    };
    let ((out, loss), sites) = decisions::record(&opts, &named, || {
        let (out, loss) = p.forward_loss(&Ctx::train(w.seed));
        loss.backward();
        (out.to_vec(), loss.item())
    });
    let grads: Vec<Vec<f32>> = named
        .iter()
        .map(|(_, t)| {
            t.grad()
                .map_or_else(|| vec![0.0; t.numel()], |g| g.to_vec())
        })
        .collect();
    p.optimizer().step();
    let params = named
        .iter()
        .zip(before)
        .zip(grads)
        .map(|(((n, t), before), grad)| Param {
            name: n.clone(),
            before,
            grad,
            after: t.to_vec(),
        })
        .collect();
    Step {
        out,
        loss,
        params,
        sites,
    }
}

/// `first` (a step), or the same step again with the decisions that differ from `reference`'s flipped to
/// `reference`'s — each allowed only where the layer's drift is within `limit(site)`, else `Err`; returns
/// the step, how many decisions were aligned and their sites.
fn aligned_step(
    first: Step,
    w: &Workload,
    device: Device,
    nudge: bool,
    reference: &Step,
    limit: &dyn Fn(usize) -> f64,
) -> Result<(Step, usize, Vec<String>), String> {
    let flips = noise_mismatches(&first.sites, &reference.sites, limit).map_err(|e| {
        format!(
            "{e}\n     {}",
            forward_drift(&first.sites, &reference.sites)
        )
    })?;
    let n: usize = flips.values().map(Vec::len).sum();
    if n == 0 {
        return Ok((first, 0, Vec::new()));
    }
    let labels = flips
        .keys()
        .map(|&id| {
            let s = &first.sites[id];
            format!("{} #{id} {}", s.kind.name(), s.label)
        })
        .collect();
    let again = step(w, device, flips, nudge);
    let left = noise_mismatches(&again.sites, &reference.sites, limit)?;
    let wrong: usize = left
        .iter()
        .map(|(id, v)| {
            v.iter()
                .filter(|i| !again.sites[*id].flipped.contains(i))
                .count()
        })
        .sum();
    if wrong > 0 {
        return Err(format!("{wrong} decisions still differ after aligning"));
    }
    Ok((again, n, labels))
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max)
}

fn max_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x.is_finite() && y.is_finite() {
                (x as f64 - y as f64).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// The largest GPU-vs-CPU difference of a site's input (or of a max's margins), the layer's measured noise.
fn drift(g: &Site, c: &Site) -> f64 {
    match (&g.margins, &c.margins) {
        (Some(mg), Some(mc)) => mg
            .iter()
            .zip(mc)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .filter(|d| d.is_finite())
            .fold(0.0, f64::max),
        _ => 0.0,
    }
}

/// Float32 noise of a layer's input, GPU vs CPU, relative to its RMS (module doc).
const NOISE: f64 = 1e-3;

/// How far beyond a 1-ulp nudge's effect the GPU may land in an ill-conditioned situation (module doc).
const NUDGE_FACTOR: f64 = 16.0;

/// The GPU's decisions that differ from the CPU's: `Ok(flips)` when every one is within noise (to be
/// reversed in the GPU's backward), `Err(description)` for one that is not (a bug) or different structure.
fn noise_mismatches(
    gpu: &[Site],
    cpu: &[Site],
    limit: &dyn Fn(usize) -> f64,
) -> Result<BTreeMap<usize, Vec<usize>>, String> {
    if gpu.len() != cpu.len() {
        return Err(format!(
            "{} decision sites on the GPU, {} on the CPU",
            gpu.len(),
            cpu.len()
        ));
    }
    let mut flips = BTreeMap::new();
    for (g, c) in gpu.iter().zip(cpu) {
        if g.kind != c.kind || g.shape != c.shape {
            return Err(format!(
                "site #{}: {} {:?} on the GPU, {} {:?} on the CPU",
                g.id,
                g.kind.name(),
                g.shape,
                c.kind.name(),
                c.shape
            ));
        }
        let mismatches = g.mismatches(c);
        if mismatches.is_empty() {
            continue;
        }
        // The layer's measured GPU-vs-CPU noise: a differing decision has both margins within it.
        let (drift, limit) = (drift(g, c), limit(g.id));
        if drift > limit {
            let (i, mg, mc) = mismatches[0];
            return Err(format!(
                "{} #{} {}: {} element(s) decided differently (first {:?}: GPU margin {mg:+.3e}, CPU \
                 {mc:+.3e}) where the inputs differ by up to {drift:.2e}, beyond float32 noise ({limit:.1e}; \
                 RMS {:.3})",
                g.kind.name(),
                g.id,
                g.label,
                mismatches.len(),
                g.coords(i),
                c.scale
            ));
        }
        if g.kind != Kind::Argmax {
            flips.insert(g.id, mismatches.iter().map(|m| m.0).collect());
        }
    }
    Ok(flips)
}

/// Compares the two steps (module doc): `Ok(summary)` or `Err(what failed)`. `noise`: a nudged CPU step
/// (see [`step`]); when given, each tolerance is raised to [`NUDGE_FACTOR`]× how far the nudge moved that
/// quantity.
fn compare(
    gpu: &Step,
    cpu: &Step,
    noise: Option<&Step>,
    lr: f64,
    eps: f64,
) -> Result<String, String> {
    let mut fails = Vec::new();
    let measured = |f: &dyn Fn(&Step) -> f64| noise.map_or(0.0, |n| NUDGE_FACTOR * f(n));
    let out_tol = (1e-4 * max_abs(&cpu.out) + 1e-6).max(measured(&|n| max_err(&n.out, &cpu.out)));
    let out_err = max_err(&gpu.out, &cpu.out);
    if out_err > out_tol || gpu.out.len() != cpu.out.len() {
        fails.push(format!(
            "class scores: max err {out_err:.3e} > {out_tol:.3e}"
        ));
    }
    let rel = |a: f32| ((a as f64 - cpu.loss as f64) / cpu.loss as f64).abs();
    let loss_tol = 1e-5f64.max(measured(&|n| rel(n.loss)));
    if rel(gpu.loss) > loss_tol || !gpu.loss.is_finite() {
        fails.push(format!(
            "loss: GPU {} CPU {} (rel {:.2e} > {loss_tol:.1e})",
            gpu.loss,
            cpu.loss,
            rel(gpu.loss)
        ));
    }
    let big = cpu
        .params
        .iter()
        .map(|p| max_abs(&p.grad))
        .fold(0.0, f64::max);
    let (mut worst_g, mut worst_name, mut worst_w, mut opposite) =
        (0.0f64, String::new(), 0.0f64, 0);
    for (k, (g, c)) in gpu.params.iter().zip(&cpu.params).enumerate() {
        let name = &g.name;
        if g.before != c.before {
            fails.push(format!(
                "{name}: initial weights differ between the devices"
            ));
            continue;
        }
        let tol = (1e-3 * max_abs(&c.grad) + 1e-5 * big)
            .max(measured(&|n| max_err(&n.params[k].grad, &c.grad)));
        let err = max_err(&g.grad, &c.grad);
        if err / tol > worst_g {
            (worst_g, worst_name) = (err / tol, name.clone());
        }
        if err > tol {
            fails.push(format!("grad {name}: max err {err:.3e} > {tol:.3e}"));
        }
        for i in 0..g.after.len() {
            let (g1, g2) = (g.grad[i] as f64, c.grad[i] as f64);
            let bound = lr * (2.0f64).min(2.0 * (g1 - g2).abs() / (g1.abs().max(g2.abs()) + eps));
            let tol = 1.01 * bound + 1e-6 * (1.0 + (c.after[i] as f64).abs());
            let d = (g.after[i] as f64 - c.after[i] as f64).abs();
            if d > tol || d.is_nan() {
                fails.push(format!(
                    "updated {name}[{i}]: GPU {} CPU {} (from {}; gradients {g1:e} / {g2:e}), {d:.3e} > {tol:.3e}",
                    g.after[i], c.after[i], g.before[i]
                ));
                break;
            }
            worst_w = worst_w.max(d / tol);
            if (g.after[i] - g.before[i]) * (c.after[i] - c.before[i]) < 0.0 {
                opposite += 1;
            }
        }
    }
    if fails.is_empty() {
        Ok(format!(
            "scores {:.2}×tol, grads {worst_g:.2}×tol ({worst_name}), weights {worst_w:.2}×tol, {opposite} \
             first Adam steps of opposite signs (noise-level gradients)",
            out_err / out_tol
        ))
    } else {
        Err(fails.into_iter().take(6).collect::<Vec<_>>().join("; "))
    }
}

/// Where the forward passes part: per decision site, the largest |GPU − CPU| of its input relative to the
/// input's RMS (the first site far above float32 noise points at the layer to look at).
fn forward_drift(gpu: &[Site], cpu: &[Site]) -> String {
    let parts: Vec<String> = gpu
        .iter()
        .zip(cpu)
        .map(|(g, c)| {
            let d = drift(g, c) / c.scale.max(f64::MIN_POSITIVE);
            format!("{} #{} {}: {d:.1e}", g.kind.name(), g.id, g.label)
        })
        .collect();
    format!(
        "forward drift per decision site (max |GPU − CPU| / RMS): {}",
        parts.join(", ")
    )
}

/// One situation: `Ok(line)` or `Err(line)`.
fn check(name: &str, spec: &ModelSpec, seed: u64) -> Result<String, String> {
    let w = situation(spec, seed);
    let what = format!("{name}:{seed} {}", describe(&w));
    let cfg = sitsgpu::train::AdamConfig::default();
    let cpu = step(&w, Device::Cpu, BTreeMap::new(), false);
    let gpu0 = step(&w, Device::Gpu, BTreeMap::new(), false);
    let note = |n: usize, labels: &[String]| {
        if n == 0 {
            String::new()
        } else {
            format!(
                "; {n} decision(s) within float32 noise aligned to the CPU's: {}",
                labels.join(", ")
            )
        }
    };
    let fixed = |id: usize| NOISE * cpu.sites[id].scale;
    let first = match aligned_step(gpu0, &w, Device::Gpu, false, &cpu, &fixed) {
        Ok((gpu, n, labels)) => match compare(&gpu, &cpu, None, cfg.lr, cfg.eps) {
            Ok(s) => return Ok(format!("{what}: {s}{}", note(n, &labels))),
            Err(e) => format!("{e}{}", note(n, &labels)),
        },
        Err(e) => e,
    };
    // A second opinion: how far does rounding alone move this situation? The CPU step again with every
    // weight nudged by one ulp (its decisions aligned to the CPU's whatever its drift: same code), then the
    // GPU's decisions and results allowed NUDGE_FACTOR× the nudge's drift and effect.
    let nudged0 = step(&w, Device::Cpu, BTreeMap::new(), true);
    let (nudged, _, _) = aligned_step(nudged0, &w, Device::Cpu, true, &cpu, &|_| f64::INFINITY)
        .map_err(|e| format!("{what}: {first}; nudged CPU run: {e}"))?;
    let limit = |id: usize| fixed(id).max(NUDGE_FACTOR * drift(&nudged.sites[id], &cpu.sites[id]));
    let gpu0 = step(&w, Device::Gpu, BTreeMap::new(), false);
    let (gpu, n, labels) = aligned_step(gpu0, &w, Device::Gpu, false, &cpu, &limit)
        .map_err(|e| format!("{what}: {e} (even at {NUDGE_FACTOR}× a 1-ulp nudge's drift)"))?;
    match compare(&gpu, &cpu, Some(&nudged), cfg.lr, cfg.eps) {
        Ok(s) => Ok(format!(
            "{what}: {s}{} — ill-conditioned: within {NUDGE_FACTOR}× of what a 1-ulp nudge of the weights \
             moves (at the fixed tolerances: {first})",
            note(n, &labels)
        )),
        Err(e) => Err(format!(
            "{what}: {e} (even at {NUDGE_FACTOR}× a 1-ulp nudge's effect){}\n     {}",
            note(n, &labels),
            forward_drift(&gpu.sites, &cpu.sites)
        )),
    }
}

#[test]
fn whole_models_gpu_vs_cpu() {
    let Some(gpu) = gpu_or_skip("whole_model") else {
        return;
    };
    if sitsgpu::engine::pool::poison_enabled() {
        // The mode is live: a buffer straight from the pool reads NaN.
        let fresh = Storage::Gpu(GpuStorage::alloc(gpu, 5, "poison check"));
        assert!(
            fresh.to_vec(5).iter().all(|v| v.is_nan()),
            "SITSGPU_POISON_POOL=1 but a fresh buffer is not NaN"
        );
    }
    // SITSGPU_LIMITS=webgpu (a `.ci/run` pass): the device really has WebGPU's default limits.
    let limits = assert_limits_in_force(gpu);
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let models = models();
    let cases: Vec<(String, ModelSpec, u64)> = match env("SITSGPU_WHOLE_MODEL_CASE") {
        Some(case) => {
            let (name, seed) = case
                .rsplit_once(':')
                .expect("SITSGPU_WHOLE_MODEL_CASE=<model>:<seed>");
            let spec = models
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no model {name:?} in whole_model's list"))
                .1
                .clone();
            vec![(
                name.to_string(),
                spec,
                seed.parse().expect("a numeric seed"),
            )]
        }
        None => {
            let per: u64 =
                env("SITSGPU_WHOLE_MODEL_SITUATIONS").map_or(2, |v| v.parse().expect("a count"));
            let base: u64 =
                env("SITSGPU_WHOLE_MODEL_SEED").map_or(0, |v| v.parse().expect("a seed"));
            models
                .iter()
                .enumerate()
                .flat_map(|(m, (n, s))| {
                    (0..per).map(move |k| (n.clone(), s.clone(), base + 1000 * k + m as u64))
                })
                .collect()
        }
    };
    let start = std::time::Instant::now();
    let mut failed = Vec::new();
    for (name, spec, seed) in &cases {
        match check(name, spec, *seed) {
            Ok(line) => println!("ok   {line}"),
            Err(line) => {
                println!("FAIL {line}\n     replay: SITSGPU_WHOLE_MODEL_CASE={name}:{seed}");
                failed.push(format!("{name}:{seed}"));
            }
        }
    }
    println!(
        "whole_model: {} situations, {} failed, {:.0} s{}{}",
        cases.len(),
        failed.len(),
        start.elapsed().as_secs_f64(),
        if sitsgpu::engine::pool::poison_enabled() {
            " (pool poisoned with NaN)"
        } else {
            ""
        },
        if limits == LimitsMode::WebGpuDefaults {
            " (WebGPU's default limits)"
        } else {
            ""
        }
    );
    assert!(
        failed.is_empty(),
        "whole-model GPU vs CPU failures (replay each with SITSGPU_WHOLE_MODEL_CASE=…): {failed:?}"
    );
}
