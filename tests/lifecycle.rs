//! Connections to the app over time, config reloads, and the admin endpoints.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use support::{Running, apps, client, policy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one request per connection normally; a second request on the same connection is
/// read and met with a close, as when an app times out an idle connection just as a new
/// request arrives.
async fn closes_reused_connections(requests: Arc<AtomicUsize>) -> std::net::SocketAddr {
    apps::raw(move |mut s| {
        let requests = requests.clone();
        async move {
            if apps::read_head(&mut s).await.is_none() {
                return;
            }
            requests.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh").await;
            if apps::read_head(&mut s).await.is_some() {
                requests.fetch_add(1, Ordering::SeqCst);
            }
            // Closes without answering.
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_race_retries_idempotent_requests_only() {
    let requests = Arc::new(AtomicUsize::new(0));
    let app = closes_reused_connections(requests.clone()).await;
    let proxy = Running::start(app, &policy("  timeouts: {upstreamIdle: 1m}")).await;

    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "fresh");
    // Reuses the pooled connection, which the app closes: retried once on a fresh one.
    let reply = client::get(proxy.addr, "/", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "fresh"));
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    let metrics = proxy.admin_get("/metrics").await.body;
    assert_eq!(support::metric(&metrics, "portcullis_app_retries_total"), Some(1.0));

    // A POST on the next reused connection is not retried: the app may have acted on it.
    let reply = client::send(proxy.addr, Method::POST, "/", &[], "").await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.header("proxy-status"),
        "portcullis; error=connection_terminated; details=\"connection_terminated\""
    );
    assert_eq!(requests.load(Ordering::SeqCst), 4, "the POST reached the app exactly once");
    let metrics = proxy.admin_get("/metrics").await.body;
    assert_eq!(support::metric(&metrics, "portcullis_app_retries_total"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_close_after_upstream_idle() {
    let connections = Arc::new(AtomicUsize::new(0));
    let closed_after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, closed) = (connections.clone(), closed_after.clone());
    let app = apps::raw(move |mut s| {
        let (c, closed) = (c.clone(), closed.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            while apps::read_head(&mut s).await.is_some() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
            let answered = Instant::now();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            closed.lock().unwrap().push(answered.elapsed());
        }
    })
    .await;
    let proxy = Running::start(app, &policy("  timeouts: {upstreamIdle: 400ms}")).await;
    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "ok");
    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "ok");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the second request reuses the connection");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(closed_after.lock().unwrap().len(), 1, "the sidecar closed the idle connection");
    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "ok");
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a stale connection is never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_408() {
    let proxy = Running::start(apps::echo().await, &policy("  timeouts: {idle: 300ms}")).await;
    let (raw, _) = client::raw(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a little",
        Duration::from_secs(3),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{raw}");
    assert!(
        raw.contains(
            "proxy-status: portcullis; error=http_request_error; details=\"request_body_idle\"\r\n"
        ),
        "{raw}"
    );
    assert!(raw.ends_with("408 Request Timeout: the request body stalled for 300ms\n"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing() {
    let proxy =
        Running::start(apps::echo().await, &policy("  timeouts: {responseHeaders: 5s}")).await;
    let addr = proxy.addr;
    let stop = Instant::now() + Duration::from_secs(2);
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            let mut conn = client::Http1::connect(addr).await;
            while Instant::now() < stop {
                match conn.get("/load").await {
                    Ok(r) if r.status == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.write_config(&policy(&format!("  timeouts: {{responseHeaders: {}s}}", 5 + i)));
    }
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0);
    assert!(ok > 100, "only {ok} requests completed");
    let generation = proxy.generation().await;
    assert!(generation >= 6, "only {generation} generations applied");
    // The last write may land just as the load stops: give the reloader a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let config = proxy.admin_get("/config").await.json();
        let in_force =
            config["config"]["policy"]["defaultRoute"]["timeouts"]["responseHeaders"].clone();
        if in_force == "14s" {
            break;
        }
        assert!(Instant::now() < deadline, "the last config never applied: {in_force}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_and_the_last_good_one_kept() {
    let proxy =
        Running::start(apps::stalls().await, &policy("  timeouts: {responseHeaders: 300ms}")).await;
    let before = proxy.generation().await;
    proxy.write_config(&policy("  timeouts: {responseHeaders: 5s, connect: soon}"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(proxy.generation().await, before);
    let metrics = proxy.admin_get("/metrics").await.body;
    assert_eq!(
        support::metric(&metrics, r#"portcullis_config_reloads_total{result="refused"}"#),
        Some(1.0),
        "{metrics}"
    );
    // The old 300ms limit is still the one enforced.
    let started = Instant::now();
    let reply = client::get(proxy.addr, "/", &[]).await;
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    // A fixed file is picked up again.
    proxy.write_config(&policy("  timeouts: {responseHeaders: 200ms}"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(proxy.generation().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let proxy = Running::after_app_left(&policy("  timeouts: {connect: 250ms}")).await;
    let live = proxy.admin_get("/livez").await;
    assert_eq!((live.status.as_u16(), live.body.as_str()), (200, "ok\n"));
    let ready = proxy.admin_get("/readyz").await;
    assert_eq!((ready.status.as_u16(), ready.body.as_str()), (200, "ready\n"));
    let config = proxy.admin_get("/config").await;
    assert_eq!(config.header("content-type"), "application/json");
    let json = config.json();
    assert_eq!(json["generation"], 1);
    assert_eq!(json["config"]["policyName"], "default/test");
    assert_eq!(json["config"]["policy"]["defaultRoute"]["timeouts"]["connect"], "250ms");
    assert_eq!(json["config"]["policy"]["defaultRoute"]["timeouts"]["request"], "off");
    assert_eq!(proxy.admin_get("/nope").await.status, 404);

    client::get(proxy.addr, "/", &[]).await;
    let metrics = proxy.admin_get("/metrics").await;
    assert!(metrics.header("content-type").starts_with("application/openmetrics-text"));
    for expected in [
        r#"portcullis_responses_total{status="502",reason="connection_refused",source="proxy"} 1"#,
        r#"portcullis_responses_total{status="200",reason="none",source="app"} 1"#,
        "portcullis_in_flight_requests 0",
        "portcullis_config_generation 1",
        "# TYPE portcullis_app_response_seconds histogram",
    ] {
        assert!(metrics.body.contains(expected), "missing {expected:?} in\n{}", metrics.body);
    }
}

/// Between keep-alive requests a client may stay idle longer than the header timeout; a
/// head trickled in, or no first request at all, is cut off at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout_but_a_trickled_head_does_not() {
    let timeouts = portcullis::proxy::ClientTimeouts {
        header: Duration::from_millis(400),
        idle: Duration::from_secs(4),
    };
    let proxy = Running::start_with_timeouts(apps::echo().await, "", timeouts).await;

    // Idle for 1.5 s (well past the header timeout) on a keep-alive connection: it stays.
    let mut conn = client::Http1::connect(proxy.addr).await;
    assert_eq!(conn.get("/one").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(conn.get("/two").await.expect("still open after 1.5 s idle").status, 200);

    // Past the idle timeout it is closed.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert!(conn.get("/three").await.is_err(), "closed after the idle timeout");

    // Half a head, then nothing: closed at the header timeout, long before the idle one.
    let started = Instant::now();
    let (answer, closed) =
        client::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: t", Duration::from_secs(3)).await;
    assert!(closed, "the trickled head's connection was closed: {answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());

    // A connection that never sends its first request gets no idle time either.
    let started = Instant::now();
    let (_, closed) = client::raw(proxy.addr, b"", Duration::from_secs(3)).await;
    assert!(closed && started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
}
