//! One PNG per patch in the style of the U-TAE paper's Fig. 5: three panels side by side, separated by a 4-pixel
//! white gutter:
//!
//! ```text
//!   RGB composite | ground-truth parcels | predicted parcels
//! ```
//!
//! - RGB: the patch's composite (3, H, W) drawn by [`plot::rgb_colours`] (each channel stretched between its
//!   2nd and 98th percentiles), e.g. the middle date of the normalised input ([`middle_date_rgb`]);
//! - parcels: every pixel filled with the official colour of its class ([`plot::class_colour`]: background 0
//!   black, 1..18 `tab20`); void pixels (class 19) hatched grey ([`VOID_FILL`] with diagonal [`VOID_HATCH`]
//!   lines); every pixel of an instance (id ≠ 0) whose neighbour across a side (up, down, left, right, or the
//!   image border) belongs to another id is outlined in [`OUTLINE`] white. Each map pixel is a `scale` × `scale`
//!   block and the outline is drawn on the block's sides facing the other id, one output pixel thick, so the
//!   interior keeps the class colour;
//! - without ground truth (a folder without annotations) the middle panel is plain grey.
//!
//! [`middle_date_rgb`]: crate::train::semantic::predict::middle_date_rgb

use std::path::Path;

use crate::engine::Result;
use crate::train::plot;

/// Colour of the instance outlines.
pub const OUTLINE: [u8; 3] = [255, 255, 255];
/// Fill of void pixels (class [`VOID_CLASS`]).
pub const VOID_FILL: [u8; 3] = [110, 110, 110];
/// Hatch lines across void pixels: output pixels with (x + y) divisible by 4.
pub const VOID_HATCH: [u8; 3] = [190, 190, 190];
/// The void class of PASTIS (spec §1.7).
pub const VOID_CLASS: i64 = 19;
/// Colour of the ground-truth panel when there is no ground truth.
pub const NO_TRUTH: [u8; 3] = [128, 128, 128];
/// Width of the white gutter between panels, in output pixels.
pub const GUTTER: usize = 4;

/// The parcels of one map, both (H, W) row-major: instance ids (0 = none) and pixel classes.
#[derive(Debug, Clone, Copy)]
pub struct Parcels<'a> {
    /// Instance ids (`pano_instance`, or INSTANCES / target channel 1).
    pub instance: &'a [i64],
    /// Classes (argmax of `pano_semantic`, or TARGET channel 0 / target channel 6).
    pub semantic: &'a [i64],
}

/// The picture as RGB bytes: (width, height, H·scale × width × 3 bytes row-major). `rgb` is (3, H, W) in any
/// range; width = 3·W·scale + 2·[`GUTTER`], height = H·scale. Panics when a slice does not hold H·W values
/// (3·H·W for `rgb`) or `scale` is 0.
pub fn render(
    rgb: &[f32],
    truth: Option<Parcels>,
    pred: Parcels,
    h: usize,
    w: usize,
    scale: usize,
) -> (usize, usize, Vec<u8>) {
    assert!(scale > 0, "panoptic picture: scale must be at least 1");
    assert_eq!(
        rgb.len(),
        3 * h * w,
        "panoptic picture: rgb must be (3, H, W) = (3, {h}, {w})"
    );
    for (name, p) in [("truth", truth), ("prediction", Some(pred))] {
        if let Some(p) = p {
            assert!(
                p.instance.len() == h * w && p.semantic.len() == h * w,
                "panoptic picture: {name} maps must be (H, W) = ({h}, {w}), got {} ids and {} classes",
                p.instance.len(),
                p.semantic.len()
            );
        }
    }
    let (pw, ph) = (w * scale, h * scale);
    let ww = 3 * pw + 2 * GUTTER;
    let mut px = vec![255u8; ww * ph * 3];
    let rgb = plot::rgb_colours(rgb, h, w);
    for y in 0..ph {
        for x in 0..pw {
            let colours = [
                rgb[(y / scale) * w + x / scale],
                truth.map_or(NO_TRUTH, |t| parcel_pixel(t, h, w, scale, x, y)),
                parcel_pixel(pred, h, w, scale, x, y),
            ];
            for (k, c) in colours.iter().enumerate() {
                let xx = k * (pw + GUTTER) + x;
                px[3 * (y * ww + xx)..3 * (y * ww + xx) + 3].copy_from_slice(c);
            }
        }
    }
    (ww, ph, px)
}

/// The colour of output pixel (x, y) of a parcels panel (see the module doc).
fn parcel_pixel(p: Parcels, h: usize, w: usize, scale: usize, x: usize, y: usize) -> [u8; 3] {
    let (my, mx) = (y / scale, x / scale);
    let id = p.instance[my * w + mx];
    if id != 0 {
        let other = |yy: Option<usize>, xx: Option<usize>| match (yy, xx) {
            (Some(yy), Some(xx)) if yy < h && xx < w => p.instance[yy * w + xx] != id,
            _ => true, // the image border
        };
        let (sy, sx) = (y % scale, x % scale);
        let edge = (sy == 0 && other(my.checked_sub(1), Some(mx)))
            || (sy == scale - 1 && other(Some(my + 1), Some(mx)))
            || (sx == 0 && other(Some(my), mx.checked_sub(1)))
            || (sx == scale - 1 && other(Some(my), Some(mx + 1)));
        if edge {
            return OUTLINE;
        }
    }
    match p.semantic[my * w + mx] {
        VOID_CLASS if (x + y).is_multiple_of(4) => VOID_HATCH,
        VOID_CLASS => VOID_FILL,
        c => plot::class_colour(c),
    }
}

