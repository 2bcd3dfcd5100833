//! U-ConvLSTM + PaPs end to end (the module doc of `main.rs`): a small RecUNet backbone trained, evaluated and
//! predicted on the CPU path and the GPU, get_model's hard-coded RecUNet on the CLI, and the project's
//! `uconvlstm_paps_small` case as an official checkpoint through `convert-weights`.

use super::*;

/// U-ConvLSTM + PaPs with a small RecUNet (widths as the tiny U-TAE's, hidden_dim 4).
fn uconvlstm_opts(data: &Path, res: &Path, epochs: usize, cpu: bool) -> PanopticOptions {
    let kwargs = serde_json::json!({"encoder_widths": [8, 8, 8, 16], "decoder_widths": [8, 8, 8, 16],
        "out_conv": [8, 20], "hidden_dim": 4, "input_size": 16});
    let backbone = BackboneConfig::recunet(&kwargs, Path::new("test kwargs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut o = PanopticOptions {
        backbone,
        ..opts(data, res, epochs)
    };
    o.run.cpu = cpu;
    o
}

/// 2 epochs (warm-up, then validation with tuning), the test, `evaluate` = training's test, `predict`.
fn uconvlstm_train_evaluate_predict(cpu: bool, tag: &str) {
    let tmp = TmpDir::new("workflow_panoptic", tag);
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let a = tmp.0.join("a");
    panoptic::train(&uconvlstm_opts(&data, &a, 2, cpu)).unwrap_or_else(|e| panic!("{e}"));
    let conf = read_json(&a.join("conf.json"));
    assert_eq!(conf["backbone"], "uconvlstm");
    assert_eq!(conf["model_kwargs"]["hidden_dim"], 4, "{conf}");
    assert_eq!(conf["model_kwargs"]["encoder"], true, "{conf}");
    assert_eq!(Task::detect(&conf), Some(Task::Panoptic));
    let fold = a.join("Fold_1");
    let log = read_json(&fold.join("trainlog.json"));
    assert!(log["2"].get("val_PQ").is_some(), "{log}");
    let got = test_numbers(&fold);
    assert!(got[..5].iter().all(|v| v.is_finite()), "{got:?}");
    let model = read_npz(fold.join("model.npz")).unwrap();
    assert!(model
        .get("encoder.temporal_encoder.cell_list.0.conv.weight")
        .is_some());
    assert!(model.get("encoder.out_convlstm.weight").is_some());

    let e = tmp.0.join("eval");
    let ev = EvaluateOptions {
        dataset_folder: data.clone(),
        weight_folder: a.clone(),
        res_dir: e.clone(),
        fold: Some(1),
        batch_size: None,
        cpu,
        progress: false,
        keep_last_batch: false,
        max_memory: None,
    };
    panoptic::evaluate::evaluate(&ev).unwrap_or_else(|e| panic!("{e}"));
    let same = test_numbers(&e.join("Fold_1"))
        .iter()
        .zip(&got)
        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
    assert!(same, "evaluate vs train's test");

    let p = tmp.0.join("pred");
    let weights = fold.join("model.npz");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"predict",
        &"--dataset_folder",
        &data,
        &"--weights",
        &weights,
        &"--folds",
        &"5",
        &"--out",
        &p,
    ];
    if cpu {
        args.push(&"--cpu");
    }
    let o = sitsgpu(&args);
    assert!(o.status.success(), "predict: {}", text(&o));
    let n = std::fs::read_dir(&p)
        .unwrap()
        .filter(|f| {
            let name = f.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("instance_")
        })
        .count();
    assert!(n > 0, "no instance_<ID>.npy");
}

#[test]
fn uconvlstm_paps_train_evaluate_predict_on_cpu() {
    uconvlstm_train_evaluate_predict(true, "uconvlstm-cpu");
}

/// On the GPU (skipped loudly without an adapter).
#[test]
fn gpu_uconvlstm_paps_smoke_run() {
    if gpu_or_skip("gpu_uconvlstm_paps_smoke_run").is_none() {
        return;
    }
    uconvlstm_train_evaluate_predict(false, "uconvlstm-gpu");
}

