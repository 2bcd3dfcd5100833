//! The one class → colour mapping of every picture (class maps, legends, confusion matrices, bar charts; later
//! the attention pictures and the own-area map previews), and the PASTIS class names (spec §1.7).
//!
//! The crop colours are not the official PASTIS colormap (matplotlib `tab20`, whose green / red and pale pairs
//! many colour-blind readers cannot tell apart): 14 of them are Paul Tol's discrete rainbow (his colour-scheme
//! note, chosen to stay distinct under the common colour-vision deficiencies as far as a 14-colour scheme can),
//! and four come from his muted set and Okabe & Ito's palette (olive, bluish green, indigo, dark brown). No
//! 18-colour set is safe for every reader, so every picture also names the classes in a legend. Fixed colours:
//! background (0) black, void (19) grey, hatched on maps.

/// PASTIS class names by id (spec §1.7), 0 = background, 19 = void.
pub const PASTIS_CLASSES: [&str; 20] = [
    "Background",
    "Meadow",
    "Soft winter wheat",
    "Corn",
    "Winter barley",
    "Winter rapeseed",
    "Spring barley",
    "Sunflower",
    "Grapevine",
    "Beet",
    "Winter triticale",
    "Winter durum wheat",
    "Fruits, vegetables, flowers",
    "Potatoes",
    "Leguminous fodder",
    "Soybeans",
    "Orchard",
    "Mixed cereal",
    "Sorghum",
    "Void label",
];

/// The void class of PASTIS (spec §1.7).
pub const VOID_CLASS: i64 = 19;
/// Fill of void pixels (class [`VOID_CLASS`]) and of its legend swatch.
pub const VOID_FILL: [u8; 3] = [110, 110, 110];
/// Hatch lines across void pixels on maps: output pixels with (x + y) divisible by 4.
pub const VOID_HATCH: [u8; 3] = [190, 190, 190];

/// Colours of classes 1..=18, by class id − 1 (see the module doc).
const CROPS: [[u8; 3]; 18] = [
    [0x4E, 0xB2, 0x65], // 1 Meadow: green
    [0xF6, 0xC1, 0x41], // 2 Soft winter wheat: wheat yellow
    [0xF7, 0xF0, 0x56], // 3 Corn: yellow
    [0xF1, 0x93, 0x2D], // 4 Winter barley: orange
    [0xCA, 0xE0, 0xAB], // 5 Winter rapeseed: pale green
    [0xE8, 0x60, 0x1C], // 6 Spring barley: red-orange
    [0xDC, 0x05, 0x0C], // 7 Sunflower: red
    [0x88, 0x2E, 0x72], // 8 Grapevine: purple
    [0xAE, 0x76, 0xA3], // 9 Beet: mauve
    [0x72, 0x19, 0x0E], // 10 Winter triticale: dark brown
    [0x99, 0x99, 0x33], // 11 Winter durum wheat: olive
    [0xD1, 0xBB, 0xD7], // 12 Fruits, vegetables, flowers: lilac
    [0x90, 0xC9, 0x87], // 13 Potatoes: light green
    [0x00, 0x9E, 0x73], // 14 Leguminous fodder: bluish green
    [0x7B, 0xAF, 0xDE], // 15 Soybeans: light blue
    [0x19, 0x65, 0xB0], // 16 Orchard: blue
    [0x52, 0x89, 0xC7], // 17 Mixed cereal: mid blue
    [0x33, 0x22, 0x88], // 18 Sorghum: indigo
];

/// The colour of class `c`: 0 black, 1..=18 the crop colours, 19 [`VOID_FILL`]; other ids (pixel-set
/// nomenclatures have their own classes) cycle through the crop colours.
pub fn class_colour(c: i64) -> [u8; 3] {
    match c {
        0 => [0, 0, 0],
        1..=18 => CROPS[c as usize - 1],
        VOID_CLASS => VOID_FILL,
        _ => CROPS[c.rem_euclid(18) as usize],
    }
}

/// How the classes of a picture are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassNames {
    /// The PASTIS nomenclature ([`PASTIS_CLASSES`]).
    Pastis,
    /// Only numbers ("class 7"): pixel-set nomenclatures come without names.
    Numbered,
}

impl ClassNames {
    /// The label of class `c` in legends and on axes: "7 Sunflower", or "class 7".
    pub fn label(self, c: i64) -> String {
        match self {
            ClassNames::Pastis if (0..20).contains(&c) => {
                format!("{c} {}", PASTIS_CLASSES[c as usize])
            }
            _ => format!("class {c}"),
        }
    }
}

/// Black or white, whichever reads better on `bg` (by its luma).
pub fn text_on(bg: [u8; 3]) -> [u8; 3] {
    let luma = 0.299 * bg[0] as f32 + 0.587 * bg[1] as f32 + 0.114 * bg[2] as f32;
    if luma < 140.0 {
        [255, 255, 255]
    } else {
        [0, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pastis_class_has_its_own_colour() {
        let colours: Vec<[u8; 3]> = (0..20).map(class_colour).collect();
        for i in 0..20 {
            for j in 0..i {
                assert_ne!(colours[i], colours[j], "classes {i} and {j}");
            }
        }
        assert_eq!(ClassNames::Pastis.label(7), "7 Sunflower");
        assert_eq!(ClassNames::Numbered.label(7), "class 7");
        assert_eq!(text_on([0, 0, 0]), [255, 255, 255]);
    }
}
