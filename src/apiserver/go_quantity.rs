//! Quantities as the API server reads and prints them (`resource/quantity.go`:
//! `parseQuantityString`, `ParseQuantity`, `CanonicalizeBytes`; `suffix.go`), after the
//! Pod defaulting that rounds every container request and limit up to milli-units
//! (`SetDefaults_ResourceList`). `crate::inject::quantity::Amount` is the injector's strict
//! reader; this one follows Go where Go is lax (`"m"` and `"."` are zero, a value is
//! trimmed of surrounding white space by `UnmarshalJSON`) so that messages match.
//!
//! The value is kept in signed nano-units (i128): Go keeps larger decimal values as
//! big decimals, which this checker reports as [`DecodeError::OutOfRange`] and the
//! validators skip rather than guess at.

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Why a quantity cannot be decoded; the messages are Go's `ErrFormatWrong`,
/// `ErrNumeric` and `ErrSuffix`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("quantity outside the range this checker computes exactly")]
    OutOfRange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DecimalExponent,
    BinarySI,
    DecimalSI,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoQuantity {
    pub(crate) nanos: i128,
    format: Format,
    /// Go keeps the text it parsed when it was already canonical.
    cached: Option<String>,
    /// The int64 scale of Go's fast path, when it took it.
    fast_scale: Option<i32>,
}

struct Split<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

fn split(text: &str) -> Result<Split<'_>, DecodeError> {
    let b = text.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(Split { positive, num: "0", denom: "", suffix: "" });
    }
    let digits_from = |from: usize| (from..end).find(|&i| !b[i].is_ascii_digit()).unwrap_or(end);
    let num_end = digits_from(pos);
    let mut num = &text[pos..num_end];
    pos = num_end;
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        let denom_end = digits_from(pos + 1);
        denom = &text[pos + 1..denom_end];
        pos = denom_end;
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    if digits_from(pos) < end {
        return Err(DecodeError::FormatWrong);
    }
    Ok(Split { positive, num, denom, suffix: &text[suffix_start..] })
}

/// (base, exponent, format) of a suffix, as `suffixHandler.interpret`.
fn interpret(suffix: &str) -> Option<(u32, i32, Format)> {
    let dec = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
    if let Some(i) = dec.iter().position(|s| *s == suffix) {
        return Some((10, i as i32 * 3 - 9, Format::DecimalSI));
    }
    let bin = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if let Some(i) = bin.iter().position(|s| *s == suffix) {
        return Some((2, (i as i32 + 1) * 10, Format::BinarySI));
    }
    let rest = suffix.strip_prefix(['e', 'E']).filter(|r| !r.is_empty())?;
    let parsed: i64 = rest.parse().ok()?;
    // Go converts with int32(parsed): wrapping, not saturating.
    Some((10, parsed as i32, Format::DecimalExponent))
}

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// magnitude * 10^exp, rounding a fraction of a nano up, as Go does.
fn scale10(magnitude: i128, exp: i32) -> Result<i128, DecodeError> {
    if exp >= 0 {
        pow10(exp as u32).and_then(|p| magnitude.checked_mul(p)).ok_or(DecodeError::OutOfRange)
    } else {
        Ok(match pow10(exp.unsigned_abs()) {
            Some(p) => (magnitude + p - 1) / p,
            None => i128::from(magnitude != 0),
        })
    }
}

impl GoQuantity {
    /// `UnmarshalJSON` then `ParseQuantity`, then the milli rounding of Pod defaulting.
    pub(crate) fn decode(text: &str) -> Result<GoQuantity, DecodeError> {
        let mut q = GoQuantity::parse(text.trim())?;
        q.round_up_to_milli();
        Ok(q)
    }

