//! [`Real`]: the float types (f32, f64) the CPU reference is generic over, so that the same loops run in f32
//! beside the GPU and in f64 for gradient checks.

use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A float type for the CPU reference.
pub trait Real:
    Copy
    + Debug
    + Display
    + PartialOrd
    + Default
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// From an f64 constant.
    fn from_f64(v: f64) -> Self;
    /// To f64.
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// x^p.
    fn powf(self, p: Self) -> Self;
    /// ln(1 + x), accurate near 0.
    fn ln_1p(self) -> Self;
    /// 0.
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    /// 1.
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    /// The larger of two values (NaN-propagating like PyTorch's max is not needed here).
    fn max(self, o: Self) -> Self {
        if o > self {
            o
        } else {
            self
        }
    }
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// Converts a slice between float types (f32 data into an f64 gradient check, and back).
pub fn cast<A: Real, B: Real>(x: &[A]) -> Vec<B> {
    x.iter().map(|v| B::from_f64(v.to_f64())).collect()
}
