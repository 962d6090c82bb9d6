//! Overload 503s on real sockets: the in-flight limit, the queue, the adaptive limit.
//! (A test binary of its own: its load must not disturb the timing of the others.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::{Running, apps, client, policy};

/// An app that takes `service` to answer each request.
async fn slow_app(service: Arc<AtomicU64>) -> std::net::SocketAddr {
    apps::app(move |_| {
        let ms = service.load(Ordering::Relaxed);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(Full::new(Bytes::from_static(b"served")))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_sheds_exactly_the_excess() {
    let app = slow_app(Arc::new(AtomicU64::new(500))).await;
    let spec = "  overload: {maxInFlight: 4, queue: {size: 4, timeout: 5s}, retryAfter: 4s}";
    let proxy = Running::start(app, &policy(spec)).await;
    let addr = proxy.addr;
    let started = Instant::now();
    let burst = futures::future::join_all((0..20).map(|_| async move {
        let sent = Instant::now();
        let reply = client::get(addr, "/", &[]).await;
        (reply, sent.elapsed())
    }))
    .await;
    let admitted: Vec<_> = burst.iter().filter(|(r, _)| r.status == 200).collect();
    let shed: Vec<_> = burst.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!((admitted.len(), shed.len()), (8, 12), "maxInFlight 4 + queue 4 admitted");
    for (reply, took) in &shed {
        assert_eq!(
            reply.header("proxy-status"),
            "portcullis; error=connection_limit_reached; details=\"overloaded\""
        );
        assert_eq!(reply.header("x-envoy-overloaded"), "true");
        assert!((4..=6).contains(&support::retry_after(reply)), "{reply:?}");
        assert!(*took < Duration::from_millis(400), "shedding must be immediate, took {took:?}");
    }
    for (_, took) in &admitted {
        assert!(
            *took < Duration::from_millis(1600),
            "admitted latency {took:?} is bounded by the queue"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let metrics = proxy.admin_get("/metrics").await.body;
    assert_eq!(
        support::metric(&metrics, r#"portcullis_shed_total{reason="overloaded"}"#),
        Some(12.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_too_long_in_the_queue_is_shed() {
    let app = slow_app(Arc::new(AtomicU64::new(1500))).await;
    let spec = "  overload: {maxInFlight: 1, queue: {size: 2, timeout: 300ms}, retryAfter: 1s}";
    let proxy = Running::start(app, &policy(spec)).await;
    let addr = proxy.addr;
    let first = tokio::spawn(async move { client::get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    let waited = client::get(addr, "/", &[]).await;
    assert_eq!(waited.status, 503);
    assert_eq!(
        waited.header("proxy-status"),
        "portcullis; error=connection_limit_reached; details=\"queue_timeout\""
    );
    assert!((1..=2).contains(&support::retry_after(&waited)));
    assert!(
        sent.elapsed() >= Duration::from_millis(290)
            && sent.elapsed() < Duration::from_millis(1200)
    );
    assert_eq!(first.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_limit_falls_when_the_app_slows_and_recovers() {
    let service = Arc::new(AtomicU64::new(5));
    let app = slow_app(service.clone()).await;
    let spec = "  overload: {adaptive: {enabled: true, minLimit: 2, maxLimit: 40}, retryAfter: 1s}";
    let proxy = Running::start(app, &policy(spec)).await;
    let addr = proxy.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..12 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut conn = client::Http1::connect(addr).await;
            while !stop.load(Ordering::Relaxed) {
                if conn.get("/").await.is_err() {
                    conn = client::Http1::connect(addr).await;
                }
            }
        }));
    }
    let limit = || async {
        let text = proxy.admin_get("/metrics").await.body;
        support::metric(&text, "portcullis_concurrency_limit").unwrap_or(-1.0)
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fast = limit().await;
    service.store(150, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let slow = limit().await;
    service.store(5, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let recovered = limit().await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    assert!(fast >= 30.0, "a fast app earns a high limit, got {fast}");
    assert!(slow <= 6.0, "the limit falls when the app slows down, got {slow}");
    assert!(recovered >= 30.0, "and recovers, got {recovered}");
}
