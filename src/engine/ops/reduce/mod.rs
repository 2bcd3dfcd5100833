//! Reductions: sums along axes (`reduce_sum`), maxima and argmax (`reduce_max`), softmax, the cross-entropy loss,
//! the masked temporal mean and the PSE's masked mean/std pooling — every one deterministic (no float atomics).

pub mod cross_entropy;
pub mod masked_mean;
pub mod masked_pool;
pub mod reduce_max;
pub mod reduce_sum;
pub mod softmax;
