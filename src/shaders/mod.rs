//! The WGSL kernels as text: one `pub const` per `.wgsl` file, each in the folder of its op family
//! (`<family>/<name>.wgsl`, the families of `engine/ops/`). This folder is a leaf of the house: it imports nothing from the crate. Each op declares its kernels (entry point, workgroup size,
//! `Params` type, binding count) beside its own `Params` in `engine/ops/<family>/<op>.rs`, from these texts; the list of
//! every kernel and the naga tests over it (validation with only the optional capabilities a file declares in its [`Needs`], SPIR-V / MSL / HLSL
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

/// The optional adapter features a WGSL file needs (most need none). A kernel that needs one is launched only
/// where the device has it, beside a path that needs nothing (`engine::ops::linalg::half_matmul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Plain float32 / integer WGSL: every adapter.
    Nothing,
    /// `enable f16;`: wgpu's `SHADER_F16`.
    F16,
    /// `enable f16; enable wgpu_cooperative_matrix;` and subgroup builtins: `SHADER_F16`, `SUBGROUP` and
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX` with a 16 × 16 × 16 f16 × f16 → f32 configuration.
    CooperativeMatrix,
}

/// One WGSL file: its stem (also the shader module's label) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Wgsl {
    /// The op family, the sub-folder of `src/shaders/` (as `engine/ops/<family>/`).
    pub family: &'static str,
    /// File stem: `relu` for `elementwise/relu.wgsl`.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
    /// The optional features it needs.
    pub needs: Needs,
}

macro_rules! wgsl {
    ($konst:ident, $family:literal, $name:literal) => {
        #[doc = concat!("`", $family, "/", $name, ".wgsl`")]
        pub const $konst: Wgsl = Wgsl {
            family: $family,
            name: $name,
            source: include_str!(concat!($family, "/", $name, ".wgsl")),
            needs: Needs::Nothing,
        };
    };
    ($konst:ident, $family:literal, $name:literal, $needs:expr) => {
        #[doc = concat!("`", $family, "/", $name, ".wgsl`")]
        pub const $konst: Wgsl = Wgsl {
            family: $family,
            name: $name,
            source: include_str!(concat!($family, "/", $name, ".wgsl")),
            needs: $needs,
        };
    };
}

wgsl!(ADAM, "optim", "adam");
wgsl!(ADAM_FIND_OVERFLOW, "optim", "adam_find_overflow");
wgsl!(ADAM_UPDATE_SCALE, "optim", "adam_update_scale");
wgsl!(ATTENTION_WEIGHTS, "attention", "attention_weights");
wgsl!(ATTENTION_APPLY, "attention", "attention_apply");
wgsl!(
    ATTENTION_APPLY_BACKWARD_ATTN,
    "attention",
    "attention_apply_backward_attn"
);
wgsl!(
    ATTENTION_APPLY_BACKWARD_VALUE,
    "attention",
    "attention_apply_backward_value"
);
wgsl!(
    ATTENTION_WEIGHTS_BACKWARD,
    "attention",
    "attention_weights_backward"
);
wgsl!(AVG_POOL2D, "pool", "avg_pool2d");
wgsl!(AVG_POOL2D_BACKWARD, "pool", "avg_pool2d_backward");
wgsl!(BATCH_NORM, "norm", "batch_norm");
wgsl!(BATCH_NORM_BACKWARD, "norm", "batch_norm_backward");
wgsl!(BATCH_NORM_STATS, "norm", "batch_norm_stats");
wgsl!(BINARY, "elementwise", "binary");
wgsl!(CONV2D, "conv", "conv2d");
wgsl!(CONV2D_BACKWARD_INPUT, "conv", "conv2d_backward_input");
wgsl!(CONV2D_BACKWARD_WEIGHT, "conv", "conv2d_backward_weight");
wgsl!(
    CONV2D_BACKWARD_WEIGHT_DIRECT,
    "conv",
    "conv2d_backward_weight_direct"
);
wgsl!(
    CONV2D_BACKWARD_WEIGHT_NARROW,
    "conv",
    "conv2d_backward_weight_narrow"
);
wgsl!(CONV2D_DIRECT, "conv", "conv2d_direct");
wgsl!(CONV2D_NARROW, "conv", "conv2d_narrow");
wgsl!(CONV2D_PAD_FOLD, "conv", "conv2d_pad_fold");
wgsl!(CONV_FLIP_WEIGHT, "conv", "conv_flip_weight");
wgsl!(CONV_GRU_GATES, "recurrent", "conv_gru_gates");
wgsl!(
    CONV_GRU_GATES_BACKWARD,
    "recurrent",
    "conv_gru_gates_backward"
);
wgsl!(CONV_GRU_UPDATE, "recurrent", "conv_gru_update");
wgsl!(
    CONV_GRU_UPDATE_BACKWARD,
    "recurrent",
    "conv_gru_update_backward"
);
wgsl!(CONV_LSTM_CELL, "recurrent", "conv_lstm_cell");
wgsl!(
    CONV_LSTM_CELL_BACKWARD,
    "recurrent",
    "conv_lstm_cell_backward"
);
wgsl!(COPY_STRIDED, "movement", "copy_strided");
wgsl!(CROSS_ENTROPY, "reduce", "cross_entropy");
wgsl!(CROSS_ENTROPY_BACKWARD, "reduce", "cross_entropy_backward");
wgsl!(DROPOUT, "elementwise", "dropout");
wgsl!(GROUP_NORM, "norm", "group_norm");
wgsl!(
    GROUP_NORM_BACKWARD_INPUT,
    "norm",
    "group_norm_backward_input"
);
wgsl!(
    GROUP_NORM_BACKWARD_WEIGHT,
    "norm",
    "group_norm_backward_weight"
);
wgsl!(GRU_CELL, "recurrent", "gru_cell");
wgsl!(GRU_CELL_BACKWARD, "recurrent", "gru_cell_backward");
wgsl!(INDEX_SELECT, "movement", "index_select");
wgsl!(INDEX_SELECT_BACKWARD, "movement", "index_select_backward");
wgsl!(MASKED_FILL, "elementwise", "masked_fill");
wgsl!(MASKED_POOL, "reduce", "masked_pool");
wgsl!(MASKED_POOL_BACKWARD, "reduce", "masked_pool_backward");
wgsl!(HALF_MATMUL, "linalg", "half_matmul", Needs::F16);
wgsl!(
    HALF_MATMUL_COOP,
    "linalg",
    "half_matmul_coop",
    Needs::CooperativeMatrix
);
wgsl!(
    HALF_MATMUL_COOP8,
    "linalg",
    "half_matmul_coop8",
    Needs::CooperativeMatrix
);
wgsl!(HALF_PACK_OPERAND, "linalg", "half_pack_operand");
wgsl!(HALF_IM2COL, "conv", "half_im2col");
wgsl!(HALF_CONV, "conv", "half_conv", Needs::F16);
wgsl!(
    HALF_CONV_COOP,
    "conv",
    "half_conv_coop",
    Needs::CooperativeMatrix
);
wgsl!(HALF_CONV_DW, "conv", "half_conv_dw", Needs::F16);
wgsl!(
    HALF_CONV_DW_COOP,
    "conv",
    "half_conv_dw_coop",
    Needs::CooperativeMatrix
);
wgsl!(
    HALF_CONV_COOP8,
    "conv",
    "half_conv_coop8",
    Needs::CooperativeMatrix
);
wgsl!(
    HALF_CONV_DW_COOP8,
    "conv",
    "half_conv_dw_coop8",
    Needs::CooperativeMatrix
);
wgsl!(MATMUL, "linalg", "matmul");
wgsl!(MATMUL_128, "linalg", "matmul_128");
wgsl!(MAX_POOL3D, "pool", "max_pool3d");
wgsl!(MAX_POOL3D_BACKWARD, "pool", "max_pool3d_backward");
wgsl!(REDUCE_MAX, "reduce", "reduce_max");
wgsl!(REDUCE_MAX_BACKWARD, "reduce", "reduce_max_backward");
wgsl!(REDUCE_SUM, "reduce", "reduce_sum");
wgsl!(CHANNEL_SUM, "reduce", "channel_sum");
wgsl!(HALF_PACK, "elementwise", "half_pack");
wgsl!(HALF_UNPACK, "elementwise", "half_unpack");
wgsl!(HALF_ROUND, "elementwise", "half_round");
wgsl!(RELU, "elementwise", "relu");
wgsl!(RELU_BACKWARD, "elementwise", "relu_backward");
wgsl!(
    RELU_BACKWARD_INPLACE,
    "elementwise",
    "relu_backward_inplace"
);
wgsl!(RELU_INPLACE, "elementwise", "relu_inplace");
wgsl!(SOFTMAX, "reduce", "softmax");
wgsl!(SOFTMAX_BACKWARD, "reduce", "softmax_backward");
wgsl!(TEMPORAL_AGG, "attention", "temporal_agg");
wgsl!(
    TEMPORAL_AGG_BACKWARD_ATTN,
    "attention",
    "temporal_agg_backward_attn"
);
wgsl!(
    TEMPORAL_AGG_BACKWARD_X,
    "attention",
    "temporal_agg_backward_x"
);
wgsl!(TIME_FOLD, "movement", "time_fold");
wgsl!(TIME_UNFOLD, "movement", "time_unfold");
wgsl!(UNARY, "elementwise", "unary");
wgsl!(UNARY_BACKWARD, "elementwise", "unary_backward");
wgsl!(UPSAMPLE_BILINEAR, "pool", "upsample_bilinear");
wgsl!(
    UPSAMPLE_BILINEAR_BACKWARD,
    "pool",
    "upsample_bilinear_backward"
);

wgsl!(CROP_RAGGED, "paps", "crop_ragged");
wgsl!(CROP_RAGGED_BACKWARD, "paps", "crop_ragged_backward");
wgsl!(GATHER_PIXELS, "paps", "gather_pixels");
wgsl!(GATHER_PIXELS_BACKWARD, "paps", "gather_pixels_backward");
wgsl!(MAX_POOL2D, "pool", "max_pool2d");
wgsl!(MAX_POOL2D_BACKWARD, "pool", "max_pool2d_backward");
wgsl!(PAPS_LOSS, "paps", "paps_loss");
wgsl!(PAPS_LOSS_BACKWARD, "paps", "paps_loss_backward");
wgsl!(CROP_RESIZE, "paps", "crop_resize");
wgsl!(CROP_RESIZE_BACKWARD, "paps", "crop_resize_backward");
wgsl!(SEGMENT_ARGMAX, "paps", "segment_argmax");

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
    CROP_RESIZE,
    CROP_RESIZE_BACKWARD,
    SEGMENT_ARGMAX,
    ADAM,
    ADAM_FIND_OVERFLOW,
    ADAM_UPDATE_SCALE,
    ATTENTION_WEIGHTS,
    ATTENTION_APPLY,
    ATTENTION_APPLY_BACKWARD_ATTN,
    ATTENTION_APPLY_BACKWARD_VALUE,
    ATTENTION_WEIGHTS_BACKWARD,
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
    CONV_FLIP_WEIGHT,
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
    GRU_CELL,
    GRU_CELL_BACKWARD,
    INDEX_SELECT,
    INDEX_SELECT_BACKWARD,
    MASKED_FILL,
    MASKED_POOL,
    MASKED_POOL_BACKWARD,
    HALF_MATMUL,
    HALF_MATMUL_COOP,
    HALF_MATMUL_COOP8,
    HALF_PACK_OPERAND,
    HALF_IM2COL,
    HALF_CONV,
    HALF_CONV_COOP,
    HALF_CONV_DW,
    HALF_CONV_DW_COOP,
    HALF_CONV_COOP8,
    HALF_CONV_DW_COOP8,
    MATMUL,
    MATMUL_128,
    MAX_POOL3D,
    MAX_POOL3D_BACKWARD,
    REDUCE_MAX,
    REDUCE_MAX_BACKWARD,
    REDUCE_SUM,
    CHANNEL_SUM,
    RELU,
    RELU_BACKWARD,
    RELU_BACKWARD_INPLACE,
    RELU_INPLACE,
    HALF_PACK,
    HALF_UNPACK,
    HALF_ROUND,
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
