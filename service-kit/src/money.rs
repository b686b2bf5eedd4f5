//! Money: an integer number of minor units (kopecks), never a float.

use std::fmt;

/// The largest single amount or price accepted: 10^12 minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// An amount that may be moved: 1 ..= [`MAX_AMOUNT`] minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field} must be between 1 and {MAX_AMOUNT} minor units, got {value}")]
pub struct AmountError {
    pub field: &'static str,
    pub value: i64,
}

impl Amount {
    pub fn parse(field: &'static str, value: i64) -> Result<Amount, AmountError> {
        if (1..=MAX_AMOUNT).contains(&value) { Ok(Amount(value)) } else { Err(AmountError { field, value }) }
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

/// Minor units shown in major units with two decimals: 400 → `4.00`.
pub struct MajorUnits(pub i64);

impl fmt::Display for MajorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_inclusive_range() {
        assert!(Amount::parse("amount", 1).is_ok());
        assert!(Amount::parse("amount", MAX_AMOUNT).is_ok());
    }

    #[test]
    fn refuses_zero_negative_and_too_large() {
        for v in [0, -1, i64::MIN, MAX_AMOUNT + 1, i64::MAX] {
            assert_eq!(Amount::parse("price", v), Err(AmountError { field: "price", value: v }));
        }
    }

    #[test]
    fn major_units_have_two_decimals() {
        assert_eq!(MajorUnits(400).to_string(), "4.00");
        assert_eq!(MajorUnits(5).to_string(), "0.05");
        assert_eq!(MajorUnits(123456).to_string(), "1234.56");
        assert_eq!(MajorUnits(MAX_AMOUNT).to_string(), "10000000000.00");
    }
}
