//! Half-precision storage: a float32 tensor's values kept as IEEE binary16, two to a 32-bit word — half the
//! bytes. Under `--precision mixed` (`engine::precision`) the tensors a training step saves for its backward
//! pass are kept this way and made float32 again when the backward reads them.
//!
//! Conversion: round to nearest, ties to even; magnitudes beyond the largest half (65,504) saturate to
//! ±65,504 instead of becoming infinite (a saved activation that large would otherwise turn the backward pass
//! into NaN), infinities and NaN stay what they are, float32 values below half the smallest half subnormal
//! (2^-25) become ±0. Relative error at most 2^-11 for |v| in [2^-14, 65,504]; absolute at most 2^-25 below.
//! Back to float32 is exact. A gradient that a backward pass's products read under mixed is rounded the same
//! way except past the largest half, where it becomes ±infinity as float16 arithmetic's would
//! ([`Tensor::rounded_gradient`]): the loss scaler (`ops::optim::loss_scale`) finds it and skips the step.
//!
//! It is a storage format, not an op of the graph: no backward, no gradient check. The op quartet's other
//! pieces are here: the CPU reference ([`cpu_pack`], [`cpu_unpack`]: the bit-level conversion, tested over
//! every half and against the nearest half by search), `half_pack.wgsl` / `half_unpack.wgsl` (the same
//! integer arithmetic, not `pack2x16float`, whose rounding WGSL leaves to the implementation: every adapter
//! gives the CPU's words, tested bit for bit on the GPU).

use crate::engine::kernel::{Grid, Kernel};
use crate::engine::ops::ParamsN;
use crate::engine::precision::{count_half, precision, Precision, HALF_MIN_NUMEL};
use crate::engine::storage::{Device, GpuStorage, Storage};
use crate::engine::tensor::Tensor;
use crate::shaders;

/// half_pack.wgsl: x (n) → w (ceil(n / 2) words).
pub const HALF_PACK: Kernel = Kernel::new::<FlagParams>(&shaders::HALF_PACK, "half_pack", 4);
/// half_unpack.wgsl: w (ceil(n / 2) words) → y (n).
pub const HALF_UNPACK: Kernel = Kernel::new::<ParamsN>(&shaders::HALF_UNPACK, "half_unpack", 3);
/// half_round.wgsl: x (n) → y (n), x's nearest halves as float32 (saturating, or overflowing to infinity
/// for a gradient); y may be x (in place).
pub const HALF_ROUND: Kernel = Kernel::new::<FlagParams>(&shaders::HALF_ROUND, "half_round", 3);

/// Shader `Params` of half_pack.wgsl (`flag`: `rounded`) and half_round.wgsl (`flag`: `overflow`): an
/// element count and a switch.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlagParams {
    n: u32,
    flag: u32,
    _pad: [u32; 2],
}

impl FlagParams {
    /// Params for `n` elements with the switch `on`.
    fn new(n: usize, on: bool) -> Self {
        FlagParams {
            n: u32::try_from(n).expect("element count overflows u32"),
            flag: u32::from(on),
            _pad: [0; 2],
        }
    }
}

/// What a rounding does with magnitudes beyond the largest half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Saturate to ±65,504 (operands and saved activations: module doc).
    Saturate,
    /// Become ±infinity, as float16 arithmetic's would (a gradient: the loss scaler sees it and skips the
    /// step, `ops::optim::loss_scale`).
    Infinity,
}

/// The smallest magnitude that IEEE rounding to binary16 sends to infinity: halfway between the largest half
/// (65,504) and 2^16, a tie that rounds to the even side, infinity.
pub const HALF_OVERFLOW: f32 = 65520.0;
/// This op's kernels (collected by `engine::kernels` for the naga tests).
pub const KERNELS: &[Kernel] = &[HALF_PACK, HALF_UNPACK, HALF_ROUND];

// ---- CPU reference ----

