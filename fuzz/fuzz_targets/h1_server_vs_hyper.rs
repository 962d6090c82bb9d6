//! The sidecar's own HTTP/1.1 server against hyper's, on the same app response.
//!
//! The sidecar serves a request without a body with its own server, and hands one with a
//! body (even `Content-Length: 0`) to hyper's. Each run gives the app raw response bytes
//! (everything after the first input byte; the first picks GET or HEAD), then sends the
//! same request both ways, each from a loopback address of its own, with
//! `Connection: close`, and reads each answer to the close.
//!
//! Asserted: never a panic, and the two answers are the same bytes, but for the `date`
//! field that each server adds (its second may differ). A difference is a response that
//! the own server writes otherwise than hyper would: its status line, its fields, its
//! framing, its body, or where it stops.
#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// What the app answers each client address with.
type Answers = Arc<Mutex<HashMap<Ipv4Addr, Arc<Vec<u8>>>>>;

struct Harness {
    rt: Runtime,
    proxy: SocketAddr,
    answers: Answers,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = common::runtime();
        let answers = Answers::default();
        let app = rt.block_on(app(answers.clone()));
        let proxy = common::start_sidecar(&rt, app);
        Harness { rt, proxy, answers }
    })
}

/// An app that reads a request head, answers it with the bytes of the run whose client
/// address ends X-Forwarded-For, and closes.
async fn app(answers: Answers) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    if let Some(end) = common::head_end(&head) {
                        break end;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                };
                let mut fields = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut fields);
                let _ = req.parse(&head[..end]);
                let client = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.rsplit(',').next())
                    .and_then(|ip| ip.trim().parse::<Ipv4Addr>().ok());
                let answer = client.and_then(|ip| answers.lock().unwrap().get(&ip).cloned());
                if let Some(answer) = answer {
                    let _ = stream.write_all(&answer).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `request` from `ip` and reads the answer to the close (at most 5 s).
async fn exchange(ip: Ipv4Addr, proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let Ok(mut stream) = common::connect_from(ip, proxy).await else { return Vec::new() };
    let _ = stream.write_all(request).await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut seen)).await;
    seen
}

/// The bytes without the `date` line each server adds.
fn undated(bytes: &[u8]) -> Vec<u8> {
    let head = common::head_end(bytes).unwrap_or(bytes.len());
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < head {
        let end = bytes[at..head].windows(2).position(|w| w == b"\r\n").map_or(head, |p| at + p + 2);
        if !bytes[at..end].starts_with(b"date: ") {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
    }
    out.extend_from_slice(&bytes[head..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, answer)) = data.split_first() else { return };
    let h = harness();
    let method = if pick & 1 == 0 { "GET" } else { "HEAD" };
    let (own_ip, _) = common::next_client_ip();
    let (hypers_ip, _) = common::next_client_ip();
    let answer = Arc::new(answer.to_vec());
    {
        let mut answers = h.answers.lock().unwrap();
        answers.insert(own_ip, answer.clone());
        answers.insert(hypers_ip, answer.clone());
    }
    let own = format!("{method} /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let hypers =
        format!("{method} /r HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let (own, hypers) = h.rt.block_on(async {
        let own = exchange(own_ip, h.proxy, own.as_bytes()).await;
        let hypers = exchange(hypers_ip, h.proxy, hypers.as_bytes()).await;
        (own, hypers)
    });
    {
        let mut answers = h.answers.lock().unwrap();
        answers.remove(&own_ip);
        answers.remove(&hypers_ip);
    }
    let (own, hypers) = (undated(&own), undated(&hypers));
    assert!(
        own == hypers,
        "{method} answered differently for the app's {:?}:\n own:   {:?}\n hyper: {:?}",
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(&own),
        String::from_utf8_lossy(&hypers),
    );
});
