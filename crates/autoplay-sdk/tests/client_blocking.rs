//! The blocking client against scripted HTTP servers on 127.0.0.1.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::{
    ConnectorClient, ConnectorClientBuilder, DisconnectReason, Error, Event, FailureReason,
    OverflowPolicy,
};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A builder with millisecond delays so failures are retried quickly.
fn fast(url: &str) -> ConnectorClientBuilder {
    ConnectorClient::builder(url)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
        .read_timeout(Duration::from_secs(5))
}

/// Collects what the callbacks saw as "actions:<session>:<title>" / "summary:<session>".
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn wire(&self, builder: ConnectorClientBuilder) -> ConnectorClientBuilder {
        let (a, s) = (self.clone(), self.clone());
        builder
            .on_actions(move |p| {
                let title = p
                    .actions
                    .first()
                    .map(|a| a.title.clone())
                    .unwrap_or_default();
                a.push(format!(
                    "actions:{}:{}",
                    p.session_id.unwrap_or_default(),
                    title
                ));
            })
            .on_summary(move |p| s.push(format!("summary:{}", p.session_id.unwrap_or_default())))
    }
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn fixture_stream_gives_three_payloads_and_skips_the_rest() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            Reply::stream(vec![
                write(include_str!("fixtures/wire/stream-mixed.sse")),
                Step::Stall,
            ])
        } else {
            Reply::stream(vec![Step::Stall])
        }
    });
    let seen = Seen::default();
    let client = seen.wire(fast(&server.url())).build().unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "3 payloads", || seen.len() >= 3);
    std::thread::sleep(Duration::from_millis(30));
    bg.stop();
    bg.join().unwrap();
    assert_eq!(
        seen.get(),
        vec!["actions:ps_1:Home", "summary:ps_1", "actions:ps_2:Sign up"]
    );
    assert_eq!(client.dropped_count(), 0, "skipped events are not drops");
}

#[test]
fn sends_the_stream_request_headers() {
    let server = TestServer::always(Reply::stream(vec![Step::Stall]));
    let client = fast(&server.url())
        .token("uk_test_123")
        .header("X-Tenant", "blue")
        .last_event_id("41")
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    let request = server.wait_for_requests(1, WAIT).remove(0);
    drop(bg);
    assert_eq!(request.path, "/stream/acme");
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
    assert_eq!(request.header("authorization"), Some("Bearer uk_test_123"));
    assert_eq!(request.header("x-tenant"), Some("blue"));
    assert_eq!(request.header("last-event-id"), Some("41"));
}

#[test]
fn reconnects_with_the_latest_event_id() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![
            write(actions_frame(1, "s", "a")),
            write(actions_frame(2, "s", "b")),
            write(HEARTBEAT),
            write(": a comment\n\n"),
        ]),
        1 => Reply::stream(vec![write(actions_frame(3, "s", "c"))]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let seen = Seen::default();
    let bg = seen.wire(fast(&server.url())).run_in_background().unwrap();
    let requests = server.wait_for_requests(3, WAIT);
    wait_until(WAIT, "3 payloads", || seen.len() >= 3);
    drop(bg);
    assert_eq!(requests[0].header("last-event-id"), None);
    assert_eq!(requests[1].header("last-event-id"), Some("2"));
    assert_eq!(requests[2].header("last-event-id"), Some("3"));
    assert_eq!(
        seen.get(),
        vec!["actions:s:a", "actions:s:b", "actions:s:c"]
    );
}