/// The binary16 bits of `v` (module doc: nearest, ties to even; saturating).
pub fn half_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = (b >> 16) & 0x8000;
    let e = (b >> 23) & 0xff;
    let m = b & 0x7f_ffff;
    let round_up = |r: u32, rem: u32, half: u32| rem > half || (rem == half && r & 1 == 1);
    let bits = if e == 0xff {
        sign | 0x7c00 | if m != 0 { 0x200 | (m >> 13) } else { 0 }
    } else {
        let exp = e as i32 - 112;
        if exp >= 31 {
            sign | 0x7bff
        } else if exp <= 0 {
            if exp < -10 {
                sign
            } else {
                let big = m | 0x80_0000;
                let shift = (14 - exp) as u32;
                let half = 1 << (shift - 1);
                let rem = big & ((1 << shift) - 1);
                let r = big >> shift;
                sign | (r + u32::from(round_up(r, rem, half)))
            }
        } else {
            let r = ((exp as u32) << 10) | (m >> 13);
            let r = r + u32::from(round_up(r, m & 0x1fff, 0x1000));
            if r >= 0x7c00 {
                sign | 0x7bff
            } else {
                sign | r
            }
        }
    };
    bits as u16
}

/// The float32 value of the binary16 bits `h` (exact).
pub fn half_value(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    let bits = match e {
        0 => sign | (m as f32 * 2f32.powi(-24)).to_bits(),
        31 => sign | 0x7f80_0000 | (m << 13),
        _ => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// `x` (n) as halves, two to a word (the low half first; an odd last one paired with 0): ceil(n / 2) words.
pub fn cpu_pack(x: &[f32]) -> Vec<u32> {
    x.chunks(2)
        .map(|p| half_bits(p[0]) as u32 | (p.get(1).map_or(0, |&v| half_bits(v)) as u32) << 16)
        .collect()
}

/// The first `n` halves of `w` as float32.
pub fn cpu_unpack(w: &[u32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| half_value((w[i / 2] >> (16 * (i % 2))) as u16))
        .collect()
}

// ---- GPU ----

/// Launches half_pack.wgsl: x (n) → ceil(n / 2) words.
pub fn gpu_pack(x: &GpuStorage, n: usize) -> GpuStorage {
    launch_pack(x, n, None)
}

/// Launches half_pack.wgsl once for both: x (n) → (ceil(n / 2) words, x rounded to halves as float32 (n)), what
/// [`gpu_pack`] and then [`gpu_unpack`] give.
pub fn gpu_pack_rounded(x: &GpuStorage, n: usize) -> (GpuStorage, GpuStorage) {
    let y = GpuStorage::alloc(x.gpu, n.max(1), "half_pack");
    (launch_pack(x, n, Some(&y)), y)
}

/// half_pack.wgsl, writing the rounded values into `y` too when given.
fn launch_pack(x: &GpuStorage, n: usize, y: Option<&GpuStorage>) -> GpuStorage {
    let words = n.div_ceil(2);
    let w = GpuStorage::alloc(x.gpu, words.max(1), "half_pack");
    let params = FlagParams::new(n, y.is_some());
    // Without y, any buffer stands in for the unused binding (the kernel does not touch it).
    let yb = y.map_or(x.buffer(), GpuStorage::buffer);
    HALF_PACK.dispatch(
        x.gpu,
        &[x.buffer(), w.buffer(), yb],
        &params,
        Grid::threads(words),
    );
    w
}

/// Launches half_round.wgsl in place: y (n) replaced by its nearest halves (what [`cpu_round`] does, or
/// [`cpu_round_gradient`] with [`Overflow::Infinity`]).
pub fn gpu_round_inplace(y: &GpuStorage, n: usize, overflow: Overflow) {
    launch_round(y, y, n, overflow);
}

/// A copy of x (n) rounded to halves (float32 values): one new buffer, no words.
pub fn gpu_rounded(x: &GpuStorage, n: usize) -> GpuStorage {
    gpu_rounded_as(x, n, Overflow::Saturate)
}

/// [`gpu_rounded`] with the given overflow: one launch of half_round.wgsl into a new buffer.
pub fn gpu_rounded_as(x: &GpuStorage, n: usize, overflow: Overflow) -> GpuStorage {
    let y = GpuStorage::alloc(x.gpu, n.max(1), "half_round");
    launch_round(x, &y, n, overflow);
    y
}

/// half_round.wgsl: x (n) → y (n), which may be the same storage.
fn launch_round(x: &GpuStorage, y: &GpuStorage, n: usize, overflow: Overflow) {
    let params = FlagParams::new(n, overflow == Overflow::Infinity);
    HALF_ROUND.dispatch(x.gpu, &[x.buffer(), y.buffer()], &params, Grid::threads(n));
}

/// Launches half_unpack.wgsl: ceil(n / 2) words → y (n).
pub fn gpu_unpack(w: &GpuStorage, n: usize) -> GpuStorage {
    let y = GpuStorage::alloc(w.gpu, n.max(1), "half_unpack");
    HALF_UNPACK.dispatch(
        w.gpu,
        &[w.buffer(), y.buffer()],
        &ParamsN::new(n),
        Grid::threads(n),
    );
    y
}

// ---- Buffers kept for a backward pass ----

/// Whether a buffer of `n` values that an op keeps for its backward pass is kept as halves: under
/// `--precision mixed`, from `HALF_MIN_NUMEL` values up (the rule of `engine::recompute::Saved::value`).
pub fn keeps_half(n: usize) -> bool {
    precision() == Precision::Mixed && n >= HALF_MIN_NUMEL
}

/// A GPU buffer of `n` values an op keeps for its backward pass as raw storage (the recurrent ops' traces;
/// tensors go through `engine::recompute::Saved`): as it is, or as halves when [`keeps_half`].
pub enum KeptGpu {
    /// The float32 values.
    Full(GpuStorage),
    /// ceil(n / 2) words of halves, and n.
    Half(GpuStorage, usize),
}

impl KeptGpu {
    /// Keeps `s` (n values): packs it to halves (and lets the float32 buffer go) when [`keeps_half`].
    pub fn keep(s: GpuStorage, n: usize) -> KeptGpu {
        if keeps_half(n) {
            count_half();
            KeptGpu::Half(gpu_pack(&s, n), n)
        } else {
            KeptGpu::Full(s)
        }
    }

    /// The float32 values: the kept buffer itself, or a temporary unpacked from the halves (freed when the
    /// view is dropped).
    pub fn get(&self) -> F32View<'_> {
        match self {
            KeptGpu::Full(s) => F32View::Kept(s),
            KeptGpu::Half(w, n) => F32View::Unpacked(gpu_unpack(w, *n)),
        }
    }
}

/// [`KeptGpu::get`]'s float32 buffer (dereferences to it).
pub enum F32View<'a> {
    /// The kept float32 buffer.
    Kept(&'a GpuStorage),
    /// A temporary made for this use: unpacked from halves, or computed again (gradient checkpointing).
    Unpacked(GpuStorage),
}

impl std::ops::Deref for F32View<'_> {
    type Target = GpuStorage;
    fn deref(&self) -> &GpuStorage {
        match self {
            F32View::Kept(s) => s,
            F32View::Unpacked(s) => s,
        }
    }
}

