//! The sizes of one convolution ([`Geom`]: input, kernel, stride, padding, output), its padding mode, and the
//! `Params` uniform every conv2d shader reads (one struct for all of them).

/// How the border is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    /// Zeros outside the input (PyTorch `padding_mode="zeros"`).
    Zeros,
    /// Mirror without repeating the edge (`padding_mode="reflect"`): `x[-1] = x[1]`, `x[H] = x[H-2]`.
    Reflect,
}

/// Shader `Params` of conv2d.wgsl, conv2d_backward_input.wgsl and conv2d_backward_weight.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub(crate) n: u32,
    pub(crate) ci: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) co: u32,
    pub(crate) kh: u32,
    pub(crate) kw: u32,
    pub(crate) stride: u32,
    pub(crate) ho: u32,
    pub(crate) wo: u32,
    pub(crate) pad: u32,
    pub(crate) reflect: u32,
    pub(crate) has_bias: u32,
    pub(crate) chunk: u32,
    pub(crate) nchunks: u32,
    pub(crate) flip: u32,
    pub(crate) out_h: u32,
    pub(crate) out_w: u32,
    pub(crate) out_stride: u32,
    pub(crate) phase_y: u32,
    pub(crate) phase_x: u32,
    pub(crate) wkh: u32,
    pub(crate) wkw: u32,
    pub(crate) wstride: u32,
}

/// The sizes of one convolution: x (n, ci, h, w), weight (co, ci, kh, kw), y (n, co, ho, wo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    /// Batch N.
    pub n: usize,
    /// Input channels C_in.
    pub ci: usize,
    /// Input height H.
    pub h: usize,
    /// Input width W.
    pub w: usize,
    /// Output channels C_out.
    pub co: usize,
    /// Kernel height kH.
    pub kh: usize,
    /// Kernel width kW.
    pub kw: usize,
    /// Stride s (both axes).
    pub stride: usize,
    /// Padding p (both axes, each side).
    pub pad: usize,
    /// Output height H_out.
    pub ho: usize,
    /// Output width W_out.
    pub wo: usize,
    /// Padding mode.
    pub mode: PaddingMode,
}

impl Geom {
    /// Checks x (N, C_in, H, W) and weight (C_out, C_in, kH, kW) and derives H_out, W_out; panics with
    /// `conv2d: expected …, got …` otherwise.
    pub fn new(x: &[usize], w: &[usize], stride: usize, pad: usize, mode: PaddingMode) -> Geom {
        assert!(
            x.len() == 4 && w.len() == 4 && x[1] == w[1],
            "conv2d: expected x (N, C_in, H, W) and weight (C_out, C_in, kH, kW), got {x:?} and {w:?}"
        );
        assert!(stride >= 1, "conv2d: expected stride >= 1, got 0");
        assert!(
            x[2] + 2 * pad >= w[2] && x[3] + 2 * pad >= w[3],
            "conv2d: expected a kernel no larger than the padded input, got x {x:?}, weight {w:?}, padding {pad}"
        );
        assert!(
            mode == PaddingMode::Zeros || (pad < x[2] && pad < x[3]),
            "conv2d: expected reflect padding smaller than H and W, got padding {pad} for x {x:?}"
        );
        let ho = (x[2] + 2 * pad - w[2]) / stride + 1;
        let wo = (x[3] + 2 * pad - w[3]) / stride + 1;
        let [n, ci, h, ww] = [x[0], x[1], x[2], x[3]];
        let (co, kh, kw) = (w[0], w[2], w[3]);
        Geom {
            n,
            ci,
            h,
            w: ww,
            co,
            kh,
            kw,
            stride,
            pad,
            ho,
            wo,
            mode,
        }
    }

    /// The source index along an axis of length `len` of padded position `t`; `None` in zero padding.
    pub(crate) fn src(&self, t: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        match self.mode {
            _ if (0..n).contains(&t) => Some(t as usize),
            PaddingMode::Zeros => None,
            PaddingMode::Reflect if t < 0 => Some((-t) as usize),
            PaddingMode::Reflect => Some((2 * (n - 1) - t) as usize),
        }
    }

    /// The forward kernels' `Params` for this geometry (benchmarks and tests launch the variants directly).
    pub fn kernel_params(&self, has_bias: bool) -> Params {
        self.params(has_bias, 0, 0)
    }

    pub(crate) fn params(&self, has_bias: bool, chunk: usize, nchunks: usize) -> Params {
        let u = |v: usize| u32::try_from(v).expect("conv2d: size overflows u32");
        Params {
            n: u(self.n),
            ci: u(self.ci),
            h: u(self.h),
            w: u(self.w),
            co: u(self.co),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.stride),
            ho: u(self.ho),
            wo: u(self.wo),
            pad: u(self.pad),
            reflect: (self.mode == PaddingMode::Reflect) as u32,
            has_bias: has_bias as u32,
            chunk: u(chunk),
            nchunks: u(nchunks),
            flip: 0,
            out_h: u(self.ho),
            out_w: u(self.wo),
            out_stride: 1,
            phase_y: 0,
            phase_x: 0,
            wkh: u(self.kh),
            wkw: u(self.kw),
            wstride: 1,
        }
    }
}
