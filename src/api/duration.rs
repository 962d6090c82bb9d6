//! Durations in the Gateway API form (`250ms`, `5s`, `2m`, `1h`, `1h30m`).
//!
//! Kubernetes users already know this form from Gateway API's HTTPRoute timeouts, so the
//! same strings, and the same schema pattern, are accepted here.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern from Gateway API's `Duration` type: one to four `<number><unit>` parts.
pub const PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A non-negative duration written as a Gateway API duration string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected one to four parts such as 250ms, 5s, 2m or 1h")]
pub struct ParseDurationError {
    input: String,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError { input: input.to_owned() };
        let mut rest = input;
        let mut total_ms: u64 = 0;
        let mut parts = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 5 {
                return Err(err());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let (unit_ms, unit_len) = if rest.starts_with("ms") {
                (1, 2)
            } else if rest.starts_with('s') {
                (1_000, 1)
            } else if rest.starts_with('m') {
                (60_000, 1)
            } else if rest.starts_with('h') {
                (3_600_000, 1)
            } else {
                return Err(err());
            };
            rest = &rest[unit_len..];
            total_ms += value * unit_ms;
            parts += 1;
        }
        if parts == 0 || parts > 4 {
            return Err(err());
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest Gateway API form, so that a round trip keeps the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_api_forms() {
        assert_eq!("250ms".parse(), Ok(Duration::from_millis(250)));
        assert_eq!("5s".parse(), Ok(Duration::from_secs(5)));
        assert_eq!("2m".parse(), Ok(Duration::from_secs(120)));
        assert_eq!("1h30m".parse(), Ok(Duration::from_secs(5400)));
        assert_eq!("0s".parse(), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in ["", "5", "1.5s", "5 s", "-1s", "1d", "123456s", "1h1m1s1ms1h", "s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn displays_shortest_form_and_round_trips() {
        for s in ["0s", "250ms", "5s", "2m", "1h30m", "1h1m1s1ms"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
        assert_eq!("90s".parse::<Duration>().unwrap().to_string(), "1m30s");
    }
}
