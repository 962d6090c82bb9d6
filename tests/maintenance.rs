//! Maintenance 503s, and the start-up 503, on real sockets: exact Retry-After, exemptions,
//! bypass, and windows that start and end on time.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use jiff::Timestamp;
use support::{Running, apps, client};

fn window(spec: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: upgrade, namespace: shop}}\nspec:\n{spec}\n"
    )
}

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::now() + jiff::SignedDuration::from_millis(offset_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_answers_503_with_the_exact_retry_after() {
    let end = at(90_500);
    let config = window(&format!(
        "  start: \"{}\"\n  end: \"{end}\"\n  message: \"Checkout is being upgraded; back soon.\"",
        at(-1000)
    ));
    let proxy = Running::start(apps::echo().await, &config).await;
    let before = Timestamp::now();
    let reply = client::get(proxy.addr, "/cart", &[]).await;
    let after = Timestamp::now();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("proxy-status"),
        "portcullis; error=destination_unavailable; details=\"maintenance\""
    );
    assert_eq!(reply.header("x-envoy-overloaded"), "true");
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.body, "503 Service Unavailable: Checkout is being upgraded; back soon.\n");
    let expected = |t: Timestamp| portcullis::maintenance::whole_seconds_until(t, end);
    let got = support::retry_after(&reply);
    assert!((expected(after)..=expected(before)).contains(&got), "Retry-After {got}");
    assert!((90..=91).contains(&got));

    let json = client::get(proxy.addr, "/cart", &[("accept", "application/json")]).await.json();
    assert_eq!(json["status"], 503);
    assert_eq!(json["detail"], "Checkout is being upgraded; back soon.");
    assert_eq!(json["type"], "https://portcullis.dev/problems/maintenance");

    let metrics = proxy.admin_get("/metrics").await.body;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics_later = proxy.admin_get("/metrics").await.body;
    assert_eq!(
        support::metric(&metrics_later, r#"portcullis_maintenance_active{window="shop/upgrade"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics_later, "portcullis_maintenance_until_timestamp_seconds"),
        Some(end.as_second() as f64),
        "the planned end, in whole Unix seconds: {metrics_later}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_paths_and_bypass_pass_and_the_bypass_header_is_stripped() {
    let config = window(
        "  exemptPaths: [/healthz]\n  bypass: {header: X-Portcullis-Bypass, secretRef: {name: ops-bypass, key: token}}\n  retryAfter: 2m",
    );
    let app = apps::echo().await;
    // The harness mounts Secrets under <config dir>/secrets, as a Secret volume would.
    let proxy =
        Running::start_with_secret(app, &config, "ops-bypass", "token", "let-me-in\n").await;

    let closed = client::get(proxy.addr, "/orders", &[]).await;
    assert_eq!(closed.status, 503);
    assert_eq!(support::retry_after(&closed), 120, "an open-ended window uses its retryAfter");
    assert_eq!(closed.body, "503 Service Unavailable: the app is down for maintenance\n");

    let health = client::get(proxy.addr, "/healthz/ready", &[]).await;
    assert_eq!(health.status, 200);

    let bypass = client::get(proxy.addr, "/orders", &[("x-portcullis-bypass", "let-me-in")]).await;
    assert_eq!(bypass.status, 200);
    let seen = bypass.json();
    assert!(
        seen["headers"].get("x-portcullis-bypass").is_none(),
        "the token reached the app: {seen}"
    );

    let wrong =
        client::get(proxy.addr, "/orders", &[("x-portcullis-bypass", "let-me-in-please")]).await;
    assert_eq!(wrong.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_start_and_end_on_time_while_requests_flow() {
    let app = apps::app(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Response::new(Full::new(Bytes::from_static(b"ok")))
    })
    .await;
    let (start, end) = (at(1200), at(2400));
    let proxy =
        Running::start(app, &window(&format!("  start: \"{start}\"\n  end: \"{end}\""))).await;
    // A request in flight when the window starts is allowed to finish.
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        client::get(addr, "/slow", &[]).await
    });
    let mut conn = client::Http1::connect(proxy.addr).await;
    let mut seen = Vec::new();
    while Timestamp::now() < end + jiff::SignedDuration::from_millis(600) {
        let sent = Timestamp::now();
        let reply = conn.get("/").await.unwrap();
        seen.push((sent, Timestamp::now(), reply.status.as_u16()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "the request in flight at the start finished");

    let ms = |later: Timestamp, earlier: Timestamp| later.duration_since(earlier).as_millis();
    for &(sent, done, status) in &seen {
        if done < start || sent >= end {
            assert_eq!(status, 200, "outside the window: sent {sent}, done {done}");
        } else if sent >= start && done < end {
            assert_eq!(status, 503, "inside the window: sent {sent}, done {done}");
        }
    }
    let first_503 = seen.iter().find(|r| r.2 == 503).expect("the window started").0;
    let last_503 = seen.iter().rev().find(|r| r.2 == 503).unwrap().1;
    let first_200_after = seen.iter().find(|r| r.0 >= last_503 && r.2 == 200).unwrap().0;
    assert!(ms(first_503, start) <= 100, "started {} ms late", ms(first_503, start));
    assert!(ms(end, last_503) <= 100, "ended {} ms early", ms(end, last_503));
    assert!(ms(first_200_after, end) <= 100, "ended {} ms late", ms(first_200_after, end));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_never_answered_is_starting_not_broken() {
    let port = support::closed_port().await;
    let proxy = Running::start(port, "").await;
    let starting = client::get(proxy.addr, "/", &[]).await;
    assert_eq!(starting.status, 503);
    assert_eq!(
        starting.header("proxy-status"),
        "portcullis; error=destination_unavailable; details=\"app_starting\""
    );
    assert_eq!(support::retry_after(&starting), 1);
    assert_eq!(starting.header("x-envoy-overloaded"), "", "retrying soon is exactly right");

    // The app comes up on that port, answers, and goes away again: now that is a 502.
    let listener = tokio::net::TcpListener::bind(port).await.unwrap();
    let app = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        apps::read_head(&mut s).await;
        use tokio::io::AsyncWriteExt;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nup")
            .await
            .unwrap();
    });
    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "up");
    app.await.unwrap();
    let gone = client::get(proxy.addr, "/", &[]).await;
    assert_eq!(gone.status, 502);
    assert_eq!(
        gone.header("proxy-status"),
        "portcullis; error=connection_refused; details=\"connection_refused\""
    );
}
