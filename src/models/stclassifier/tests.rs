//! Parameter counts against the spec (§4.1–4.5, config_fig2.json), configuration parsing, and small forward
//! checks of the four classifiers.

use super::*;
use std::path::Path;

fn build(kind: TemporalKind, conf: Value) -> PixelSetClassifier {
    let c = PixelSetModelConfig::from_json_as(kind, &conf, None, Path::new("test"))
        .unwrap_or_else(|e| panic!("{e}"));
    PixelSetClassifier::new(c, 0, Device::Cpu)
}

fn temporal_params(m: &PixelSetClassifier) -> usize {
    m.temporal_encoder.module().num_parameters()
}

#[test]
fn pse_ltae_default_counts_and_names() {
    // Spec §4.3: PSE 19,936 + L-TAE 112,000 + decoder 11,188 = 143,124.
    let m = PixelSetClassifier::new(PixelSetModelConfig::default(), 0, Device::Cpu);
    assert_eq!(m.spatial_encoder.num_parameters(), 19_936);
    assert_eq!(temporal_params(&m), 112_000);
    assert_eq!(m.decoder.num_parameters(), 11_188);
    assert_eq!(m.num_parameters(), 143_124);
    let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
    for k in [
        "spatial_encoder.mlp1.1.bn.weight",
        "spatial_encoder.mlp2.1.weight",
        "temporal_encoder.inconv.1.bias",
        "temporal_encoder.mlp.1.bias",
        "decoder.6.bias",
    ] {
        assert!(names.iter().any(|n| n == k), "{k}");
    }
}

#[test]
fn pse_tae_default_counts() {
    // Spec §4.4: default PseTae, temporal 132,992, total 164,116.
    let m = build(TemporalKind::Tae, json!({}));
    assert_eq!(temporal_params(&m), 132_992);
    assert_eq!(m.num_parameters(), 164_116);
    let names: Vec<String> = m.named_parameters("").into_iter().map(|(n, _)| n).collect();
    for k in [
        "temporal_encoder.attention_heads.fc1_q.weight",
        "temporal_encoder.attention_heads.fc2.0.weight",
        "temporal_encoder.attention_heads.fc2.1.bias",
        "temporal_encoder.mlp.4.weight",
    ] {
        assert!(names.iter().any(|n| n == k), "{k}");
    }
}

#[test]
fn paper_figure_variants_have_the_spec_parameter_counts() {
    // Spec §4.3 (L-TAE: temporal / full), §4.4 (TAE temporal), §4.5 (GRU, TempCNN temporal).
    let ltae = [
        ("9k", 8_832, 39_956),
        ("34k", 33_920, 65_044),
        ("112k", 112_000, 143_124),
        ("288k", 288_640, 319_764),
        ("740k", 740_480, 771_604),
        ("3840k", 3_808_896, 3_840_020),
    ];
    for (label, t, full) in ltae {
        let m = build(
            TemporalKind::Ltae,
            paper_variant(TemporalKind::Ltae, label).unwrap(),
        );
        assert_eq!(
            (temporal_params(&m), m.num_parameters()),
            (t, full),
            "L-TAE {label}"
        );
    }
    let others = [
        (TemporalKind::Tae, "19k", 19_536),
        (TemporalKind::Tae, "39k", 38_816),
        (TemporalKind::Tae, "76k", 75_808),
        (TemporalKind::Tae, "195k", 194_848),
        (TemporalKind::Tae, "360k", 359_456),
        (TemporalKind::Tae, "641k", 641_216),
        (TemporalKind::Tae, "2592k", 2_592_000),
        (TemporalKind::Gru, "15k", 15_552),
        (TemporalKind::Gru, "37k", 37_248),
        (TemporalKind::Gru, "134k", 133_848),
        (TemporalKind::Gru, "296k", 296_448),
        (TemporalKind::Gru, "636k", 636_000),
        (TemporalKind::Gru, "3545k", 3_545_088),
        (TemporalKind::TempCnn, "14k", 14_320),
        (TemporalKind::TempCnn, "45k", 44_512),
        (TemporalKind::TempCnn, "136k", 135_744),
        (TemporalKind::TempCnn, "296k", 295_872),
        (TemporalKind::TempCnn, "702k", 702_108),
        (TemporalKind::TempCnn, "3362k", 3_361_984),
    ];
    for (kind, label, t) in others {
        let m = build(kind, paper_variant(kind, label).unwrap());
        assert_eq!(temporal_params(&m), t, "{kind:?} {label}");
    }
    assert!(paper_variant(TemporalKind::Gru, "9k").is_none());
}

