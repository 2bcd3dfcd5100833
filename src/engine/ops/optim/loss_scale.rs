//! Dynamic loss scaling: PyTorch's `torch.amp.GradScaler` with its defaults, for `--precision mixed`.
//!
//! Under mixed, the backward pass's products read their incoming gradient rounded as a float16 gradient
//! (`engine::precision`, autocast's backward): a gradient below 2^-24 would vanish there and one beyond
//! 65,504 becomes infinite. So the loss is multiplied by a scale `S = 2^e` before the backward pass, which
//! lifts the small gradients into half range, and each step is checked:
//!
//! ```text
//! backward of loss · S                       (S = 2^16 at first)          train::adam::Adam::scale_loss
//! found = some gradient · 2^-e is ±inf/NaN                                 adam_find_overflow.wgsl
//! found: no update (parameters, moments, step count stay as they were)     adam.wgsl, scaled
//! else:  the Adam step on gradient · 2^-e (unscaled: exact, a power of two), step count + 1
//! found: e -= 1, tracker = 0          (back-off 0.5)                       adam_update_scale.wgsl
//! else:  tracker += 1; at 2,000: e += 1, tracker = 0   (growth 2 after 2,000 clean steps in a row)
//! ```
//!
//! All of it runs on the device, in the step's command stream: no readback per step (PyTorch's own
//! `scaler.step` reads `found_inf` back every step). The host therefore cannot know which steps were
//! skipped; Adam's bias corrections, which depend on the step count, come from a table the host fills in
//! f64 as before (`ops::optim::adam`), indexed on the device by the device's count.
//!
//! The state ([`ScaleState`]) is four words on the device: found, growth tracker, steps taken, exponent;
//! the scale itself is a one-element tensor the update kernel rewrites, which the loss is multiplied by.
//! Checkpoints store the scale and the tracker, as `GradScaler.state_dict()` does.
//!
//! One difference from PyTorch, out of reach of a training run: the scale is kept as its exponent, between
//! 2^-126 and 2^126, so that both 2^e and 2^-e are normal floats on every adapter (some flush subnormals).
//! PyTorch's float scale would halve on down to 0 (142 overflowing steps in a row from 2^16) and double up
//! to 2^127 (222,000 clean steps).
//!
//! The CPU reference is [`ScaleState::cpu_find`] and [`ScaleState::cpu_update`]; the GPU kernels are
//! tested against them through the whole optimizer, skipped steps and growth included
//! (`tests/engine.rs`, `loss_scaling_steps_skips_and_grows_as_grad_scaler`).

use crate::engine::kernel::{Grid, Kernel};
use crate::engine::pool::BufSlice;
use crate::engine::Gpu;
use crate::shaders;

/// The scale's exponent at the start: PyTorch's `init_scale` 2^16.
pub const INIT_EXPONENT: i32 = 16;
/// Clean steps in a row before the scale doubles: PyTorch's `growth_interval`.
pub const GROWTH_INTERVAL: u32 = 2000;
/// The smallest exponent (module doc).
pub const MIN_EXPONENT: i32 = -126;
/// The largest exponent (module doc).
pub const MAX_EXPONENT: i32 = 126;

/// The loss scaler's state (module doc), as the device holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleState {
    /// The current step found an infinite or NaN gradient (reset by every update).
    pub found: bool,
    /// Clean steps in a row since the last growth or back-off.
    pub tracker: u32,
    /// Adam steps taken (skipped ones not counted): Adam's `t`.
    pub steps: u64,
    /// The scale is 2^exponent.
    pub exponent: i32,
}

impl Default for ScaleState {
    fn default() -> Self {
        ScaleState {
            found: false,
            tracker: 0,
            steps: 0,
            exponent: INIT_EXPONENT,
        }
    }
}

/// 2^e for a normal float's exponent (exact).
fn pow2(e: i32) -> f32 {
    debug_assert!((-126..=127).contains(&e));
    f32::from_bits(((e + 127) as u32) << 23)
}