    fn parse(text: &str) -> Result<GoQuantity, DecodeError> {
        if text.is_empty() {
            return Err(DecodeError::FormatWrong);
        }
        if text == "0" {
            let cached = Some(text.to_owned());
            return Ok(GoQuantity {
                nanos: 0,
                format: Format::DecimalSI,
                cached,
                fast_scale: Some(0),
            });
        }
        let Split { positive, num, denom, suffix } = split(text)?;
        let (base, exponent, mut format) = interpret(suffix).ok_or(DecodeError::Suffix)?;
        let digits = num.len() + denom.len();
        let (mut scale, mantissa_shift, precision) = match format {
            Format::DecimalExponent | Format::DecimalSI => (exponent, 0, 18 - digits as i64),
            Format::BinarySI if exponent >= 0 && denom.is_empty() => {
                // Go: 15 - len(num) - int32(float32(exponent)*3/10) - 1
                (0, exponent as u32, 15 - num.len() as i64 - i64::from(exponent * 3 / 10) - 1)
            }
            Format::BinarySI => (0, 0, -1),
        };
        let sign: i128 = if positive { 1 } else { -1 };
        if precision >= 0 {
            scale -= denom.len() as i32;
            if scale >= -9 {
                let shifted = format!("{num}{denom}");
                let value: i64 = shifted.parse().map_err(|_| DecodeError::Numeric)?;
                if let Some(result) = value.checked_mul(1i64 << mantissa_shift) {
                    let canonical = match format {
                        Format::BinarySI => exponent % 10 == 0 && value & 0x07 != 0,
                        _ => {
                            scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
                        }
                    };
                    let nanos = scale10(i128::from(result), scale + 9)? * sign;
                    let cached = canonical.then(|| text.to_owned());
                    return Ok(GoQuantity { nanos, format, cached, fast_scale: Some(scale) });
                }
            }
        }
        let mut magnitude: i128 = 0;
        for d in num.bytes().chain(denom.bytes()) {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
                .ok_or(DecodeError::OutOfRange)?;
        }
        let mut nanos = if base == 10 {
            scale10(magnitude, exponent - denom.len() as i32 + 9)?
        } else {
            let binary = magnitude.checked_mul(1i128 << exponent).ok_or(DecodeError::OutOfRange)?;
            scale10(binary, 9 - denom.len() as i32)?
        };
        let max = i128::from(i64::MAX) * NANOS_PER_UNIT;
        if format == Format::BinarySI && nanos > max {
            nanos = max;
        }
        if format == Format::BinarySI && nanos > 0 && nanos < NANOS_PER_UNIT {
            format = Format::DecimalSI;
        }
        Ok(GoQuantity { nanos: nanos * sign, format, cached: None, fast_scale: None })
    }

    /// `Quantity.RoundUp(-3)`: the text survives when no rounding could be needed.
    fn round_up_to_milli(&mut self) {
        if self.fast_scale.is_some_and(|s| s >= -3) {
            return;
        }
        self.cached = None;
        let step = 1_000_000;
        let magnitude = (self.nanos.abs() + step - 1) / step * step;
        self.nanos = magnitude * self.nanos.signum();
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// `Quantity.String()`.
    pub(crate) fn canonical(&self) -> String {
        if let Some(text) = &self.cached {
            return text.clone();
        }
        if self.nanos == 0 {
            return "0".to_owned();
        }
        let mut format = self.format;
        if format == Format::BinarySI
            && (self.nanos.abs() < 1024 * NANOS_PER_UNIT || self.nanos % NANOS_PER_UNIT != 0)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut units = self.nanos / NANOS_PER_UNIT;
            let mut exp = 0;
            while units % 1024 == 0 && exp < 6 {
                units /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{units}{suffix}");
        }
        let (mut mantissa, mut exp) = (self.nanos, -9i32);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => (mantissa, exp) = (mantissa * 10, exp - 1),
            2 => (mantissa, exp) = (mantissa * 100, exp - 2),
            _ => {}
        }
        let suffix = if format == Format::DecimalExponent {
            if exp == 0 { String::new() } else { format!("e{exp}") }
        } else {
            // Go finds no DecimalSI suffix beyond E and prints the bare number.
            let dec = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
            usize::try_from((exp + 9) / 3).ok().and_then(|i| dec.get(i)).unwrap_or(&"").to_string()
        };
        format!("{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        GoQuantity::decode(text).unwrap().canonical()
    }

    #[test]
    fn canonical_forms_match_go() {
        assert_eq!(shown("500m"), "500m");
        assert_eq!(shown("1.5"), "1500m");
        assert_eq!(shown("1000m"), "1");
        assert_eq!(shown("0.5"), "500m");
        assert_eq!(shown("1.5Gi"), "1536Mi");
        assert_eq!(shown("1024Mi"), "1Gi");
        assert_eq!(shown("128Mi"), "128Mi");
        assert_eq!(shown("1e3"), "1e3");
        assert_eq!(shown("1.5e3"), "1500");
        assert_eq!(shown("2000"), "2k");
        assert_eq!(shown("100n"), "1m");
        assert_eq!(shown("-1"), "-1");
        assert_eq!(shown("-100m"), "-100m");
        assert_eq!(shown("+1"), "+1");
        assert_eq!(shown("0"), "0");
        assert_eq!(shown("512"), "512");
        assert_eq!(shown(" 2 "), "2");
        assert_eq!(shown("m"), "0");
    }

    #[test]
    fn decode_errors_carry_go_messages() {
        let err = GoQuantity::decode("abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(GoQuantity::decode("1mi"), Err(DecodeError::Suffix));
        assert_eq!(GoQuantity::decode("1.2.3"), Err(DecodeError::FormatWrong));
        assert_eq!(GoQuantity::decode(""), Err(DecodeError::FormatWrong));
        assert_eq!(GoQuantity::decode("1e99"), Err(DecodeError::OutOfRange));
    }
}
