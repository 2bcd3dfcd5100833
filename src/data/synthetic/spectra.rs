//! Spectra and phenologies of the synthetic generator: bare soil and vegetation reflectance over the ten S2 bands,
//! and each class's vegetation-cover curve over the season.

use super::*;

/// Bare soil, reflectance × 10⁴ over B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12.
pub(super) const SOIL: [f64; BANDS] = [
    1100.0, 1400.0, 1700.0, 1950.0, 2150.0, 2300.0, 2450.0, 2600.0, 3300.0, 2700.0,
];
/// Built-up surfaces.
pub(super) const URBAN: [f64; BANDS] = [
    1300.0, 1450.0, 1600.0, 1750.0, 1850.0, 1950.0, 2050.0, 2100.0, 2500.0, 2300.0,
];
/// Open water.
pub(super) const WATER: [f64; BANDS] = [
    600.0, 550.0, 400.0, 300.0, 250.0, 220.0, 180.0, 160.0, 90.0, 70.0,
];
/// Dense green vegetation.
pub(super) const VEG: [f64; BANDS] = [
    350.0, 700.0, 350.0, 1100.0, 2900.0, 3700.0, 4100.0, 4300.0, 2100.0, 1050.0,
];
/// Yellow flowers (added at full bloom, times the strength).
pub(super) const FLOWER: [f64; BANDS] = [
    200.0, 1200.0, 1400.0, 900.0, 400.0, 300.0, 300.0, 300.0, 200.0, 100.0,
];
/// Clouds.
pub(super) const CLOUD: [f64; BANDS] = [
    7200.0, 7000.0, 7100.0, 7300.0, 7500.0, 7600.0, 7700.0, 7700.0, 5200.0, 3900.0,
];

/// One growing season of a phenology: cover `height · σ((d − start)/rise) · σ((end − d)/fall)` (negative
/// heights are dips: mowing).
#[derive(Debug, Clone, Copy)]
pub(super) struct Season {
    start: f64,
    end: f64,
    height: f64,
    rise: f64,
    fall: f64,
}

pub(super) const fn s(start: f64, end: f64, height: f64, rise: f64, fall: f64) -> Season {
    Season {
        start,
        end,
        height,
        rise,
        fall,
    }
}

/// A surface type: phenology and spectral gains. Days count from 2018-09-01 (Oct 1 = 30, Jan 1 = 122,
/// Mar 1 = 181, May 1 = 242, Jul 1 = 303, Sep 1 = 365).
#[derive(Debug, Clone)]
pub(super) struct Kind {
    base: f64,
    seasons: Vec<Season>,
    ground: &'static [f64; BANDS],
    ground_gain: f64,
    /// Gain of the vegetation's red-edge and NIR bands (B6, B7, B8, B8A).
    nir: f64,
    /// Gain of the vegetation's SWIR bands (B11, B12).
    swir: f64,
    /// Flowering: (day, width in days, strength).
    flower: Option<(f64, f64, f64)>,
}

pub(super) fn kind(
    base: f64,
    seasons: Vec<Season>,
    ground_gain: f64,
    nir: f64,
    swir: f64,
    flower: Option<(f64, f64, f64)>,
) -> Kind {
    Kind {
        base,
        seasons,
        ground: &SOIL,
        ground_gain,
        nir,
        swir,
        flower,
    }
}

