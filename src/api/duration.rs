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

/// The most one part may hold: five digits.
const MAX_PART: u64 = 99_999;
/// The units, largest first, with their size in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl fmt::Display for Duration {
    /// Writes the shortest Gateway API form, so that a round trip keeps the value (the
    /// controller sends durations to sidecars this way). Past 99999 hours the shortest form
    /// would need a sixth digit, so the amounts are spread over parts the grammar allows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let hours = ms / u128::from(UNITS[0].1);
        let long = (hours > u128::from(MAX_PART)).then(|| u64::try_from(ms).ok()).flatten();
        if let Some(amounts) = long.and_then(spread) {
            for (mut amount, (unit, _)) in amounts.into_iter().zip(UNITS) {
                while amount > 0 {
                    let part = amount.min(MAX_PART);
                    write!(f, "{part}{unit}")?;
                    amount -= part;
                }
            }
            return Ok(());
        }
        let mut ms = ms;
        for (unit, size) in UNITS {
            let size = u128::from(size);
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// Amounts of hours, minutes, seconds and milliseconds that add up to `ms` in the fewest
/// parts of at most 99999 each, four parts at most; `None` when there are none (a
/// duration that no string of the grammar reads as).
fn spread(ms: u64) -> Option<[u64; 4]> {
    for parts in 1..=4 {
        // Larger units first, for the most natural of the shortest forms.
        for h in (0..=parts).rev() {
            for m in (0..=parts - h).rev() {
                for s in (0..=parts - h - m).rev() {
                    if let Some(amounts) = amounts_for(ms, [h, m, s, parts - h - m - s]) {
                        return Some(amounts);
                    }
                }
            }
        }
    }
    None
}

/// The range of amounts of one unit that `parts` parts can write.
fn range(parts: u64) -> (u64, u64) {
    if parts == 0 { (0, 0) } else { (1, parts * MAX_PART) }
}

/// Amounts for `ms` with `parts[i]` parts of unit `i`, if any.
fn amounts_for(ms: u64, parts: [u64; 4]) -> Option<[u64; 4]> {
    let [h, m, s, milli] = parts.map(range);
    // Every millisecond amount with the right remainder, each leaving whole seconds.
    let mut a_ms = ms % 1_000;
    while a_ms <= milli.1.min(ms) {
        if a_ms >= milli.0 {
            let secs = (ms - a_ms) / 1_000;
            // Seconds: `secs = a_s + 60 * rest`, where `rest` is minutes and hours.
            let rest_lo = secs.saturating_sub(s.1).div_ceil(60);
            let rest_hi = secs.checked_sub(s.0).map(|x| x / 60);
            // The least `rest` that minutes and hours can write, at or above `rest_lo`: in
            // a run of them, or (no minutes part) the next multiple of 60.
            let first = rest_lo.max(m.0 + 60 * h.0);
            for rest in [first, first.div_ceil(60) * 60] {
                if rest_hi.is_none_or(|hi| rest > hi) {
                    continue;
                }
                if let Some((a_h, a_m)) = split(rest, 60, h, m) {
                    return Some([a_h, a_m, secs - 60 * rest, a_ms]);
                }
            }
        }
        a_ms += 1_000;
    }
    None
}

/// `total = ratio * big + small`, each within its range, `big` as large as it can be.
fn split(total: u64, ratio: u64, big: (u64, u64), small: (u64, u64)) -> Option<(u64, u64)> {
    let lo = total.saturating_sub(small.1).div_ceil(ratio).max(big.0);
    let hi = (total.checked_sub(small.0)? / ratio).min(big.1);
    (lo <= hi).then(|| (hi, total - hi * ratio))
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

    /// Found by the `schedule` fuzz target: past 99999 hours the shortest form needed a
    /// sixth digit, so a controller wrote `199998h` to its sidecars, which refused it.
    #[test]
    fn more_than_99999_hours_still_round_trips() {
        for (input, written) in [
            ("99999h99999h", "99999h99999h"),
            ("99999h1h", "99999h1h"),
            ("99999h99999h99999h99999h", "99999h99999h99999h99999h"),
            ("99999h99999m", "99999h99999m"),
        ] {
            assert_eq!(input.parse::<Duration>().unwrap().to_string(), written);
        }
        let d: Duration = "99999h99999m99999s99999ms".parse().unwrap();
        assert_eq!(d.to_string().parse(), Ok(d), "written {d}");
    }

    /// Every string of the grammar, from a grid of amounts that meet at unit boundaries,
    /// writes back as a string that reads as the same duration.
    #[test]
    fn every_form_round_trips() {
        let amounts = [0u64, 1, 59, 60, 999, 1000, 3599, 3600, 59999, 99998, 99999];
        let parts: Vec<String> =
            amounts.iter().flat_map(|a| ["h", "m", "s", "ms"].map(|u| format!("{a}{u}"))).collect();
        let check = |input: &str| {
            let d: Duration = input.parse().unwrap();
            let text = d.to_string();
            assert_eq!(text.parse::<Duration>(), Ok(d), "{input:?} was written {text:?}");
        };
        for a in &parts {
            for b in &parts {
                check(&format!("{a}{b}"));
                for c in &parts {
                    check(&format!("{a}{b}{c}"));
                }
            }
        }
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..20_000 {
            let four: String = (0..4).map(|_| parts[rng.usize(..parts.len())].as_str()).collect();
            check(&four);
        }
    }
}
