//! One synthetic PASTIS patch (the generative model is in the parent module doc): its acquisition dates, the
//! anisotropic Voronoi parcel layout with classes and hedges, the annotations (classes, ParcelIDs, INSTANCES and
//! the §1.12 centerness HEATMAP / ZONES), the spectra per region with per-date atmosphere and clouds, and the
//! int16 pixels; plus the per-band statistics of a patch that `NORM_S2_patch.json` averages.

use super::*;

/// One generated patch.
pub(super) struct Patch {
    /// Acquisition dates as YYYYMMDD, ascending.
    pub(super) dates: Vec<u32>,
    /// (T, 10, H, W) raw values.
    pub(super) s2: Vec<i16>,
    /// (H, W) classes.
    pub(super) classes: Vec<u8>,
    pub(super) parcel_ids: Vec<i32>,
    pub(super) instances: Vec<i32>,
    pub(super) zones: Vec<i32>,
    pub(super) heatmap: Vec<f32>,
    pub(super) n_instances: usize,
    pub(super) cloudy: usize,
}

fn next_day(d: Date) -> Date {
    Date::new(d.year, d.month, d.day + 1)
        .or_else(|| Date::new(d.year, d.month + 1, 1))
        .or_else(|| Date::new(d.year + 1, 1, 1))
        .expect("the day after a valid date exists")
}

/// The calendar date `offset` days after 2018-09-01, as YYYYMMDD.
pub(super) fn yyyymmdd(offset: usize) -> u32 {
    let mut d = FIRST_DAY;
    for _ in 0..offset {
        d = next_day(d);
    }
    d.year as u32 * 10_000 + d.month * 100 + d.day
}

/// Draws a patch's day offsets: T in min..=max, one day in each of T equal slices of the season.
fn draw_days(opts: &SynthOptions, rng: &mut Rng) -> Vec<usize> {
    let t = opts.min_dates + rng.below((opts.max_dates - opts.min_dates + 1) as u64) as usize;
    (0..t)
        .map(|i| {
            let lo = i * SEASON_DAYS / t;
            let hi = (i + 1) * SEASON_DAYS / t; // > lo since t <= SEASON_DAYS
            lo + rng.below((hi - lo) as u64) as usize
        })
        .collect()
}

/// The centerness ground truth of §1.12 from the instance map (ids 1..=n, 0 = none): (HEATMAP, ZONES).
pub(crate) fn centerness(instances: &[i32], n: usize, h: usize, w: usize) -> (Vec<f32>, Vec<i32>) {
    const ALPHA: f64 = 0.7;
    const R: f64 = 3.0;
    // Bounding boxes (rmin, rmax, cmin, cmax).
    let mut boxes = vec![(usize::MAX, 0usize, usize::MAX, 0usize); n + 1];
    for (p, &id) in instances.iter().enumerate() {
        if id > 0 {
            let (y, x) = (p / w, p % w);
            let b = &mut boxes[id as usize];
            *b = (b.0.min(y), b.1.max(y), b.2.min(x), b.3.max(x));
        }
    }
    let gauss: Vec<(f64, f64, f64, f64)> = boxes[1..]
        .iter()
        .map(|&(mut rmin, mut rmax, mut cmin, mut cmax)| {
            rmin = rmin.saturating_sub(1);
            cmin = cmin.saturating_sub(1);
            if rmax < h - 1 {
                rmax += 1;
            }
            if cmax < w - 1 {
                cmax += 1;
            }
            let yc = (rmin + (rmax - rmin) / 2) as f64;
            let xc = (cmin + (cmax - cmin) / 2) as f64;
            let k = (1.0 - ALPHA) / (1.0 + ALPHA) / R;
            let sh = k * (rmax - rmin) as f64;
            let sw = k * (cmax - cmin) as f64;
            (yc, xc, sh, sw)
        })
        .collect();
    let mut heat = vec![0f32; h * w];
    let mut zones = vec![0i32; h * w];
    if n == 0 {
        return (heat, zones);
    }
    for y in 0..h {
        for x in 0..w {
            let mut best = f64::NEG_INFINITY;
            let mut zone = 0;
            for (i, &(yc, xc, sh, sw)) in gauss.iter().enumerate() {
                let dy = y as f64 - yc;
                let dx = x as f64 - xc;
                let g = (-(dy * dy) / (2.0 * sh * sh) - (dx * dx) / (2.0 * sw * sw)).exp();
                if g > best {
                    best = g;
                    zone = i as i32 + 1;
                }
            }
            heat[y * w + x] = best as f32;
            zones[y * w + x] = zone;
        }
    }
    (heat, zones)
}