/// The CPU twin of [`KeptGpu::keep`]: `v` rounded to halves in place when [`keeps_half`] (the same values the
/// GPU's pack and unpack give).
pub fn cpu_keep(v: &mut [f32]) {
    if keeps_half(v.len()) {
        count_half();
        cpu_round(v);
    }
}

/// A copy of `v` rounded to the nearest halves (as float32): [`cpu_round`] on a copy.
pub fn cpu_rounded(v: &[f32]) -> Vec<f32> {
    let mut r = v.to_vec();
    cpu_round(&mut r);
    r
}

/// Every value of `v` replaced by its nearest half (as float32): what a pack then an unpack give.
pub fn cpu_round(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = half_value(half_bits(*x));
    }
}

/// `v` rounded as a float16 gradient: the nearest half, and ±infinity from [`HALF_OVERFLOW`] up (IEEE
/// rounding, where [`half_bits`] saturates).
pub fn gradient_half(v: f32) -> f32 {
    if v.abs() >= HALF_OVERFLOW {
        f32::INFINITY.copysign(v)
    } else {
        half_value(half_bits(v))
    }
}

/// [`cpu_round`] for a gradient: every value replaced by [`gradient_half`].
pub fn cpu_round_gradient(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = gradient_half(*x);
    }
}

// ---- The stored tensor ----

/// A tensor's values in half precision (module doc): its shape and ceil(n / 2) words on its device.
pub struct Half {
    shape: Vec<usize>,
    /// The words, held in a float32-slot storage (their bits are never read as floats).
    words: Storage,
}

