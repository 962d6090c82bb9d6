//! `make bench`, controller part: 10,000 pods and 1,000 resources in the index, 1,000 sidecar
//! streams open on one controller, then one UpstreamPolicy change: how long until every
//! stream holds the new version (p50, p99), and the controller's RSS and CPU.
//! TokenReviews are answered by a minimal stand-in of the API server in this process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::controller::auth::Authenticator;
use portcullis::controller::index::{Index, ObjectKey};
use portcullis::controller::stream::StreamServer;
use tokio::net::{TcpListener, TcpStream};

const STREAMS: usize = 1_000;
const OTHER_PODS: usize = 9_000;
const RESOURCES: usize = 1_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Answers every TokenReview as a token bound to the pod it names (`token-<ns>-<pod>`).
async fn token_reviews() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut review: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let token = review["spec"]["token"].as_str().unwrap_or("").to_owned();
                    let parts: Vec<&str> = token.splitn(3, '-').collect();
                    review["status"] = serde_json::json!({
                        "authenticated": true,
                        "audiences": ["portcullis"],
                        "user": {
                            "username": format!("system:serviceaccount:{}:default", parts[1]),
                            "extra": {"authentication.kubernetes.io/pod-name": [parts[2]]}
                        }
                    });
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        review.to_string(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn spec<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap()
}

#[tokio::main]
async fn main() {
    let created: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let (cpu0, rss0, built) = (cpu_seconds(), rss_kib(), Instant::now());
    let mut index = Index::default();
    for i in 0..STREAMS {
        index.apply_pod(
            ObjectKey::new("bench", format!("pod-{i}")),
            [("app".to_string(), "bench".to_string())].into(),
        );
    }
    for i in 0..OTHER_PODS {
        let ns = format!("ns-{}", i % 90);
        index.apply_pod(
            ObjectKey::new(ns, format!("pod-{i}")),
            [("app".to_string(), format!("app-{}", i % 7))].into(),
        );
    }
    for i in 0..RESOURCES - 1 {
        let ns = format!("ns-{}", i % 90);
        if i % 2 == 0 {
            index.apply_policy(
                ObjectKey::new(ns, format!("policy-{i}")),
                created,
                spec(&format!("selector: {{matchLabels: {{app: app-{}}}}}", i % 7)),
            );
        } else {
            index.apply_window(ObjectKey::new(ns, format!("window-{i}")), created, spec(&format!("selector: {{matchLabels: {{app: app-{}}}}}\nschedule: \"0 2 * * SUN\"\nduration: 1h", i % 7)));
        }
    }
    index.apply_policy(
        ObjectKey::new("bench", "bench"),
        created,
        spec("selector: {matchLabels: {app: bench}}\ntimeouts: {responseHeaders: 5s}"),
    );
    let index_build = built.elapsed();
    let index_cpu = cpu_seconds() - cpu0;
    let index_rss = rss_kib();

    let index = Arc::new(Mutex::new(index));
    let api = token_reviews().await;
    let config = kube::Config::new(format!("http://{api}").parse().unwrap());
    let server = StreamServer {
        index: index.clone(),
        auth: Authenticator::new(kube::Client::try_from(config).unwrap()),
        keepalive: Duration::from_secs(15),
        metrics: Default::default(),
        tls: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener));

    // 1,000 sidecars follow their pods' streams and report when they hold version > v0.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<()>();
    for i in 0..STREAMS {
        let (tx, opened_tx) = (tx.clone(), opened_tx.clone());
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::get(format!("/v1/config/bench/pod-{i}"))
                .header("host", "controller")
                .header("authorization", format!("Bearer token-bench-pod-{i}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let mut body = sender.send_request(req).await.unwrap().into_body();
            let mut first = None;
            let mut buffer = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let message: serde_json::Value = serde_json::from_slice(&line[..end]).unwrap();
                    let Some(version) = message["version"].as_u64() else { continue };
                    match first {
                        None => {
                            first = Some(version);
                            let _ = opened_tx.send(());
                        }
                        Some(v0) if version > v0 => {
                            let _ = tx.send((i, Instant::now()));
                            return;
                        }
                        Some(_) => {}
                    }
                }
            }
        });
    }
    for _ in 0..STREAMS {
        opened.recv().await.unwrap();
    }
    let idle_rss = rss_kib();

    // One change to the policy that selects every streaming pod.
    let cpu1 = cpu_seconds();
    let changed = Instant::now();
    index.lock().unwrap().apply_policy(
        ObjectKey::new("bench", "bench"),
        created,
        spec("selector: {matchLabels: {app: bench}}\ntimeouts: {responseHeaders: 7s}"),
    );
    let mut latencies = Vec::with_capacity(STREAMS);
    while latencies.len() < STREAMS {
        let (_, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("all streams in 30 s")
            .unwrap();
        latencies.push(at.duration_since(changed));
    }
    let propagation_cpu = cpu_seconds() - cpu1;
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    println!(
        "controller: {} pods and {} resources indexed in {:.0} ms ({:.2} s CPU); RSS {:.1} MiB (from {:.1} MiB at start)",
        STREAMS + OTHER_PODS,
        RESOURCES,
        index_build.as_secs_f64() * 1000.0,
        index_cpu,
        index_rss as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    println!(
        "controller: {STREAMS} streams open: process RSS {:.1} MiB (the {STREAMS} test clients share this process)",
        idle_rss as f64 / 1024.0
    );
    println!(
        "controller: one UpstreamPolicy change to all {STREAMS} streams: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({:.2} s CPU, clients included)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        propagation_cpu
    );
}
