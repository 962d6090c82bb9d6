//! Protocol switches (WebSocket and other HTTP/1.1 Upgrades): which ones a client may make
//! through the sidecar, and, once the app answers 101, the tunnel that copies bytes both
//! ways until either side closes.
//!
//! After a switch the sidecar sees only bytes: no maintenance window, timeout, limit or
//! validation applies to what follows. So only protocols named in the allowed set switch;
//! `h2c` never does (it would carry HTTP requests past every rule), and any other token is
//! refused rather than tunnelled, as is CONNECT (a tunnel to anywhere, in either HTTP
//! version) and HTTP/2's extended CONNECT, which the sidecar does not offer (hyper's
//! default: a `:protocol` stream is reset).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::error::ProxyError;
use super::headers;
use super::pool::Conn;

/// Protocols whose switch would hand HTTP requests to the app past the sidecar: never
/// allowed, whatever the flag says.
const CARRY_HTTP: [&str; 3] = ["h2c", "h2", "http"];

/// The protocols (Upgrade token names, RFC 9110 §7.8) a client may switch to through the
/// sidecar. `websocket` by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedUpgrades(Arc<[Box<str>]>);

impl Default for AllowedUpgrades {
    fn default() -> Self {
        AllowedUpgrades(Arc::new([Box::from("websocket")]))
    }
}

impl AllowedUpgrades {
    /// No protocol switch at all.
    pub fn none() -> Self {
        AllowedUpgrades(Arc::new([]))
    }

    /// Whether `token` (`name` or `name/version`) names an allowed protocol, in any case and
    /// any version.
    fn allows(&self, token: &str) -> bool {
        let name = protocol_name(token);
        self.0.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

/// A comma-separated list of protocol names, as `--allowed-upgrades` takes it; empty for
/// none.
impl FromStr for AllowedUpgrades {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let mut names: Vec<Box<str>> = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !name.bytes().all(is_tchar) {
                return Err(format!("{name:?} is not a protocol name (an HTTP token)"));
            }
            if CARRY_HTTP.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "{name:?} carries HTTP requests, which would reach the app past the sidecar"
                ));
            }
            let name = name.to_ascii_lowercase();
            if !names.iter().any(|n| **n == *name) {
                names.push(name.into());
            }
        }
        Ok(AllowedUpgrades(names.into()))
    }
}

impl fmt::Display for AllowedUpgrades {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// What a request's Upgrade field becomes on its way to the app: `None` when it does not
/// switch protocols (it never asked, or asked only for h2c, which is declined), else the
/// Upgrade value to forward. A token that is neither allowed nor h2c refuses the request,
/// as does CONNECT.
pub fn offer<B>(
    req: &Request<B>,
    allowed: &AllowedUpgrades,
) -> Result<Option<HeaderValue>, ProxyError> {
    // Envoy too refuses CONNECT (403) unless configured for it; behind the sidecar is one
    // app, not a network to reach.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::UpgradeNotAllowed { protocol: "CONNECT".into() });
    }
    let headers = req.headers();
    if !headers::wants_upgrade(req.version(), headers) {
        return Ok(None);
    }
    let mut offered: Vec<&str> = Vec::new();
    for token in tokens(headers) {
        let Some(token) = token else {
            return Err(ProxyError::UpgradeNotAllowed { protocol: "(not text)".into() });
        };
        // RFC 9113 §3.1 deprecates the h2c upgrade and lets a server ignore it: declining it
        // leaves the request as it would be without, answered over HTTP/1.1 (as Envoy does).
        if protocol_name(token).eq_ignore_ascii_case("h2c") {
            continue;
        }
        // Any other switch gives the request a meaning of its own (a WebSocket handshake,
        // say): forwarded without it, the app would answer a different request.
        if !allowed.allows(token) {
            return Err(ProxyError::UpgradeNotAllowed { protocol: token.into() });
        }
        offered.push(token);
    }
    if offered.is_empty() {
        return Ok(None);
    }
    Ok(HeaderValue::from_str(&offered.join(", ")).ok())
}

/// Whether a 101 switches to a protocol the request offered (RFC 9110 §15.2.2: its Upgrade
/// names the protocol switched to). Anything else is not tunnelled: the client never asked
/// for that protocol, and the sidecar may not allow it.
fn switched_as_offered<B>(response: &Response<B>, offered: &HeaderValue) -> bool {
    let Ok(offered) = offered.to_str() else { return false };
    let mut named = false;
    for token in tokens(response.headers()) {
        let Some(token) = token else { return false };
        let name = protocol_name(token);
        if !offered.split(',').any(|o| protocol_name(o.trim()).eq_ignore_ascii_case(name)) {
            return false;
        }
        named = true;
    }
    named
}

/// The 101 response's check: a switch the request did not ask for, or to a protocol it did
/// not offer, is a malformed response.
pub fn check_switch<B>(
    response: &Response<B>,
    offered: Option<&HeaderValue>,
) -> Result<(), ProxyError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    match offered {
        Some(offered) if switched_as_offered(response, offered) => Ok(()),
        // A switch nobody asked for (RFC 9110 §7.8): the client could not speak the protocol.
        _ => Err(ProxyError::MalformedResponse),
    }
}

