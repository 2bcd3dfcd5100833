//! The `sitsgpu` command. Thin: parses flags and calls the library.
//!
//! - `sitsgpu info`: every adapter wgpu finds, the one chosen and why, its limits and features, and a tiny
//!   self-test kernel compared with the CPU reference. Run this first on a new machine.
//! - `sitsgpu predict`: a semantic model (weights .npz or official model.pth.tar + conf.json) over a PASTIS
//!   folder, writing logits, class maps and optionally attention masks per patch.
//! - `sitsgpu convert-weights`: an official `model.pth.tar` (zip or legacy torch format) to `.npz`, checked
//!   against the model its conf.json describes.
//! - `sitsgpu synth`: a synthetic dataset in the PASTIS layout (learnable crop phenologies, clouds, all the
//!   annotation files), for demos, tests and benchmarks without the real data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sitsgpu::data::checkpoint::read_torch_checkpoint;
use sitsgpu::data::state_dict::write_npz;
use sitsgpu::data::synthetic::{write_pastis, SynthOptions};
use sitsgpu::engine::gpu::{enumerate_adapters, Gpu};
use sitsgpu::layers::state::load_state_dict;
use sitsgpu::models::registry;
use sitsgpu::train::predict::{predict, PredictOptions};
use sitsgpu::{Device, Tensor};