impl ScaleState {
    /// A fresh scaler after `steps` Adam steps taken without one (the scale at its start).
    pub fn starting_at(steps: u64) -> ScaleState {
        ScaleState {
            steps,
            ..ScaleState::default()
        }
    }

    /// The scale, 2^exponent.
    pub fn scale(&self) -> f32 {
        pow2(self.exponent)
    }

    /// Its inverse, 2^-exponent (exact).
    pub fn inv_scale(&self) -> f32 {
        pow2(-self.exponent)
    }

    /// The state with the scale `scale` and the tracker `tracker` restored (a checkpoint's; `scale` must be
    /// a power of two in range: an error names it otherwise).
    pub fn restored(steps: u64, scale: f64, tracker: u32) -> Result<ScaleState, String> {
        let e = scale.log2().round() as i32;
        if !(MIN_EXPONENT..=MAX_EXPONENT).contains(&e) || (e as f64).exp2() != scale {
            return Err(format!(
                "loss scale {scale} is not a power of two between 2^{MIN_EXPONENT} and 2^{MAX_EXPONENT}"
            ));
        }
        Ok(ScaleState {
            found: false,
            tracker,
            steps,
            exponent: e,
        })
    }

    /// CPU reference of `adam_find_overflow.wgsl`: sets `found` when some `g · 2^-e` is infinite or NaN.
    pub fn cpu_find(&mut self, g: &[f32]) {
        let inv = self.inv_scale();
        if g.iter().any(|&v| !(v * inv).is_finite()) {
            self.found = true;
        }
    }

    /// CPU reference of `adam_update_scale.wgsl`, after a step (module doc).
    pub fn cpu_update(&mut self) {
        if self.found {
            self.exponent = (self.exponent - 1).max(MIN_EXPONENT);
            self.tracker = 0;
        } else {
            self.steps += 1;
            self.tracker += 1;
            if self.tracker >= GROWTH_INTERVAL {
                self.exponent = (self.exponent + 1).min(MAX_EXPONENT);
                self.tracker = 0;
            }
        }
        self.found = false;
    }

    /// The four device words: found, tracker, steps, exponent.
    pub fn words(&self) -> [u32; 4] {
        [
            u32::from(self.found),
            self.tracker,
            u32::try_from(self.steps).expect("more than 2^32 optimizer steps"),
            self.exponent as u32,
        ]
    }

    /// The state of the four device words.
    pub fn from_words(w: [u32; 4]) -> ScaleState {
        ScaleState {
            found: w[0] != 0,
            tracker: w[1],
            steps: w[2] as u64,
            exponent: w[3] as i32,
        }
    }
}

// ---- GPU ----

/// Shader `Params` of adam_find_overflow.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FindParams {
    n: u32,
    first: u32,
    count: u32,
    _pad: u32,
}

/// Shader `Params` of adam_update_scale.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UpdateParams {
    interval: u32,
    min_exponent: i32,
    max_exponent: i32,
    _pad: u32,
}

/// `adam_find_overflow.wgsl`: g (a group's gradients), table, state → `state[0]` set on an overflow.
pub const FIND_OVERFLOW: Kernel =
    Kernel::new::<FindParams>(&shaders::ADAM_FIND_OVERFLOW, "find_overflow", 4);
/// `adam_update_scale.wgsl`: state, scale → updated (one invocation).
pub const UPDATE_SCALE: Kernel =
    Kernel::new::<UpdateParams>(&shaders::ADAM_UPDATE_SCALE, "update_scale", 3).with_wg(1);
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[FIND_OVERFLOW, UPDATE_SCALE];