#[test]
fn fatal_statuses_end_run_at_once_with_a_typed_error() {
    for status in [401u16, 403, 404, 204] {
        let server = TestServer::always(Reply::status(status));
        let started = Instant::now();
        let err = fast(&server.url()).run().unwrap_err();
        match &err {
            Error::FatalStatus { status: s, url, .. } => {
                assert_eq!(*s, status);
                assert_eq!(url, &server.url());
            }
            other => panic!("expected a fatal status, got {other:?}"),
        }
        assert_eq!(err.status_code(), Some(status));
        assert!(err.to_string().contains(&status.to_string()));
        assert!(err.to_string().contains(&server.url()));
        assert_eq!(server.request_count(), 1, "{status} must not be retried");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn backoff_doubles_up_to_the_cap_and_max_retries_ends_run() {
    let server = TestServer::always(Reply::status(500));
    let err = ConnectorClient::builder(server.url())
        .initial_backoff(Duration::from_millis(40))
        .max_backoff(Duration::from_millis(160))
        .max_retries(5)
        .run()
        .unwrap_err();
    match err {
        Error::RetriesExhausted {
            attempts,
            last_failure,
            ..
        } => {
            assert_eq!(attempts, 6);
            assert_eq!(last_failure, FailureReason::Status(500));
            assert!(last_failure.to_string().contains("500"), "{last_failure}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    let at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 6, "first attempt plus 5 retries");
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Never below the backoff (the jitter only adds); the exact waits are checked
    // with paused time in tests/retry_timing.rs.
    for (gap, floor_ms) in gaps.iter().zip([40u64, 80, 160, 160, 160]) {
        let floor = Duration::from_millis(floor_ms);
        assert!(*gap >= floor, "gap {gap:?} below {floor:?}: {gaps:?}");
    }
}

#[test]
fn backoff_resets_after_a_connection_that_stayed_up_long_enough() {
    let server = TestServer::start(|n, _| match n {
        0..=2 => Reply::status(503),
        3 => Reply::stream(vec![write(actions_frame(1, "s", "a")), sleep_ms(150)]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let bg = ConnectorClient::builder(server.url())
        .initial_backoff(Duration::from_millis(50))
        .max_backoff(Duration::from_secs(5))
        .backoff_reset_after(Duration::from_millis(100))
        .run_in_background()
        .unwrap();
    let at: Vec<Instant> = server
        .wait_for_requests(5, WAIT)
        .iter()
        .map(|r| r.at)
        .collect();
    drop(bg);
    // After three failures the delay is at least 200 ms; after a stream that stayed
    // up for 150 ms (> 100 ms) it is 50–75 ms again, 150 ms of it the stream itself.
    let gap_before = at[3] - at[2];
    let gap_after = at[4] - at[3];
    assert!(gap_before >= Duration::from_millis(200), "{gap_before:?}");
    assert!(
        gap_after <= Duration::from_millis(150 + 75 + 100),
        "{gap_after:?}"
    );
}

#[test]
fn server_retry_field_sets_the_reconnect_delay() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write("retry: 300\n\n")]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let bg = fast(&server.url()).run_in_background().unwrap();
    let at: Vec<Instant> = server
        .wait_for_requests(2, WAIT)
        .iter()
        .map(|r| r.at)
        .collect();
    drop(bg);
    assert!(
        at[1] - at[0] >= Duration::from_millis(300),
        "{:?}",
        at[1] - at[0]
    );
}

#[test]
fn retry_after_is_honoured_on_429_and_503() {
    for status in [429u16, 503] {
        let server = TestServer::start(move |n, _| match n {
            0 => Reply::status(status).header("Retry-After", "1"),
            _ => Reply::stream(vec![Step::Stall]),
        });
        let bg = fast(&server.url()).run_in_background().unwrap();
        let at: Vec<Instant> = server
            .wait_for_requests(2, WAIT)
            .iter()
            .map(|r| r.at)
            .collect();
        drop(bg);
        let gap = at[1] - at[0];
        assert!(
            gap >= Duration::from_millis(950),
            "{status}: reconnected after {gap:?}"
        );
    }
}

#[test]
fn wrong_content_type_and_server_errors_are_retried() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::status(200).header("Content-Type", "application/json"),
        1 => Reply::status(502),
        2 => Reply::stream(vec![write(actions_frame(1, "s", "ok")), Step::Stall]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let seen = Seen::default();
    let bg = seen.wire(fast(&server.url())).run_in_background().unwrap();
    wait_until(WAIT, "a payload", || seen.len() == 1);
    drop(bg);
    assert_eq!(server.request_count(), 3);
}

#[test]
fn a_stalled_connection_is_replaced_after_the_read_timeout() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write(actions_frame(1, "s", "a")), Step::Stall]),
        _ => Reply::stream(vec![write(actions_frame(2, "s", "b")), Step::Stall]),
    });
    let seen = Seen::default();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = reasons.clone();
    let bg = seen
        .wire(fast(&server.url()).read_timeout(Duration::from_millis(150)))
        .on_disconnect(move |why| r.lock().unwrap().push(why.clone()))
        .run_in_background()
        .unwrap();
    let at: Vec<Instant> = server
        .wait_for_requests(2, WAIT)
        .iter()
        .map(|r| r.at)
        .collect();
    wait_until(WAIT, "2 payloads", || seen.len() == 2);
    drop(bg);
    assert!(at[1] - at[0] >= Duration::from_millis(150));
    assert_eq!(
        reasons.lock().unwrap()[0],
        DisconnectReason::Stalled(Duration::from_millis(150))
    );
}

#[test]
fn heartbeats_keep_the_connection_alive_and_never_reach_callbacks() {
    let mut body = vec![write(actions_frame(1, "s", "a"))];
    for _ in 0..8 {
        body.push(sleep_ms(40));
        body.push(write(HEARTBEAT));
        body.push(sleep_ms(40));
        body.push(write(": keep-alive comment\n"));
    }
    body.push(Step::Stall);
    let server = TestServer::start(move |n, _| {
        if n == 0 {
            Reply::stream(body.clone())
        } else {
            Reply::stream(vec![Step::Stall])
        }
    });
    let seen = Seen::default();
    let bg = seen
        .wire(fast(&server.url()).read_timeout(Duration::from_millis(150)))
        .run_in_background()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        server.request_count(),
        1,
        "heartbeats and comments every 40 ms keep a 150 ms read timeout satisfied"
    );
    drop(bg);
    assert_eq!(seen.get(), vec!["actions:s:a"]);
}

