//! Unit tests of PaPs: parameter counts and state_dict keys of the original (U-TAE and U-ConvLSTM
//! backbones), conf.json parsing, box arithmetic.

use super::*;

fn count(paps: PapsConfig) -> usize {
    Paps::new(UTaeConfig::default().into(), paps, 0, Device::Cpu).num_parameters()
}

#[test]
fn parameter_counts_of_the_spec() {
    // Spec §6.2: U-TAE + PaPs 1,259,673 (the unused out_conv included); --no_mask_conv 1,257,016;
    // --shape_size 24 1,300,953.
    assert_eq!(count(PapsConfig::default()), 1_259_673);
    let no_mask = PapsConfig {
        mask_conv: false,
        ..PapsConfig::default()
    };
    assert_eq!(count(no_mask), 1_257_016);
    let s24 = PapsConfig {
        shape_size: 24,
        ..PapsConfig::default()
    };
    assert_eq!(count(s24), 1_300_953);
}

#[test]
fn state_dict_keys_of_appendix_a2() {
    let m = Paps::new(
        UTaeConfig::default().into(),
        PapsConfig::default(),
        0,
        Device::Cpu,
    );
    let params: Vec<String> = m.named_parameters("").into_iter().map(|p| p.0).collect();
    let buffers: Vec<String> = m.named_buffers("").into_iter().map(|p| p.0).collect();
    // 231 entries: the 158 U-TAE keys under encoder., min_confidence and the heads (spec §9.3).
    assert_eq!(params.len() + buffers.len(), 231);
    for k in [
        "encoder.in_conv.conv.conv.0.weight",
        "heatmap_conv.0.conv.4.bias",
        "saliency_conv.conv.3.weight",
        "shape_mlp.3.weight",
        "size_mlp.6.bias",
        "class_mlp.4.weight",
        "mask_cnn.5.bias",
    ] {
        assert!(params.iter().any(|p| p == k), "{k} missing");
    }
    for k in [
        "min_confidence",
        "heatmap_conv.0.conv.1.running_var",
        "size_mlp.4.num_batches_tracked",
        "class_mlp.1.running_mean",
    ] {
        assert!(buffers.iter().any(|p| p == k), "{k} missing");
    }
}

#[test]
fn boxes_follow_the_original_arithmetic() {
    // Center (1, 30) in a 32 × 32 image with size (2.5, 5.5): round half to even → (2, 6). Rows: half 1,
    // start 0, stop 2. Columns: half 3, start 27, stop 33 → clamped to 32, valid 0..5 of 6.
    let c = Center {
        b: 0,
        y: 1,
        x: 30,
        confidence: 0.5,
    };
    let l = InstanceLayout::new(&[c], &[2.5, 5.5], 32, 32);
    let b = l.boxes[0];
    assert_eq!(b.xyxy, [27, 0, 32, 2]);
    assert_eq!(b.size, [2, 6]);
    assert_eq!(b.valid, [0, 0]);
    assert_eq!((b.h(), b.w()), (2, 5));
    // A size below 1 gives a 1-pixel box; a box past the top-left starts its mask inside.
    let c = Center { y: 0, x: 0, ..c };
    let l = InstanceLayout::new(&[c, c], &[0.2, 0.49, 7.0, 4.0], 32, 32);
    assert_eq!(l.boxes[0].xyxy, [0, 0, 1, 1]);
    assert_eq!(l.boxes[1].xyxy, [0, 0, 2, 4]);
    assert_eq!(l.boxes[1].valid, [3, 2]);
    // Packed by crop size: the 1 × 1 mask first.
    assert_eq!(l.order, vec![0, 1]);
    assert_eq!(l.offsets, vec![0, 1]);
}

#[test]
fn uconvlstm_paps_parameter_count_and_state_dict_of_the_original() {
    // Spec §6.1: U-ConvLSTM + PaPs 1,692,953 (RecUNet 1,520,540 with its unused out_conv, heads 172,413).
    let m = Paps::new(
        RecUNetConfig::paps().into(),
        PapsConfig::default(),
        0,
        Device::Cpu,
    );
    assert_eq!(m.num_parameters(), 1_692_953);
    // Every key and shape of the original's state_dict (instantiated with torch), and no other.
    let want: Vec<(String, Vec<usize>)> =
        include_str!("../../../tests/data/uconvlstm_paps_state_dict.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, shape) = l.split_once(' ').expect("key shape");
                let dims = shape
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| d.trim().parse().expect("a dimension"))
                    .collect();
                (k.to_string(), dims)
            })
            .collect();
    assert_eq!(want.len(), 201);
    let mut got: Vec<(String, Vec<usize>)> = m
        .named_parameters("")
        .into_iter()
        .chain(m.named_buffers(""))
        .map(|(k, t)| (k, t.shape().to_vec()))
        .collect();
    // num_batches_tracked is a 0-d tensor in torch.
    for (k, s) in got.iter_mut() {
        if k.ends_with("num_batches_tracked") && s == &[1] {
            s.clear();
        }
    }
    let mut sorted_want = want.clone();
    sorted_want.sort();
    got.sort();
    assert_eq!(got, sorted_want);
}

