//! Unit tests of the pixel-set workflow helpers (the end-to-end runs are in tests/workflow_pixelset.rs).

use super::*;

#[test]
fn metrics_keys_in_the_original_order() {
    let m = PixelSetMetrics {
        loss: 1.5,
        accuracy: 50.0,
        miou: 0.25,
        ..PixelSetMetrics::default()
    };
    let keys: Vec<String> = m.to_json("train").keys().cloned().collect();
    assert_eq!(keys, ["train_loss", "train_accuracy", "train_IoU"]);
    let keys: Vec<String> = m.to_json("val").keys().cloned().collect();
    assert_eq!(keys, ["val_accuracy", "val_loss", "val_IoU"]);
}

#[test]
fn draw_seeds_differ_by_fold_epoch_and_subset() {
    let a = draw_seed(1, 1, 1, 0);
    assert_ne!(a, draw_seed(1, 2, 1, 0));
    assert_ne!(a, draw_seed(1, 1, 2, 0));
    assert_ne!(a, draw_seed(1, 1, 1, 1));
    assert_eq!(a, draw_seed(1, 1, 1, 0));
    assert!(folds_to_run(Some(6), 5).is_err());
    assert_eq!(folds_to_run(None, 3).unwrap(), vec![1, 2, 3]);
}
