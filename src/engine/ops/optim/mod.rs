//! The optimizer's update: Adam, in place, exactly as PyTorch's `torch.optim.Adam` computes it, and the
//! dynamic loss scaling of `--precision mixed` (PyTorch's `GradScaler`) around it.

pub mod adam;
pub mod loss_scale;
