//! Where `sitsgpu map`'s windows go and in which order they run: the window grid ([`positions`]), each
//! window's core ([`axis_core`]), the rows a `--part` owns, and the column blocks that keep memory independent of
//! the scene's size ([`Plan`]).
//!
//! **Blocks.** The map is computed one block of columns at a time, top to bottom inside a block: block j
//! owns the output columns `[c0, c1)` (its bounds are multiples of the output tile, so each output tile
//! belongs to one block and is written as soon as every window covering it has run) and the windows whose
//! first column lies in them. A block's windows reach past `c1` by less than a window; what they add there
//! is handed to the next block row by row through a file (a first-in first-out spill, see
//! [`super::blend`]), so every window runs once and the accumulator holds one block's width, never the
//! scene's. Blocks are [`block_width`] wide: a multiple of the output tile, at least four windows, a batch of
//! windows side by side and two//! input tiles; an input stored in strips that span the whole width is one block (every window needs
//! whole-width strips decoded anyway; `gdal_translate -co TILED=YES` makes such a file tiled).
//!
//! **Cores.** Along an axis, window k's core is the pixels nearer its center than any other window's center
//! (ties to the lower k), extended to the window's own far edge for the last one (a scene smaller than a
//! window is padded past its edge); the cores of the windows partition the axis, and a window's core is a
//! rectangle, the product of its two axis cores. A U-TAE + PaPs instance belongs to the window whose core
//! holds its center.

use std::ops::Range;

use crate::data::geotiff::writer::TILE;
use crate::engine::{Error, Result};

/// Window starts along an axis of `n` pixels: every `stride` from 0, the last moved back to end at `n`
/// (one window at 0 when `n <= p`: the scene is padded past its edge).
pub fn positions(n: usize, p: usize, stride: usize) -> Vec<usize> {
    if n <= p {
        return vec![0];
    }
    let mut v: Vec<usize> = (0..)
        .map(|k| k * stride)
        .take_while(|&s| s + p < n)
        .collect();
    v.push(n - p);
    v.dedup();
    v
}

/// The core of window `k` along an axis with window starts `pos` (windows of side `p`): the pixels whose
/// center is nearer window k's center than any other's (ties to the lower index), the last window's
/// reaching to its own far edge.
pub fn axis_core(pos: &[usize], k: usize, p: usize) -> Range<usize> {
    // Pixel a (center a + ½) is nearer window k + 1's center (pos + p/2) than window k's when
    // 2a + 1 > pos[k] + pos[k + 1] + p.
    let boundary = |k: usize| (pos[k] + pos[k + 1] + p - 1) / 2 + 1;
    let lo = if k == 0 { 0 } else { boundary(k - 1) };
    let hi = if k + 1 == pos.len() {
        pos[k] + p
    } else {
        boundary(k)
    };
    lo..hi
}

/// Block width for a scene `w` wide read from chunks `chunk_w` wide, windows of side `p`, `batch` windows
/// a `stride` apart side by side (see the module doc): the whole width for strips spanning it, else a
/// multiple of the output tile of at least `4p`, `batch · stride` and `2 · chunk_w`.
pub fn block_width(w: usize, p: usize, chunk_w: usize, (batch, stride): (usize, usize)) -> usize {
    if chunk_w >= w {
        return w;
    }
    (4 * p).max(2 * chunk_w).max(batch * stride).div_ceil(TILE) * TILE
}

/// One block of columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Output columns `[c0, c1)`.
    pub c0: usize,
    /// End of the output columns.
    pub c1: usize,
    /// End of the columns its windows touch (`>= c1`; `[c1, end)` is spilled to the next block).
    pub end: usize,
    /// Window columns whose first column lies in `[c0, c1)`.
    pub kx: Range<usize>,
}

/// The windows of a run: grid, part, blocks and order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scene rows.
    pub h: usize,
    /// Scene columns.
    pub w: usize,
    /// Window side.
    pub p: usize,
    /// Window rows' first rows.
    pub ys: Vec<usize>,
    /// Window columns' first columns.
    pub xs: Vec<usize>,
    /// Output rows `[row0, row1)` of this part.
    pub row0: usize,
    /// End of the part's rows.
    pub row1: usize,
    /// Window rows touching the part's rows.
    pub ky: Range<usize>,
    /// Column blocks, left to right.
    pub blocks: Vec<Block>,
}