/// Records the check of one group of gradients (`n` elements, table entries `first..first + count`, as
/// `adam.wgsl`'s layout).
pub fn gpu_find(
    gpu: &Gpu,
    g: BufSlice,
    table: BufSlice,
    state: BufSlice,
    (first, count, n): (usize, usize, usize),
) {
    FIND_OVERFLOW.dispatch(
        gpu,
        &[g, table, state],
        &FindParams {
            n: n as u32,
            first: first as u32,
            count: count as u32,
            _pad: 0,
        },
        Grid::threads(n).flops(2 * n).bytes(4 * n),
    );
}

/// Records the scaler's update after a step: state and the one-element scale.
pub fn gpu_update(gpu: &Gpu, state: BufSlice, scale: BufSlice) {
    UPDATE_SCALE.dispatch(
        gpu,
        &[state, scale],
        &UpdateParams {
            interval: GROWTH_INTERVAL,
            min_exponent: MIN_EXPONENT,
            max_exponent: MAX_EXPONENT,
            _pad: 0,
        },
        Grid::groups(1),
    );
}

// ---- Tests ----

#[cfg(test)]
mod tests {
    use super::*;

    /// GradScaler's rules: back-off on an overflow (no step counted), growth after 2,000 clean steps in a
    /// row (the tracker reset by an overflow), the bounds.
    #[test]
    fn grows_and_backs_off_as_grad_scaler() {
        let mut s = ScaleState::default();
        assert_eq!(s.scale(), 65536.0);
        assert_eq!(s.inv_scale(), 1.0 / 65536.0);
        s.cpu_find(&[1.0, -2.0e30]);
        assert!(!s.found, "2e30 / 2^16 is finite");
        s.cpu_find(&[1.0, f32::INFINITY, 0.0]);
        assert!(s.found);
        s.cpu_update();
        assert_eq!(
            (s.found, s.tracker, s.steps, s.scale()),
            (false, 0, 0, 32768.0)
        );
        s.cpu_find(&[f32::NAN]);
        s.cpu_update();
        assert_eq!(s.scale(), 16384.0);
        for k in 1..GROWTH_INTERVAL {
            s.cpu_find(&[1.0]);
            s.cpu_update();
            assert_eq!((s.tracker, s.steps), (k, k as u64));
        }
        assert_eq!(s.scale(), 16384.0);
        s.cpu_update();
        assert_eq!((s.tracker, s.steps, s.scale()), (0, 2000, 32768.0));
        // An overflow in the middle of a run of clean steps starts the count again.
        s.tracker = 1999;
        s.found = true;
        s.cpu_update();
        assert_eq!((s.tracker, s.steps, s.scale()), (0, 2000, 16384.0));
        // The bounds.
        let mut low = ScaleState {
            exponent: MIN_EXPONENT,
            found: true,
            ..ScaleState::default()
        };
        low.cpu_update();
        assert_eq!(low.exponent, MIN_EXPONENT);
        assert_eq!(low.inv_scale(), 2f32.powi(126));
        let mut high = ScaleState {
            exponent: MAX_EXPONENT,
            tracker: GROWTH_INTERVAL - 1,
            ..ScaleState::default()
        };
        high.cpu_update();
        assert_eq!((high.exponent, high.tracker), (MAX_EXPONENT, 0));
        // A small scale can overflow what is finite: the check is on the unscaled value.
        let mut small = ScaleState {
            exponent: -2,
            ..ScaleState::default()
        };
        small.cpu_find(&[f32::MAX / 2.0]);
        assert!(small.found);
    }

    #[test]
    fn words_and_checkpoints_round_trip() {
        let s = ScaleState {
            found: true,
            tracker: 17,
            steps: 123,
            exponent: -3,
        };
        assert_eq!(ScaleState::from_words(s.words()), s);
        let r = ScaleState::restored(123, 0.125, 17).unwrap();
        assert_eq!(r, ScaleState { found: false, ..s });
        assert!(ScaleState::restored(1, 3.0, 0).is_err());
        assert!(ScaleState::restored(1, 2f64.powi(127), 0).is_err());
        assert!(ScaleState::restored(1, 0.0, 0).is_err());
    }
}