#[derive(Parser)]
#[command(
    name = "sitsgpu",
    version,
    about = "Satellite image time series models on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, show the chosen one with its limits, and run a self-test kernel.
    Info,
    /// Run a semantic model over PASTIS patches and write logits_<ID>.npy, pred_<ID>.npy (and attn_<ID>.npy).
    Predict {
        /// PASTIS folder (metadata.geojson, DATA_S2/, NORM_S2_patch.json, ...).
        #[arg(long)]
        dataset_folder: PathBuf,
        /// Weights: our .npz or an official model.pth.tar.
        #[arg(long)]
        weights: PathBuf,
        /// conf.json of the model (default: beside the weights or in their parent folder).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Patches per batch (batch-max temporal padding, as the original collate).
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        /// Folds to predict and normalise with (default: all five).
        #[arg(long, num_args = 1..)]
        folds: Option<Vec<usize>>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Also write the L-TAE attention masks (n_head x T x h x w).
        #[arg(long)]
        save_attention: bool,
        /// Run on the CPU reference path instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// Convert an official checkpoint (model.pth.tar) to .npz with the same state_dict names.
    ConvertWeights {
        /// The checkpoint (torch.save of {"epoch", "state_dict", "optimizer"}; zip or legacy format).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The .npz to write.
        #[arg(long)]
        out: PathBuf,
        /// conf.json to check the keys and shapes against (default: beside the checkpoint or its parent).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a synthetic dataset in the PASTIS layout (refuses a non-empty folder it did not write).
    Synth {
        /// Output folder (new, empty, or a previous `sitsgpu synth` output, which is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Layout: only `pastis` for now.
        #[arg(long, default_value = "pastis")]
        format: String,
        /// Number of patches (at least 5: one per fold).
        #[arg(long, default_value_t = SynthOptions::default().patches)]
        patches: usize,
        /// Patch side in pixels (a multiple of 8).
        #[arg(long, default_value_t = SynthOptions::default().size)]
        size: usize,
        /// Random seed (same seed and options, same bytes).
        #[arg(long, default_value_t = SynthOptions::default().seed)]
        seed: u64,
        /// Fewest acquisitions per patch.
        #[arg(long, default_value_t = SynthOptions::default().min_dates)]
        min_dates: usize,
        /// Most acquisitions per patch.
        #[arg(long, default_value_t = SynthOptions::default().max_dates)]
        max_dates: usize,
        /// Number of crop classes (1..=18).
        #[arg(long, default_value_t = SynthOptions::default().classes)]
        classes: usize,
    },
}

fn info() -> Result<(), String> {
    let adapters = enumerate_adapters();
    println!("adapters found: {}", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "  [{i}] {} | backend {} | type {} | driver {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let gpu = Gpu::get().map_err(|e| e.to_string())?;
    println!(
        "chosen: {} ({}, {}) because {}",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type, gpu.reason
    );
    let l = &gpu.limits;
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size     {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "  max_buffer_size                     {} bytes",
        l.max_buffer_size
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_workgroup_storage_size  {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!("features: {:?}", gpu.features);
    // Self-test: relu and a small matmul on the GPU against the CPU reference.
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 7.0).collect();
    let cpu = Tensor::from_vec(x.clone(), &[10, 100], Device::Cpu);
    let gpu_t = Tensor::from_vec(x, &[10, 100], Device::Gpu);
    let relu_ok = cpu.relu().to_vec() == gpu_t.relu().to_vec();
    let a = cpu.matmul(&cpu.transpose(0, 1)).to_vec();
    let b = gpu_t.matmul(&gpu_t.transpose(0, 1)).to_vec();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| ((p - q) / p.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    let mm_ok = worst < 1e-4;
    println!(
        "self-test: relu {} | matmul {} (worst relative error {worst:.2e})",
        ok(relu_ok),
        ok(mm_ok)
    );
    if relu_ok && mm_ok {
        Ok(())
    } else {
        Err(
            "self-test failed: this adapter computes different results from the CPU reference"
                .into(),
        )
    }
}

fn convert_weights(
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<(), String> {
    let ck = read_torch_checkpoint(checkpoint).map_err(|e| e.to_string())?;
    match registry::find_config(checkpoint, config) {
        Ok(conf_path) => {
            let conf = registry::read_json(&conf_path).map_err(|e| e.to_string())?;
            let model = registry::semantic_from_conf(&conf, &conf_path, 0, Device::Cpu)
                .map_err(|e| e.to_string())?;
            load_state_dict(&model, &ck.state_dict, checkpoint).map_err(|e| e.to_string())?;
            println!(
                "checked {} entries against the model of {}",
                ck.state_dict.len(),
                conf_path.display()
            );
        }
        Err(e) if config.is_some() => return Err(e.to_string()),
        Err(_) => println!("no conf.json found: writing the state_dict unchecked"),
    }
    write_npz(out, &ck.state_dict).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} entries, epoch {:?})",
        out.display(),
        ck.state_dict.len(),
        ck.epoch
    );
    Ok(())
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Predict {
            dataset_folder,
            weights,
            config,
            batch_size,
            folds,
            out,
            save_attention,
            cpu,
        } => (|| {
            let device = if cpu { Device::Cpu } else { Device::Gpu };
            if !cpu {
                Gpu::get().map_err(|e| e.to_string())?;
            }
            let conf =
                registry::find_config(&weights, config.as_deref()).map_err(|e| e.to_string())?;
            let model =
                registry::load_semantic(&conf, &weights, device).map_err(|e| e.to_string())?;
            let opts = PredictOptions {
                dataset_folder,
                folds,
                batch_size,
                out: out.clone(),
                save_attention,
            };
            let n = predict(&model, device, &opts).map_err(|e| e.to_string())?;
            println!("wrote predictions for {n} patches to {}", out.display());
            Ok(())
        })(),
        Command::ConvertWeights {
            checkpoint,
            out,
            config,
        } => convert_weights(&checkpoint, &out, config.as_deref()),
        Command::Synth {
            out,
            format,
            patches,
            size,
            seed,
            min_dates,
            max_dates,
            classes,
        } => (|| {
            if format != "pastis" {
                return Err(format!(
                    "--format {format:?} is not supported: only `pastis` is, for now (the pixel-set \
                     format comes later)"
                ));
            }
            let opts = SynthOptions {
                patches,
                size,
                seed,
                min_dates,
                max_dates,
                classes,
            };
            let summary = write_pastis(&out, &opts).map_err(|e| e.to_string())?;
            println!("wrote {summary}");
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
