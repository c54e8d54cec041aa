//! Whole numbers as other tools write them: `41`, and also `41.0` (what numpy and pandas emit for an
//! integer column). A number with a fraction, a negative one or one out of range is still an error,
//! so leniency costs nothing in meaning. Use with `#[serde(deserialize_with = ...)]`.

use serde::de::{Deserializer, Error, Unexpected, Visitor};
use std::fmt;

struct Whole;

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative whole number")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        // 2^64 is exactly representable; every whole double below it converts exactly.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

/// A `u64` written as an integer or as an integral float.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole)
}

/// A `u32` written as an integer or as an integral float.
pub fn u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = d.deserialize_any(Whole)?;
    u32::try_from(v).map_err(|_| D::Error::invalid_value(Unexpected::Unsigned(v), &"a u32"))
}

/// An optional `u64` written as an integer or as an integral float (`null` is `None`); pair with
/// `#[serde(default)]` so an absent field is `None` too.
pub fn option_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct MaybeWhole;
    impl<'de> Visitor<'de> for MaybeWhole {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative whole number or null")
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            u64_lenient(d).map(Some)
        }
    }
    d.deserialize_option(MaybeWhole)
}
