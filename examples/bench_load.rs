//! Open-loop load for `make bench`: sends requests at a fixed rate whatever the answers,
//! as real clients do, so that an overloaded app shows its queueing instead of slowing the
//! load down. Usage: `bench_load URL RATE SECONDS`.
//! Prints: `sent ok shed other ok_p50_ms ok_p99_ms`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url: hyper::Uri = args.next().expect("URL").parse().expect("a URL");
    let rate: f64 = args.next().and_then(|s| s.parse().ok()).expect("RATE");
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).expect("SECONDS");
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build_http::<Empty<Bytes>>();
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    while Instant::now() < stop {
        tick.tick().await;
        let (client, url, results) = (client.clone(), url.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = match client.get(url).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.into_body().collect().await;
                    status
                }
                Err(_) => 0,
            };
            results.lock().unwrap().push((status, sent.elapsed()));
        }));
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks)).await;
    let results = results.lock().unwrap();
    let mut ok: Vec<Duration> = results.iter().filter(|r| r.0 == 200).map(|r| r.1).collect();
    ok.sort();
    let shed = results.iter().filter(|r| r.0 == 503).count();
    let pct = |p: f64| {
        ok.get(((ok.len() as f64 * p) as usize).min(ok.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} {} {} {} {:.1} {:.1}",
        results.len(),
        ok.len(),
        shed,
        results.len() - ok.len() - shed,
        pct(0.5),
        pct(0.99)
    );
}
