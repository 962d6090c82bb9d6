//! The pod's stop token: the secret of the app's preStop call to the sidecar (`GET
//! /prestop` with the `Portcullis-Stop-Token` header). The admin port is reachable from
//! any pod of the cluster; without the token, anyone could mark a pod stopping and so
//! take it out of its Service.
//!
//! 128 bits from the operating system's CSPRNG, written as 32 lowercase hex characters: a
//! header value and an env var value as they are. Drawn by the callers of the pure
//! mutation (the webhook for each pod, `portcullis inject` for each workload), so that
//! tests can hand it a fixed one.

use std::fmt;
use std::str::FromStr;

const BYTES: usize = 16;
const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Clone, PartialEq, Eq)]
pub struct StopToken(String);

/// Where each pod's token comes from: [`StopToken::generate`], or a fixed one in tests.
pub type StopTokens<'a> = &'a dyn Fn() -> Result<StopToken, RandomError>;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw a stop token from the system's random source: {0}")]
pub struct RandomError(#[from] getrandom::Error);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a stop token is 32 lowercase hex characters")]
pub struct NotAStopToken;

impl StopToken {
    pub fn generate() -> Result<StopToken, RandomError> {
        let mut bytes = [0u8; BYTES];
        getrandom::fill(&mut bytes).map_err(RandomError)?;
        let mut text = String::with_capacity(2 * BYTES);
        for byte in bytes {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Ok(StopToken(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StopToken {
    type Err = NotAStopToken;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() == 2 * BYTES && text.bytes().all(hex) {
            Ok(StopToken(text.to_owned()))
        } else {
            Err(NotAStopToken)
        }
    }
}

/// Kept out of logs: anyone who reads one could stop the pod's traffic.
impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StopToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_token_is_32_lowercase_hex_characters_and_new_each_time() {
        let first = StopToken::generate().unwrap();
        let second = StopToken::generate().unwrap();
        assert_eq!(first.as_str().len(), 32);
        assert_eq!(first.as_str().parse::<StopToken>(), Ok(first.clone()));
        assert_ne!(first, second);
    }

    #[test]
    fn only_32_lowercase_hex_characters_are_a_token() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(token.parse::<StopToken>().unwrap().as_str(), token);
        for bad in ["", "0123456789ABCDEF0123456789ABCDEF", &token[1..], &format!("{token}0")] {
            assert_eq!(bad.parse::<StopToken>(), Err(NotAStopToken), "{bad:?}");
        }
        assert_eq!(
            "0123456789abcdeg0123456789abcdef".parse::<StopToken>().unwrap_err().to_string(),
            "a stop token is 32 lowercase hex characters"
        );
    }

    #[test]
    fn debug_does_not_show_it() {
        let token: StopToken = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(format!("{token:?}"), "StopToken(..)");
    }
}
