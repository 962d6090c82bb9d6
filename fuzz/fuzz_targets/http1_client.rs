//! Raw app response bytes into the sidecar's client path: an app that answers every
//! request with the input and then closes, and a client that sends one GET through the
//! sidecar and reads the answer to its end.
//!
//! Asserted: never a panic, and never a hang; the client always gets a well-formed
//! response head; that response is either
//! - the sidecar's own 502, carrying `Proxy-Status: portcullis; error=...; details="..."`
//!   with one of the labels for a bad answer from the app (`connection_terminated`,
//!   `malformed_response`, `response_headers_too_large`), or
//! - the app's: then the input holds a complete, well-formed response head (read with
//!   httparse, skipping interim 1xx heads as hyper does), not a 101, whose status is the
//!   one the client got.
//!
//! Not asserted: the body. Once the app's head has passed, a body that breaks off or is
//! mis-framed can only end the stream early (by design, see "Streams cut short"), and
//! hyper passes through header values it accepts as they are.
#![no_main]

#[path = "common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

struct Harness {
    rt: Runtime,
    proxy: SocketAddr,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = common::runtime();
        let answer = Arc::new(Mutex::new(Vec::new()));
        let app = rt.block_on(app(answer.clone()));
        let proxy = common::start_sidecar(&rt, app);
        Harness { rt, proxy, answer }
    })
}

/// Reads a request head, writes the current answer, closes.
async fn app(answer: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while common::head_end(&head).is_none() {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let bytes = answer.lock().unwrap().clone();
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// The status of the app's final response head, as hyper's client would read it.
fn app_status(bytes: &[u8]) -> Option<u16> {
    let mut at = 0;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(used)) = res.parse(&bytes[at..]) else { return None };
        let code = res.code?;
        if (100..200).contains(&code) && code != 101 {
            at += used;
            continue;
        }
        return Some(code);
    }
}

const LABELS: [(&str, &str); 3] = [
    ("connection_terminated", "connection_terminated"),
    ("http_protocol_error", "malformed_response"),
    ("http_response_header_section_size", "response_headers_too_large"),
];

fuzz_target!(|data: &[u8]| {
    let h = harness();
    *h.answer.lock().unwrap() = data.to_vec();
    let got = h.rt.block_on(async {
        let (ip, _) = common::next_client_ip();
        let mut stream = common::connect_from(ip, h.proxy).await.expect("the sidecar accepts");
        let request = b"GET /fuzz HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";
        stream.write_all(request).await.expect("the request is sent");
        let mut got = Vec::new();
        let read = stream.read_to_end(&mut got);
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Err(_) => panic!("no end to the answer within 10 s: {:?}", bytes::Bytes::from(got)),
            Ok(_) => got, // a reset after the head is a stream cut short
        }
    });
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut res = httparse::Response::new(&mut fields);
    let parsed = res.parse(&got);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(_))),
        "not a response head: {:?}",
        bytes::Bytes::from(got.clone())
    );
    let status = res.code.unwrap();
    let proxy_status = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-status"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    // The sidecar's own answer: a 502 with one of the labels for a bad answer from the app.
    let labelled = status == 502
        && proxy_status.as_deref().is_some_and(|value| {
            LABELS.iter().any(|(error, details)| {
                value == format!("portcullis; error={error}; details=\"{details}\"")
            })
        });
    // An app can forge the sidecar's label; only then is a labelled answer the app's own.
    let forged = data.to_ascii_lowercase().windows(10).any(|w| w == b"portcullis");
    let own = proxy_status.as_deref().is_some_and(|v| v.starts_with("portcullis")) && !forged;
    let app = app_status(data).filter(|&code| code != 101);
    if own {
        assert!(labelled, "unexpected label: {proxy_status:?} on {status}");
    } else if !(forged && labelled) {
        assert!(
            app.is_some(),
            "passed through a response that is not well-formed: sent {:?}, got {:?}",
            bytes::Bytes::from(data.to_vec()),
            bytes::Bytes::from(got.clone())
        );
        assert_eq!(app, Some(status), "the status changed on the way");
    }
});
