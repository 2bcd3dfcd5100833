//! The op catalogue, by family: one folder per family (`engine/ops/<family>/`), its shaders in the folder of
//! the same name (`shaders/<family>/`), each op in one file named as its shaders (`<op>.rs` with `<op>.wgsl`,
//! `<op>_backward.wgsl`, …) holding its math, CPU reference, GPU launch, autograd hookup and tests (see
//! `elementwise/relu.rs`, the tutorial op).
//!
//! | family | ops |
//! | --- | --- |
//! | [`elementwise`] | relu, unary (leaky_relu, sigmoid, tanh, exp, log, sqrt, softplus, scalars), binary, dropout, masked_fill |
//! | [`reduce`] | reduce_sum, reduce_max, softmax, cross_entropy, masked_mean, masked_pool (the PSE's pooling) |
//! | [`linalg`] | matmul |
//! | [`movement`] | copy_strided (reshape, permute, narrow, expand, cat), index_select, time_unfold / time_fold |
//! | [`conv`] | conv2d, conv_transpose2d, conv3d |
//! | [`pool`] | avg_pool2d, max_pool2d, max_pool3d, upsample_bilinear |
//! | [`norm`] | batch_norm, group_norm, layer_norm (and instance norm) |
//! | [`attention`] | attention (L-TAE's weights), attention_apply, temporal_agg — **start at [`attention`]: the lesson** |
//! | [`recurrent`] | conv_lstm, conv_gru |
//! | [`paps`] | segment_argmax, gather_pixels, crop (crop_ragged, crop_resize), paps_loss |
//! | [`optim`] | adam |
//!
//! Every op in detail (the CPU reference column names the op's file in its family):
//!
//! | op | forward kernel | backward | CPU reference |
//! | --- | --- | --- | --- |
//! | relu (and `relu_owned`, in place) | relu.wgsl, relu_inplace.wgsl | relu_backward.wgsl, relu_backward_inplace.wgsl | elementwise/relu |
//! | leaky_relu, sigmoid, tanh, exp, log, sqrt, softplus | unary.wgsl `<op>_forward` | unary_backward.wgsl `<op>_backward` | elementwise/unary |
//! | add_scalar, mul_scalar, neg | unary.wgsl | identity / mul_scalar (composition) | elementwise/unary |
//! | add, sub, mul, div (broadcasting) | binary.wgsl | composition: binary ops + sum_to | elementwise/binary |
//! | sum, mean, sum_to | reduce_sum.wgsl | expand (copy_strided) | reduce/reduce_sum |
//! | max over an axis, argmax | reduce_max.wgsl | reduce_max_backward.wgsl | reduce/reduce_max |
//! | matmul (batched, tiled) | matmul.wgsl | two matmuls with transposes | linalg/matmul |
//! | softmax | softmax.wgsl | softmax_backward.wgsl | reduce/softmax |
//! | reshape, permute, transpose, narrow, chunk, expand, cat | copy_strided.wgsl (reshape: none) | the inverse movement / sum_to | movement/copy_strided |
//! | index_select | index_select.wgsl | index_select_backward.wgsl | movement/index_select |
//! | masked_fill | masked_fill.wgsl | masked_fill of dy with 0 | elementwise/masked_fill |
//! | dropout (seeded, inverted) | dropout.wgsl | dropout of dy with the same seed | elementwise/dropout |
//! | cross_entropy (weights, ignore index) | cross_entropy.wgsl | cross_entropy_backward.wgsl | reduce/cross_entropy |
//! | temporal attention weights (L-TAE master query) | attention.wgsl | attention_backward.wgsl + matmul (dQ) | attention/attention |
//! | temporal attention apply (heads concatenated) | attention_apply.wgsl | attention_apply_backward_{value,attn}.wgsl | attention/attention_apply |
//! | temporal aggregation of skips (att_group/att_mean) | temporal_agg.wgsl | temporal_agg_backward_{x,attn}.wgsl | attention/temporal_agg |
//! | masked_mean_std (the PSE's pooling, its quirks) | masked_pool.wgsl | masked_pool_backward.wgsl | reduce/masked_pool |
//! | group_norm | group_norm.wgsl | group_norm_backward_input.wgsl, group_norm_backward_weight.wgsl (dγ, dβ; two-pass over slices) | norm/group_norm |
//! | instance_norm | composition: group_norm(C groups, no affine) | (group_norm's) | norm/group_norm |
//! | layer_norm | composition: group_norm(1 group) on (R, 1, D), then mul/add | (compositions') | norm/layer_norm |
//! | batch_norm (1d/2d; training updates running stats in place) | batch_norm_stats.wgsl (training; two-pass over slices), batch_norm.wgsl | group_norm_backward_weight.wgsl (dγ, dβ), batch_norm_backward.wgsl (dx) | norm/batch_norm |
//! | upsample_bilinear (align_corners = False) | upsample_bilinear.wgsl | upsample_bilinear_backward.wgsl | pool/upsample_bilinear |
//! | avg_pool2d | avg_pool2d.wgsl | avg_pool2d_backward.wgsl | pool/avg_pool2d |
//! | conv2d (stride, zero / reflect padding, bias) | conv2d.wgsl (tiled implicit GEMM) | conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl (+ reduce_sum), bias: sum | conv/conv2d |
//! | max_pool2d_same (k × k, stride 1, −∞ padding; PaPs' local maxima) | max_pool2d.wgsl | max_pool2d_backward.wgsl | pool/max_pool2d |
//! | segment_argmax (scatter-max over zones, ties → smallest index; no gradient) | segment_argmax.wgsl | none (indices) | paps/segment_argmax |
//! | gather_pixels (PaPs' center features) | gather_pixels.wgsl | gather_pixels_backward.wgsl (inverse index) | paps/gather_pixels |
//! | crop_ragged, resize_crop (PaPs' per-instance crops, packed) | crop_ragged.wgsl, crop_resize.wgsl | crop_ragged_backward.wgsl, crop_resize_backward.wgsl | paps/crop |
//! | paps_loss_terms (center, size, shape; then sum) | paps_loss.wgsl `<term>_loss_terms` | paps_loss_backward.wgsl `<term>_loss_backward` | paps/paps_loss |
//! | adam (the optimizer's update, in place) | adam.wgsl | none (not differentiated) | optim/adam |
//! | conv_transpose2d (stride, zero padding, output_padding, bias) | conv2d_backward_input.wgsl (+ broadcast add) | conv2d.wgsl, conv2d_backward_weight.wgsl | conv/conv_transpose2d |
//! | conv_lstm (ConvLSTM sequence → c_T, BPTT; `recurrent/conv_lstm/gpu.rs`) | per step: conv2d + conv_lstm_cell.wgsl (fused gates, c/h update, next input) | per step: conv_lstm_cell_backward.wgsl + conv2d input/weight gradients | recurrent/conv_lstm |
//! | conv_gru (ConvGRU sequence → h_T, BPTT; `recurrent/conv_gru/gpu.rs`) | per step: conv2d, conv_gru_gates.wgsl, conv2d, conv_gru_update.wgsl | per step: conv_gru_update_backward.wgsl, conv2d gradients, conv_gru_gates_backward.wgsl, conv2d gradients | recurrent/conv_gru |
//! | unfold_time / fold_time (im2col / col2im along D) | time_unfold.wgsl / time_fold.wgsl | each other | movement/time_unfold |
//! | conv3d (k³, stride 1, zero padding) | composition: unfold_time + conv2d (implicit GEMM) + permute | (compositions') | conv/conv3d |
//! | conv_transpose3d (stride, padding, output_padding) | composition: permute + conv_transpose2d + fold_time | (compositions') | conv/conv3d |
//! | max_pool3d (window = stride = k) | max_pool3d.wgsl | max_pool3d_backward.wgsl (gather, first maximum) | pool/max_pool3d |
//! | masked_mean (mean over the real dates) | composition: mul + sum + div | (compositions') | reduce/masked_mean |
//! | batch_norm 3d | batch_norm on (N, C, D, H, W) (statistics over N·D·H·W per channel) | (batch_norm's) | norm/batch_norm |
//!
//! Every op has an f64 gradient check in its file and a row in `tests/gpu_parity/`.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod linalg;
pub mod movement;
pub mod norm;
pub mod optim;
pub mod paps;
pub mod pool;
pub mod recurrent;
pub mod reduce;

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