/// One window to run: its grid indices, first pixel, and block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Window row.
    pub ky: usize,
    /// Window column.
    pub kx: usize,
    /// First row.
    pub y: usize,
    /// First column.
    pub x: usize,
    /// Index of its block in [`Plan::blocks`].
    pub block: usize,
}

impl Plan {
    /// The plan for an `h` × `w` scene, windows of side `p` overlapping by `overlap`, part `(i, n)` of the
    /// window rows (1-based), read from chunks `chunk_w` wide, `batch` windows a batch ([`block_width`]).
    pub fn new(
        (h, w): (usize, usize),
        p: usize,
        overlap: usize,
        (pi, pn): (usize, usize),
        (chunk_w, batch): (usize, usize),
    ) -> Result<Plan> {
        let ys = positions(h, p, p - overlap);
        let xs = positions(w, p, p - overlap);
        if pn > ys.len() {
            return Err(Error::Invalid(format!(
                "--part {pi}/{pn}: the scene has {} row(s) of windows; use at most {} parts",
                ys.len(),
                ys.len()
            )));
        }
        // The part owns window rows [k0, k1) and the output rows down to the next part's first window.
        let k0 = (pi - 1) * ys.len() / pn;
        let k1 = pi * ys.len() / pn;
        let row0 = if k0 == 0 { 0 } else { ys[k0] };
        let row1 = if k1 == ys.len() { h } else { ys[k1] };
        let touching: Vec<usize> = (0..ys.len())
            .filter(|&k| ys[k] < row1 && ys[k] + p > row0)
            .collect();
        let ky = touching[0]..touching[touching.len() - 1] + 1;
        let block_w = block_width(w, p, chunk_w, (batch, p - overlap))
            .min(w)
            .max(1);
        let mut blocks: Vec<Block> = Vec::new();
        let mut c0 = 0;
        while c0 < w {
            let c1 = (c0 + block_w).min(w);
            let kx: Vec<usize> = (0..xs.len())
                .filter(|&k| xs[k] >= c0 && xs[k] < c1)
                .collect();
            match (kx.first(), kx.last(), blocks.last_mut()) {
                (Some(&a), Some(&b), _) => blocks.push(Block {
                    c0,
                    c1,
                    end: (xs[b] + p).min(w).max(c1),
                    kx: a..b + 1,
                }),
                // No window starts here (a narrow last block): the previous block takes its columns.
                (_, _, Some(prev)) => prev.c1 = c1,
                // Not reached: window column 0 starts at column 0, in the first block.
                (_, _, None) => blocks.push(Block {
                    c0,
                    c1,
                    end: c1,
                    kx: 0..0,
                }),
            }
            c0 = c1;
        }
        for b in &mut blocks {
            b.end = b.end.max(b.c1);
        }
        Ok(Plan {
            h,
            w,
            p,
            ys,
            xs,
            row0,
            row1,
            ky,
            blocks,
        })
    }

    /// Every window of the part in run order: block by block, row by row inside a block.
    pub fn windows(&self) -> Vec<Window> {
        let mut out = Vec::new();
        for (bi, b) in self.blocks.iter().enumerate() {
            for ky in self.ky.clone() {
                for kx in b.kx.clone() {
                    out.push(Window {
                        ky,
                        kx,
                        y: self.ys[ky],
                        x: self.xs[kx],
                        block: bi,
                    });
                }
            }
        }
        out
    }

    /// The scene-wide index of window (ky, kx), row-major over the whole grid (whatever the part).
    pub fn index(&self, ky: usize, kx: usize) -> usize {
        ky * self.xs.len() + kx
    }

    /// The first instance id of window (ky, kx): `index · p²` (a window's instances are numbered from 1 to
    /// at most p², their pseudo-NMS rank + 1, as `predict` numbers them).
    pub fn id_base(&self, ky: usize, kx: usize) -> u32 {
        (self.index(ky, kx) * self.p * self.p) as u32
    }