impl Tensor {
    /// This tensor's values rounded to the nearest halves, as a float32 tensor (nothing recorded): what
    /// `to_half().to_f32()` gives, with one new buffer instead of two. Given the only handle to a GPU tensor
    /// and its storage, it rounds in place and allocates nothing.
    pub fn rounded_to_half(self) -> Tensor {
        self.rounded_as(Overflow::Saturate)
    }

    /// This gradient rounded to halves as float16 arithmetic would round it: [`Tensor::rounded_to_half`]
    /// whose overflow is ±infinity ([`gradient_half`]), for the loss scaler to find.
    pub fn rounded_gradient(self) -> Tensor {
        self.rounded_as(Overflow::Infinity)
    }

    /// The gradient a backward pass received, as its products' operand: under `--precision mixed`
    /// (`mixed`, the mode its forward ran in) rounded as a float16 gradient (counted among the halves,
    /// `engine::precision::halves_saved`) — in place when this is the only handle (a backward given the
    /// gradient the walk no longer needs: `Backward::backward_owned`), else a copy — and itself otherwise.
    pub fn into_gradient_operand(self, mixed: bool) -> Tensor {
        if mixed {
            count_half();
            self.rounded_gradient()
        } else {
            self
        }
    }

    fn rounded_as(self, overflow: Overflow) -> Tensor {
        let n = self.numel();
        if self.device() == Device::Gpu && self.is_sole_handle() {
            gpu_round_inplace(self.gpu_storage("rounded_to_half"), n, overflow);
            return Tensor::wrap(self.shape().to_vec(), self.shared_storage(), None, false);
        }
        let storage = match self.device() {
            Device::Cpu => {
                let mut v = self.cpu_data("rounded_to_half").clone();
                match overflow {
                    Overflow::Saturate => cpu_round(&mut v),
                    Overflow::Infinity => cpu_round_gradient(&mut v),
                }
                Tensor::cpu_storage(v)
            }
            Device::Gpu => Storage::Gpu(gpu_rounded_as(
                self.gpu_storage("rounded_to_half"),
                n,
                overflow,
            )),
        };
        Tensor::from_storage(self.shape(), storage)
    }

    /// [`Tensor::to_half`] and, from the same launch on the GPU, the values those halves hold as a float32
    /// tensor (what `to_half().to_f32()` gives; nothing recorded).
    pub fn to_half_and_rounded(&self) -> (Half, Tensor) {
        if self.device() != Device::Gpu {
            let half = self.to_half();
            let rounded = half.to_f32();
            return (half, rounded);
        }
        let (words, y) = gpu_pack_rounded(self.gpu_storage("to_half"), self.numel());
        let half = Half {
            shape: self.shape().to_vec(),
            words: Storage::Gpu(words),
        };
        (half, Tensor::from_storage(self.shape(), Storage::Gpu(y)))
    }

    /// This tensor's values as halves (nothing recorded: a storage format).
    pub fn to_half(&self) -> Half {
        let n = self.numel();
        let words = match self.device() {
            Device::Cpu => Tensor::cpu_storage(
                cpu_pack(&self.cpu_data("to_half"))
                    .into_iter()
                    .map(f32::from_bits)
                    .collect(),
            ),
            Device::Gpu => Storage::Gpu(gpu_pack(self.gpu_storage("to_half"), n)),
        };
        Half {
            shape: self.shape().to_vec(),
            words,
        }
    }
}

impl Half {
    /// The values as a float32 tensor (exact: every half is a float32).
    pub fn to_f32(&self) -> Tensor {
        let n: usize = self.shape.iter().product();
        let storage = match &self.words {
            Storage::Gpu(w) => Storage::Gpu(gpu_unpack(w, n)),
            cpu => {
                let w: Vec<u32> = cpu
                    .to_vec(n.div_ceil(2))
                    .into_iter()
                    .map(f32::to_bits)
                    .collect();
                Tensor::cpu_storage(cpu_unpack(&w, n))
            }
        };
        Tensor::from_storage(&self.shape, storage)
    }

