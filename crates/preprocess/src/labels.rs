//! Label conventions: how the network's four classes are written to and read from files.
//!
//! Network classes: 0 background, 1 necrotic / non-enhancing tumour core, 2 peritumoral
//! edema, 3 enhancing tumour. BraTS 2017-2021 files write enhancing tumour as 4, BraTS
//! 2023 as 3, and the Medical Segmentation Decathlon orders the tumour classes
//! differently (1 edema, 2 non-enhancing tumour, 3 enhancing tumour).
use std::fmt;

use crate::error::{Error, Result};

/// Network class: background.
pub const BACKGROUND: u8 = 0;
/// Network class: necrotic and non-enhancing tumour core.
pub const NECROTIC_CORE: u8 = 1;
/// Network class: peritumoral edema.
pub const EDEMA: u8 = 2;
/// Network class: enhancing tumour.
pub const ENHANCING: u8 = 3;

/// A file label convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelConvention {
    /// 0, 1 necrotic/non-enhancing core, 2 edema, 4 enhancing (BraTS 2017-2021).
    #[default]
    Brats2018,
    /// 0, 1 necrotic core, 2 edema, 3 enhancing (BraTS 2023).
    Brats2023,
    /// 0, 1 edema, 2 non-enhancing tumour, 3 enhancing tumour (Decathlon Task01).
    Msd,
}

impl LabelConvention {
    /// Parse `brats2018`, `brats2023` or `msd`.
    pub fn parse(text: &str) -> Result<LabelConvention> {
        match text.trim().to_ascii_lowercase().as_str() {
            "brats2018" | "brats" => Ok(LabelConvention::Brats2018),
            "brats2023" => Ok(LabelConvention::Brats2023),
            "msd" | "decathlon" => Ok(LabelConvention::Msd),
            other => Err(Error::msg(format!(
                "unknown label convention '{other}' (expected brats2018, brats2023 or msd)"
            ))),
        }
    }

    /// The file value of each network class, indexed by class.
    pub fn values(self) -> [u8; 4] {
        match self {
            LabelConvention::Brats2018 => [0, 1, 2, 4],
            LabelConvention::Brats2023 => [0, 1, 2, 3],
            LabelConvention::Msd => [0, 2, 1, 3],
        }
    }

    /// File value for a network class (classes above 3 are treated as background).
    pub fn encode(self, class: u8) -> u8 {
        self.values().get(usize::from(class)).copied().unwrap_or(0)
    }

    /// Network class for a file value, `None` if the value is not in this convention.
    pub fn decode(self, value: u8) -> Option<u8> {
        self.values()
            .iter()
            .position(|&v| v == value)
            .map(|c| c as u8)
    }

    /// Name as accepted by [`LabelConvention::parse`].
    pub fn name(self) -> &'static str {
        match self {
            LabelConvention::Brats2018 => "brats2018",
            LabelConvention::Brats2023 => "brats2023",
            LabelConvention::Msd => "msd",
        }
    }
}

impl fmt::Display for LabelConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_round_trip_and_match_the_documented_values() {
        assert_eq!(LabelConvention::Brats2018.encode(ENHANCING), 4);
        assert_eq!(LabelConvention::Brats2023.encode(ENHANCING), 3);
        assert_eq!(LabelConvention::Msd.encode(EDEMA), 1);
        assert_eq!(LabelConvention::Msd.encode(NECROTIC_CORE), 2);
        for c in [
            LabelConvention::Brats2018,
            LabelConvention::Brats2023,
            LabelConvention::Msd,
        ] {
            for class in 0..4u8 {
                assert_eq!(c.decode(c.encode(class)), Some(class));
            }
        }
        assert_eq!(LabelConvention::Brats2018.decode(3), None);
        assert_eq!(LabelConvention::Brats2023.decode(4), None);
    }
}