#[test]
fn configs_of_conf_json_and_fixture_kwargs() {
    let path = std::path::Path::new("conf.json");
    // train_panoptic.py's vars(config): the width keys do not apply to uconvlstm.
    let conf =
        serde_json::json!({"backbone": "uconvlstm", "encoder_widths": [8, 8], "shape_size": 8});
    let (b, p) = Paps::configs(&conf, path).unwrap();
    assert_eq!(b, BackboneConfig::RecUNet(RecUNetConfig::paps()));
    assert_eq!(p.shape_size, 8);
    // A fixture's conf.json: reference.constructor_kwargs.RecUNet wins over the hard-coded arguments; the
    // constructor kwargs alone (the parity harness) give the same.
    let small = serde_json::json!({"input_dim": 10, "encoder_widths": [8, 12, 16, 20],
        "decoder_widths": [4, 8, 12, 20], "out_conv": [8, 20], "hidden_dim": 8, "input_size": 32,
        "encoder": true, "temporal": "lstm", "padding_mode": "zeros", "pad_value": 0});
    let kwargs =
        serde_json::json!({"RecUNet": small, "PaPs": {"num_classes": 20, "shape_size": 8}});
    let conf = serde_json::json!({"backbone": "uconvlstm", "shape_size": 8,
        "reference": {"constructor_kwargs": kwargs}});
    let (b, _) = Paps::configs(&conf, path).unwrap();
    let (b2, p2) = Paps::configs(&kwargs, path).unwrap();
    assert_eq!(b, b2);
    assert_eq!(p2.shape_size, 8);
    let BackboneConfig::RecUNet(r) = &b else {
        panic!("RecUNet expected, got {b:?}")
    };
    assert_eq!(
        (r.hidden_dim, r.encoder_widths[0], r.input_size),
        (8, 8, 32)
    );
    assert_eq!(b.dims(), (4, 44));
    // Written back as model_kwargs, read back alike.
    let conf = serde_json::json!({"backbone": "uconvlstm", "model_kwargs": r.kwargs()});
    assert_eq!(Paps::configs(&conf, path).unwrap().0, b);
    // Errors: an unknown backbone, a RecUNet outside encoder mode.
    let e = Paps::configs(&serde_json::json!({"backbone": "fpn"}), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("backbone") && e.contains("uconvlstm"), "{e}");
    let e = Paps::configs(&serde_json::json!({"RecUNet": {"encoder": false}}), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("encoder"), "{e}");
}

#[test]
fn uconvlstm_paps_forward_has_no_attention() {
    let kw = serde_json::json!({"encoder_widths": [8, 8, 8, 16], "decoder_widths": [8, 8, 8, 16],
        "out_conv": [8, 20], "hidden_dim": 4});
    let b = BackboneConfig::recunet(&kw, std::path::Path::new("kwargs")).unwrap();
    let cfg = PapsConfig {
        shape_size: 4,
        ..PapsConfig::default()
    };
    let m = Paps::new(b, cfg, 3, Device::Cpu);
    let (bs, t, h) = (2, 3, 16);
    let mut rng = crate::engine::rng::Rng::new(5);
    let x: Vec<f32> = (0..bs * t * 10 * h * h)
        .map(|_| rng.normal() as f32)
        .collect();
    let x = Tensor::from_vec(x, &[bs, t, 10, h, h], Device::Cpu);
    let pad = PadInfo {
        mask: vec![false; bs * t],
    };
    let days: Vec<f32> = (0..bs * t).map(|i| (i * 10) as f32).collect();
    let out = no_grad(|| m.forward(&x, &days, &pad, &Ctx::eval(), None, true, false));
    assert!(out.attn.is_none());
    assert_eq!(out.heatmap.shape(), &[bs, 1, h, h]);
    assert!(out.panoptic.is_some());
}
