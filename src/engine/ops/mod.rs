//! The op catalogue. Each op lives in one file with its math, CPU reference, GPU launch, autograd hookup and
//! tests (see `relu.rs`, the tutorial op).
//!
//! | op | forward kernel | backward | CPU reference |
//! | --- | --- | --- | --- |
//! | relu | relu.wgsl | relu_backward.wgsl | relu::cpu_forward/backward |
//! | leaky_relu, sigmoid, tanh, exp, log, sqrt, softplus | unary.wgsl `<op>_forward` | unary_backward.wgsl `<op>_backward` | unary::Unary |
//! | add_scalar, mul_scalar, neg | unary.wgsl | identity / mul_scalar (composition) | unary::Unary |
//! | add, sub, mul, div (broadcasting) | binary.wgsl | composition: binary ops + sum_to | binary |
//! | sum, mean, sum_to | reduce_sum.wgsl | expand (copy_strided) | reduce::cpu_sum |
//! | max over an axis, argmax | reduce_max.wgsl | reduce_max_backward.wgsl | reduce_max::cpu_max |
//! | matmul (batched, tiled) | matmul.wgsl | two matmuls with transposes | matmul |
//! | softmax | softmax.wgsl | softmax_backward.wgsl | softmax |
//! | reshape, permute, transpose, narrow, chunk, expand, cat | copy_strided.wgsl (reshape: none) | the inverse movement / sum_to | movement::cpu_copy_strided |
//! | index_select | index_select.wgsl | index_select_backward.wgsl | index_select |
//! | masked_fill | masked_fill.wgsl | masked_fill of dy with 0 | masked_fill |
//! | dropout (seeded, inverted) | dropout.wgsl | dropout of dy with the same seed | dropout |
//! | cross_entropy (weights, ignore index) | cross_entropy.wgsl | cross_entropy_backward.wgsl | cross_entropy |
//! | temporal attention weights (L-TAE master query) | attention.wgsl | attention_backward.wgsl + matmul (dQ) | attention::cpu_scores |
//! | temporal attention apply (heads concatenated) | attention_apply.wgsl | attention_apply_backward_{value,attn}.wgsl | attention_apply::cpu_forward/backward |
//! | temporal aggregation of skips (att_group/att_mean) | temporal_agg.wgsl | temporal_agg_backward_{x,attn}.wgsl | temporal_agg |
//! | masked_mean_std (the PSE's pooling, its quirks) | masked_pool.wgsl | masked_pool_backward.wgsl | masked_pool |
//! | group_norm | group_norm.wgsl | group_norm_backward_input.wgsl, group_norm_backward_weight.wgsl (dγ, dβ; two-pass over slices) | group_norm |
//! | instance_norm | composition: group_norm(C groups, no affine) | (group_norm's) | group_norm |
//! | layer_norm | composition: group_norm(1 group) on (R, 1, D), then mul/add | (compositions') | group_norm |
//! | batch_norm (1d/2d; training updates running stats in place) | batch_norm_stats.wgsl (training; two-pass over slices), batch_norm.wgsl | group_norm_backward_weight.wgsl (dγ, dβ), batch_norm_backward.wgsl (dx) | batch_norm |
//! | upsample_bilinear (align_corners = False) | upsample_bilinear.wgsl | upsample_bilinear_backward.wgsl | upsample |
//! | avg_pool2d | avg_pool2d.wgsl | avg_pool2d_backward.wgsl | pool |
//! | conv2d (stride, zero / reflect padding, bias) | conv2d.wgsl (tiled implicit GEMM) | conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl (+ reduce_sum), bias: sum | conv2d |
//! | max_pool2d_same (k × k, stride 1, −∞ padding; PaPs' local maxima) | max_pool2d.wgsl | max_pool2d_backward.wgsl | max_pool |
//! | segment_argmax (scatter-max over zones, ties → smallest index; no gradient) | segment_argmax.wgsl | none (indices) | segment_argmax |
//! | gather_pixels (PaPs' center features) | gather_pixels.wgsl | gather_pixels_backward.wgsl (inverse index) | gather_pixels |
//! | crop_ragged, resize_crop (PaPs' per-instance crops, packed) | crop_ragged.wgsl, resize_crop.wgsl | crop_ragged_backward.wgsl, resize_crop_backward.wgsl | crop |
//! | paps_loss_terms (center, size, shape; then sum) | paps_loss.wgsl `<term>_loss_terms` | paps_loss_backward.wgsl `<term>_loss_backward` | paps_loss::Term |
//! | adam (the optimizer's update, in place) | adam.wgsl | none (not differentiated) | adam::cpu_step |
//! | conv_transpose2d (stride, zero padding, output_padding, bias) | conv2d_backward_input.wgsl (+ broadcast add) | conv2d.wgsl, conv2d_backward_weight.wgsl | conv_transpose2d |
//! | conv_lstm (ConvLSTM sequence → c_T, BPTT; `conv_lstm/gpu.rs`) | per step: conv2d + conv_lstm_cell.wgsl (fused gates, c/h update, next input) | per step: conv_lstm_cell_backward.wgsl + conv2d input/weight gradients | conv_lstm::cpu_cell_forward/backward, cpu_forward/backward |
//! | conv_gru (ConvGRU sequence → h_T, BPTT; `conv_gru/gpu.rs`) | per step: conv2d, conv_gru_gates.wgsl, conv2d, conv_gru_update.wgsl | per step: conv_gru_update_backward.wgsl, conv2d gradients, conv_gru_gates_backward.wgsl, conv2d gradients | conv_gru |
//! | unfold_time / fold_time (im2col / col2im along D) | time_unfold.wgsl / time_fold.wgsl | each other | time_unfold |
//! | conv3d (k³, stride 1, zero padding) | composition: unfold_time + conv2d (implicit GEMM) + permute | (compositions') | conv3d::cpu_conv3d |
//! | conv_transpose3d (stride, padding, output_padding) | composition: permute + conv_transpose2d + fold_time | (compositions') | conv3d::cpu_conv_transpose3d |
//! | max_pool3d (window = stride = k) | max_pool3d.wgsl | max_pool3d_backward.wgsl (gather, first maximum) | max_pool3d |
//! | masked_mean (mean over the real dates) | composition: mul + sum + div | (compositions') | masked_mean |
//! | batch_norm 3d | batch_norm on (N, C, D, H, W) (statistics over N·D·H·W per channel) | (batch_norm's) | batch_norm |
//!
//! Every op has an f64 gradient check in its file and a row in `tests/gpu_parity.rs`.

pub mod adam;
pub mod attention;
pub mod attention_apply;
pub mod batch_norm;
pub mod binary;
pub mod conv2d;
pub mod conv3d;
pub mod conv_gru;
pub mod conv_lstm;
pub mod conv_transpose2d;
pub mod crop;
pub mod cross_entropy;
pub mod dropout;
pub mod gather_pixels;
pub mod group_norm;
pub mod index_select;
pub mod layer_norm;
pub mod masked_fill;
pub mod masked_mean;
pub mod masked_pool;
pub mod matmul;
pub mod max_pool;
pub mod max_pool3d;
pub mod movement;
pub mod paps_loss;
pub mod pool;
pub mod reduce;
pub mod reduce_max;
pub mod relu;
pub mod segment_argmax;
pub mod softmax;
pub mod temporal_agg;
pub mod time_unfold;
pub mod unary;
pub mod upsample;

/// The `Params` of the simplest kernels: just an element count, padded to 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ParamsN {
    n: u32,
    _pad: [u32; 3],
}

impl ParamsN {
    /// Params for `n` elements.
    pub fn new(n: usize) -> Self {
        ParamsN {
            n: u32::try_from(n).expect("element count overflows u32"),
            _pad: [0; 3],
        }
    }
}
