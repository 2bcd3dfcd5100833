//! The optimizer's update: Adam, in place, exactly as PyTorch's `torch.optim.Adam` computes it.

pub mod adam;