    /// The shape of the tensor it stores.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Bytes of its words.
    pub fn bytes(&self) -> usize {
        4 * self.shape.iter().product::<usize>().div_ceil(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every half survives the round trip half → float32 → half (NaNs stay NaN).
    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let v = half_value(h);
            if v.is_nan() {
                assert!(half_value(half_bits(v)).is_nan(), "{h:#06x}");
            } else {
                assert_eq!(half_bits(v), h, "{h:#06x} = {v:e}");
            }
        }
    }

    /// The nearest half, ties to the even one, found by search over every finite half, for float32 values
    /// in every range (normal, subnormal, underflow, halfway points); beyond 65,504: saturation.
    #[test]
    fn rounds_to_the_nearest_half_ties_to_even() {
        let finite: Vec<(u16, f64)> = (0..=0x7bffu16).map(|h| (h, half_value(h) as f64)).collect();
        let nearest = |v: f32| -> u16 {
            let a = (v as f64).abs();
            let (mut best, mut err) = (0u16, f64::INFINITY);
            for &(h, x) in &finite {
                let e = (x - a).abs();
                if e < err || (e == err && h & 1 == 0) {
                    (best, err) = (h, e);
                }
            }
            best | if v.is_sign_negative() { 0x8000 } else { 0 }
        };
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1.0 / 3.0,
            65504.0,
            65519.0,
            2.0f32.powi(-14),
            2.0f32.powi(-24),
            2.0f32.powi(-25),
            1.5 * 2.0f32.powi(-25),
            2.0f32.powi(-26),
            1e-10,
            f32::MIN_POSITIVE,
        ];
        // Halfway points between neighbouring halves (ties) and just beside them.
        for h in [0x0001u16, 0x0002, 0x03ff, 0x0400, 0x3c00, 0x3c01, 0x7bfe] {
            let mid = ((half_value(h) as f64 + half_value(h + 1) as f64) / 2.0) as f32;
            values.extend([
                mid,
                f32::from_bits(mid.to_bits() + 1),
                f32::from_bits(mid.to_bits() - 1),
            ]);
        }
        let mut s = 0x2545_f491u32;
        for _ in 0..2000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            // Exponents from well below the subnormals to the top of the half range.
            let v = f32::from_bits((s & 0x807f_ffff) | ((97 + (s >> 8) % 46) << 23));
            values.push(v);
        }
        for v in values {
            assert_eq!(half_bits(v), nearest(v), "{v:e}");
        }
        for v in [65520.0f32, 1e6, f32::MAX] {
            assert_eq!(half_bits(v), 0x7bff);
            assert_eq!(half_bits(-v), 0xfbff);
        }
        assert_eq!(half_bits(f32::INFINITY), 0x7c00);
        assert_eq!(half_bits(f32::NEG_INFINITY), 0xfc00);
        assert!(half_value(half_bits(f32::NAN)).is_nan());
    }

    /// Packing pairs the halves low first, an odd last one with 0; unpacking gives them back.
    #[test]
    fn packs_two_to_a_word() {
        let x = [1.0f32, -2.0, 0.5];
        let w = cpu_pack(&x);
        assert_eq!(w, vec![0xc000_3c00, 0x0000_3800]);
        assert_eq!(cpu_unpack(&w, 3), x.to_vec());
        let t = Tensor::from_vec(vec![0.1, 70000.0, -3.0, 1e-9, 7.0], &[5], Device::Cpu);
        let h = t.to_half();
        assert_eq!((h.shape(), h.bytes()), (&[5usize][..], 12));
        let back = h.to_f32().to_vec();
        assert_eq!(
            back,
            vec![half_value(half_bits(0.1)), 65504.0, -3.0, 0.0, 7.0]
        );
    }

    /// The GPU gives the CPU reference's words and values bit for bit: every half back and forth, float32
    /// values of every exponent (subnormals, ties, saturation, infinities, NaN), an odd length.
    #[test]
    fn gpu_packs_and_unpacks_as_the_cpu() {
        if crate::engine::testing::gpu_or_skip("half pack / unpack").is_none() {
            return;
        }
        let mut x: Vec<f32> = (0..=u16::MAX).map(half_value).collect();
        let mut s = 0x9e37_79b9u32;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            x.push(f32::from_bits(s));
        }
        x.extend([
            65504.0,
            65519.0,
            65520.0,
            1e-8,
            -1e-8,
            f32::MIN_POSITIVE,
            f32::INFINITY,
        ]);
        let n = x.len();
        assert_eq!(n % 2, 1);
        let cpu_words = cpu_pack(&x);
        let t = Tensor::from_vec(x, &[n], Device::Gpu);
        let h = t.to_half();
        let gpu_words: Vec<u32> = match &h.words {
            Storage::Gpu(w) => {
                bytemuck::cast_slice(&w.gpu.read_buffer(w.buffer(), 4 * cpu_words.len() as u64))
                    .to_vec()
            }
            _ => unreachable!("a GPU tensor's half is on the GPU"),
        };
        let bits = |v: Vec<f32>| -> Vec<u32> { v.into_iter().map(f32::to_bits).collect() };
        assert!(gpu_words == cpu_words, "pack: the GPU's words differ");
        assert!(
            bits(h.to_f32().to_vec()) == bits(cpu_unpack(&cpu_words, n)),
            "unpack: the GPU's values differ"
        );
        // Packing and rounding in one launch: the same words, and the values they unpack to.
        let (h2, rounded) = t.to_half_and_rounded();
        assert!(
            bits(h2.to_f32().to_vec()) == bits(cpu_unpack(&cpu_words, n)),
            "pack and round: the words differ"
        );
        assert!(
            bits(rounded.to_vec()) == bits(cpu_unpack(&cpu_words, n)),
            "pack and round: the rounded values differ"
        );
        // Rounding as float32 values: a copy while another handle holds the tensor (which stays as it
        // was), in place for the sole handle; both the CPU's values bit for bit.
        let mut want = t.to_vec();
        cpu_round(&mut want);
        let copy = t.clone().rounded_to_half();
        assert!(bits(copy.to_vec()) == bits(want.clone()), "rounded copy");
        assert!(
            bits(t.to_vec()) != bits(want.clone()),
            "the held tensor changed"
        );
        let storage = std::sync::Arc::as_ptr(&t.shared_storage());
        let in_place = t.rounded_to_half();
        assert!(std::ptr::eq(
            std::sync::Arc::as_ptr(&in_place.shared_storage()),
            storage
        ));
        assert!(bits(in_place.to_vec()) == bits(want), "rounded in place");
        // A gradient's rounding: the same values below the overflow, ±infinity from 65520 up.
        let mut x: Vec<f32> = in_place.to_vec();
        x.extend([65519.99, 65520.0, -65520.0, 1e30, f32::NAN, -0.0]);
        let mut want = x.clone();
        cpu_round_gradient(&mut want);
        let t = Tensor::from_vec(x.clone(), &[x.len()], Device::Gpu);
        let copy = t.clone().rounded_gradient();
        assert!(bits(copy.to_vec()) == bits(want.clone()), "gradient copy");
        assert!(
            bits(t.rounded_gradient().to_vec()) == bits(want),
            "gradient in place"
        );
    }

    /// A gradient rounds as IEEE float16 arithmetic: to the nearest half below 65520, to infinity from there
    /// (where the operands' rounding saturates).
    #[test]
    fn gradients_overflow_to_infinity() {
        for v in [0.1f32, -3.0, 1e-9, 65504.0, 65519.99, -65519.99, 1e-30] {
            assert_eq!(gradient_half(v), half_value(half_bits(v)), "{v:e}");
        }
        for v in [65520.0f32, 70000.0, f32::MAX, f32::INFINITY] {
            assert_eq!(gradient_half(v), f32::INFINITY);
            assert_eq!(gradient_half(-v), f32::NEG_INFINITY);
            if v.is_finite() {
                assert_eq!(half_value(half_bits(v)), 65504.0, "operands saturate");
            }
        }
        assert!(gradient_half(f32::NAN).is_nan());
        // 65520 is the tie between the largest half and 2^16: ties to even (2^16's significand is even).
        assert_eq!(half_bits(65519.996), 0x7bff);
        let t = Tensor::from_vec(vec![1.0, 7e4, -7e4], &[3], Device::Cpu);
        assert_eq!(
            t.rounded_gradient().to_vec(),
            vec![1.0, f32::INFINITY, f32::NEG_INFINITY]
        );
    }
}
