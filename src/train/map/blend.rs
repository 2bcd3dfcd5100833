//! Blending `sitsgpu map`'s windows, one block of columns at a time: how much each window counts at each of
//! its pixels ([`weight_1d`]), the block accumulator that sums weighted outputs and writes output tiles as
//! soon as they are final ([`BlockAccumulator`]), the first-in first-out spill that hands the columns a
//! block's windows reach past its edge to the next block ([`Spill`]), the files written ([`Outputs`]), and
//! the PNG preview with a class legend ([`Preview`]).
//!
//! **Memory.** A block's accumulator holds the rows from the oldest row not yet written to the bottom of
//! the last window added (at most a tile row and a window's height) across the block's columns and its
//! spill; rows are written one output tile row at a time. Nothing is the scene's width or height: a 4×
//! larger scene has the same peak ([`BlockAccumulator::peak_bytes`], `tests/map.rs`).
//!
//! **Order of sums.** A pixel's weighted sum is taken in run order (blocks left to right, windows row by
//! row in a block), which depends on the window grid and the block layout only, never on `--part` or the
//! batch: the parts mosaic to the single run bit for bit. Where one window alone covers a pixel the weight
//! is exactly 1 and the sum is that window's output exactly.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::data::geotiff::writer::{TiledWriter, TILE};
use crate::engine::{Error, Result};
use crate::train::plot;

use super::instances::Claim;
use super::plan::{Plan, Window};

/// Weight of pixel `u` (0..p) of window `k` along an axis with window starts `pos`: 1, ramping linearly
/// towards a side where the neighbouring window overlaps by `ov` pixels, `(d + 1) / (ov + 1)` at distance
/// `d` from that side, so never 0; 1 up to a scene edge. Exactly 1 wherever no other window reaches.
pub fn weight_1d(pos: &[usize], k: usize, p: usize, u: usize) -> f32 {
    let mut w = 1.0f32;
    if k > 0 {
        let ov = (pos[k - 1] + p).saturating_sub(pos[k]);
        if u < ov {
            w = w.min((u + 1) as f32 / (ov + 1) as f32);
        }
    }
    if k + 1 < pos.len() {
        let ov = (pos[k] + p).saturating_sub(pos[k + 1]);
        if u + ov >= p {
            w = w.min((p - u) as f32 / (ov + 1) as f32);
        }
    }
    w
}

/// U-TAE's attention of window `i` of a batch, `a` of shape (heads, B, T_batch, h, w), as (heads · n_dates,
/// p, p): nearest upsampling to the window, each kept date at its scene index, 0 for the others.
pub fn attention_full(
    a: &[f32],
    shape: &[usize],
    i: usize,
    kept: &[usize],
    n_dates: usize,
    p: usize,
) -> Vec<f32> {
    let (heads, b, t, ah, aw) = (shape[0], shape[1], shape[2], shape[3], shape[4]);
    let mut out = vec![0.0f32; heads * n_dates * p * p];
    for hd in 0..heads {
        for (tk, &ts) in kept.iter().enumerate().take(t) {
            let src = &a[((hd * b + i) * t + tk) * ah * aw..][..ah * aw];
            let dst = &mut out[(hd * n_dates + ts) * p * p..][..p * p];
            for y in 0..p {
                for x in 0..p {
                    dst[y * p + x] = src[(y * ah / p) * aw + x * aw / p];
                }
            }
        }
    }
    out
}

/// What a pixel accumulates: `classes` blended logits (semantic models; 0 for PaPs), `extra` other
/// blended channels (attention), and with `claims` the instance claims of U-TAE + PaPs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Channels {
    /// Blended logits.
    pub classes: usize,
    /// Other blended channels.
    pub extra: usize,
    /// Instance claims.
    pub claims: bool,
}

impl Channels {
    fn blended(&self) -> usize {
        self.classes + self.extra
    }

    /// Bytes of one pixel in a spill record: the blended sums, the weight sum, validity, the claim.
    fn record_bytes(&self) -> usize {
        4 * self.blended() + 4 + 1 + if self.claims { Claim::BYTES } else { 0 }
    }