#[test]
fn an_oversized_event_is_skipped_and_the_stream_goes_on() {
    let huge = format!("id: 9\nevent: actions\ndata: {}\n\n", "x".repeat(5000));
    let server = TestServer::start(move |n, _| match n {
        0 => Reply::stream(vec![
            write(actions_frame(1, "s", "before")),
            write(&huge),
            write(actions_frame(2, "s", "after")),
            Step::Stall,
        ]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let seen = Seen::default();
    let client = seen
        .wire(fast(&server.url()).max_event_size(1024))
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "2 payloads", || seen.len() == 2);
    assert_eq!(seen.get(), vec!["actions:s:before", "actions:s:after"]);
    assert_eq!(client.oversized_count(), 1);
    assert_eq!(bg.oversized_count(), 1);
    drop(bg);
    assert_eq!(server.request_count(), 1, "no reconnection");
}

#[test]
fn events_split_across_many_small_writes_arrive_whole() {
    let frames = format!(
        "{}{}",
        actions_frame(1, "s1", "a"),
        summary_frame(2, "s1", "done")
    );
    let body: Vec<Step> = frames
        .as_bytes()
        .chunks(7)
        .flat_map(|c| [Step::Write(c.to_vec()), sleep_ms(1)])
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |n, _| {
        if n == 0 {
            Reply::stream(body.clone())
        } else {
            Reply::stream(vec![Step::Stall])
        }
    });
    let seen = Seen::default();
    let bg = seen.wire(fast(&server.url())).run_in_background().unwrap();
    wait_until(WAIT, "2 payloads", || seen.len() == 2);
    drop(bg);
    assert_eq!(seen.get(), vec!["actions:s1:a", "summary:s1"]);
}

/// Ten events against a queue of 2 behind a callback that blocks on the first one.
fn overflow_run(policy: OverflowPolicy) -> (Vec<String>, u64, Vec<(String, u64)>) {
    // A pause after the first event lets the worker take it (and block) before the
    // other nine arrive, so the queue holds exactly what the policy keeps.
    let body: Vec<Step> = [write(actions_frame(1, "s", "1")), sleep_ms(100)]
        .into_iter()
        .chain((2..=10).map(|i| write(actions_frame(i, "s", &i.to_string()))))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |n, _| {
        if n == 0 {
            Reply::stream(body.clone())
        } else {
            Reply::stream(vec![Step::Stall])
        }
    });
    let seen = Seen::default();
    // A channel rather than a barrier: if the test fails, the callback still returns
    // and dropping the client cannot hang.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let drops = Arc::new(Mutex::new(Vec::new()));
    let (d, s) = (drops.clone(), seen.clone());
    let first = Arc::new(AtomicUsize::new(0));
    let client = fast(&server.url())
        .max_queue_size(2)
        .overflow_policy(policy)
        .on_actions(move |p| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = gate.lock().unwrap().recv_timeout(WAIT);
            }
            s.push(p.actions[0].title.to_string());
        })
        .on_drop(move |event, total| {
            let Event::Actions(p) = event else {
                panic!("only actions were sent")
            };
            d.lock()
                .unwrap()
                .push((p.actions[0].title.to_string(), total));
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    if policy == OverflowPolicy::Block {
        wait_until(WAIT, "a full queue", || client.queue_size() == 2);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(client.queue_size(), 2, "blocked reader adds nothing");
    } else {
        wait_until(WAIT, "7 drops", || client.dropped_count() == 7);
    }
    release.send(()).unwrap();
    wait_until(WAIT, "the rest", || {
        seen.len()
            == if policy == OverflowPolicy::Block {
                10
            } else {
                3
            }
    });
    drop(bg);
    let dropped = client.dropped_count();
    let drops = drops.lock().unwrap().clone();
    (seen.get(), dropped, drops)
}

#[test]
fn drop_newest_keeps_the_first_events_and_reports_each_drop() {
    let (seen, dropped, drops) = overflow_run(OverflowPolicy::DropNewest);
    assert_eq!(seen, vec!["1", "2", "3"]);
    assert_eq!(dropped, 7);
    let expected: Vec<(String, u64)> = (4..=10).map(|i| (i.to_string(), i - 3)).collect();
    assert_eq!(drops, expected);
}

#[test]
fn drop_oldest_keeps_the_freshest_events() {
    let (seen, dropped, drops) = overflow_run(OverflowPolicy::DropOldest);
    assert_eq!(seen, vec!["1", "9", "10"]);
    assert_eq!(dropped, 7);
    let titles: Vec<String> = drops.into_iter().map(|(t, _)| t).collect();
    assert_eq!(titles, vec!["2", "3", "4", "5", "6", "7", "8"]);
}

#[test]
fn block_policy_loses_nothing() {
    let (seen, dropped, drops) = overflow_run(OverflowPolicy::Block);
    let expected: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    assert_eq!(dropped, 0);
    assert!(drops.is_empty());
}

/// A callback that stalls for a moment (a descheduled thread, a GC pause) within
/// the overflow grace loses nothing under a drop policy; without a grace the same
/// stall drops events.
#[test]
fn a_short_callback_stall_within_the_grace_loses_nothing() {
    let frames: String = (1..=40u64)
        .map(|i| actions_frame(i, "s", &i.to_string()))
        .collect();
    let body = vec![write(frames), Step::Stall];
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let run = |grace: Duration| {
        let seen = Seen::default();
        let first = AtomicUsize::new(0);
        let s = seen.clone();
        let client = fast(&server.url())
            .max_queue_size(4)
            .overflow_grace(grace)
            .on_actions(move |p| {
                if first.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                s.push(p.actions[0].title.to_string());
            })
            .build()
            .unwrap();
        let bg = client.run_in_background().unwrap();
        wait_until(WAIT, "every event seen or dropped", || {
            seen.len() as u64 + client.dropped_count() == 40
        });
        drop(bg);
        (seen.get(), client.dropped_count())
    };
    let (seen, dropped) = run(Duration::from_secs(5));
    assert_eq!(dropped, 0);
    assert_eq!(seen, (1..=40).map(|i| i.to_string()).collect::<Vec<_>>());
    let (_, dropped) = run(Duration::ZERO);
    assert!(dropped > 0, "without a grace the stall drops events");
}

/// When the callback falls behind, the reader decodes part of the backlog itself
/// (see `dispatch`): order, skips and summaries must come out exactly as when the
/// consumer decodes everything.
#[test]
fn a_backlog_decoded_by_both_threads_keeps_order_and_skips() {
    let mut frames = Vec::new();
    for i in 1..=400u64 {
        frames.push(actions_frame(i, "s", &i.to_string()));
        match i {
            150 => frames.push("data: {not json\n\n".to_owned()),
            250 => frames.push("data: {\"type\":\"unknown\"}\n\n".to_owned()),
            300 => frames.push(summary_frame(1000, "s", "halfway")),
            _ => {}
        }
    }
    let body = vec![write(frames.concat()), Step::Stall];
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let seen = Seen::default();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate_rx));
    let (a, s) = (seen.clone(), seen.clone());
    let client = fast(&server.url())
        .overflow_policy(OverflowPolicy::Block)
        .on_actions(move |p| {
            // Hold the first callback until the whole stream is queued behind it.
            if let Some(gate) = gate.lock().unwrap().take() {
                let _ = gate.recv_timeout(WAIT);
            }
            a.push(format!("actions:{}", p.actions[0].title));
        })
        .on_summary(move |p| s.push(format!("summary:{}", p.summary)))
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "the backlog", || client.queue_size() >= 399);
    gate_tx.send(()).unwrap();
    wait_until(WAIT, "every payload", || seen.len() == 401);
    drop(bg);
    let mut expected: Vec<String> = (1..=400).map(|i| format!("actions:{i}")).collect();
    expected.insert(300, "summary:halfway".to_owned());
    assert_eq!(seen.get(), expected);
    assert_eq!(client.dropped_count(), 0);
}