/// Writes the picture of [`render`] as an 8-bit RGB PNG at `path`; the error names the file.
pub fn panoptic_png(
    path: &Path,
    rgb: &[f32],
    truth: Option<Parcels>,
    pred: Parcels,
    h: usize,
    w: usize,
    scale: usize,
) -> Result<()> {
    let (ww, hh, px) = render(rgb, truth, pred, h, w, scale);
    plot::write_rgb(path, ww, hh, &px)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 × 4 maps at scale 2 (panels 8 × 8 output pixels; picture 3·8 + 2·4 = 32 × 8).
    /// ```text
    ///   truth ids      truth classes    predicted ids    predicted classes
    ///   1 1 0 0        3 3 0 0          5 5 5 0          3 3 3 0
    ///   1 1 0 0        3 3 0 0          5 5 5 0          3 3 3 0
    ///   2 2 0 0       19 19 0 0         0 0 0 0          0 0 0 0
    ///   2 2 0 0       19 19 0 0         0 0 0 0          0 0 0 0
    /// ```
    /// RGB: channel 0 = 0..15 (pixel index), channels 1 and 2 = 0; with 16 values the 2nd and 98th percentiles
    /// are items 16·2/100 = 0 and 16·98/100 = 15, so red = (i − 0) / 15 · 255: pixel 0 → 0, pixel 15 → 255.
    #[test]
    fn picture_colours_outlines_and_png_round_trip() {
        let (h, w, s) = (4, 4, 2);
        let mut rgb = vec![0f32; 3 * 16];
        for (i, v) in rgb[..16].iter_mut().enumerate() {
            *v = i as f32;
        }
        let ti = [1, 1, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0];
        let ts = [3, 3, 0, 0, 3, 3, 0, 0, 19, 19, 0, 0, 19, 19, 0, 0];
        let pi = [5, 5, 5, 0, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let ps = [3, 3, 3, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let truth = Parcels {
            instance: &ti,
            semantic: &ts,
        };
        let pred = Parcels {
            instance: &pi,
            semantic: &ps,
        };
        let (ww, hh, px) = render(&rgb, Some(truth), pred, h, w, s);
        assert_eq!((ww, hh), (32, 8));
        let at = |panel: usize, x: usize, y: usize| -> [u8; 3] {
            let xx = panel * (8 + GUTTER) + x;
            let i = 3 * (y * ww + xx);
            [px[i], px[i + 1], px[i + 2]]
        };
        // RGB panel: map pixel 0 (output (0..2, 0..2)) is black, map pixel 15 (output (6..8, 6..8)) pure red.
        assert_eq!(at(0, 1, 1), [0, 0, 0]);
        assert_eq!(at(0, 7, 7), [255, 0, 0]);
        // The gutter is white.
        assert_eq!(px[3 * 8..3 * 8 + 3], [255, 255, 255]);
        // Truth: instance 1 occupies output (0..4, 0..4). Output (1, 1) is the inner corner of map pixel (0, 0):
        // its sides face map pixels of id 1 → interior, class 3 colour (tab20 item 3).
        assert_eq!(at(1, 1, 1), plot::class_colour(3));
        assert_eq!(at(1, 1, 1), [255, 187, 120]);
        // (0, 1): left side of map pixel (0, 0) = the image border → outline; (3, 1): right side of map pixel
        // (0, 1), facing background → outline; (1, 3): bottom side facing instance 2 → outline.
        assert_eq!(at(1, 0, 1), OUTLINE);
        assert_eq!(at(1, 3, 1), OUTLINE);
        assert_eq!(at(1, 1, 3), OUTLINE);
        // Background (id 0, class 0) is black, never outlined: output (4, 1) is map pixel (0, 2).
        assert_eq!(at(1, 4, 1), [0, 0, 0]);
        // Void instance 2 (map rows 2-3, output rows 4..8): interior pixels (x + y not divisible by 4) are the
        // void fill ((2, 5): x + y = 7), (2, 6) has x + y = 8 → hatch line (both sit on inner sides of their
        // map pixels); its top side at output row 4 faces instance 1 → outline.
        assert_eq!(at(1, 2, 5), VOID_FILL);
        assert_eq!(at(1, 2, 6), VOID_HATCH);
        assert_eq!(at(1, 1, 4), OUTLINE);
        // Prediction: instance 5 over map columns 0-2, rows 0-1. Output (3, 1) is now inside (map pixel (0, 1)'s
        // right side faces map pixel (0, 2), also id 5) → class colour; (5, 1) is the right side of map pixel
        // (0, 2), facing background → outline.
        assert_eq!(at(2, 3, 1), plot::class_colour(3));
        assert_eq!(at(2, 5, 1), OUTLINE);
        assert_eq!(at(2, 2, 6), [0, 0, 0]);

        // Without ground truth the middle panel is grey; the PNG decodes to the same size and bytes.
        let dir = std::env::temp_dir().join(format!("sitsgpu_pano_pic_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("panoptic_12.png");
        panoptic_png(&path, &rgb, None, pred, h, w, s).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (32, 8));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let (_, _, expected) = render(&rgb, None, pred, h, w, s);
        assert_eq!(&buf[..info.buffer_size()], &expected[..]);
        let grey = 3 * (8 + GUTTER + 2);
        assert_eq!(buf[grey..grey + 3], NO_TRUTH);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