    /// Bytes of one pixel in memory.
    fn memory_bytes(&self) -> usize {
        4 * self.blended()
            + 4
            + 1
            + if self.claims {
                std::mem::size_of::<Claim>()
            } else {
                0
            }
    }
}

/// One scene row of a block being summed: channels × width, the summed weights, validity, claims.
struct Row {
    vals: Vec<f32>,
    wsum: Vec<f32>,
    valid: Vec<bool>,
    claims: Vec<Claim>,
}

impl Row {
    fn new(width: usize, ch: Channels) -> Row {
        Row {
            vals: vec![0.0; ch.blended() * width],
            wsum: vec![0.0; width],
            valid: vec![false; width],
            claims: if ch.claims {
                vec![Claim::default(); width]
            } else {
                Vec::new()
            },
        }
    }
}

/// A temporary file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The columns a block's windows reach past its right edge, row by row: written by one block as its rows
/// become final, read back in the same order by the next block as it starts each row (a first-in
/// first-out file, so memory does not grow with the scene's height).
pub struct Spill {
    file: TempFile,
    cols: usize,
    ch: Channels,
    writer: Option<BufWriter<File>>,
    reader: Option<BufReader<File>>,
    buf: Vec<u8>,
}

impl Spill {
    fn create(path: PathBuf, cols: usize, ch: Channels) -> Result<Spill> {
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Spill {
            file: TempFile(path),
            cols,
            ch,
            writer: Some(BufWriter::with_capacity(1 << 20, f)),
            reader: None,
            buf: Vec::new(),
        })
    }

    /// Appends columns `from .. from + cols` of `row`.
    fn push(&mut self, row: &Row, width: usize, from: usize) -> Result<()> {
        let (n, ch) = (self.cols, self.ch);
        self.buf.clear();
        for k in 0..ch.blended() {
            for v in &row.vals[k * width + from..][..n] {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        for v in &row.wsum[from..from + n] {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.buf
            .extend(row.valid[from..from + n].iter().map(|&v| v as u8));
        if ch.claims {
            for c in &row.claims[from..from + n] {
                c.write(&mut self.buf);
            }
        }
        let path = &self.file.0;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::io(path, "spill written after it was read"))?;
        w.write_all(&self.buf).map_err(|e| Error::io(path, e))
    }

    /// Ends writing; the rows are then read back from the first.
    fn rewind(&mut self) -> Result<()> {
        let path = &self.file.0;
        if let Some(mut w) = self.writer.take() {
            w.flush().map_err(|e| Error::io(path, e))?;
        }
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        self.reader = Some(BufReader::with_capacity(1 << 20, f));
        Ok(())
    }

    /// Reads the next row into columns `0 .. cols` of `row`.
    fn pop(&mut self, row: &mut Row, width: usize) -> Result<()> {
        let (n, ch) = (self.cols, self.ch);
        self.buf.resize(n * ch.record_bytes(), 0);
        let path = &self.file.0;
        let r = self
            .reader
            .as_mut()
            .ok_or_else(|| Error::io(path, "spill read before it was written"))?;
        r.read_exact(&mut self.buf)
            .map_err(|e| Error::io(path, e))?;
        let f32_at = |i: usize| {
            f32::from_le_bytes([
                self.buf[i],
                self.buf[i + 1],
                self.buf[i + 2],
                self.buf[i + 3],
            ])
        };
        let mut at = 0;
        for k in 0..ch.blended() {
            for c in 0..n {
                row.vals[k * width + c] = f32_at(at);
                at += 4;
            }
        }
        for c in 0..n {
            row.wsum[c] = f32_at(at);
            at += 4;
        }
        for c in 0..n {
            row.valid[c] = self.buf[at] != 0;
            at += 1;
        }
        if ch.claims {
            for c in 0..n {
                row.claims[c] = Claim::read(&self.buf[at..at + Claim::BYTES]);
                at += Claim::BYTES;
            }
        }
        Ok(())
    }
}

/// The files of a run (all on the part's grid) and the preview.
pub struct Outputs {
    /// The class map (uint8, 255 = nodata).
    pub classes: TiledWriter,
    /// Class probabilities (float32, one band per class).
    pub probs: Option<TiledWriter>,
    /// Attention (float32).
    pub extra: Option<TiledWriter>,
    /// Instance ids (uint32, 0 = no instance or nodata).
    pub instances: Option<TiledWriter>,
    /// The PNG preview.
    pub preview: Preview,
}

/// Sums of the windows of one block, written out tile row by tile row as rows become final.
pub struct BlockAccumulator<'a> {
    plan: &'a Plan,
    /// Index of the block in the plan.
    pub block: usize,
    c0: usize,
    c1: usize,
    width: usize,
    ch: Channels,
    /// Scene row of `rows[0]`.
    first: usize,
    rows: VecDeque<Row>,
    spill_in: Option<Spill>,
    spill_out: Option<Spill>,
    peak: usize,
}

