//! Kubernetes resource quantities (`500m`, `1.5`, `2Gi`, `1e3`), read exactly as the API
//! server's grammar allows, in fixed point: the sidecar's worker count comes from its CPU
//! limit, and a per-pod override that the API server would reject must be caught here, where
//! the pod can still be admitted unchanged.
//!
//! Grammar (from the Quantity type's documentation):
//! `<signedNumber><suffix>`, where the number is `<digits>`, `<digits>.<digits>`,
//! `<digits>.` or `.<digits>`, and the suffix is a binary SI one (`Ki` .. `Ei`), a decimal
//! SI one (`n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`,
//! `E-2`). Negative amounts are refused: no resource request or limit may be negative.

use std::cmp::Ordering;

/// A non-negative quantity, in billionths of its unit (nano-cores for CPU, nano-bytes for
/// memory), so that every amount the API server accepts compares exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount {
    nanos: u128,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("{0:?} is not a quantity (e.g. 500m, 1, 1.5, 128Mi)")]
    Malformed(String),
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The largest magnitude a Quantity may have: 2^63-1 units.
const MAX_UNITS: u128 = i64::MAX as u128;
const NANOS_PER_UNIT: u128 = 1_000_000_000;

impl Amount {
    pub fn parse(text: &str) -> Result<Amount, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = || QuantityError::Malformed(text.to_owned());
        let (negative, rest) = match text.as_bytes()[0] {
            b'+' => (false, &text[1..]),
            b'-' => (true, &text[1..]),
            _ => (false, text),
        };
        let number_len =
            rest.bytes().position(|b| !(b.is_ascii_digit() || b == b'.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(malformed());
        }
        // The value is mantissa * 10^(exp10 - fraction digits) * 2^exp2 units.
        let (exp10, exp2) = suffix_scale(suffix).ok_or_else(malformed)?;
        let too_large = || QuantityError::TooLarge(text.to_owned());
        let mut mantissa: u128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(digit - b'0')))
                .ok_or_else(too_large)?;
        }
        if negative && mantissa != 0 {
            return Err(QuantityError::Negative(text.to_owned()));
        }
        let scaled = mantissa.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
        // Nanos: one more factor of 10^9.
        let exponent = exp10 + 9 - fraction.len() as i32;
        let nanos = match exponent.cmp(&0) {
            Ordering::Less => {
                let divisor = 10u128.checked_pow(exponent.unsigned_abs());
                // Below a nano the API server rounds up; so do we.
                divisor.map_or(u128::from(scaled != 0), |d| scaled.div_ceil(d))
            }
            _ => 10u128
                .checked_pow(exponent as u32)
                .and_then(|p| scaled.checked_mul(p))
                .ok_or_else(too_large)?,
        };
        if nanos > MAX_UNITS * NANOS_PER_UNIT {
            return Err(too_large());
        }
        Ok(Amount { nanos })
    }

    /// Whole units, rounded down: 2500m is 2.
    pub fn whole_units(self) -> u128 {
        self.nanos / NANOS_PER_UNIT
    }
}

/// A suffix as powers of ten and of two; None when it is no suffix the API server knows.
fn suffix_scale(suffix: &str) -> Option<(i32, u32)> {
    let scale = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => return decimal_exponent(suffix).map(|e| (e, 0)),
    };
    Some(scale)
}

/// `e3`, `E-2`, `e+4`; bounded so that no power computed later can overflow an i32.
fn decimal_exponent(suffix: &str) -> Option<i32> {
    let digits = suffix.strip_prefix(['e', 'E'])?;
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || unsigned.len() > 4 || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The sidecar's worker count from its CPU limit (or request): whole cores, at least one.
pub fn workers_for_cpu(cpu: Amount) -> u32 {
    u32::try_from(cpu.whole_units()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> u128 {
        Amount::parse(text).unwrap().nanos
    }

    #[test]
    fn reads_every_form_the_api_server_accepts() {
        assert_eq!(nanos("500m"), 500_000_000);
        assert_eq!(nanos("1"), 1_000_000_000);
        assert_eq!(nanos("1.5"), 1_500_000_000);
        assert_eq!(nanos("2000m"), 2_000_000_000);
        assert_eq!(nanos("+2"), 2_000_000_000);
        assert_eq!(nanos(".5"), 500_000_000);
        assert_eq!(nanos("3."), 3_000_000_000);
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("-0"), 0);
        assert_eq!(nanos("250000u"), 250_000_000);
        assert_eq!(nanos("100n"), 100);
        assert_eq!(nanos("1k"), 1_000 * NANOS_PER_UNIT);
        assert_eq!(nanos("1e3"), 1_000 * NANOS_PER_UNIT);
        assert_eq!(nanos("15E-1"), 1_500_000_000);
        assert_eq!(nanos("1e+2"), 100 * NANOS_PER_UNIT);
        assert_eq!(nanos("128Mi"), 128 * 1024 * 1024 * NANOS_PER_UNIT);
        assert_eq!(nanos("1.5Gi"), 1536 * 1024 * 1024 * NANOS_PER_UNIT);
        assert_eq!(nanos("1E"), 10u128.pow(18) * NANOS_PER_UNIT);
    }

    #[test]
    fn rounds_below_a_nano_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1e-12"), 1);
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "abc", "1.2.3", ".", "m", "1x", "1mi", "1 m", " 1", "1e", "e3", "1e3.5", "0x10", "1KiB",
        ] {
            assert_eq!(
                Amount::parse(text),
                Err(QuantityError::Malformed(text.to_owned())),
                "{text}"
            );
        }
        assert_eq!(Amount::parse(""), Err(QuantityError::Empty));
        assert_eq!(Amount::parse("-1"), Err(QuantityError::Negative("-1".into())));
        assert_eq!(Amount::parse("10E"), Err(QuantityError::TooLarge("10E".into())));
        assert_eq!(Amount::parse("8Ei"), Err(QuantityError::TooLarge("8Ei".into())));
        assert_eq!(Amount::parse("1e9999"), Err(QuantityError::TooLarge("1e9999".into())));
        assert!(matches!(Amount::parse("1e99999"), Err(QuantityError::Malformed(_))));
    }

    #[test]
    fn compares_across_forms() {
        assert!(Amount::parse("50m").unwrap() < Amount::parse("0.1").unwrap());
        assert_eq!(Amount::parse("1").unwrap(), Amount::parse("1000m").unwrap());
        assert!(Amount::parse("1Ki").unwrap() > Amount::parse("1k").unwrap());
    }

    #[test]
    fn workers_are_whole_cores_and_at_least_one() {
        let workers = |text| workers_for_cpu(Amount::parse(text).unwrap());
        assert_eq!(workers("500m"), 1);
        assert_eq!(workers("100m"), 1);
        assert_eq!(workers("1"), 1);
        assert_eq!(workers("2"), 2);
        assert_eq!(workers("2500m"), 2);
        assert_eq!(workers("1.5"), 1);
        assert_eq!(workers("4000m"), 4);
        assert_eq!(workers("0"), 1);
        assert_eq!(workers("1e12"), u32::MAX);
    }
}
