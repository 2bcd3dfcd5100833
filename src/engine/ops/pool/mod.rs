//! Pooling and resampling: average pooling, max pooling (2-D stride 1 for PaPs' local maxima, 3-D for U-Net 3D)
//! and bilinear upsampling (align_corners = False).

pub mod avg_pool2d;
pub mod max_pool2d;
pub mod max_pool3d;
pub mod upsample_bilinear;