impl<'a> BlockAccumulator<'a> {
    /// The accumulator of block `block` of `plan`, continuing the previous block's `spill`; what this
    /// block's windows reach past its edge goes to `spill_path`.
    pub fn new(
        plan: &'a Plan,
        block: usize,
        ch: Channels,
        spill: Option<Spill>,
        spill_path: PathBuf,
    ) -> Result<BlockAccumulator<'a>> {
        let b = &plan.blocks[block];
        let spill_out = match b.end > b.c1 {
            true => Some(Spill::create(spill_path, b.end - b.c1, ch)?),
            false => None,
        };
        Ok(BlockAccumulator {
            plan,
            block,
            c0: b.c0,
            c1: b.c1,
            width: b.end - b.c0,
            ch,
            first: plan.row0,
            rows: VecDeque::new(),
            spill_in: spill,
            spill_out,
            peak: 0,
        })
    }

    /// The most bytes its rows held.
    pub fn peak_bytes(&self) -> usize {
        self.peak
    }

    /// Starts the next row (with the previous block's spill in its first columns).
    fn push_row(&mut self) -> Result<()> {
        let mut row = Row::new(self.width, self.ch);
        if let Some(s) = self.spill_in.as_mut() {
            s.pop(&mut row, self.width)?;
        }
        self.rows.push_back(row);
        self.peak = self
            .peak
            .max(self.rows.len() * self.width * self.ch.memory_bytes());
        Ok(())
    }

    /// Adds window `win`'s outputs: logits (classes, p, p), extras (extra, p, p), valid mask (p, p), claims
    /// (p, p). Windows come in the plan's order.
    pub fn add(
        &mut self,
        win: &Window,
        logits: Option<&[f32]>,
        extras: Option<&[f32]>,
        valid: &[bool],
        claims: Option<&[Claim]>,
    ) -> Result<()> {
        let plan = self.plan;
        let (p, width, classes) = (plan.p, self.width, self.ch.classes);
        let cx = win.x - self.c0;
        let n = p.min(plan.w - win.x);
        let wx: Vec<f32> = (0..n).map(|u| weight_1d(&plan.xs, win.kx, p, u)).collect();
        for v in 0..p {
            let r = win.y + v;
            if r < self.first || r >= plan.row1 {
                continue;
            }
            while self.first + self.rows.len() <= r {
                self.push_row()?;
            }
            let wy = weight_1d(&plan.ys, win.ky, p, v);
            let row = &mut self.rows[r - self.first];
            for u in 0..n {
                row.wsum[cx + u] += wy * wx[u];
                row.valid[cx + u] |= valid[v * p + u];
            }
            let mut blend = |k: usize, src: &[f32]| {
                let dst = &mut row.vals[k * width + cx..][..n];
                for u in 0..n {
                    let wgt = wy * wx[u];
                    dst[u] += wgt * src[u];
                }
            };
            if let Some(l) = logits {
                for k in 0..classes {
                    blend(k, &l[(k * p + v) * p..][..n]);
                }
            }
            if let Some(e) = extras {
                for k in 0..self.ch.extra {
                    blend(classes + k, &e[(k * p + v) * p..][..n]);
                }
            }
            if let Some(cl) = claims {
                for u in 0..n {
                    let c = &cl[v * p + u];
                    if c.beats(&row.claims[cx + u]) {
                        row.claims[cx + u] = *c;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes every whole output tile row above scene row `final_row` (no window still to come in this
    /// block reaches above it).
    pub fn flush(&mut self, final_row: usize, out: &mut Outputs) -> Result<()> {
        let plan = self.plan;
        let final_row = final_row.min(plan.row1);
        let (k, e, cw) = (self.ch.classes, self.ch.extra, self.c1 - self.c0);
        loop {
            let ty = (self.first - plan.row0) / TILE;
            let n = out.classes.tile_rows(ty);
            if n == 0 || self.first + n > final_row {
                return Ok(());
            }
            while self.rows.len() < n {
                self.push_row()?;
            }
            let width = self.width;
            let mut cls = vec![255.0f32; n * cw];
            let mut probs = vec![0.0f32; if out.probs.is_some() { k * n * cw } else { 0 }];
            let mut extra = vec![0.0f32; if out.extra.is_some() { e * n * cw } else { 0 }];
            let mut ids = vec![0u32; if out.instances.is_some() { n * cw } else { 0 }];
            for v in 0..n {
                let Some(row) = self.rows.pop_front() else {
                    break;
                };
                for c in 0..cw {
                    let ws = row.wsum[c];
                    if ws <= 0.0 {
                        continue;
                    }
                    let o = v * cw + c;
                    if k > 0 {
                        let logit = |j: usize| row.vals[j * width + c] / ws;
                        let (mut best, mut m) = (0, f32::NEG_INFINITY);
                        for j in 0..k {
                            if logit(j) > m {
                                m = logit(j);
                                best = j;
                            }
                        }
                        if row.valid[c] {
                            cls[o] = best as f32;
                        }
                        if !probs.is_empty() {
                            let z: f32 = (0..k).map(|j| (logit(j) - m).exp()).sum();
                            for j in 0..k {
                                probs[(j * n + v) * cw + c] = (logit(j) - m).exp() / z;
                            }
                        }
                    }
                    if self.ch.claims && row.valid[c] {
                        let claim = &row.claims[c];
                        cls[o] = if claim.id != 0 {
                            claim.class as f32
                        } else {
                            0.0
                        };
                        if !ids.is_empty() {
                            ids[o] = claim.id;
                        }
                    }
                    if !extra.is_empty() {
                        for j in 0..e {
                            extra[(j * n + v) * cw + c] = row.vals[(k + j) * width + c] / ws;
                        }
                    }
                }
                if let Some(s) = self.spill_out.as_mut() {
                    s.push(&row, width, cw)?;
                }
            }
            let (r0, tx0) = (self.first - plan.row0, self.c0 / TILE);
            out.preview.add(r0, self.c0, &cls, n, cw);
            out.classes.write_tiles(ty, tx0, cw, &cls)?;
            if let Some(w) = out.probs.as_mut() {
                w.write_tiles(ty, tx0, cw, &probs)?;
            }
            if let Some(w) = out.extra.as_mut() {
                w.write_tiles(ty, tx0, cw, &extra)?;
            }
            if let Some(w) = out.instances.as_mut() {
                w.write_tiles(ty, tx0, cw, &ids)?;
            }
            self.first += n;
        }
    }

    /// Writes the block's remaining rows and returns its spill, for the next block.
    pub fn finish(mut self, out: &mut Outputs) -> Result<(Option<Spill>, usize)> {
        self.flush(self.plan.row1, out)?;
        if let Some(s) = self.spill_out.as_mut() {
            s.rewind()?;
        }
        Ok((self.spill_out, self.peak))
    }
}

/// A downsampled class map (at most 1024 pixels a side) drawn as a PNG with a legend.
pub struct Preview {
    step: usize,
    pw: usize,
    ph: usize,
    px: Vec<u8>,
}

impl Preview {
    /// A preview of a `width` × `height` map.
    pub fn new(width: usize, height: usize) -> Preview {
        let step = width.max(height).div_ceil(1024).max(1);
        let (pw, ph) = (width.div_ceil(step), height.div_ceil(step));
        Preview {
            step,
            pw,
            ph,
            px: vec![255; pw * ph],
        }
    }

    /// Adds `n` rows × `cols` columns of classes (255 = nodata) whose top-left pixel is (`row`, `col`).
    pub fn add(&mut self, row: usize, col: usize, cls: &[f32], n: usize, cols: usize) {
        for v in 0..n {
            if !(row + v).is_multiple_of(self.step) {
                continue;
            }
            let py = (row + v) / self.step;
            for c in 0..cols {
                if (col + c).is_multiple_of(self.step) {
                    self.px[py * self.pw + (col + c) / self.step] = cls[v * cols + c] as u8;
                }
            }
        }
    }

    /// Writes the PNG: the map in the classes' colours (the palette of every picture, [`plot::palette`];
    /// nodata grey), titled, with a legend of the classes present and their PASTIS names
    /// ([`plot::maps::figure_png`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut present: Vec<i64> = self
            .px
            .iter()
            .filter(|&&c| c != 255)
            .map(|&c| c as i64)
            .collect();
        present.sort_unstable();
        present.dedup();
        let pixels = self
            .px
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if c == 255 {
                    [128, 128, 128]
                } else {
                    plot::maps::class_pixel(c as i64, i % self.pw.max(1), i / self.pw.max(1))
                }
            })
            .collect();
        let title = if self.step > 1 {
            format!(
                "class map (1 preview pixel = {0} × {0} map pixels)",
                self.step
            )
        } else {
            "class map".to_string()
        };
        let fig = plot::maps::Figure {
            title: "sitsgpu map".into(),
            panels: vec![plot::maps::Panel { title, pixels }],
            panel_size: (self.pw, self.ph),
            legend: present,
            names: plot::ClassNames::Pastis,
        };
        plot::maps::figure_png(path, &fig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::map::plan::positions;

    #[test]
    fn weights_are_one_in_the_core_and_positive_in_overlaps() {
        let pos = positions(320, 128, 96);
        for k in 0..pos.len() {
            for u in 0..128 {
                let w = weight_1d(&pos, k, 128, u);
                assert!(w > 0.0 && w <= 1.0);
                // Covered by this window only: exactly 1.
                let others = (0..pos.len())
                    .any(|j| j != k && pos[j] <= pos[k] + u && pos[k] + u < pos[j] + 128);
                if !others {
                    assert_eq!(w, 1.0, "k {k} u {u}");
                }
            }
        }
        // Symmetric ramps: the two windows of an overlap weigh 1/33 .. 32/33.
        assert_eq!(weight_1d(&pos, 1, 128, 0), 1.0 / 33.0);
        assert_eq!(weight_1d(&pos, 0, 128, 127), 1.0 / 33.0);
    }

    #[test]
    fn spill_rows_come_back_in_order() {
        let ch = Channels {
            classes: 2,
            extra: 1,
            claims: true,
        };
        let path = std::env::temp_dir().join(format!("sitsgpu-spill-{}", std::process::id()));
        let mut s = Spill::create(path.clone(), 3, ch).unwrap();
        let width = 5;
        let mut rows = Vec::new();
        for r in 0..4 {
            let mut row = Row::new(width, ch);
            for (i, v) in row.vals.iter_mut().enumerate() {
                *v = (r * 100 + i) as f32 + 0.25;
            }
            row.wsum
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = i as f32);
            row.valid[3] = true;
            row.claims[4] = Claim {
                id: 1 << 30,
                class: 7,
                confidence: 0.75,
                core: true,
                window: 9 + r as u32,
            };
            s.push(&row, width, 2).unwrap();
            rows.push(row);
        }
        s.rewind().unwrap();
        for want in &rows {
            let mut got = Row::new(width, ch);
            s.pop(&mut got, width).unwrap();
            for k in 0..3 {
                assert_eq!(got.vals[k * width..][..3], want.vals[k * width + 2..][..3]);
            }
            assert_eq!(got.wsum[..3], want.wsum[2..5]);
            assert_eq!(got.valid[..3], want.valid[2..5]);
            assert_eq!(got.claims[..3], want.claims[2..5]);
        }
        let e = s.pop(&mut Row::new(width, ch), width).unwrap_err();
        assert!(e.to_string().contains("sitsgpu-spill"), "{e}");
        drop(s);
        assert!(!path.exists(), "the spill file is removed");
    }
}
