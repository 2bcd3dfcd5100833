//! Recurrences: the ConvLSTM and ConvGRU sequence ops (one convolution and one fused launch per step,
//! backpropagation through time) and the GRU cell (one fused launch per step of `torch.nn.GRU`).

pub mod conv_gru;
pub mod conv_lstm;
pub mod gru_cell;
