//! The flags `train_panoptic.py` adds to `train_semantic.py`'s (spec §8.2, §9.4), taken by `sitsgpu train
//! --task panoptic` with the original names and defaults; the U-TAE flags, `--lr`, `--val_every`,
//! `--val_after`, ... are the ones of [`crate::train::flags::TrainArgs`], whose defaults change with the task
//! (lr 0.01, validation every 5 epochs after epoch 65 for panoptic); `TrainArgs::panoptic_options` makes the
//! options of [`crate::train::panoptic::train`] from both.

/// `train_panoptic.py`'s own flags (all optional here, so that giving one to another task is an error).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct PanopticFlags {
    /// panoptic: Side S of the predicted shapes (default 16).
    #[arg(long = "shape_size")]
    pub shape_size: Option<usize>,
    /// panoptic: No residual mask CNN (masks = σ(shape) · σ(saliency)).
    #[arg(long = "no_mask_conv")]
    pub no_mask_conv: bool,
    /// panoptic: Backbone: utae (from the width flags, the default) or uconvlstm (get_model's hard-coded
    /// RecUNet; the width flags do not apply).
    #[arg(long)]
    pub backbone: Option<String>,
    /// panoptic: Weight of the centerness loss (default 1).
    #[arg(long = "l_center")]
    pub l_center: Option<f32>,
    /// panoptic: Weight of the size loss (default 1).
    #[arg(long = "l_size")]
    pub l_size: Option<f32>,
    /// panoptic: Weight of the shape loss (default 1).
    #[arg(long = "l_shape")]
    pub l_shape: Option<f32>,
    /// panoptic: Weight of the class loss (default 1).
    #[arg(long = "l_class")]
    pub l_class: Option<f32>,
    /// panoptic: β of the centerness loss (default 4).
    #[arg(long)]
    pub beta: Option<f32>,
    /// panoptic: Do not tune the confidence threshold on validation.
    #[arg(long = "no_autotune")]
    pub no_autotune: bool,
    /// panoptic: Supervise the heads at every local maximum instead of one center per zone.
    #[arg(long = "no_supmax")]
    pub no_supmax: bool,
    /// panoptic: Warm-up epochs training the heatmap only (default 5).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// panoptic: Panoptic metrics on validation only (not on training batches).
    #[arg(long = "val_metrics_only")]
    pub val_metrics_only: bool,
    /// panoptic: Pseudo-NMS: fraction of a mask that must be new (default 0.5).
    #[arg(long = "min_remain")]
    pub min_remain: Option<f32>,
    /// panoptic: Binary threshold of the instance masks (default 0.4).
    #[arg(long = "mask_threshold")]
    pub mask_threshold: Option<f32>,
    /// panoptic: Initial confidence cut-off of the pseudo-NMS (default 0.2; then tuned on validation).
    #[arg(long = "min_confidence")]
    pub min_confidence: Option<f32>,
    /// panoptic: Void class (default 19): no class loss, left out of the metrics.
    #[arg(long = "void_label")]
    pub void_label: Option<i64>,
    /// panoptic: Background class (default 0), left out of the metrics.
    #[arg(long = "background_label")]
    pub background_label: Option<i64>,
}

impl PanopticFlags {
    /// Whether any panoptic flag was given.
    pub fn any_given(&self) -> bool {
        *self != PanopticFlags::default()
    }
}