/// The crop kind of class `c` (1..=18).
pub(super) fn crop_kind(c: u8) -> Kind {
    match c {
        // Meadow: green all year, two mowing dips.
        1 => kind(
            0.45,
            vec![
                s(60.0, 330.0, 0.35, 25.0, 25.0),
                s(250.0, 265.0, -0.3, 4.0, 4.0),
                s(315.0, 330.0, -0.25, 4.0, 4.0),
            ],
            0.9,
            1.0,
            1.0,
            None,
        ),
        // Soft winter wheat: sown in October, spring green-up, harvest early July.
        2 => kind(
            0.08,
            vec![
                s(45.0, 315.0, 0.25, 10.0, 8.0),
                s(170.0, 305.0, 0.6, 15.0, 8.0),
            ],
            1.0,
            1.0,
            1.0,
            None,
        ),
        // Corn: bare until June, harvest in October.
        3 => kind(
            0.05,
            vec![s(265.0, 385.0, 0.85, 10.0, 10.0)],
            1.15,
            1.1,
            1.0,
            None,
        ),
        // Winter barley: like wheat, earlier.
        4 => kind(
            0.08,
            vec![
                s(40.0, 300.0, 0.25, 10.0, 8.0),
                s(160.0, 290.0, 0.55, 15.0, 8.0),
            ],
            0.9,
            0.95,
            1.0,
            None,
        ),
        // Winter rapeseed: green from autumn, yellow in April, harvest late June.
        5 => kind(
            0.05,
            vec![s(20.0, 295.0, 0.7, 12.0, 8.0)],
            1.0,
            1.0,
            0.9,
            Some((225.0, 12.0, 1.0)),
        ),
        // Spring barley.
        6 => kind(
            0.06,
            vec![s(200.0, 320.0, 0.7, 10.0, 8.0)],
            1.05,
            1.0,
            1.0,
            None,
        ),
        // Sunflower: summer crop, yellow in July.
        7 => kind(
            0.05,
            vec![s(270.0, 375.0, 0.7, 10.0, 12.0)],
            1.2,
            0.9,
            1.0,
            Some((325.0, 10.0, 0.6)),
        ),
        // Grapevine: rows on stony soil, leaves May to September.
        8 => kind(
            0.15,
            vec![s(245.0, 395.0, 0.35, 15.0, 15.0)],
            1.3,
            1.0,
            1.2,
            None,
        ),
        // Beet.
        9 => kind(
            0.05,
            vec![s(240.0, 400.0, 0.85, 12.0, 10.0)],
            1.0,
            1.2,
            1.0,
            None,
        ),
        // Winter triticale.
        10 => kind(
            0.08,
            vec![
                s(45.0, 320.0, 0.25, 10.0, 8.0),
                s(180.0, 315.0, 0.65, 15.0, 8.0),
            ],
            0.85,
            1.05,
            1.0,
            None,
        ),
        // Winter durum wheat.
        11 => kind(
            0.08,
            vec![
                s(50.0, 310.0, 0.2, 10.0, 8.0),
                s(175.0, 300.0, 0.6, 15.0, 8.0),
            ],
            1.25,
            1.0,
            1.1,
            None,
        ),
        // Fruits, vegetables, flowers: two short crops.
        12 => kind(
            0.05,
            vec![
                s(210.0, 280.0, 0.5, 8.0, 8.0),
                s(300.0, 370.0, 0.5, 8.0, 8.0),
            ],
            0.95,
            1.0,
            1.0,
            None,
        ),
        // Potatoes.
        13 => kind(
            0.05,
            vec![s(240.0, 330.0, 0.8, 8.0, 6.0)],
            0.8,
            1.0,
            1.0,
            None,
        ),
        // Leguminous fodder: perennial, cut twice.
        14 => kind(
            0.35,
            vec![
                s(170.0, 390.0, 0.45, 15.0, 15.0),
                s(270.0, 282.0, -0.3, 4.0, 4.0),
                s(330.0, 342.0, -0.3, 4.0, 4.0),
            ],
            1.0,
            1.15,
            1.0,
            None,
        ),
        // Soybeans.
        15 => kind(
            0.05,
            vec![s(275.0, 390.0, 0.75, 10.0, 10.0)],
            0.9,
            1.05,
            1.0,
            None,
        ),
        // Orchard.
        16 => kind(
            0.3,
            vec![s(210.0, 380.0, 0.4, 12.0, 15.0)],
            1.1,
            1.0,
            1.05,
            None,
        ),
        // Mixed cereal.
        17 => kind(
            0.08,
            vec![
                s(50.0, 320.0, 0.2, 10.0, 8.0),
                s(185.0, 320.0, 0.55, 15.0, 10.0),
            ],
            0.95,
            0.9,
            1.0,
            None,
        ),
        // Sorghum.
        _ => kind(
            0.05,
            vec![s(285.0, 400.0, 0.8, 10.0, 10.0)],
            1.1,
            0.95,
            1.1,
            None,
        ),
    }
}

/// Background (non-agricultural) surfaces: urban, forest, grassland, water.
pub(super) fn background_kind(rng: &mut Rng) -> Kind {
    let u = rng.next_f64();
    if u < 0.3 {
        Kind {
            base: 0.1,
            seasons: Vec::new(),
            ground: &URBAN,
            ground_gain: 1.2,
            nir: 1.0,
            swir: 1.0,
            flower: None,
        }
    } else if u < 0.6 {
        // Deciduous forest: dense, denser in summer.
        Kind {
            base: 0.65,
            seasons: vec![s(220.0, 410.0, 0.25, 12.0, 15.0)],
            ground: &SOIL,
            ground_gain: 0.5,
            nir: 0.85,
            swir: 0.9,
            flower: None,
        }
    } else if u < 0.9 {
        grassland()
    } else {
        Kind {
            base: 0.0,
            seasons: Vec::new(),
            ground: &WATER,
            ground_gain: 1.0,
            nir: 1.0,
            swir: 1.0,
            flower: None,
        }
    }
}

/// Semi-natural grassland (also the hedges between parcels).
pub(super) fn grassland() -> Kind {
    Kind {
        base: 0.35,
        seasons: vec![s(150.0, 300.0, 0.3, 20.0, 20.0)],
        ground: &SOIL,
        ground_gain: 0.9,
        nir: 0.95,
        swir: 1.0,
        flower: None,
    }
}

/// A kind with one parcel's variation drawn: the spectrum of every date, `[t][band]`.
pub(super) fn region_spectra(k: &Kind, days: &[f64], rng: &mut Rng) -> Vec<[f64; BANDS]> {
    let mut n = |sd: f64| sd * rng.normal();
    let shift = n(6.0);
    let hgain = 1.0 + n(0.08);
    let ggain = k.ground_gain * (1.0 + n(0.06));
    let gain = 1.0 + n(0.04);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    days.iter()
        .map(|&d| {
            let mut v = k.base;
            for se in &k.seasons {
                v += se.height
                    * hgain
                    * sig((d - se.start - shift) / se.rise)
                    * sig((se.end + shift - d) / se.fall);
            }
            let v = v.clamp(0.0, 0.95);
            let mut out = [0.0; BANDS];
            for (b, o) in out.iter_mut().enumerate() {
                let vg = match b {
                    4..=7 => k.nir,
                    8 | 9 => k.swir,
                    _ => 1.0,
                };
                let mut r = (1.0 - v) * k.ground[b] * ggain + v * VEG[b] * vg;
                if let Some((day, w, st)) = k.flower {
                    let z = (d - day - shift) / w;
                    r += st * (-0.5 * z * z).exp() * FLOWER[b];
                }
                *o = r * gain;
            }
            out
        })
        .collect()
}