#[test]
fn workers_run_in_parallel_and_keep_each_session_in_order() {
    let sessions = 6;
    let per_session = 30u64;
    let mut frames = String::new();
    let mut id = 0;
    for i in 0..per_session {
        for s in 0..sessions {
            id += 1;
            frames.push_str(&actions_frame(id, &format!("s{s}"), &i.to_string()));
        }
    }
    let server = TestServer::start(move |n, _| {
        if n == 0 {
            Reply::stream(vec![write(&frames), Step::Stall])
        } else {
            Reply::stream(vec![Step::Stall])
        }
    });
    let seen = Seen::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (s, f, m) = (seen.clone(), in_flight.clone(), max_in_flight.clone());
    let bg = fast(&server.url())
        .workers(4)
        .overflow_policy(OverflowPolicy::Block)
        .on_actions(move |p| {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            s.push(format!("{}:{}", p.session_id.unwrap(), p.actions[0].title));
            f.fetch_sub(1, Ordering::SeqCst);
        })
        .run_in_background()
        .unwrap();
    wait_until(WAIT, "all events", || {
        seen.len() == sessions * per_session as usize
    });
    drop(bg);
    assert!(
        max_in_flight.load(Ordering::SeqCst) >= 2,
        "workers never overlapped"
    );
    let seen = seen.get();
    for s in 0..sessions {
        let order: Vec<u64> = seen
            .iter()
            .filter_map(|e| e.strip_prefix(&format!("s{s}:")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..per_session).collect::<Vec<_>>(),
            "session s{s} out of order"
        );
    }
}

