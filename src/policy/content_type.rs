//! Media ranges for `validation.contentTypes`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// `type/subtype` or `type/*`, lower-cased; parameters are not part of the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRange {
    kind: String,
    subtype: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a media type such as application/json or text/*")]
pub struct ParseMediaRangeError(String);

impl FromStr for MediaRange {
    type Err = ParseMediaRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMediaRangeError(s.to_owned());
        let essence = s.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/').ok_or_else(err)?;
        let is_token = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !is_token(kind) || !(subtype == "*" || is_token(subtype)) {
            return Err(err());
        }
        Ok(MediaRange { kind: kind.to_owned(), subtype: subtype.to_owned() })
    }
}

impl MediaRange {
    /// Whether a response's Content-Type value falls in this range.
    pub fn admits(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let Some((kind, subtype)) = essence.split_once('/') else { return false };
        kind.eq_ignore_ascii_case(&self.kind)
            && (self.subtype == "*" || subtype.eq_ignore_ascii_case(&self.subtype))
    }
}

impl fmt::Display for MediaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype)
    }
}

impl Serialize for MediaRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_by_essence_ignoring_case_and_parameters() {
        let json: MediaRange = "application/json".parse().unwrap();
        assert!(json.admits("application/json"));
        assert!(json.admits("Application/JSON; charset=utf-8"));
        assert!(!json.admits("application/problem+json"));
        assert!(!json.admits("text/html"));
        assert!(!json.admits("garbage"));
        let text: MediaRange = "text/*".parse().unwrap();
        assert!(text.admits("text/csv"));
        assert!(!text.admits("application/csv"));
    }

    #[test]
    fn rejects_what_is_not_a_media_range() {
        for bad in ["json", "*/json", "text/", "/csv", "te xt/csv", ""] {
            assert!(bad.parse::<MediaRange>().is_err(), "{bad:?}");
        }
    }
}
