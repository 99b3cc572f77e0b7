//! The engine's waits, measured exactly: the async client and a scripted server run
//! on one tokio runtime with paused time, so every wait is the one the retry policy
//! chose, to the nanosecond, and a ten-minute wait takes no time at all.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoplay_sdk::{AsyncConnectorClient, AsyncConnectorClientBuilder, FailureReason};
use support::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// The gaps between consecutive requests of the first `n`.
async fn gaps(server: &TestServer, n: usize) -> Vec<Duration> {
    let at: Vec<_> = server
        .requests_after(n)
        .await
        .iter()
        .map(|r| r.at)
        .collect();
    at.windows(2).map(|w| w[1] - w[0]).take(n - 1).collect()
}

/// Runs a client built from `builder` until `n` requests reached the server, then
/// stops it; returns the gaps and what `on_retry` saw.
async fn run_until(
    server: &TestServer,
    builder: AsyncConnectorClientBuilder,
    n: usize,
) -> (Vec<Duration>, Vec<(u32, Duration, FailureReason)>) {
    let retries = Arc::new(Mutex::new(Vec::new()));
    let r = retries.clone();
    let client = builder
        .on_retry(move |attempt, delay, why| r.lock().unwrap().push((attempt, delay, why.clone())))
        .on_actions(|_| async {})
        .build()
        .unwrap();
    let running = client.run_in_background();
    let gaps = gaps(server, n).await;
    client.stop();
    running.await.unwrap();
    let retries = retries.lock().unwrap().clone();
    (gaps, retries)
}

fn within(gap: Duration, least: Duration, most: Duration) -> bool {
    gap >= least && gap <= most
}

#[tokio::test(start_paused = true)]
async fn retry_600_is_waited_in_full_and_the_jitter_only_adds() {
    let server = TestServer::spawn(|_, _| Reply::stream(vec![write("retry: 600\n\n")])).await;
    let (gaps, retries) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url()).initial_backoff(SEC),
        4,
    )
    .await;
    // The server's 600 ms replaces the 1 s base; each stream delivered nothing, so
    // the waits double: at least 600, 1200, 2400 ms, and at most half as much again.
    for (gap, floor) in gaps.iter().zip([600 * MS, 1200 * MS, 2400 * MS]) {
        assert!(
            within(*gap, floor, floor * 3 / 2),
            "{gap:?} for {floor:?}: {gaps:?}"
        );
    }
    // The hook is told the wait that follows (tokio's timer rounds up to the ms).
    for (retry, gap) in retries.iter().zip(&gaps) {
        assert!(within(*gap, retry.1, retry.1 + MS), "{retries:?} {gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_sends_one_event_and_drops_sees_the_backoff_grow() {
    let server =
        TestServer::spawn(|n, _| Reply::stream(vec![write(actions_frame(n as u64 + 1, "s", "a"))]))
            .await;
    let (gaps, retries) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url())
            .initial_backoff(100 * MS)
            .max_backoff(SEC),
        7,
    )
    .await;
    let floors = [100, 200, 400, 800, 1000, 1000].map(|ms| ms * MS);
    for (gap, floor) in gaps.iter().zip(floors) {
        assert!(
            within(*gap, floor, (floor * 3 / 2).min(SEC)),
            "{gap:?} for {floor:?}: {gaps:?}"
        );
    }
    // Each stream delivered an event: progress, not a failed attempt.
    assert!(retries.iter().all(|r| r.0 == 0), "{retries:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_stays_up_for_the_reset_time_resets_the_backoff() {
    let server = TestServer::spawn(|n, _| match n {
        0..=3 => Reply::status(503),
        4 => Reply::stream(vec![
            write(actions_frame(1, "s", "a")),
            Step::Sleep(61 * SEC),
        ]),
        5 => Reply::stream(vec![
            write(actions_frame(2, "s", "b")),
            Step::Sleep(59 * SEC),
        ]),
        _ => Reply::stream(vec![Step::Stall]),
    })
    .await;
    let (gaps, _) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url()).initial_backoff(SEC),
        7,
    )
    .await;
    assert!(gaps[3] >= 8 * SEC, "{gaps:?}");
    // 61 s up, then the base again; 59 s up is not enough: doubled.
    assert!(within(gaps[4], 62 * SEC, 62 * SEC + SEC / 2), "{gaps:?}");
    assert!(within(gaps[5], 61 * SEC, 62 * SEC), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn the_reset_time_is_configurable() {
    let server = TestServer::spawn(|n, _| match n {
        0..=3 => Reply::status(503),
        4 => Reply::stream(vec![
            write(actions_frame(1, "s", "a")),
            Step::Sleep(5 * SEC),
        ]),
        _ => Reply::stream(vec![Step::Stall]),
    })
    .await;
    let (gaps, _) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url())
            .initial_backoff(SEC)
            .backoff_reset_after(5 * SEC),
        6,
    )
    .await;
    assert!(within(gaps[4], 6 * SEC, 6 * SEC + SEC / 2), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_of_a_day_is_capped_at_ten_minutes() {
    let server = TestServer::spawn(|n, _| match n {
        0 => Reply::stream(vec![write("retry: 86400000\n\n")]),
        _ => Reply::stream(vec![Step::Stall]),
    })
    .await;
    let (gaps, retries) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url()).max_backoff(2 * SEC),
        2,
    )
    .await;
    assert_eq!(gaps, vec![600 * SEC]);
    assert_eq!(retries[0].1, 600 * SEC);
}

#[tokio::test(start_paused = true)]
async fn the_ceiling_of_server_delays_is_configurable() {
    let server = TestServer::spawn(|n, _| match n {
        0 => Reply::stream(vec![write("retry: 86400000\n\n")]),
        _ => Reply::stream(vec![Step::Stall]),
    })
    .await;
    let (gaps, _) = run_until(
        &server,
        AsyncConnectorClient::builder(server.url()).max_server_delay(30 * SEC),
        2,
    )
    .await;
    assert_eq!(gaps, vec![30 * SEC]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_obeyed_as_a_minimum_and_capped() {
    let server = TestServer::spawn(|n, _| match n {
        0 => Reply::status(503).header("Retry-After", "7"),
        1 => Reply::status(429).header("Retry-After", "999999999"),
        _ => Reply::stream(vec![Step::Stall]),
    })
    .await;
    let (gaps, retries) = run_until(&server, AsyncConnectorClient::builder(server.url()), 3).await;
    assert_eq!(gaps, vec![7 * SEC, 600 * SEC]);
    assert_eq!(retries[0].2, FailureReason::Status(503));
    assert_eq!(retries[1].2, FailureReason::Status(429));
}

#[tokio::test(start_paused = true)]
async fn max_retries_gives_up_with_the_typed_reason() {
    let server = TestServer::spawn(|_, _| Reply::status(502)).await;
    let err = AsyncConnectorClient::builder(server.url())
        .max_retries(3)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match err {
        autoplay_sdk::Error::RetriesExhausted {
            attempts,
            last_failure,
            ..
        } => {
            assert_eq!(attempts, 4);
            assert_eq!(last_failure, FailureReason::Status(502));
        }
        other => panic!("{other:?}"),
    }
    let gaps = gaps(&server, 4).await;
    for (gap, floor) in gaps.iter().zip([1, 2, 4].map(|s| s * SEC)) {
        assert!(within(*gap, floor, floor * 3 / 2), "{gaps:?}");
    }
}
