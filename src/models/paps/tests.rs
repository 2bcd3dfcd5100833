use super::*;

fn count(paps: PapsConfig) -> usize {
    Paps::new(UTaeConfig::default(), paps, 0, Device::Cpu).num_parameters()
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
    let m = Paps::new(UTaeConfig::default(), PapsConfig::default(), 0, Device::Cpu);
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
