//! Byte sizes as users write them: `256MiB`, `1G`, `4096`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes. On the wire it is either an integer number of bytes or a
/// string with a binary unit (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`);
/// it is always written back as the shortest exact string, e.g. `"256MiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

const UNITS: [(&str, u64); 4] = [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];

/// Why a size string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    #[error("empty size")]
    Empty,
    #[error("'{0}' is not a number followed by an optional unit (K, KiB, M, MiB, G, GiB, T, TiB)")]
    Malformed(String),
    #[error("unknown unit '{0}' (use K, KiB, M, MiB, G, GiB, T or TiB)")]
    UnknownUnit(String),
    #[error("'{0}' is too large")]
    Overflow(String),
}

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    match unit {
        "" | "B" => Some(1),
        "K" | "KiB" | "k" => Some(KIB),
        "M" | "MiB" => Some(MIB),
        "G" | "GiB" => Some(GIB),
        "T" | "TiB" => Some(TIB),
        _ => None,
    }
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ParseSizeError::Empty);
        }
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        if digits_end == 0 {
            return Err(ParseSizeError::Malformed(text.to_string()));
        }
        let (digits, unit) = text.split_at(digits_end);
        let multiplier =
            unit_multiplier(unit.trim()).ok_or_else(|| ParseSizeError::UnknownUnit(unit.trim().to_string()))?;
        let number: u64 = digits.parse().map_err(|_| ParseSizeError::Overflow(text.to_string()))?;
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(|| ParseSizeError::Overflow(text.to_string()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, factor) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{}", self.0 / factor, name);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"256MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for ByteSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).examples(["256MiB"]))
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(0)))
            .description(Some(
                "A size in bytes: an integer, or a string with a binary unit (K, KiB, M, MiB, G, GiB, T, TiB)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ByteSize {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_bytes() {
        assert_eq!("256MiB".parse(), Ok(ByteSize(256 * MIB)));
        assert_eq!("256M".parse(), Ok(ByteSize(256 * MIB)));
        assert_eq!("1G".parse(), Ok(ByteSize(GIB)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!(" 2 GiB ".parse(), Ok(ByteSize(2 * GIB)));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!("".parse::<ByteSize>(), Err(ParseSizeError::Empty));
        assert!(matches!("MiB".parse::<ByteSize>(), Err(ParseSizeError::Malformed(_))));
        assert!(matches!("12XB".parse::<ByteSize>(), Err(ParseSizeError::UnknownUnit(_))));
        assert!(matches!("-5M".parse::<ByteSize>(), Err(ParseSizeError::Malformed(_))));
        assert!(matches!("99999999999T".parse::<ByteSize>(), Err(ParseSizeError::Overflow(_))));
    }

    #[test]
    fn displays_shortest_exact_unit() {
        assert_eq!(ByteSize(256 * MIB).to_string(), "256MiB");
        assert_eq!(ByteSize(1536 * MIB).to_string(), "1536MiB");
        assert_eq!(ByteSize(2 * GIB).to_string(), "2GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn serde_round_trip() {
        let size: ByteSize = serde_json::from_str("\"1GiB\"").unwrap();
        assert_eq!(serde_json::to_string(&size).unwrap(), "\"1GiB\"");
        let size: ByteSize = serde_json::from_str("1048576").unwrap();
        assert_eq!(size, ByteSize(MIB));
        assert!(serde_json::from_str::<ByteSize>("-1").is_err());
    }
}