#[test]
fn stop_from_inside_a_callback_ends_run() {
    let body: Vec<Step> = (1..=5)
        .map(|i| write(actions_frame(i, "s", "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let builder = fast(&server.url());
    let stop = builder.stop_handle();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let started = Instant::now();
    builder
        .on_actions(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                stop.stop();
            }
        })
        .run()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(count.load(Ordering::SeqCst) >= 3);
}

#[test]
fn a_panicking_callback_is_contained() {
    let body: Vec<Step> = (1..=3)
        .map(|i| write(actions_frame(i, "s", &i.to_string())))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let seen = Seen::default();
    let s = seen.clone();
    let bg = fast(&server.url())
        .on_actions(move |p| {
            if p.actions[0].title == "1" {
                panic!("user bug");
            }
            s.push(p.actions[0].title.to_string());
        })
        .run_in_background()
        .unwrap();
    wait_until(WAIT, "events after the panic", || seen.len() == 2);
    assert!(!bg.is_finished());
    drop(bg);
    assert_eq!(seen.get(), vec!["2", "3"]);
}

#[test]
fn stop_drains_the_queue_within_the_drain_timeout() {
    let body: Vec<Step> = (1..=20)
        .map(|i| write(actions_frame(i, "s", "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    // Everything queued is handled when the drain timeout allows it...
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let client = fast(&server.url())
        .overflow_policy(OverflowPolicy::Block)
        .max_queue_size(50)
        .on_actions(move |_| {
            std::thread::sleep(Duration::from_millis(5));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "a filled queue", || {
        client.queue_size() + handled.load(Ordering::SeqCst) >= 20
    });
    bg.stop();
    bg.join().unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 20);

    // ...and a short drain timeout bounds how long stopping takes.
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let client = fast(&server.url())
        .overflow_policy(OverflowPolicy::Block)
        .max_queue_size(50)
        .drain_timeout(Duration::from_millis(100))
        .on_actions(move |_| {
            std::thread::sleep(Duration::from_millis(100));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "a filled queue", || client.queue_size() >= 15);
    let stopping = Instant::now();
    bg.stop();
    bg.join().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_millis(600),
        "{:?}",
        stopping.elapsed()
    );
    assert!(handled.load(Ordering::SeqCst) < 20);
}

/// Twenty queued events, a 50 ms callback, then `stop_now`: returns after the
/// callback in flight, not after the queue.
fn stop_now_run(workers: usize) {
    let body: Vec<Step> = (1..=30)
        .map(|i| write(actions_frame(i, &format!("s{}", i % 6), "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let (started, handled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (st, h) = (started.clone(), handled.clone());
    let client = fast(&server.url())
        .overflow_policy(OverflowPolicy::Block)
        .max_queue_size(50)
        .workers(workers)
        .on_actions(move |_| {
            st.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "every event read and a callback running", || {
        started.load(Ordering::SeqCst) >= 1 && server.request_count() == 1
    });
    std::thread::sleep(Duration::from_millis(20));
    let started_before = started.load(Ordering::SeqCst);
    let stopping = Instant::now();
    bg.stop_now();
    bg.join().unwrap();
    let took = stopping.elapsed();
    // Draining thirty 100 ms callbacks would take 1 s or more even on three workers.
    assert!(took < Duration::from_millis(400), "{took:?}");
    let (started, handled) = (
        started.load(Ordering::SeqCst),
        handled.load(Ordering::SeqCst),
    );
    assert_eq!(started, handled, "a callback in flight was not waited for");
    // At most one more per worker: one that was being handed out as stop_now came.
    assert!(
        handled <= started_before + workers,
        "{handled} handled, {started_before} had started before stop_now"
    );
    assert!(handled < 30);
}

#[test]
fn stop_now_discards_the_queue_and_waits_only_for_the_callback_in_flight() {
    stop_now_run(1);
}

#[test]
fn stop_now_with_workers_discards_the_worker_lanes_too() {
    stop_now_run(3);
}

#[test]
fn stop_now_cuts_a_drain_in_progress_short() {
    let body: Vec<Step> = (1..=40)
        .map(|i| write(actions_frame(i, "s", "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let client = fast(&server.url())
        .overflow_policy(OverflowPolicy::Block)
        .on_actions(move |_| {
            std::thread::sleep(Duration::from_millis(25));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "a filled queue", || {
        client.queue_size() + handled.load(Ordering::SeqCst) >= 40
    });
    bg.stop();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!bg.is_finished(), "the drain should still be going");
    let stopping = Instant::now();
    bg.stop_now();
    bg.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_millis(300));
    assert!(handled.load(Ordering::SeqCst) < 30);
}

/// With workers, events wait in the main queue, where the overflow policy applies,
/// not in the lanes: a lane holds a few events and at most its share of the bytes.
#[test]
fn worker_lanes_are_bounded_by_bytes_too() {
    const SENT: u64 = 100;
    let title = "t".repeat(8000);
    let body: Vec<Step> = (1..=SENT)
        .map(|i| write(actions_frame(i, &format!("s{}", i % 4), &title)))
        .chain([Step::Stall])
        .collect();
    // One stream only: a replay after a reconnect would count twice.
    let server = TestServer::start(move |n, _| match n {
        0 => Reply::stream(body.clone()),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handled = Arc::new(AtomicUsize::new(0));
    let (r, h) = (released.clone(), handled.clone());
    let client = fast(&server.url())
        .read_timeout(Duration::from_secs(60))
        .workers(2)
        .max_queue_bytes(64 * 1024)
        .overflow_policy(OverflowPolicy::DropNewest)
        .overflow_grace(Duration::ZERO)
        .on_actions(move |_| {
            // Whichever callback gets the one release lets the others through.
            let gate = gate.lock().unwrap();
            if !r.load(Ordering::SeqCst) {
                let _ = gate.recv_timeout(WAIT);
                r.store(true, Ordering::SeqCst);
            }
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    // Seven 8 KiB events fill the 64 KiB queue; lanes of 16 events would keep 32
    // more, so fewer than 70 would be dropped.
    wait_until(WAIT, "the stream read, all but a few dropped", || {
        client.dropped_count() >= SENT - 20
    });
    release.send(()).unwrap();
    wait_until(WAIT, "every kept event handled", || {
        handled.load(Ordering::SeqCst) as u64 + client.dropped_count() == SENT
    });
    let kept = handled.load(Ordering::SeqCst);
    assert!(kept <= 20, "{kept} events were held");
    drop(bg);
}

#[test]
fn dropping_the_handle_inside_a_worker_callback_does_not_deadlock() {
    let body: Vec<Step> = (1..=10)
        .map(|i| write(actions_frame(i, &format!("s{i}"), "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let slot: Arc<Mutex<Option<autoplay_sdk::BackgroundClient>>> = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (sl, d) = (slot.clone(), dropped.clone());
    let client = fast(&server.url())
        .workers(3)
        .on_actions(move |_| {
            let bg = sl.lock().unwrap().take();
            if let Some(bg) = bg {
                drop(bg);
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    *slot.lock().unwrap() = Some(client.run_in_background().unwrap());
    wait_until(WAIT, "the drop inside the callback to return", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    // The run itself ends too: a second run is refused only while the first lasts.
    wait_until(WAIT, "the first run to end", || {
        !matches!(client.run(), Err(Error::AlreadyRunning))
    });
}

#[test]
fn connect_and_disconnect_hooks_fire() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write(actions_frame(1, "s", "a"))]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    let (c, d) = (log.clone(), log.clone());
    let bg = fast(&server.url())
        .on_connect(move |url| c.lock().unwrap().push(format!("connect {url}")))
        .on_disconnect(move |why| d.lock().unwrap().push(format!("disconnect {why:?}")))
        .run_in_background()
        .unwrap();
    wait_until(WAIT, "a reconnect", || log.lock().unwrap().len() >= 3);
    drop(bg);
    let log = log.lock().unwrap().clone();
    let url = server.url();
    assert_eq!(log[0], format!("connect {url}"));
    assert_eq!(log[1], "disconnect EndOfStream");
    assert_eq!(log[2], format!("connect {url}"));
    assert_eq!(log.last().unwrap(), "disconnect Stopped");
}

#[test]
fn the_retry_hook_reports_attempt_delay_and_reason() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::status(500),
        1 => Reply::status(502),
        2 => Reply::stream(vec![write(actions_frame(1, "s", "a"))]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let retries = Arc::new(Mutex::new(Vec::new()));
    let r = retries.clone();
    let bg = fast(&server.url())
        .on_retry(move |attempt, delay, why| {
            r.lock().unwrap().push((attempt, delay, why.clone()));
        })
        .run_in_background()
        .unwrap();
    wait_until(WAIT, "three retries", || retries.lock().unwrap().len() >= 3);
    drop(bg);
    let retries = retries.lock().unwrap().clone();
    let attempts: Vec<u32> = retries.iter().map(|r| r.0).collect();
    assert_eq!(attempts[..3], [1, 2, 0]);
    assert_eq!(retries[0].2, FailureReason::Status(500));
    assert_eq!(retries[1].2, FailureReason::Status(502));
    assert_eq!(
        retries[2].2,
        FailureReason::Disconnected(DisconnectReason::EndOfStream)
    );
    // `fast` caps the backoff at 20 ms.
    assert!(retries.iter().all(|r| r.1 <= Duration::from_millis(20)));
}

#[test]
fn bad_configuration_fails_at_build_with_a_clear_message() {
    let cases: Vec<(ConnectorClientBuilder, &str)> = vec![
        (
            ConnectorClient::builder("http://h/stream/p").max_queue_size(0),
            "max_queue_size",
        ),
        (ConnectorClient::builder("ftp://h/stream/p"), "http"),
        (ConnectorClient::builder("not a url"), "not a valid URL"),
        (
            ConnectorClient::builder("http://h/stream/p")
                .initial_backoff(Duration::from_secs(5))
                .max_backoff(Duration::from_secs(1)),
            "max_backoff",
        ),
        (
            ConnectorClient::builder("http://h/stream/p").workers(0),
            "workers",
        ),
        (
            ConnectorClient::builder("http://h/stream/p").header("bad header", "v"),
            "header",
        ),
    ];
    for (builder, needle) in cases {
        match builder.build() {
            Err(Error::InvalidConfig(msg)) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            Err(other) => panic!("expected InvalidConfig({needle}), got {other:?}"),
            Ok(_) => panic!("expected InvalidConfig({needle})"),
        }
    }
}

#[test]
fn a_client_cannot_run_twice_at_once() {
    let server = TestServer::always(Reply::stream(vec![Step::Stall]));
    let client = fast(&server.url()).build().unwrap();
    let bg = client.run_in_background().unwrap();
    server.wait_for_requests(1, WAIT);
    assert!(matches!(client.run(), Err(Error::AlreadyRunning)));
    drop(bg);
}