pub(super) fn generate_patch(id: u64, opts: &SynthOptions, crops: &[u8], rng: &mut Rng) -> Patch {
    let (h, w) = (opts.size, opts.size);
    let npix = h * w;
    let days = draw_days(opts, rng);
    let days_f: Vec<f64> = days.iter().map(|&d| d as f64).collect();
    let t = days.len();

    // Layout: anisotropic Voronoi cells, seeds on a jittered g × g grid.
    let g = ((npix as f64 / 80.0).sqrt().round() as usize).max(2);
    let cell = opts.size as f64 / g as f64;
    let seeds: Vec<(f64, f64)> = (0..g * g)
        .map(|k| {
            let (i, j) = (k / g, k % g);
            (
                (i as f64 + 0.15 + 0.7 * rng.next_f64()) * cell,
                (j as f64 + 0.15 + 0.7 * rng.next_f64()) * cell,
            )
        })
        .collect();
    let angle = std::f64::consts::PI * rng.next_f64();
    let stretch = (0.5f64).powf(1.0 - 2.0 * rng.next_f64()); // 0.5..2
    let (ca, sa) = (angle.cos(), angle.sin());
    let mut owner = vec![0usize; npix];
    for y in 0..h {
        for x in 0..w {
            let (py, px) = (y as f64 + 0.5, x as f64 + 0.5);
            let mut best = (f64::INFINITY, 0);
            for (k, &(sy, sx)) in seeds.iter().enumerate() {
                let (dy, dx) = (py - sy, px - sx);
                let u = dx * ca + dy * sa;
                let v = -dx * sa + dy * ca;
                let d = u * u * stretch + v * v / stretch;
                if d < best.0 {
                    best = (d, k);
                }
            }
            owner[y * w + x] = best.1;
        }
    }
    let ncell = seeds.len();
    let mut area = vec![0usize; ncell];
    let mut on_edge = vec![false; ncell];
    let mut adjacent = vec![vec![false; ncell]; ncell];
    for y in 0..h {
        for x in 0..w {
            let a = owner[y * w + x];
            area[a] += 1;
            if y == 0 || x == 0 || y == h - 1 || x == w - 1 {
                on_edge[a] = true;
            }
            for (ny, nx) in [(y + 1, x), (y, x + 1)] {
                if ny < h && nx < w {
                    let b = owner[ny * w + nx];
                    if a != b {
                        adjacent[a][b] = true;
                        adjacent[b][a] = true;
                    }
                }
            }
        }
    }

    // Classes: background, crop (distinct from drawn neighbours when possible), void for small edge parcels.
    // `hidden` is the crop whose spectrum a void parcel shows.
    let mean_area = npix as f64 / ncell as f64;
    let mut class = vec![0u8; ncell];
    let mut hidden = vec![0u8; ncell];
    for c in 0..ncell {
        if area[c] == 0 || rng.next_f64() < 0.25 {
            continue;
        }
        let taken: Vec<u8> = (0..ncell)
            .filter(|&o| adjacent[c][o] && hidden[o] != 0)
            .map(|o| hidden[o])
            .collect();
        let free: Vec<u8> = crops
            .iter()
            .copied()
            .filter(|k| !taken.contains(k))
            .collect();
        let pool = if free.is_empty() { crops } else { &free };
        hidden[c] = pool[rng.below(pool.len() as u64) as usize];
        class[c] = hidden[c];
        if on_edge[c] && (area[c] as f64) < 0.75 * mean_area && rng.next_f64() < 0.5 {
            class[c] = VOID_CLASS;
        }
    }
    if !class.iter().any(|&c| c != 0 && c != VOID_CLASS) {
        // At least one labelled parcel: the largest cell.
        let big = (0..ncell)
            .max_by_key(|&c| (area[c], ncell - c))
            .unwrap_or(0);
        if hidden[big] == 0 {
            hidden[big] = crops[rng.below(crops.len() as u64) as usize];
        }
        class[big] = hidden[big];
    }

    // Hedges: a one-pixel background margin on some borders between two parcels (region `ncell`).
    let hedge_region = ncell;
    let mut hedge = vec![vec![false; ncell]; ncell];
    for a in 0..ncell {
        for b in a + 1..ncell {
            if adjacent[a][b] && hidden[a] != 0 && hidden[b] != 0 && rng.next_f64() < 0.3 {
                hedge[a][b] = true;
                hedge[b][a] = true;
            }
        }
    }
    let mut region = owner.clone();
    for y in 0..h {
        for x in 0..w {
            let a = owner[y * w + x];
            for (ny, nx) in [(y + 1, x), (y, x + 1)] {
                if ny < h && nx < w {
                    let b = owner[ny * w + nx];
                    if a != b && hedge[a][b] {
                        region[y * w + x] = hedge_region;
                    }
                }
            }
        }
    }

    // Annotations.
    let mut classes = vec![0u8; npix];
    let mut parcel_ids = vec![0i32; npix];
    for p in 0..npix {
        let r = region[p];
        if r < ncell && class[r] != 0 {
            classes[p] = class[r];
            parcel_ids[p] = (id * 1000 + r as u64 + 1) as i32;
        }
    }
    // §1.12 step 1: instance ids 1..N in raw parcel-id order (= cell order).
    let mut relabel = vec![0i32; ncell];
    let mut n_instances = 0;
    let mut present = vec![false; ncell];
    for p in 0..npix {
        if parcel_ids[p] != 0 {
            present[region[p]] = true;
        }
    }
    for c in 0..ncell {
        if present[c] {
            n_instances += 1;
            relabel[c] = n_instances as i32;
        }
    }
    let instances: Vec<i32> = (0..npix)
        .map(|p| {
            if parcel_ids[p] != 0 {
                relabel[region[p]]
            } else {
                0
            }
        })
        .collect();
    let (heatmap, zones) = centerness(&instances, n_instances, h, w);

    // Spectra per region and date.
    let mut spectra: Vec<Vec<[f64; BANDS]>> = Vec::with_capacity(ncell + 1);
    for &crop in &hidden {
        let k = if crop != 0 {
            crop_kind(crop)
        } else {
            background_kind(rng)
        };
        spectra.push(region_spectra(&k, &days_f, rng));
    }
    spectra.push(region_spectra(&grassland(), &days_f, rng));

    // Per-date atmosphere and clouds.
    let date_gain: Vec<f64> = (0..t).map(|_| 1.0 + 0.02 * rng.normal()).collect();
    let haze: Vec<f64> = (0..t).map(|_| 80.0 * rng.normal().abs()).collect();
    let mut cloud = vec![0f64; t * npix];
    let mut cloud_level = vec![0f64; t];
    let mut cloudy = 0;
    for ti in 0..t {
        if rng.next_f64() >= 0.12 {
            continue;
        }
        cloudy += 1;
        cloud_level[ti] = 0.85 + 0.25 * rng.next_f64();
        let blobs = 1 + rng.below(2) as usize;
        for _ in 0..blobs {
            let cy = rng.next_f64() * h as f64;
            let cx = rng.next_f64() * w as f64;
            let sd = opts.size as f64 * (0.1 + 0.25 * rng.next_f64());
            for y in 0..h {
                for x in 0..w {
                    let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                    let a = (1.5 * (-(dy * dy + dx * dx) / (2.0 * sd * sd)).exp()).min(1.0);
                    let c = &mut cloud[ti * npix + y * w + x];
                    *c = c.max(a);
                }
            }
        }
    }

    // Pixels.
    let pixel_gain: Vec<f64> = (0..npix).map(|_| 1.0 + 0.03 * rng.normal()).collect();
    let mut s2 = vec![0i16; t * BANDS * npix];
    for ti in 0..t {
        for b in 0..BANDS {
            let plane = &mut s2[(ti * BANDS + b) * npix..][..npix];
            for (p, out) in plane.iter_mut().enumerate() {
                let mut r = spectra[region[p]][ti][b] * pixel_gain[p] * date_gain[ti];
                if b < 3 {
                    r += haze[ti];
                }
                r += (0.02 * r + 25.0) * rng.normal();
                let a = cloud[ti * npix + p];
                if a > 0.0 {
                    r = (1.0 - a) * r + a * CLOUD[b] * cloud_level[ti];
                }
                *out = r.round().clamp(0.0, 16000.0) as i16;
            }
        }
    }

    Patch {
        dates: days.iter().map(|&d| yyyymmdd(d)).collect(),
        s2,
        classes,
        parcel_ids,
        instances,
        zones,
        heatmap,
        n_instances,
        cloudy,
    }
}

/// Per-band mean and unbiased std of one patch's raw values (`compute_norm_vals`), in f64.
pub(super) fn patch_stats(s2: &[i16], t: usize, npix: usize) -> ([f64; BANDS], [f64; BANDS]) {
    let mut mean = [0f64; BANDS];
    let mut std = [0f64; BANDS];
    let n = (t * npix) as f64;
    for b in 0..BANDS {
        let vals = || (0..t).flat_map(move |ti| &s2[(ti * BANDS + b) * npix..][..npix]);
        let m = vals().map(|&v| v as f64).sum::<f64>() / n;
        let ss: f64 = vals().map(|&v| (v as f64 - m) * (v as f64 - m)).sum();
        mean[b] = m;
        std[b] = if n > 1.0 {
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        };
    }
    (mean, std)
}
