//! The WGSL kernels as text: one `pub const` per `.wgsl` file of this folder. This folder is a leaf of the
//! house: it imports nothing from the crate. Each op declares its kernels (entry point, workgroup size,
//! `Params` type, binding count) beside its own `Params` in `engine/ops/<op>.rs`, from these texts; the list of
//! every kernel and the naga tests over it (validation with no optional capability, SPIR-V / MSL / HLSL
//! translation, workgroup size, `Params` size and bindings against the Rust side, every file here registered)
//! live in `engine/kernels.rs`.
//!
//! Conventions (every file follows them; the tests enforce the checkable ones):
//! - Plain, valid WGSL: no templating, no preprocessor. The file parses and validates on its own.
//! - A header comment: the math, the thread mapping and dispatch, the bindings with shapes, the CPU reference
//!   and the backward file.
//! - The entry point has the file's name (family files — unary, binary — have one entry point per op).
//!   Pipelines, bind groups and passes are labelled with the entry point, so wgpu errors name the op.
//! - `const WG: u32` is the workgroup size (1-D), equal to the Rust `Kernel`'s.
//! - Storage buffers at bindings 0..n in header order, then `var<uniform> params: Params` at binding n, whose
//!   size equals the Rust `Params`. Every entry point uses every binding (the pipeline layout is derived
//!   from the shader).
//! - Workgroups are dispatched as a 2-D (rarely 3-D) grid folded to the adapter's per-dimension limit (see
//!   `engine::kernel`); every shader recovers its linear workgroup index as
//!   `wid.x + (wid.y + wid.z * nwg.y) * nwg.x` (`nwg` = `@builtin(num_workgroups)`) and returns early past
//!   its last element.
//! - Backward kernels are gathers: each invocation owns its outputs (WGSL has no f32 atomics).

/// One WGSL file: its stem (also the shader module's label) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Wgsl {
    /// File stem: `relu` for `relu.wgsl`.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

macro_rules! wgsl {
    ($konst:ident, $name:literal) => {
        #[doc = concat!("`", $name, ".wgsl`")]
        pub const $konst: Wgsl = Wgsl {
            name: $name,
            source: include_str!(concat!($name, ".wgsl")),
        };
    };
}

wgsl!(ADAM, "adam");
wgsl!(ATTENTION, "attention");
wgsl!(ATTENTION_APPLY, "attention_apply");
wgsl!(
    ATTENTION_APPLY_BACKWARD_ATTN,
    "attention_apply_backward_attn"
);
wgsl!(
    ATTENTION_APPLY_BACKWARD_VALUE,
    "attention_apply_backward_value"
);
wgsl!(ATTENTION_BACKWARD, "attention_backward");
wgsl!(AVG_POOL2D, "avg_pool2d");
wgsl!(AVG_POOL2D_BACKWARD, "avg_pool2d_backward");
wgsl!(BATCH_NORM, "batch_norm");
wgsl!(BATCH_NORM_BACKWARD, "batch_norm_backward");
wgsl!(BATCH_NORM_STATS, "batch_norm_stats");
wgsl!(BINARY, "binary");
wgsl!(CONV2D, "conv2d");
wgsl!(CONV2D_BACKWARD_INPUT, "conv2d_backward_input");
wgsl!(CONV2D_BACKWARD_WEIGHT, "conv2d_backward_weight");
wgsl!(
    CONV2D_BACKWARD_WEIGHT_DIRECT,
    "conv2d_backward_weight_direct"
);
wgsl!(
    CONV2D_BACKWARD_WEIGHT_NARROW,
    "conv2d_backward_weight_narrow"
);
wgsl!(CONV2D_DIRECT, "conv2d_direct");
wgsl!(CONV2D_NARROW, "conv2d_narrow");
wgsl!(CONV2D_PAD_FOLD, "conv2d_pad_fold");
wgsl!(CONV_GRU_GATES, "conv_gru_gates");
wgsl!(CONV_GRU_GATES_BACKWARD, "conv_gru_gates_backward");
wgsl!(CONV_GRU_UPDATE, "conv_gru_update");
wgsl!(CONV_GRU_UPDATE_BACKWARD, "conv_gru_update_backward");
wgsl!(CONV_LSTM_CELL, "conv_lstm_cell");
wgsl!(CONV_LSTM_CELL_BACKWARD, "conv_lstm_cell_backward");
wgsl!(COPY_STRIDED, "copy_strided");
wgsl!(CROSS_ENTROPY, "cross_entropy");
wgsl!(CROSS_ENTROPY_BACKWARD, "cross_entropy_backward");
wgsl!(DROPOUT, "dropout");
wgsl!(GROUP_NORM, "group_norm");
wgsl!(GROUP_NORM_BACKWARD_INPUT, "group_norm_backward_input");
wgsl!(GROUP_NORM_BACKWARD_WEIGHT, "group_norm_backward_weight");
wgsl!(INDEX_SELECT, "index_select");
wgsl!(INDEX_SELECT_BACKWARD, "index_select_backward");
wgsl!(MASKED_FILL, "masked_fill");
wgsl!(MASKED_POOL, "masked_pool");
wgsl!(MASKED_POOL_BACKWARD, "masked_pool_backward");
wgsl!(MATMUL, "matmul");
wgsl!(MATMUL_128, "matmul_128");
wgsl!(MAX_POOL3D, "max_pool3d");
wgsl!(MAX_POOL3D_BACKWARD, "max_pool3d_backward");
wgsl!(REDUCE_MAX, "reduce_max");
wgsl!(REDUCE_MAX_BACKWARD, "reduce_max_backward");
wgsl!(REDUCE_SUM, "reduce_sum");
wgsl!(RELU, "relu");
wgsl!(RELU_BACKWARD, "relu_backward");
wgsl!(SOFTMAX, "softmax");
wgsl!(SOFTMAX_BACKWARD, "softmax_backward");
wgsl!(TEMPORAL_AGG, "temporal_agg");
wgsl!(TEMPORAL_AGG_BACKWARD_ATTN, "temporal_agg_backward_attn");
wgsl!(TEMPORAL_AGG_BACKWARD_X, "temporal_agg_backward_x");
wgsl!(TIME_FOLD, "time_fold");
wgsl!(TIME_UNFOLD, "time_unfold");
wgsl!(UNARY, "unary");
wgsl!(UNARY_BACKWARD, "unary_backward");
wgsl!(UPSAMPLE_BILINEAR, "upsample_bilinear");
wgsl!(UPSAMPLE_BILINEAR_BACKWARD, "upsample_bilinear_backward");

