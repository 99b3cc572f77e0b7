//! Stream behaviour over real HTTP: replay by `Last-Event-ID`, slow subscribers,
//! heartbeats.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn actions_body(session: &str, n: usize, pad: usize) -> serde_json::Value {
    json!({
        "session_id": session,
        "actions": (0..n).map(|i| json!({
            "event_type": "click",
            "title": format!("button {i}"),
            "description": "x".repeat(pad),
            "canonical_url": "https://app.example.com/x",
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_by_last_event_id_without_gap_or_duplicate() {
    let server = std::sync::Arc::new(Server::start(config()).await);
    const TOTAL: u64 = 300;
    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let response = server
                    .post_events("acme", &actions_body(&format!("s{i}"), 1, 10))
                    .await;
                assert_eq!(response.status(), 200);
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    // Read a few events, hang up, resume from the last id seen; repeat while the
    // publisher keeps going.
    let mut seen: Vec<u64> = Vec::new();
    // The publisher may be ahead of the first connection: start from id 0.
    let mut last = Some(0);
    let mut connections = 0;
    while seen.last().copied() != Some(TOTAL) {
        connections += 1;
        let mut sse = server.stream("acme", ACME_KEY, last).await;
        for _ in 0..(7 + connections % 5) {
            let Some(frame) = sse.next_event(WAIT).await else {
                break;
            };
            let id = frame.id.unwrap();
            let payload = frame.json();
            assert_eq!(payload["session_id"], format!("s{}", id - 1));
            seen.push(id);
            last = Some(id);
            if id == TOTAL {
                break;
            }
        }
    }
    publisher.await.unwrap();
    assert!(connections > 10);
    assert_eq!(
        seen,
        (1..=TOTAL).collect::<Vec<_>>(),
        "a gap or a duplicate"
    );
    assert_eq!(server.metric("autoplay_replay_gaps_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_buffer_gets_the_whole_buffer() {
    let mut config = config();
    config.replay_capacity = 5;
    let server = Server::start(config).await;
    for i in 0..10 {
        server
            .post_events("acme", &actions_body(&format!("s{i}"), 1, 1))
            .await;
    }
    let ids = |mut sse: SseReader| async move {
        let mut ids = Vec::new();
        while let Some(frame) = sse.next_event(Duration::from_millis(200)).await {
            ids.push(frame.id.unwrap());
        }
        ids
    };
    assert_eq!(
        ids(server.stream("acme", ACME_KEY, Some(7)).await).await,
        [8, 9, 10]
    );
    assert_eq!(server.metric("autoplay_replay_gaps_total").await, 0.0);
    assert_eq!(
        ids(server.stream("acme", ACME_KEY, Some(2)).await).await,
        [6, 7, 8, 9, 10]
    );
    assert_eq!(server.metric("autoplay_replay_gaps_total").await, 1.0);
    // Without Last-Event-ID: live events only.
    assert!(
        ids(server.stream("acme", ACME_KEY, None).await)
            .await
            .is_empty()
    );
    // Ids are per product.
    let beta = reqwest::Client::new()
        .post(server.url("/events/beta"))
        .bearer_auth(BETA_KEY)
        .json(&actions_body("b", 1, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(beta.status(), 200);
    assert_eq!(
        ids(server.stream("beta", BETA_KEY, Some(0)).await).await,
        [1]
    );
}

/// Reads an HTTP/1.1 chunked SSE response from a raw socket until its last chunk.
async fn read_to_end_of_body(socket: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) {
    let mut chunk = vec![0u8; 64 * 1024];
    while !buffer.ends_with(b"\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, socket.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the end of the body");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn frame_ids(raw: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(raw);
    text.match_indices("id: ")
        .map(|(i, _)| {
            let digits: String = text[i + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_disconnected_then_resumes() {
    let mut config = config();
    config.subscriber_buffer = 8;
    let server = Server::start(config).await;

    // A subscriber that stops reading: a tiny receive window and no reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut slow = socket.connect(server.addr).await.unwrap();
    slow.write_all(
        format!(
            "GET /stream/acme HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ACME_KEY}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = slow.read(&mut buf).await.unwrap();
        raw.extend_from_slice(&buf[..n]);
    }
    assert!(raw.starts_with(b"HTTP/1.1 200"));

    // A fast subscriber alongside it must not be affected.
    let mut fast = server.stream("acme", ACME_KEY, None).await;
    let mut fast_ids = Vec::new();

    let mut published = 0u64;
    while server
        .metric("autoplay_slow_subscriber_disconnects_total")
        .await
        == 0.0
    {
        assert!(
            published < 3000,
            "the slow subscriber was never disconnected"
        );
        let response = server
            .post_events("acme", &actions_body("big", 4, 4096))
            .await;
        assert_eq!(response.status(), 200);
        published += 1;
        fast_ids.push(fast.next_event(WAIT).await.unwrap().id.unwrap());
    }
    // A few more after the disconnect, which the slow one must get on resume.
    for _ in 0..5 {
        server
            .post_events("acme", &actions_body("big", 1, 10))
            .await;
        published += 1;
        fast_ids.push(fast.next_event(WAIT).await.unwrap().id.unwrap());
    }
    assert_eq!(fast_ids, (1..=published).collect::<Vec<_>>());
    assert_eq!(
        server
            .metric("autoplay_slow_subscriber_disconnects_total")
            .await,
        1.0
    );

    // The slow one now drains what was queued for it; its stream then ends.
    read_to_end_of_body(&mut slow, &mut raw).await;
    let got = frame_ids(&raw);
    let last = *got.last().expect("some events before the disconnect");
    assert_eq!(
        got,
        (1..=last).collect::<Vec<_>>(),
        "skipped ahead instead of disconnecting"
    );
    assert!(last < published);

    // Resuming by id fills in the rest exactly.
    let mut resumed = server.stream("acme", ACME_KEY, Some(last)).await;
    let mut rest = Vec::new();
    while rest.last().copied() != Some(published) {
        rest.push(
            resumed
                .next_event(WAIT)
                .await
                .expect("missing events after resume")
                .id
                .unwrap(),
        );
    }
    assert_eq!(rest, (last + 1..=published).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_at_the_configured_interval() {
    let mut config = config();
    config.heartbeat_interval = Duration::from_millis(50);
    let server = Server::start(config).await;
    // The clock starts before the request goes out: the server's ticker starts
    // after it arrives, so no heartbeat can come sooner than its interval after
    // this instant, however late the response headers reach us on a loaded machine.
    let start = Instant::now();
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let mut at = Vec::new();
    for _ in 0..5 {
        let frame = sse.next_frame(WAIT).await.unwrap();
        assert_eq!(
            frame,
            Frame {
                id: None,
                event: "heartbeat".into(),
                data: String::new()
            }
        );
        at.push(start.elapsed());
    }
    assert!(
        at[0] >= Duration::from_millis(45),
        "first heartbeat too early: {at:?}"
    );
    assert!(
        at[4] >= Duration::from_millis(245),
        "heartbeats too frequent: {at:?}"
    );
    assert!(
        at[4] < Duration::from_millis(5000),
        "heartbeats too rare: {at:?}"
    );

    // Events flow between heartbeats, and heartbeats go on.
    server.post_events("acme", &actions_body("s", 1, 1)).await;
    let mut kinds = Vec::new();
    while kinds.iter().filter(|k: &&String| *k == "heartbeat").count() < 2 {
        kinds.push(sse.next_frame(WAIT).await.unwrap().event);
    }
    assert!(kinds.contains(&"actions".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_exactly_the_documented_bytes() {
    let mut config = config();
    config.heartbeat_interval = Duration::from_millis(20);
    let server = Server::start(config).await;
    let response = reqwest::Client::new()
        .get(server.url("/stream/acme"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    let mut body = Box::pin(response.bytes_stream());
    let chunk = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut body))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&chunk[..], b"event: heartbeat\ndata:\n\n");
}

/// Issue 13: "One authenticated 5 MiB webhook of tiny events became one 44.5 MB
/// SSE frame". Now no frame exceeds `max_frame_bytes` (1 MiB by default): the
/// batch goes out as several payloads of its session, its actions in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mib_webhook_goes_out_in_frames_under_1_mib() {
    let server = Server::start(config()).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let mut events = Vec::new();
    let mut size = 0;
    while size < 5 * 1024 * 1024 - 4096 {
        let event = json!({"event": "$autocapture", "distinct_id": "u",
            "timestamp": autoplay_connector::extract::format_rfc3339(1_705_314_600.0 + events.len() as f64 / 1000.0),
            "properties": {"$session_id": "s", "$event_type": "click",
                "$el_text": format!("B{}", events.len()), "$current_url": "/x"}})
        .to_string();
        size += event.len() + 1;
        events.push(event);
    }
    let body = format!("{{\"batch\":[{}]}}", events.join(","));
    assert!(body.len() <= 5 * 1024 * 1024);
    let response = server.post_webhook("acme", body).await;
    assert_eq!(response.status(), 200);

    let mut titles = Vec::new();
    let mut frames = 0;
    while titles.len() < events.len() {
        let frame = sse.next_event(WAIT).await.expect("missing actions");
        let raw_len = format!(
            "id: {}\nevent: actions\ndata: {}\n\n",
            frame.id.unwrap(),
            frame.data
        )
        .len();
        assert!(raw_len <= 1024 * 1024, "a frame of {raw_len} bytes");
        let payload = frame.json();
        assert_eq!(payload["session_id"], "s");
        for action in payload["actions"].as_array().unwrap() {
            assert_eq!(action["index"], titles.len());
            titles.push(action["title"].as_str().unwrap().to_owned());
        }
        frames += 1;
    }
    let expected: Vec<String> = (0..events.len()).map(|i| format!("B{i}")).collect();
    assert_eq!(titles, expected);
    assert!(frames > 5, "{frames} frames");
    assert_eq!(server.metric("autoplay_split_payloads_total").await, 1.0);
    eprintln!(
        "{} events in a {} byte webhook: {frames} frames, none over 1 MiB",
        events.len(),
        size
    );
}

/// Issue 13: "The replay window is bounded by count only". Now it holds at most
/// `replay_bytes` of frames as well: a resume from before it gets the newest that
/// fit, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_window_is_bounded_by_bytes() {
    let mut config = config();
    config.max_frame_bytes = 16 * 1024;
    config.replay_bytes = 64 * 1024;
    let server = Server::start(config).await;
    for _ in 0..40 {
        let response = server
            .post_events("acme", &actions_body("s", 1, 3000))
            .await;
        assert_eq!(response.status(), 200);
    }
    let mut replay = server.stream("acme", ACME_KEY, Some(0)).await;
    let mut ids = Vec::new();
    let mut bytes = 0;
    while let Some(frame) = replay.next_event(Duration::from_millis(300)).await {
        let id = frame.id.unwrap();
        bytes += format!("id: {id}\nevent: actions\ndata: {}\n\n", frame.data).len();
        ids.push(id);
    }
    let first = ids[0];
    assert!(first > 1, "the whole stream was kept: {ids:?}");
    assert_eq!(ids, (first..=40).collect::<Vec<u64>>());
    assert!(bytes <= 64 * 1024, "{bytes} bytes replayed");
    // One more frame would not have fitted.
    assert!(bytes + 3000 > 64 * 1024, "{bytes} bytes replayed");
    assert_eq!(server.metric("autoplay_replay_gaps_total").await, 1.0);
}
