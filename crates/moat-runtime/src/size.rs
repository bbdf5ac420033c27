//! Byte sizes as Docker writes them: `65536`, `64k`, `512m`, `1g`, `2GiB` (binary multiples).

/// Longest size text accepted, before any parsing.
const MAX_SIZE_TEXT: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size {0:?} is not a whole number with an optional unit b, k, m, g, t or p (such as 64m)")]
    Malformed(String),
    #[error("size {0:?} does not fit in 64 bits; give a smaller size")]
    TooLarge(String),
}

/// Parse a size in bytes. Units are case-insensitive powers of 1024 and may be followed by `b`
/// or `ib`: `64k`, `64K`, `64kb` and `64KiB` are all 65536.
pub fn parse_byte_size(text: &str) -> Result<u64, SizeError> {
    let malformed = || SizeError::Malformed(text.chars().take(MAX_SIZE_TEXT).collect());
    if text.len() > MAX_SIZE_TEXT {
        return Err(malformed());
    }
    let lower = text.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let shift = unit_shift(unit).ok_or_else(malformed)?;
    let too_large = || SizeError::TooLarge(text.to_string());
    let value: u64 = digits.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        std::num::IntErrorKind::PosOverflow => too_large(),
        _ => malformed(),
    })?;
    value.checked_mul(1 << shift).ok_or_else(too_large)
}

/// The power of two a unit suffix stands for; `None` for anything that is not a unit.
fn unit_shift(unit: &str) -> Option<u32> {
    let prefix = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(unit);
    let shift = match prefix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    // "ib" needs a prefix: a bare "ib" is no unit.
    (shift > 0 || unit != "ib").then_some(shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_units() {
        for (text, bytes) in [
            ("0", 0),
            ("65536", 65536),
            ("512b", 512),
            ("64k", 64 << 10),
            ("64K", 64 << 10),
            ("64kb", 64 << 10),
            ("64KiB", 64 << 10),
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("2t", 2 << 40),
            ("3p", 3 << 50),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn malformed_sizes() {
        for text in ["", "m", "k64", "-1", "1.5g", "64 m", "64x", "64mm", "64ib", "64kbb", " 64", "0x10", "50%"] {
            assert!(matches!(parse_byte_size(text), Err(SizeError::Malformed(_))), "{text:?}");
        }
    }

    #[test]
    fn huge_sizes_are_refused() {
        assert!(matches!(parse_byte_size("16384p"), Err(SizeError::TooLarge(_))));
        assert!(matches!(parse_byte_size("18446744073709551616"), Err(SizeError::TooLarge(_))));
        assert_eq!(parse_byte_size("18446744073709551615"), Ok(u64::MAX));
        assert!(matches!(parse_byte_size(&"9".repeat(100)), Err(SizeError::Malformed(t)) if t.len() == MAX_SIZE_TEXT));
    }
}