/// `train --task panoptic --backbone uconvlstm`: get_model's hard-coded RecUNet (the width flags do not
/// apply), 1,692,953 parameters; one optimiser step per epoch.
#[test]
fn cli_train_uconvlstm_backbone() {
    let tmp = TmpDir::new("workflow_panoptic", "cli-uconvlstm");
    let data = tmp.0.join("data");
    write_pastis(&data, &tiny_synth()).unwrap_or_else(|e| panic!("{e}"));
    let res = tmp.0.join("res");
    let o = sitsgpu(&[
        &"train",
        &"--task",
        &"panoptic",
        &"--backbone",
        &"uconvlstm",
        &"--encoder_widths",
        &"[8,8,8,16]",
        &"--dataset_folder",
        &data,
        &"--res_dir",
        &res,
        &"--fold",
        &"1",
        &"--epochs",
        &"2",
        &"--max_steps",
        &"1",
        &"--warmup",
        &"1",
        &"--val_after",
        &"0",
        &"--val_every",
        &"1",
        &"--batch_size",
        &"2",
        &"--shape_size",
        &"4",
        &"--cpu",
    ]);
    assert!(
        o.status.success(),
        "train --backbone uconvlstm: {}",
        text(&o)
    );
    let conf = read_json(&res.join("conf.json"));
    assert_eq!(conf["backbone"], "uconvlstm");
    // 1,692,953 with shapes of 16 × 16; with 4 × 4 shape_mlp's last layer (128 + 1) × (256 − 16) smaller.
    assert_eq!(conf["N_params"], 1_692_953 - 129 * 240);
    assert!(res.join("Fold_1/test_tables.npy").is_file());
    let e = sitsgpu_err(&[
        &"train",
        &"--task",
        &"panoptic",
        &"--backbone",
        &"fpn",
        &"--dataset_folder",
        &data,
        &"--cpu",
    ]);
    assert!(e.contains("--backbone") && e.contains("uconvlstm"), "{e}");
}

/// The project's `uconvlstm_paps_small` case (U-ConvLSTM + PaPs from the original code) as an official weight
/// folder: its conf.json (`backbone` uconvlstm, the RecUNet's kwargs under `reference.constructor_kwargs`),
/// the weights as `model.pth.tar` checked by `convert-weights` and read by `predict`, which reproduces the
/// case's panoptic maps exactly.
#[test]
fn uconvlstm_paps_checkpoint_converts_and_predicts_the_case_maps() {
    let case = project_fixtures_root().join("uconvlstm_paps_small");
    assert!(
        case.join("weights.npz").exists(),
        "case uconvlstm_paps_small missing under {}",
        project_fixtures_root().display()
    );
    let tmp = TmpDir::new("workflow_panoptic", "uconvlstm-case");
    let wf = tmp.0.join("weights");
    std::fs::create_dir_all(wf.join("Fold_1")).unwrap();
    std::fs::copy(case.join("conf.json"), wf.join("conf.json")).unwrap();
    let sd = read_npz(case.join("weights.npz")).unwrap();
    let pth = wf.join("Fold_1/model.pth.tar");
    write_torch_checkpoint(&pth, &sd, Some(3)).unwrap();
    let back = tmp.0.join("back.npz");
    let o = sitsgpu(&[
        &"convert-weights",
        &"--checkpoint",
        &pth,
        &"--out",
        &back,
        &"--config",
        &wf.join("conf.json"),
    ]);
    assert!(o.status.success(), "convert-weights: {}", text(&o));
    assert_bit_identical(&read_npz(&back).unwrap(), &sd, "pth.tar -> npz");
    let out = tmp.0.join("pred");
    let o = sitsgpu(&[
        &"predict",
        &"--dataset_folder",
        &case.join("../datasets/pastis_paps"),
        &"--weights",
        &pth,
        &"--batch_size",
        &"2",
        &"--out",
        &out,
        &"--cpu",
    ]);
    assert!(o.status.success(), "predict: {}", text(&o));
    check_fixture_maps(&case, &out);
}
