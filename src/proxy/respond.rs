//! Rendering the responses the sidecar makes itself: status, Proxy-Status, and a body in
//! the form the client asked for (RFC 9457 problem+json, HTML, plain text, or gRPC status).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::error::GrpcStatus;
use super::headers::{PROXY_NAME, grpc_kind};
use super::response_body::ProxyBody;
use crate::api::ErrorFormat;

/// The body forms the sidecar can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Problem,
    Html,
    Text,
    Grpc,
}

/// What a response of the sidecar's own needs to know about the request.
#[derive(Clone, Copy, Debug)]
pub struct Audience {
    pub form: Form,
    pub head_only: bool,
}

/// The few facts about a request that the sidecar's own response depends on, kept aside
/// (cheap clones) so that `Accept` is only negotiated when such a response is made.
#[derive(Clone, Debug)]
pub struct Asked {
    head_only: bool,
    accept: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
}

impl Asked {
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        Asked {
            head_only: method == Method::HEAD,
            accept: headers.get(header::ACCEPT).cloned(),
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
        }
    }

    pub fn audience(&self, configured: ErrorFormat) -> Audience {
        // gRPC and gRPC-Web clients both read a trailers-only answer.
        let form = if self.content_type.as_ref().and_then(grpc_kind).is_some() {
            Form::Grpc
        } else {
            match configured {
                ErrorFormat::Json => Form::Problem,
                ErrorFormat::Html => Form::Html,
                ErrorFormat::Text => Form::Text,
                ErrorFormat::Auto => negotiate(self.accept.as_ref()),
            }
        };
        Audience { form, head_only: self.head_only }
    }
}

/// Picks problem+json or HTML when the client names one of them in Accept (the higher
/// q-value wins, JSON on a tie); anything else, `*/*` included, gets plain text.
fn negotiate(accept: Option<&HeaderValue>) -> Form {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else { return Form::Text };
    let mut best = (Form::Text, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let form = match media.as_str() {
            "application/problem+json" | "application/json" | "application/*" => Form::Problem,
            "text/html" | "application/xhtml+xml" => Form::Html,
            _ => continue,
        };
        let wins = q > best.1 || (q == best.1 && form == Form::Problem && best.0 == Form::Html);
        if q > 0.0 && wins {
            best = (form, q);
        }
    }
    best.0
}

/// One response of the sidecar's own, before rendering.
pub struct Local<'a> {
    pub status: StatusCode,
    /// RFC 9209 error type.
    pub error: &'static str,
    /// Machine-readable reason, sent as Proxy-Status `details`.
    pub details: &'a str,
    /// A sentence for people.
    pub detail: &'a str,
    /// Retry-After, in whole seconds.
    pub retry_after: Option<u64>,
    /// Tell clients and meshes that retrying at once will not help.
    pub retry_now_futile: bool,
    /// The `grpc-status` for a gRPC client.
    pub grpc_status: GrpcStatus,
}

pub fn render(local: &Local<'_>, audience: Audience) -> Response<ProxyBody> {
    let proxy_status =
        format!("{PROXY_NAME}; error={}; details={}", local.error, sf_string(local.details));
    let mut response = Response::builder()
        .status(local.status)
        .header(header::CACHE_CONTROL, "no-store")
        .header("proxy-status", proxy_status);
    if let Some(seconds) = local.retry_after {
        response = response.header(header::RETRY_AFTER, seconds);
    }
    if local.retry_now_futile {
        // Envoy does not retry a response that carries this, and other meshes follow it.
        response = response.header("x-envoy-overloaded", "true");
    }
    if audience.form == Form::Grpc {
        if let Some(seconds) = local.retry_after {
            // gRPC's retry pushback (gRFC A6): a client with a retry policy waits this
            // long before its next attempt, Retry-After's word in gRPC's terms.
            response = response.header("grpc-retry-pushback-ms", seconds * 1000);
        }
        // gRPC clients read the outcome from grpc-status: a trailers-only response.
        return response
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", local.grpc_status.code())
            .header("grpc-message", grpc_percent_encode(local.detail))
            .body(ProxyBody::empty())
            .expect("valid response parts");
    }
    let (content_type, body) = match audience.form {
        Form::Problem => ("application/problem+json", problem_json(local)),
        Form::Html => ("text/html; charset=utf-8", html(local)),
        _ => ("text/plain; charset=utf-8", text(local)),
    };
    response = response
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    let body = if audience.head_only { ProxyBody::empty() } else { ProxyBody::full(body) };
    response.body(body).expect("valid response parts")
}

fn reason_phrase(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

fn problem_json(local: &Local<'_>) -> Bytes {
    let value = serde_json::json!({
        "type": format!("https://portcullis.dev/problems/{}", local.details),
        "title": reason_phrase(local.status),
        "status": local.status.as_u16(),
        "detail": local.detail,
    });
    Bytes::from(value.to_string())
}

fn html(local: &Local<'_>) -> Bytes {
    let title = format!("{} {}", local.status.as_u16(), reason_phrase(local.status));
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1><p>{}</p></body></html>\n",
        html_escape(local.detail)
    ))
}

fn text(local: &Local<'_>) -> Bytes {
    Bytes::from(format!(
        "{} {}: {}\n",
        local.status.as_u16(),
        reason_phrase(local.status),
        local.detail
    ))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An RFC 8941 sf-string: quoted, with `"` and `\` escaped and non-printable ASCII dropped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2 spec).
fn grpc_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(accept: &str) -> Form {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn accept_picks_the_body_form() {
        assert_eq!(form("application/problem+json"), Form::Problem);
        assert_eq!(form("application/json"), Form::Problem);
        assert_eq!(form("text/html,application/xhtml+xml,*/*;q=0.8"), Form::Html);
        assert_eq!(form("text/html;q=0.5, application/json"), Form::Problem);
        assert_eq!(form("application/json;q=0.2, text/html"), Form::Html);
        assert_eq!(form("*/*"), Form::Text);
        assert_eq!(form("text/plain"), Form::Text);
        assert_eq!(form("application/json;q=0"), Form::Text);
        assert_eq!(negotiate(None), Form::Text);
    }

    #[test]
    fn sf_string_escapes() {
        assert_eq!(sf_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(sf_string("tab\there"), "\"tabhere\"");
    }

    #[test]
    fn html_is_escaped_and_grpc_message_percent_encoded() {
        assert_eq!(html_escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
        assert_eq!(grpc_percent_encode("50% ok\n"), "50%25 ok%0A");
    }
}