/// The non-empty elements of every Upgrade field, trimmed; `None` for a value that is not
/// visible ASCII.
fn tokens(headers: &HeaderMap) -> impl Iterator<Item = Option<&str>> {
    headers.get_all(header::UPGRADE).iter().flat_map(|value| {
        let text = value.to_str();
        let unreadable = text.is_err().then_some(None);
        let elements = text.unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty());
        elements.map(Some).chain(unreadable)
    })
}

/// `name` of `name/version`.
fn protocol_name(token: &str) -> &str {
    token.split_once('/').map_or(token, |(name, _)| name)
}

/// RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Joins the client's and the app's upgraded connections. `conn` stays alive until the
/// tunnel ends, since the app's side of it belongs to that connection.
pub fn tunnel(client: OnUpgrade, app: OnUpgrade, conn: Option<Conn>) {
    tokio::spawn(async move {
        let _conn = conn;
        let (client, app) = match tokio::try_join!(client, app) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
        match tokio::io::copy_bidirectional(&mut client, &mut app).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::Version;

    fn request(version: Version, pairs: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().version(version);
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    fn offered(upgrade: &str, allowed: &AllowedUpgrades) -> Result<Option<String>, String> {
        let req = request(
            Version::HTTP_11,
            &[("connection", "keep-alive, Upgrade"), ("upgrade", upgrade)],
        );
        offer(&req, allowed)
            .map(|o| o.map(|v| v.to_str().unwrap().to_owned()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn h2c_is_declined_websocket_offered_and_the_rest_refused() {
        let ws = AllowedUpgrades::default();
        assert_eq!(offered("h2c", &ws), Ok(None));
        assert_eq!(offered("H2C", &ws), Ok(None));
        assert_eq!(offered(" , h2c ,", &ws), Ok(None));
        assert_eq!(offered("WebSocket", &ws), Ok(Some("WebSocket".into())));
        assert_eq!(offered("h2c, websocket", &ws), Ok(Some("websocket".into())));
        let refused = |p: &str| {
            Err(format!(
                "the request asks to switch to {p:?}, a protocol the sidecar does not tunnel"
            ))
        };
        assert_eq!(offered("websocket, foo", &ws), refused("foo"));
        assert_eq!(offered("h2c, TLS/1.2", &ws), refused("TLS/1.2"));
        assert_eq!(offered("websocket", &AllowedUpgrades::none()), refused("websocket"));
        let custom: AllowedUpgrades = "websocket, Foo".parse().unwrap();
        assert_eq!(offered("foo/2, websocket", &custom), Ok(Some("foo/2, websocket".into())));
    }

    #[test]
    fn only_http_11_with_connection_upgrade_asks_to_switch() {
        let ws = AllowedUpgrades::default();
        let bare = request(Version::HTTP_11, &[("upgrade", "foo")]);
        assert_eq!(offer(&bare, &ws).unwrap(), None);
        let old = request(Version::HTTP_10, &[("connection", "upgrade"), ("upgrade", "foo")]);
        assert_eq!(offer(&old, &ws).unwrap(), None);
    }

    #[test]
    fn connect_is_refused_in_either_version() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let mut req = request(version, &[]);
            *req.method_mut() = Method::CONNECT;
            let err = offer(&req, &AllowedUpgrades::default()).unwrap_err();
            assert_eq!(err.reason(), "upgrade_not_allowed");
        }
    }

    #[test]
    fn a_101_must_name_a_protocol_offered() {
        let switch = |upgrade: Option<&str>| {
            let mut b = Response::builder().status(101);
            if let Some(u) = upgrade {
                b = b.header("upgrade", u);
            }
            b.body(()).unwrap()
        };
        let ws = HeaderValue::from_static("websocket");
        assert!(check_switch(&switch(Some("WebSocket")), Some(&ws)).is_ok());
        for bad in [Some("h2c"), Some("websocket, h2c"), Some(""), None] {
            let err = check_switch(&switch(bad), Some(&ws)).unwrap_err();
            assert_eq!(err.reason(), "malformed_response", "{bad:?}");
        }
        assert!(check_switch(&switch(Some("h2c")), None).is_err(), "nothing was offered");
        let ok = Response::builder().status(200).body(()).unwrap();
        assert!(check_switch(&ok, None).is_ok());
    }

    #[test]
    fn the_allowed_list_is_parsed_and_never_takes_protocols_that_carry_http() {
        let parsed: AllowedUpgrades = " WebSocket ,foo,websocket".parse().unwrap();
        assert_eq!(parsed.to_string(), "websocket,foo");
        assert_eq!("".parse::<AllowedUpgrades>(), Ok(AllowedUpgrades::none()));
        assert_eq!(AllowedUpgrades::default().to_string(), "websocket");
        for bad in ["h2c", "websocket,H2C", "h2", "HTTP", "web socket", "a/b"] {
            assert!(bad.parse::<AllowedUpgrades>().is_err(), "{bad:?}");
        }
    }
}
