//! Data movement: strided copies (reshape, permute, transpose, narrow, expand, cat), index_select, and the
//! im2col / col2im along time (`time_unfold`) that the 3-D convolutions are built on.

pub mod copy_strided;
pub mod index_select;
pub mod time_unfold;