    /// Checks that every instance id of the scene fits in uint32.
    pub fn check_ids(&self) -> Result<()> {
        let windows = self.ys.len() * self.xs.len();
        let top = (windows as u128 + 1) * (self.p * self.p) as u128;
        if top > u32::MAX as u128 {
            return Err(Error::Invalid(format!(
                "{windows} windows of {0} x {0}: instance ids (window index x {0}² + rank) would pass \
                 2^32; map the scene in smaller pieces (gdal_translate -srcwin) or use a smaller --patch_size",
                self.p
            )));
        }
        Ok(())
    }

    /// The core of window (ky, kx): (rows, columns).
    pub fn core(&self, ky: usize, kx: usize) -> (Range<usize>, Range<usize>) {
        (
            axis_core(&self.ys, ky, self.p),
            axis_core(&self.xs, kx, self.p),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_cover_the_axis_and_end_at_its_edge() {
        assert_eq!(positions(100, 128, 96), vec![0]);
        assert_eq!(positions(128, 128, 96), vec![0]);
        assert_eq!(positions(300, 128, 96), vec![0, 96, 172]);
        assert_eq!(positions(320, 128, 96), vec![0, 96, 192]);
    }

    #[test]
    fn cores_partition_the_axis_inside_their_windows() {
        for (n, p, stride) in [
            (300, 128, 96),
            (320, 128, 96),
            (72, 32, 24),
            (100, 128, 96),
            (97, 8, 5),
        ] {
            let pos = positions(n, p, stride);
            let mut next = 0;
            for k in 0..pos.len() {
                let c = axis_core(&pos, k, p);
                assert_eq!(c.start, next, "n {n} k {k}");
                assert!(
                    c.start >= pos[k] && c.end <= pos[k] + p,
                    "n {n} k {k} {c:?}"
                );
                // Every pixel of the core is at least as near this center as any other.
                for a in c.clone().filter(|&a| a < n) {
                    let d = |j: usize| (2 * a as i64 + 1 - 2 * pos[j] as i64 - p as i64).abs();
                    assert!((0..pos.len()).all(|j| d(k) <= d(j)), "n {n} pixel {a}");
                }
                next = c.end;
            }
            assert!(next >= n);
        }
        // Windows at 0 and 96 of 128: centers 64 and 160, split at 112.
        assert_eq!(axis_core(&[0, 96], 0, 128), 0..112);
        assert_eq!(axis_core(&[0, 96], 1, 128), 112..224);
    }

    #[test]
    fn blocks_cover_the_columns_and_own_each_window_once() {
        for (w, p, chunk) in [
            (2000, 128, 256),
            (520, 32, 16),
            (300, 32, 16),
            (1030, 128, 256),
        ] {
            let plan = Plan::new((64, w), p, p / 4, (1, 1), (chunk, 4)).unwrap();
            let mut c = 0;
            let mut kx = 0;
            for b in &plan.blocks {
                assert_eq!(b.c0, c);
                assert!(b.c0 % TILE == 0 && (b.c1 % TILE == 0 || b.c1 == w));
                assert_eq!(b.kx.start, kx);
                assert!(b.end >= b.c1 && b.end <= w);
                // What a block spills stays inside the next one's output columns.
                assert!(b.end - b.c1 < p);
                c = b.c1;
                kx = b.kx.end;
            }
            assert_eq!((c, kx), (w, plan.xs.len()));
        }
        // Strips spanning the width: one block.
        let plan = Plan::new((64, 2000), 128, 32, (1, 1), (2000, 4)).unwrap();
        assert_eq!(plan.blocks.len(), 1);
        assert_eq!(block_width(2000, 128, 256, (4, 96)), 512);
        assert_eq!(block_width(520, 32, 16, (4, 24)), 256);
        // A batch of windows fits in a block's row of windows.
        assert_eq!(block_width(4000, 128, 256, (16, 96)), 1536);
    }
}