wgsl!(CROP_RAGGED, "crop_ragged");
wgsl!(CROP_RAGGED_BACKWARD, "crop_ragged_backward");
wgsl!(GATHER_PIXELS, "gather_pixels");
wgsl!(GATHER_PIXELS_BACKWARD, "gather_pixels_backward");
wgsl!(MAX_POOL2D, "max_pool2d");
wgsl!(MAX_POOL2D_BACKWARD, "max_pool2d_backward");
wgsl!(PAPS_LOSS, "paps_loss");
wgsl!(PAPS_LOSS_BACKWARD, "paps_loss_backward");
wgsl!(RESIZE_CROP, "resize_crop");
wgsl!(RESIZE_CROP_BACKWARD, "resize_crop_backward");
wgsl!(SEGMENT_ARGMAX, "segment_argmax");

/// Every file of this folder (the naga tests check that none is missing).
pub const ALL: &[Wgsl] = &[
    CROP_RAGGED,
    CROP_RAGGED_BACKWARD,
    GATHER_PIXELS,
    GATHER_PIXELS_BACKWARD,
    MAX_POOL2D,
    MAX_POOL2D_BACKWARD,
    PAPS_LOSS,
    PAPS_LOSS_BACKWARD,
    RESIZE_CROP,
    RESIZE_CROP_BACKWARD,
    SEGMENT_ARGMAX,
    ADAM,
    ATTENTION,
    ATTENTION_APPLY,
    ATTENTION_APPLY_BACKWARD_ATTN,
    ATTENTION_APPLY_BACKWARD_VALUE,
    ATTENTION_BACKWARD,
    AVG_POOL2D,
    AVG_POOL2D_BACKWARD,
    BATCH_NORM,
    BATCH_NORM_BACKWARD,
    BATCH_NORM_STATS,
    BINARY,
    CONV2D,
    CONV2D_BACKWARD_INPUT,
    CONV2D_BACKWARD_WEIGHT,
    CONV2D_BACKWARD_WEIGHT_DIRECT,
    CONV2D_BACKWARD_WEIGHT_NARROW,
    CONV2D_DIRECT,
    CONV2D_NARROW,
    CONV2D_PAD_FOLD,
    CONV_GRU_GATES,
    CONV_GRU_GATES_BACKWARD,
    CONV_GRU_UPDATE,
    CONV_GRU_UPDATE_BACKWARD,
    CONV_LSTM_CELL,
    CONV_LSTM_CELL_BACKWARD,
    COPY_STRIDED,
    CROSS_ENTROPY,
    CROSS_ENTROPY_BACKWARD,
    DROPOUT,
    GROUP_NORM,
    GROUP_NORM_BACKWARD_INPUT,
    GROUP_NORM_BACKWARD_WEIGHT,
    INDEX_SELECT,
    INDEX_SELECT_BACKWARD,
    MASKED_FILL,
    MASKED_POOL,
    MASKED_POOL_BACKWARD,
    MATMUL,
    MATMUL_128,
    MAX_POOL3D,
    MAX_POOL3D_BACKWARD,
    REDUCE_MAX,
    REDUCE_MAX_BACKWARD,
    REDUCE_SUM,
    RELU,
    RELU_BACKWARD,
    SOFTMAX,
    SOFTMAX_BACKWARD,
    TEMPORAL_AGG,
    TEMPORAL_AGG_BACKWARD_ATTN,
    TEMPORAL_AGG_BACKWARD_X,
    TIME_FOLD,
    TIME_UNFOLD,
    UNARY,
    UNARY_BACKWARD,
    UPSAMPLE_BILINEAR,
    UPSAMPLE_BILINEAR_BACKWARD,
];
