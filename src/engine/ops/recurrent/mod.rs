//! Convolutional recurrences: the ConvLSTM and ConvGRU sequence ops, one convolution and one fused launch per
//! step, backpropagation through time.

pub mod conv_gru;
pub mod conv_lstm;