#[test]
fn train_py_conf_and_flags() {
    let conf = json!({
        "mlp1": "[10,32,64]", "mlp2": [132, 128], "n_head": 16, "d_k": 8, "mlp3": [256, 128],
        "d_model": 256, "positions": "bespoke", "lms": 3, "mlp4": [128, 64, 32, 20],
        "tae": false, "gru": false, "tcnn": false,
    });
    let p = Path::new("conf.json");
    let c = PixelSetModelConfig::from_json(&conf, Some(&[0, 5, 9]), p).unwrap();
    match &c.temporal {
        TemporalConfig::Ltae(l) => {
            assert_eq!(l.positions.as_deref(), Some(&[0, 5, 9][..]));
            assert_eq!(l.len_max_seq, 3);
        }
        other => panic!("{other:?}"),
    }
    // "bespoke" without the dataset's positions, and --tae with L-TAE's flag values, are errors naming the file.
    let e = PixelSetModelConfig::from_json(&conf, None, p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("conf.json") && e.contains("bespoke"), "{e}");
    let mut tae = conf.clone();
    tae["tae"] = json!(true);
    let e = PixelSetModelConfig::from_json(&tae, Some(&[0, 5, 9]), p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("n_head · d_model = 4096"), "{e}");
    assert_eq!(
        TemporalKind::of_conf(&json!({"gru": true, "tcnn": true}), p).unwrap(),
        TemporalKind::Gru
    );
    assert_eq!(
        TemporalKind::parse("PseTempCNN"),
        Some(TemporalKind::TempCnn)
    );
    assert_eq!(TemporalKind::parse("pse_ltae"), Some(TemporalKind::Ltae));
    assert!(TemporalKind::of_conf(&json!({"model": "utae"}), p).is_err());
    // d_model "none" (our command line's spelling) and null both mean no input convolution.
    let c = PixelSetModelConfig::from_json(&json!({"d_model": "none", "mlp3": [128]}), None, p)
        .unwrap();
    assert!(matches!(&c.temporal, TemporalConfig::Ltae(l) if l.d_model.is_none()));
}

#[test]
fn every_kind_classifies_a_small_batch() {
    // B = 2 samples, T = 4 dates, C = 3 bands, S = 5 pixels; widths kept tiny.
    let (b, t, c, s) = (2, 4, 3, 5);
    let base = json!({
        "input_dim": 3, "mlp1": [3, 4], "mlp2": [12, 6], "extra_size": 4, "lms": 4, "seq_len": 4,
        "mlp4": [6, 5, 3],
    });
    let variants = [
        (
            TemporalKind::Ltae,
            json!({"n_head": 2, "d_k": 2, "d_model": 8, "mlp3": [8, 6]}),
        ),
        (
            TemporalKind::Tae,
            json!({"n_head": 2, "d_k": 2, "d_model": 4, "mlp3": [8, 6]}),
        ),
        (TemporalKind::Gru, json!({"hidden_dim": 6})),
        (TemporalKind::TempCnn, json!({"nker": [5], "mlp3": [6]})),
    ];
    let x: Vec<f32> = (0..b * t * c * s)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let pixels = Tensor::from_vec(x, &[b, t, c, s], Device::Cpu);
    let mask: Vec<f32> = (0..b * t * s)
        .map(|i| if i % s < 3 { 1.0 } else { 0.0 })
        .collect();
    let extra = Tensor::from_vec(vec![0.5; b * t * 4], &[b, t, 4], Device::Cpu);
    for (kind, v) in variants {
        let mut conf = base.clone();
        conf.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        let m = build(kind, conf);
        let (logits, attn) = m.forward(&pixels, &mask, Some(&extra), &Ctx::train(3));
        assert_eq!(logits.shape(), &[b, 3], "{kind:?}");
        assert_eq!(
            attn.is_some(),
            matches!(kind, TemporalKind::Ltae | TemporalKind::Tae)
        );
        if let Some(a) = attn {
            assert_eq!(a.shape(), &[2, b, t]);
        }
        // Every parameter receives a gradient from the focal loss.
        crate::models::pse::focal_loss(&logits, &[0, 2], 1.0).backward();
        for (name, p) in m.named_parameters("") {
            assert!(p.grad().is_some(), "{kind:?}: no gradient for {name}");
        }
    }
}

/// Zero sizes, a non-positive period and a dropout outside [0, 1) are refused with a sentence (the original
/// fails on them later, or trains on NaN), for each temporal encoder that has them.
#[test]
fn impossible_sizes_are_refused() {
    let refused = |kind: TemporalKind, conf: Value, says: &str| {
        let e = PixelSetModelConfig::from_json_as(kind, &conf, None, Path::new("conf.json"))
            .err()
            .unwrap_or_else(|| panic!("{kind:?} {conf}: accepted"))
            .to_string();
        assert!(e.contains(says), "{kind:?} {conf}: {e}");
    };
    for kind in [TemporalKind::Ltae, TemporalKind::Tae] {
        refused(kind, json!({"n_head": 0}), "n_head must be at least 1");
        refused(kind, json!({"d_k": 0}), "d_k must be at least 1");
        refused(kind, json!({"lms": 0}), "lms must be at least 1");
        refused(kind, json!({"T": 0}), "must be positive");
        refused(kind, json!({"T": -3.0}), "must be positive");
        refused(kind, json!({"dropout": 1.0}), "dropout must be in [0, 1)");
    }
    refused(
        TemporalKind::Gru,
        json!({"hidden_dim": 0}),
        "hidden_dim must be at least 1",
    );
    refused(
        TemporalKind::TempCnn,
        json!({"nker": "[32,0,128]"}),
        "every width must be at least 1",
    );
    refused(
        TemporalKind::Ltae,
        json!({"mlp1": "[10,0,64]"}),
        "mlp1 [10, 0, 64]",
    );
    // The defaults pass.
    for kind in [
        TemporalKind::Ltae,
        TemporalKind::Tae,
        TemporalKind::Gru,
        TemporalKind::TempCnn,
    ] {
        PixelSetModelConfig::from_json_as(kind, &json!({}), None, Path::new("conf.json")).unwrap();
    }
}
