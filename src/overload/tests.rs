use super::*;

fn settings(max_in_flight: u32, queue_size: u32, queue_timeout_ms: u64) -> Overload {
    Overload {
        max_in_flight,
        queue_size,
        queue_timeout: Some(Duration::from_millis(queue_timeout_ms)),
        adaptive: false,
        min_limit: 1,
        max_limit: 1000,
        retry_after: Some(Duration::from_secs(5)),
    }
}

#[tokio::test(start_paused = true)]
async fn excess_beyond_limit_and_queue_is_shed_at_once() {
    let limiter = Arc::new(Limiter::default());
    let s = settings(2, 1, 1000);
    let a = limiter.admit(1, &s).await.unwrap();
    let b = limiter.admit(1, &s).await.unwrap();
    assert!(a.is_some() && b.is_some());
    let queued = {
        let limiter = limiter.clone();
        let s = s.clone();
        tokio::spawn(async move { limiter.admit(1, &s).await.map(|p| p.is_some()) })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.queue_depth(), 1);
    assert_eq!(limiter.admit(1, &s).await.err(), Some(Shed::Overloaded), "the queue is full");
    drop(a);
    assert_eq!(queued.await.unwrap(), Ok(true), "the queued request gets the freed turn");
    assert_eq!(limiter.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_times_out() {
    let limiter = Arc::new(Limiter::default());
    let s = settings(1, 5, 250);
    let _held = limiter.admit(1, &s).await.unwrap();
    let started = Instant::now();
    assert_eq!(limiter.admit(1, &s).await.err(), Some(Shed::QueueTimeout));
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(limiter.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_limit_admits_everything_for_free() {
    let limiter = Arc::new(Limiter::default());
    let s = settings(0, 0, 0);
    for _ in 0..100 {
        assert!(limiter.admit(1, &s).await.unwrap().is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn a_lower_limit_after_reload_counts_requests_in_flight() {
    let limiter = Arc::new(Limiter::default());
    let wide = settings(3, 0, 0);
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| limiter.admit(1, &wide))).await;
    let narrow = settings(1, 0, 0);
    assert_eq!(limiter.admit(2, &narrow).await.err(), Some(Shed::Overloaded));
    assert_eq!(limiter.limit(), 1);
    drop(held);
    assert!(limiter.admit(2, &narrow).await.unwrap().is_some(), "one turn once all three finished");
    let _one = limiter.admit(2, &narrow).await.unwrap();
    assert_eq!(limiter.admit(2, &narrow).await.err(), Some(Shed::Overloaded), "and only one");
}

#[test]
fn retry_after_jitter_spreads_within_documented_bounds() {
    let seen: std::collections::BTreeSet<u64> =
        (0..2000).map(|_| jittered_retry_after(Some(Duration::from_secs(10)))).collect();
    assert_eq!(seen.first(), Some(&10));
    assert_eq!(seen.last(), Some(&15));
    assert_eq!(seen.len(), 6, "every whole second between is used");
    let small: std::collections::BTreeSet<u64> =
        (0..500).map(|_| jittered_retry_after(Some(Duration::from_millis(200)))).collect();
    assert_eq!(small.into_iter().collect::<Vec<_>>(), [1, 2]);
}
