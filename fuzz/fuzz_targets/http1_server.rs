//! Raw client bytes into the sidecar's HTTP/1.1 server path, in front of an app that
//! records every request it receives.
//!
//! Each run connects from a loopback address of its own, writes the input, and reads what
//! comes back until the sidecar closes, every request has been answered, or the line has
//! been quiet for a moment. The app tells runs apart by the address the sidecar appends to
//! X-Forwarded-For, so a request that arrives late is still held against the right run.
//!
//! Asserted: never a panic (libfuzzer-sys aborts on one, in any thread); and the app never
//! receives a request whose framing is ambiguous, nor any request after it on the same
//! connection. The expected framing is worked out here independently of the sidecar,
//! following RFC 9112 §6 with httparse (the parser hyper uses): a request is ambiguous when
//! it has both Transfer-Encoding and Content-Length, an invalid or conflicting
//! Content-Length, or a Transfer-Encoding whose last coding is not `chunked`. Where this
//! model cannot follow the bytes (HTTP/2, upgrades and CONNECT, HTTP/1.0 with
//! Transfer-Encoding, a chunked body it cannot read), it makes no claim from there on.
#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// What the client bytes must lead to, by this model of RFC 9112.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    /// Index of the first request with ambiguous framing: the app may receive at most
    /// this many requests from the connection.
    ambiguous_at: Option<usize>,
    /// When the input is nothing but complete requests: whether each is a HEAD (its
    /// response has no body), so that the client knows when every answer is in.
    complete: Option<Vec<bool>>,
}

enum Body {
    Length(usize),
    Chunked,
}

fn expected(input: &[u8]) -> Expected {
    let mut at = 0;
    let mut heads = Vec::new();
    loop {
        if at == input.len() {
            return Expected { ambiguous_at: None, complete: Some(heads) };
        }
        let unknown = Expected::default();
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut fields);
        let Ok(httparse::Status::Complete(head_len)) = req.parse(&input[at..]) else {
            return unknown;
        };
        let ambiguous = Expected { ambiguous_at: Some(heads.len()), complete: None };
        let (mut te, mut cl, mut upgrade) = (None::<Vec<u8>>, Vec::new(), false);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let all = te.get_or_insert_with(Vec::new);
                if !all.is_empty() {
                    all.push(b',');
                }
                all.extend_from_slice(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl.push(h.value);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if req.method == Some("CONNECT") || upgrade {
            return unknown; // the bytes after it may be a tunnel's
        }
        if te.is_some() && req.version == Some(0) {
            return unknown; // RFC 9112 §6.1: processed, then the connection closed
        }
        let body = match (te, cl.is_empty()) {
            (Some(_), false) => return ambiguous,
            (Some(te), true) => {
                let last = te.rsplit(|b| *b == b',').next().unwrap_or_default();
                if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return ambiguous;
                }
                Body::Chunked
            }
            (None, true) => Body::Length(0),
            (None, false) => match content_length(&cl) {
                Some(n) => Body::Length(n),
                None => return ambiguous,
            },
        };
        heads.push(req.method == Some("HEAD"));
        at += head_len;
        match body {
            Body::Length(n) if input.len() - at < n => return unknown, // still streaming
            Body::Length(n) => at += n,
            Body::Chunked => match chunked_len(&input[at..]) {
                Some(n) => at += n,
                None => return unknown,
            },
        }
    }
}

/// Every Content-Length value, comma lists included, must be the same number.
fn content_length(values: &[&[u8]]) -> Option<usize> {
    let mut length = None;
    for value in values {
        for part in value.split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: usize = std::str::from_utf8(part).ok()?.parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// The length of a whole chunked body (chunks, last chunk, trailers), if it is all there
/// and well-formed.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(&body[at..])
        else {
            return None;
        };
        at += used;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        let end = at.checked_add(size)?;
        if body.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        at = end + 2;
    }
    if body[at..].starts_with(b"\r\n") {
        return Some(at + 2);
    }
    let mut fields = [httparse::EMPTY_HEADER; 64];
    match httparse::parse_headers(&body[at..], &mut fields) {
        Ok(httparse::Status::Complete((used, _))) => Some(at + used),
        _ => None,
    }
}

/// One run, as the app sees it.
struct Run {
    seq: u32,
    input: Vec<u8>,
    expected: Expected,
    received: usize,
}

struct Harness {
    rt: Runtime,
    proxy: SocketAddr,
    runs: Arc<Mutex<HashMap<Ipv4Addr, Run>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = common::runtime();
        let runs = Arc::new(Mutex::new(HashMap::<Ipv4Addr, Run>::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let app = rt.block_on(recorder(runs.clone(), violations.clone()));
        let proxy = common::start_sidecar(&rt, app);
        Harness { rt, proxy, runs, violations }
    })
}

/// An app that answers every request `200 ok` and holds it against the run it came from.
async fn recorder(
    runs: Arc<Mutex<HashMap<Ipv4Addr, Run>>>,
    violations: Arc<Mutex<Vec<String>>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (runs, violations) = (runs.clone(), violations.clone());
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let client = req
                    .headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit(',').next())
                    .and_then(|ip| ip.trim().parse::<Ipv4Addr>().ok());
                if let Some(run) = client.and_then(|ip| runs.lock().unwrap().get_mut(&ip).map(
                    |run| {
                        run.received += 1;
                        (run.received, run.expected.ambiguous_at, run.input.clone())
                    },
                )) {
                    let (received, ambiguous_at, input) = run;
                    if ambiguous_at.is_some_and(|k| received > k) {
                        violations.lock().unwrap().push(format!(
                            "the app received request {} ({} {}) of a connection whose \
                             request {} is ambiguous; client bytes: {:?}",
                            received - 1,
                            req.method(),
                            req.uri(),
                            ambiguous_at.unwrap(),
                            Bytes::from(input),
                        ));
                    }
                }
                async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Complete responses at the start of `bytes` (bodies by Content-Length, the only framing
/// the sidecar's answers here use), given which requests were HEADs.
fn responses_in(bytes: &[u8], heads: &[bool]) -> usize {
    let (mut at, mut count) = (0, 0);
    while count < heads.len() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(used)) = res.parse(&bytes[at..]) else { break };
        let code = res.code.unwrap_or_default();
        let length = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
        at += used;
        if code < 200 {
            continue;
        }
        let length = if heads[count] || code == 204 || code == 304 { 0 } else { length.unwrap_or(0) };
        if bytes.len() - at < length {
            break;
        }
        at += length;
        count += 1;
    }
    count
}

fn check_violations(h: &Harness) {
    let found = std::mem::take(&mut *h.violations.lock().unwrap());
    if let Some(first) = found.first() {
        panic!("{first}");
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    check_violations(h);
    let (ip, seq) = common::next_client_ip();
    let expected = expected(data);
    let complete = expected.complete.clone();
    let run = Run { seq, input: data.to_vec(), expected, received: 0 };
    h.runs.lock().unwrap().insert(ip, run);
    h.rt.block_on(async {
        let Ok(mut stream) = common::connect_from(ip, h.proxy).await else { return };
        let _ = stream.write_all(data).await;
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if complete.as_ref().is_some_and(|heads| responses_in(&seen, heads) == heads.len()) {
                break; // every request answered
            }
            let quiet = tokio::time::Instant::now() + Duration::from_millis(25);
            match tokio::time::timeout_at(quiet.min(deadline), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });
    check_violations(h);
    // Runs are kept a while so that a late request is still held against its own run.
    if seq % 1024 == 0 {
        h.runs.lock().unwrap().retain(|_, run| run.seq + 1024 > seq);
    }
});
