//! `store = "redis://…"` end to end: connectors on 127.0.0.1 on a real
//! `redis-server` of their own (started on a free port, stopped by PID).
#![cfg(target_os = "linux")]

mod common;
mod store_redis_server;

use std::sync::Arc;
use std::time::Duration;

use autoplay_connector::StoreConfig;
use bytes::BytesMut;
use common::{ACME_KEY, Server, config};
use futures_util::StreamExt;
use serde_json::json;
use store_redis_server::{RedisServer, ReplyDropper};

fn actions_body(session: &str, n: usize) -> serde_json::Value {
    json!({
        "session_id": session,
        "actions": (0..n).map(|i| json!({
            "event_type": "click",
            "title": format!("button {i}"),
            "canonical_url": "https://app.example.com/x",
        })).collect::<Vec<_>>(),
    })
}

async fn replica(redis: &RedisServer) -> Server {
    let mut config = config();
    config.store = StoreConfig::Redis(redis.url());
    Server::start(config).await
}

/// A stream of `acme` with string ids (the shared reader parses integers).
struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: BytesMut,
    /// The connector ended the stream.
    ended: bool,
    /// Heartbeats read so far.
    heartbeats: usize,
}

/// (id, event, data) of one frame.
type Frame = (String, String, String);

impl Sse {
    async fn open(server: &Server, last_event_id: Option<&str>) -> Sse {
        let mut request = reqwest::Client::new()
            .get(server.url("/stream/acme"))
            .bearer_auth(ACME_KEY);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Sse {
            body: Box::pin(response.bytes_stream()),
            buffer: BytesMut::new(),
            ended: false,
            heartbeats: 0,
        }
    }

    /// The next event that is not a heartbeat, or `None` after `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buffer.split_to(end + 2);
                let text = std::str::from_utf8(&raw[..end]).unwrap().to_owned();
                let mut frame = (String::new(), String::new(), String::new());
                for line in text.split('\n') {
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => frame.0 = value.to_owned(),
                        "event" => frame.1 = value.to_owned(),
                        "data" => frame.2 = value.to_owned(),
                        _ => {}
                    }
                }
                if frame.1 == "heartbeat" || frame.1.is_empty() {
                    self.heartbeats += 1;
                    continue;
                }
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(_) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
}

/// `ms-seq`, as a pair that orders like the ids.
fn key(id: &str) -> (u64, u64) {
    let (ms, seq) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("not a Redis id: {id}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_streamed_with_redis_ids_and_resumed_after_a_restart() {
    let redis = RedisServer::start(false);
    let server = replica(&redis).await;
    let mut live = Sse::open(&server, None).await;
    for i in 0..3 {
        let response = server
            .post_events("acme", &actions_body(&format!("s{i}"), 1))
            .await;
        assert_eq!(response.status(), 200);
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, event, data) = live.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(event, "actions");
        assert!(data.contains(&format!("\"session_id\":\"s{i}\"")), "{data}");
        ids.push(id);
    }
    assert!(ids.windows(2).all(|w| key(&w[0]) < key(&w[1])), "{ids:?}");

    // Another connector on the same Redis (a restart, or a second replica)
    // resumes after the first id: the next two, then what follows, live.
    server.shutdown.shutdown();
    let again = replica(&redis).await;
    let mut resumed = Sse::open(&again, Some(&ids[0])).await;
    for want in &ids[1..] {
        assert_eq!(&resumed.next(Duration::from_secs(5)).await.unwrap().0, want);
    }
    let response = again.post_events("acme", &actions_body("s3", 1)).await;
    assert_eq!(response.status(), 200);
    let (id, _, data) = resumed.next(Duration::from_secs(5)).await.unwrap();
    assert!(
        key(&id) > key(&ids[2]) && data.contains("\"s3\""),
        "{id} {data}"
    );
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());
    // An integer id (another store's) is not ours: the whole window, a gap.
    let mut foreign = Sse::open(&again, Some("2")).await;
    assert_eq!(
        foreign.next(Duration::from_secs(5)).await.unwrap().0,
        ids[0]
    );
    assert_eq!(again.metric("autoplay_replay_gaps_total").await, 1.0);
}

/// Two replicas on one Redis: what is posted to either is streamed by both,
/// and a client that loses A and reconnects to B with its `Last-Event-ID`
/// while events keep arriving on both gets every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_between_replicas_gets_no_gap_and_no_duplicate() {
    const TOTAL: usize = 1_000;
    let redis = RedisServer::start(false);
    let a = Arc::new(replica(&redis).await);
    let b = Arc::new(replica(&redis).await);
    let mut watcher = Sse::open(&b, None).await;
    let mut client = Sse::open(&a, None).await;
    let publisher = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let to = if i % 2 == 0 { &a } else { &b };
                let response = to
                    .post_events("acme", &actions_body(&format!("s{i}"), 1))
                    .await;
                assert_eq!(response.status(), 200);
            }
        })
    };
    let session = |data: &str| -> usize {
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        value["session_id"].as_str().unwrap()[1..].parse().unwrap()
    };
    let mut got: Vec<(String, usize)> = Vec::new();
    let mut on_a = true;
    for _ in 0..6 {
        // Read a while, then drop the connection and resume on the other one.
        for _ in 0..TOTAL / 8 {
            let (id, _, data) = client
                .next(Duration::from_secs(10))
                .await
                .expect("an event");
            got.push((id, session(&data)));
        }
        let last = got.last().unwrap().0.clone();
        on_a = !on_a;
        let next = if on_a { &a } else { &b };
        client = Sse::open(next, Some(&last)).await;
    }
    publisher.await.unwrap();
    while got.len() < TOTAL {
        let (id, _, data) = client
            .next(Duration::from_secs(10))
            .await
            .expect("an event");
        got.push((id, session(&data)));
    }
    assert!(
        client.next(Duration::from_millis(300)).await.is_none(),
        "a duplicate"
    );
    let sessions: Vec<usize> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        sessions,
        (0..TOTAL).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(got.windows(2).all(|w| key(&w[0].0) < key(&w[1].0)));
    // B streamed all of them too, the half posted to A included, with the same ids.
    let mut watched = Vec::new();
    while watched.len() < TOTAL {
        watched.push(
            watcher
                .next(Duration::from_secs(10))
                .await
                .expect("an event")
                .0,
        );
    }
    assert_eq!(
        watched,
        got.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(a.metric("autoplay_replay_gaps_total").await, 0.0);
    assert_eq!(b.metric("autoplay_replay_gaps_total").await, 0.0);
}

/// Sessions counted in Redis: webhooks of one session landing on two replicas
/// in turn still give exactly one summary per threshold, after its actions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_are_due_once_per_threshold_across_replicas() {
    const SESSIONS: usize = 6;
    const ACTIONS: usize = 12;
    const THRESHOLD: usize = 4;
    let redis = RedisServer::start(false);
    let start = || {
        let mut config = config();
        config.store = StoreConfig::Redis(redis.url());
        config.summary_threshold = THRESHOLD;
        Server::start(config)
    };
    let a = Arc::new(start().await);
    let b = Arc::new(start().await);
    let mut watcher = Sse::open(&a, None).await;
    let mut posters = Vec::new();
    for s in 0..SESSIONS {
        let (a, b) = (a.clone(), b.clone());
        posters.push(tokio::spawn(async move {
            for i in 0..ACTIONS {
                let to = if (i + s) % 2 == 0 { &a } else { &b };
                let response = to
                    .post_events("acme", &actions_body(&format!("s{s}"), 1))
                    .await;
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for poster in posters {
        poster.await.unwrap();
    }
    let want = SESSIONS * ACTIONS + SESSIONS * ACTIONS / THRESHOLD;
    let mut frames = Vec::new();
    while frames.len() < want {
        frames.push(
            watcher
                .next(Duration::from_secs(10))
                .await
                .expect("a frame"),
        );
    }
    assert!(
        watcher.next(Duration::from_millis(500)).await.is_none(),
        "an extra frame"
    );
    for s in 0..SESSIONS {
        let session = format!("\"session_id\":\"s{s}\"");
        let mut actions = 0;
        let mut summaries = 0;
        for (_, event, data) in frames.iter().filter(|(_, _, d)| d.contains(&session)) {
            match event.as_str() {
                "actions" => actions += 1,
                "summary" => {
                    summaries += 1;
                    let value: serde_json::Value = serde_json::from_str(data).unwrap();
                    assert_eq!(value["replaces"], THRESHOLD, "{data}");
                    assert!(
                        actions >= summaries * THRESHOLD,
                        "a summary before its actions"
                    );
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!((actions, summaries), (ACTIONS, ACTIONS / THRESHOLD), "s{s}");
    }
}

async fn health(server: &Server) -> serde_json::Value {
    reqwest::get(server.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Redis killed mid-stream and started again on its port and directory: the
/// open stream stays open, webhooks get 503 meanwhile, `/healthz` says
/// degraded and `/metrics` counts the outage once; afterwards the stream goes
/// on from where it was, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_degrades_and_recovers() {
    let mut redis = RedisServer::start(true);
    let server = replica(&redis).await;
    let mut live = Sse::open(&server, None).await;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let body = actions_body(&format!("s{i}"), 1);
        assert_eq!(server.post_events("acme", &body).await.status(), 200);
        acknowledged.push(i);
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(live.next(Duration::from_secs(5)).await.expect("an event").0);
    }
    assert_eq!(health(&server).await["status"], "ok");

    redis.kill();
    let refused = server.post_events("acme", &actions_body("down", 1)).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(health(&server).await["status"], "degraded");
    assert_eq!(server.metric("autoplay_store_outages_total").await, 1.0);
    // A few more refusals and a while down: still one outage, the stream open.
    for _ in 0..3 {
        let refused = server.post_events("acme", &actions_body("down", 1)).await;
        assert_eq!(refused.status(), 503);
    }
    assert!(live.next(Duration::from_secs(1)).await.is_none());
    assert!(!live.ended, "the stream stayed open");
    assert_eq!(server.metric("autoplay_store_outages_total").await, 1.0);

    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 5;
    while acknowledged.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis did not come back"
        );
        let body = actions_body(&format!("s{i}"), 1);
        match server.post_events("acme", &body).await.status().as_u16() {
            200 => {
                acknowledged.push(i);
                i += 1;
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(health(&server).await["status"], "ok");
    // The open stream goes on after the last id it had: the new ones, once.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (id, _, data) = live.next(Duration::from_secs(10)).await.expect("an event");
        assert!(key(&id) > key(ids.last().unwrap()), "{id}");
        ids.push(id);
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        sessions.push(value["session_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sessions, ["s5", "s6", "s7"]);
    assert!(live.next(Duration::from_millis(300)).await.is_none());
    // Everything acknowledged, before and after, is in Redis: a new replica
    // replays all of it.
    let other = replica(&redis).await;
    let mut replay = Sse::open(&other, Some("0-1")).await;
    let mut replayed = Vec::new();
    while let Some((id, _, _)) = replay.next(Duration::from_millis(500)).await {
        replayed.push(id);
    }
    assert_eq!(replayed, ids);
}

/// Products registered through the admin API on one replica are in Redis: a
/// replica started later serves them, with the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_products_are_kept_in_redis() {
    const ADMIN: &str = "adm_redis_test_token_0123";
    let redis = RedisServer::start(false);
    let start = || {
        let mut config = config();
        config.store = StoreConfig::Redis(redis.url());
        config.admin_token = Some(ADMIN.into());
        Server::start(config)
    };
    let a = start().await;
    let response = reqwest::Client::new()
        .post(a.url("/admin/products"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": "gamma"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let key = body["api_key"].as_str().unwrap().to_owned();
    let secret = body["webhook_secret"].as_str().unwrap().to_owned();
    let post = |server: &Server, session: &str| {
        reqwest::Client::new()
            .post(server.url("/events/gamma"))
            .header("x-posthog-secret", &secret)
            .json(&actions_body(session, 1))
            .send()
    };
    assert_eq!(post(&a, "g0").await.unwrap().status(), 200);

    let b = start().await;
    let stream = reqwest::Client::new()
        .get(b.url("/stream/gamma"))
        .bearer_auth(&key)
        .header("last-event-id", "0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut sse = Sse {
        body: Box::pin(stream.bytes_stream()),
        buffer: BytesMut::new(),
        ended: false,
        heartbeats: 0,
    };
    assert_eq!(post(&b, "g1").await.unwrap().status(), 200);
    for want in ["g0", "g1"] {
        let (_, _, data) = sse.next(Duration::from_secs(5)).await.expect("an event");
        assert!(
            data.contains(&format!("\"session_id\":\"{want}\"")),
            "{data}"
        );
    }
    // Deleted on B: a replica started after that does not know it.
    let deleted = reqwest::Client::new()
        .delete(b.url("/admin/products/gamma"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let c = start().await;
    let refused = reqwest::Client::new()
        .get(c.url("/stream/gamma"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
}

/// A PostHog batch of `n` autocapture clicks in sessions `d0` and `d1` in
/// turn, with the `uuid`s PostHog gives its events (`tag` keeps bodies apart).
fn posthog_batch(tag: &str, n: usize, with_uuids: bool) -> String {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let mut event = json!({
                "event": "$autocapture",
                "distinct_id": "user_1",
                "timestamp": format!("2024-01-15T10:30:{i:02}.000Z"),
                "properties": {
                    "$event_type": "click",
                    "$current_url": "https://app.example.com/x",
                    "$session_id": format!("d{}", i % 2),
                    "$el_text": format!("{tag} button {i}"),
                },
            });
            if with_uuids {
                event["uuid"] = json!(format!("018d0b6a-0000-7000-8000-{tag}{i:08}"));
            }
            event
        })
        .collect();
    json!({ "batch": events }).to_string()
}

/// The titles of the actions in the `actions` frames read until `timeout`
/// passes without one.
async fn titles(sse: &mut Sse, timeout: Duration) -> Vec<String> {
    let mut titles = Vec::new();
    while let Some((_, event, data)) = sse.next(timeout).await {
        assert_eq!(event, "actions");
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        for action in value["actions"].as_array().unwrap() {
            titles.push(action["title"].as_str().unwrap_or_default().to_owned());
        }
    }
    titles.sort();
    titles
}

/// PostHog delivering a body again (as it does after a 503) appends nothing
/// twice when its events carry `uuid`s, also through another replica; a body
/// without `uuid`s has nothing to recognise it by and is appended again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivered_again_is_appended_once() {
    let redis = RedisServer::start(false);
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let mut live = Sse::open(&a, None).await;
    let body = posthog_batch("aa", 6, true);
    for server in [&a, &a, &b] {
        let response = server.post_webhook("acme", body.clone()).await;
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["accepted"], 6, "{answer}");
    }
    let once: Vec<String> = (0..6).map(|i| format!("aa button {i}")).collect();
    assert_eq!(titles(&mut live, Duration::from_millis(700)).await, once);

    let plain = posthog_batch("bb", 2, false);
    for _ in 0..2 {
        assert_eq!(a.post_webhook("acme", plain.clone()).await.status(), 200);
    }
    let twice = ["bb button 0", "bb button 0", "bb button 1", "bb button 1"];
    assert_eq!(titles(&mut live, Duration::from_millis(700)).await, twice);
}

fn xlen(redis: &RedisServer) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    redis::cmd("XLEN")
        .arg("autoplay:{acme}:log")
        .query(&mut conn)
        .unwrap()
}

/// Webhook frames (appended by the script, which trims once per call) keep the
/// stream near the window: `MAXLEN ~` drops whole nodes of 100 entries, so at
/// most a node more than the window stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_appends_trim_the_stream_to_the_window() {
    const WINDOW: usize = 50;
    let redis = RedisServer::start(false);
    let mut config = config();
    config.store = StoreConfig::Redis(redis.url());
    config.replay_capacity = WINDOW;
    let server = Server::start(config).await;
    // Two frames per webhook (two sessions), 300 in all.
    for w in 0..150 {
        let body = posthog_batch(&format!("t{w:03}"), 4, true);
        assert_eq!(server.post_webhook("acme", body).await.status(), 200);
    }
    let kept = xlen(&redis);
    assert!(
        (WINDOW..=WINDOW + 100).contains(&kept),
        "{kept} entries kept of 300"
    );
}

/// The reply of an `EXEC` that Redis applied is really lost (a proxy between
/// the connector and Redis drops it): the webhook gets 503 although its events
/// are in the stream, PostHog sends the body again, and the stream holds each
/// event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_exec_reply_does_not_duplicate_the_retried_events() {
    let redis = RedisServer::start(false);
    let proxy = ReplyDropper::start(&redis).await;
    let mut config = config();
    config.store = StoreConfig::Redis(proxy.url());
    let server = Server::start(config).await;
    let mut live = Sse::open(&server, None).await;
    let first = posthog_batch("cc", 4, true);
    assert_eq!(server.post_webhook("acme", first).await.status(), 200);
    assert_eq!(titles(&mut live, Duration::from_millis(500)).await.len(), 4);
    let frames = xlen(&redis);

    proxy.arm();
    let body = posthog_batch("dd", 4, true);
    let lost = server.post_webhook("acme", body.clone()).await;
    assert_eq!(lost.status(), 503, "the reply was lost: not acknowledged");
    assert_eq!(proxy.dropped(), 1);
    // Redis did apply it: its two frames (one per session), or the first
    // one, when the writer had taken it alone (and not yet the second).
    let applied = xlen(&redis) - frames;
    assert!((1..=2).contains(&applied), "{applied} frames applied");

    // PostHog's retry (after the writer reconnected).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .post_webhook("acme", body.clone())
            .await
            .status()
            .as_u16()
        {
            200 => break,
            503 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(xlen(&redis), frames + 2, "the retry appended nothing");
    let once: Vec<String> = (0..4).map(|i| format!("dd button {i}")).collect();
    assert_eq!(titles(&mut live, Duration::from_millis(700)).await, once);
}

/// Polls `probe` every 20 ms until it holds, for at most 5 s; how long it took.
async fn within_bound<F, Fut>(what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !probe().await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Products registered, rotated and deleted through the admin API of replica
/// A, and emails learnt by A, reach replica B while it runs (Redis pub/sub,
/// re-read on each message), within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_and_emails_reach_a_running_replica() {
    const ADMIN: &str = "adm_redis_test_token_0123";
    let redis = RedisServer::start(false);
    let start = || {
        let mut config = config();
        config.store = StoreConfig::Redis(redis.url());
        config.admin_token = Some(ADMIN.into());
        Server::start(config)
    };
    let a = start().await;
    let b = start().await;
    let http = reqwest::Client::new();
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(ADMIN).send();
    let stream_status = |server: &Server, key: &str| {
        let request = http.get(server.url("/stream/delta")).bearer_auth(key);
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // Registered on A: B serves it.
    let response = admin(
        http.post(a.url("/admin/products"))
            .json(&json!({"id": "delta"})),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let old_key = body["api_key"].as_str().unwrap().to_owned();
    let secret = body["webhook_secret"].as_str().unwrap().to_owned();
    let took = within_bound("registered on A, served by B", || async {
        stream_status(&b, &old_key).await == 200
    })
    .await;
    eprintln!("registration seen by B after {took:?}");
    let posted = http
        .post(b.url("/events/delta"))
        .header("x-posthog-secret", &secret)
        .json(&actions_body("d0", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);

    // Rotated on A: B refuses the old key and takes the new one.
    let response = admin(http.post(a.url("/admin/products/delta/rotate")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let new_key = body["api_key"].as_str().unwrap().to_owned();
    within_bound("rotated on A, old key refused by B", || async {
        stream_status(&b, &old_key).await == 401
    })
    .await;
    assert_eq!(stream_status(&b, &new_key).await, 200);
    let listed: serde_json::Value = admin(http.get(b.url("/admin/products/delta")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["rotated_at"].is_u64(), "{listed}");

    // An email learnt by A is on B's actions of that user.
    let identify = json!({
        "event": "$identify",
        "distinct_id": "user_9",
        "uuid": "018d0b6a-0000-7000-8000-0000000000e1",
        "properties": {"$set": {"email": "nine@example.com"}},
    });
    assert_eq!(
        a.post_webhook("acme", identify.to_string()).await.status(),
        200
    );
    let mut live = Sse::open(&b, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "email learnt on A, used by B: not within 5 s"
        );
        let click = json!({
            "event": "$autocapture",
            "distinct_id": "user_9",
            "properties": {
                "$event_type": "click",
                "$session_id": format!("e{attempt}"),
                "$current_url": "https://app.example.com/x",
                "$el_text": "Save",
            },
        });
        assert_eq!(
            b.post_webhook("acme", click.to_string()).await.status(),
            200
        );
        let (_, _, data) = live.next(Duration::from_secs(5)).await.expect("a frame");
        if data.contains("\"email\":\"nine@example.com\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deleted on A: gone on B.
    let deleted = admin(http.delete(a.url("/admin/products/delta")))
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    within_bound("deleted on A, gone on B", || async {
        stream_status(&b, &new_key).await == 404
    })
    .await;
}

/// A replica started while Redis is down: a subscriber resuming from an id
/// stays connected with heartbeats, and once Redis is back gets what it missed
/// (the window after its id) and then the live events, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_arriving_while_redis_is_down_gets_the_window_when_it_is_back() {
    let mut redis = RedisServer::start(true);
    let before = replica(&redis).await;
    let mut live = Sse::open(&before, None).await;
    for i in 0..3 {
        let response = before
            .post_events("acme", &actions_body(&format!("w{i}"), 1))
            .await;
        assert_eq!(response.status(), 200);
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(live.next(Duration::from_secs(5)).await.expect("an event").0);
    }
    before.shutdown.shutdown();
    redis.kill();

    let mut config = config();
    config.store = StoreConfig::Redis(redis.url());
    config.heartbeat_interval = Duration::from_millis(100);
    let server = Server::start(config).await;
    let mut waiting = Sse::open(&server, Some(&ids[0])).await;
    // Longer than the 5 s the subscription used to wait before replaying
    // nothing: only heartbeats meanwhile.
    assert!(waiting.next(Duration::from_secs(6)).await.is_none());
    assert!(!waiting.ended, "the stream stayed open");
    assert!(
        waiting.heartbeats >= 10,
        "{} heartbeats",
        waiting.heartbeats
    );

    redis.restart();
    // What it missed, from the window...
    for want in &ids[1..] {
        let (id, _, _) = waiting
            .next(Duration::from_secs(10))
            .await
            .expect("replayed");
        assert_eq!(&id, want);
    }
    // ...then what is posted now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .post_events("acme", &actions_body("w3", 1))
            .await
            .status()
            .as_u16()
        {
            200 => break,
            503 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("status {other}"),
        }
    }
    let (id, _, data) = waiting.next(Duration::from_secs(5)).await.expect("live");
    assert!(
        key(&id) > key(&ids[2]) && data.contains("\"w3\""),
        "{id} {data}"
    );
    assert!(
        waiting.next(Duration::from_millis(300)).await.is_none(),
        "a duplicate"
    );
    assert_eq!(server.metric("autoplay_replay_gaps_total").await, 0.0);
}

/// A fake OpenAI-compatible LLM on 127.0.0.1: answers "summary <n>" (n = the
/// request's number from 1); the first request waits `first_delay`.
async fn slow_first_llm(first_delay: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let answer = move || {
        let counter = counter.clone();
        async move {
            let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if number == 1 {
                tokio::time::sleep(first_delay).await;
            }
            axum::Json(json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": format!("summary {number}")}}],
            }))
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), requests)
}

/// Two summaries of one session due on two replicas, the first one's LLM
/// answer slow: the second waits for it (the order is kept in Redis), so the
/// stream has them in the order they fell due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_due_on_two_replicas_keep_their_order() {
    const THRESHOLD: usize = 2;
    let redis = RedisServer::start(false);
    let (llm, requests) = slow_first_llm(Duration::from_millis(1500)).await;
    let start = || {
        let mut config = config();
        config.store = StoreConfig::Redis(redis.url());
        config.summary_threshold = THRESHOLD;
        let mut backend = autoplay_connector::LlmConfig::new(llm.clone(), "test-model");
        backend.timeout = Duration::from_secs(8);
        config.llm = Some(backend);
        Server::start(config)
    };
    let a = start().await;
    let b = start().await;
    let mut watcher = Sse::open(&b, None).await;
    // The first batch falls due on A (its LLM answer is the slow one)...
    assert_eq!(
        a.post_events("acme", &actions_body("s", THRESHOLD))
            .await
            .status(),
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while requests.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never asked the LLM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...the second on B, answered at once.
    assert_eq!(
        b.post_events("acme", &actions_body("s", THRESHOLD))
            .await
            .status(),
        200
    );
    let mut summaries = Vec::new();
    while summaries.len() < 2 {
        let (_, event, data) = watcher
            .next(Duration::from_secs(10))
            .await
            .expect("a frame");
        if event == "summary" {
            let value: serde_json::Value = serde_json::from_str(&data).unwrap();
            summaries.push(value["summary"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(summaries, ["summary 1", "summary 2"]);
    assert!(watcher.next(Duration::from_millis(300)).await.is_none());
}

/// The lost `EXEC` made summaries due (the batches were taken in Redis, the
/// reply with them lost): the retry, recognised, appends nothing but writes
/// those summaries, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_made_due_by_a_lost_exec_are_written_by_the_retry() {
    let redis = RedisServer::start(false);
    let proxy = ReplyDropper::start(&redis).await;
    let mut config = config();
    config.store = StoreConfig::Redis(proxy.url());
    config.summary_threshold = 2;
    let server = Server::start(config).await;
    let mut live = Sse::open(&server, None).await;

    proxy.arm();
    // Two sessions of two clicks: each crosses the threshold.
    let body = posthog_batch("ee", 4, true);
    let lost = server.post_webhook("acme", body.clone()).await;
    assert_eq!(lost.status(), 503);
    assert_eq!(proxy.dropped(), 1);
    // Its first frame at least is in, with no summary: both frames in one
    // lost reply (2), or the first alone in it and the second, in the next
    // transaction, with its session's summary written at once (3).
    assert!((1..=3).contains(&xlen(&redis)), "{}", xlen(&redis));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .post_webhook("acme", body.clone())
            .await
            .status()
            .as_u16()
        {
            200 => break,
            503 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("status {other}"),
        }
    }
    // A third delivery (PostHog retrying once more) changes nothing.
    assert_eq!(server.post_webhook("acme", body).await.status(), 200);
    let mut kinds = Vec::new();
    while let Some((_, event, data)) = live.next(Duration::from_millis(700)).await {
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        kinds.push((event, value["session_id"].as_str().unwrap().to_owned()));
    }
    kinds.sort();
    let want = [
        ("actions", "d0"),
        ("actions", "d1"),
        ("summary", "d0"),
        ("summary", "d1"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    assert_eq!(kinds, want);
    assert_eq!(xlen(&redis), 4);
}

fn redis_command(redis: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn).unwrap()
}

/// What changed while a replica's subscription was down (so it was told
/// nothing) is read when it subscribes again: here a product written to Redis
/// without a message, then deleted the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_subscribing_again_reads_what_it_missed() {
    use sha2::Digest;
    let redis = RedisServer::start(false);
    let server = replica(&redis).await;
    let key = "ak_zeta_test_key_0123456789";
    let product = json!({
        "id": "zeta",
        "api_key_sha256": hex::encode(sha2::Sha256::digest(key.as_bytes())),
        "webhook_secret": "whsec_zeta",
        "created_at": 1,
    });
    let status = |server: &Server, id: &str| {
        let request = reqwest::Client::new()
            .get(server.url(&format!("/stream/{id}")))
            .bearer_auth(key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // A product told the way replicas tell it: once the replica serves it,
    // its subscription is up and past its first read.
    let mut probe = product.clone();
    probe["id"] = json!("probe");
    redis_command(
        &redis,
        &["HSET", "autoplay:products", "probe", &probe.to_string()],
    );
    redis_command(&redis, &["PUBLISH", "autoplay:changes", r#"["p","probe"]"#]);
    within_bound("a product told", || async {
        status(&server, "probe").await == 200
    })
    .await;
    // Written without a message: not seen.
    redis_command(
        &redis,
        &["HSET", "autoplay:products", "zeta", &product.to_string()],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&server, "zeta").await, 404, "nothing told it yet");
    redis_command(&redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    within_bound("read again after subscribing again", || async {
        status(&server, "zeta").await == 200
    })
    .await;
    redis_command(&redis, &["HDEL", "autoplay:products", "zeta"]);
    redis_command(&redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    within_bound(
        "deleted while not told, gone after subscribing again",
        || async { status(&server, "zeta").await == 404 },
    )
    .await;
}

/// `n` clicks of `session` titled `<tag> button <i>`: the tag names the batch
/// in its summary (the LLM below echoes the titles).
fn tagged_body(session: &str, tag: &str, n: usize) -> serde_json::Value {
    json!({
        "session_id": session,
        "actions": (0..n).map(|i| json!({
            "event_type": "click",
            "title": format!("{tag} button {i}"),
            "canonical_url": "https://app.example.com/x",
        })).collect::<Vec<_>>(),
    })
}

/// A fake OpenAI-compatible LLM on 127.0.0.1 that answers `#<n> <prompt>`
/// (n = the request's number from 1, the prompt listing the actions), the
/// first request after `first_delay`; counts the requests received and
/// answered.
async fn echo_llm(first_delay: Duration) -> (String, Arc<[std::sync::atomic::AtomicUsize; 2]>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counter = counts.clone();
    let answer = move |axum::Json(request): axum::Json<serde_json::Value>| {
        let counter = counter.clone();
        async move {
            let number = counter[0].fetch_add(1, Ordering::SeqCst) + 1;
            if number == 1 {
                tokio::time::sleep(first_delay).await;
            }
            counter[1].fetch_add(1, Ordering::SeqCst);
            let prompt = request["messages"][1]["content"].as_str().unwrap_or("");
            axum::Json(json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": format!("#{number} {prompt}")}}],
            }))
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), counts)
}

/// A replica whose summaries go to `llm`, on `redis` with `query` in the
/// store URL, summaries every `threshold` actions.
fn claiming_config(
    redis: &RedisServer,
    query: &str,
    llm: &str,
    threshold: usize,
) -> autoplay_connector::ConnectorConfig {
    let mut config = config();
    config.store = StoreConfig::Redis(format!("{}/0?{query}", redis.url()));
    config.summary_threshold = threshold;
    let mut backend = autoplay_connector::LlmConfig::new(llm.to_owned(), "test-model");
    backend.timeout = Duration::from_secs(60);
    config.llm = Some(backend);
    config
}

/// A replica in a runtime of its own, so that it can die: its runtime shut
/// down, every task of it (its summaries in flight too) is gone and its
/// sockets closed, as if the process were killed. Also on panic.
struct Mortal {
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
}

impl Mortal {
    fn start(config: autoplay_connector::ConnectorConfig) -> Mortal {
        // Started from a thread of its own: a runtime cannot block inside another.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = runtime.block_on(Server::start(config));
            Mortal {
                runtime: Some(runtime),
                server: Some(server),
            }
        })
        .join()
        .unwrap()
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn kill(&mut self) {
        let (runtime, server) = (self.runtime.take(), self.server.take());
        // Not dropped in the test's runtime, which may not block.
        std::thread::spawn(move || {
            drop(server);
            if let Some(runtime) = runtime {
                runtime.shutdown_background();
            }
        })
        .join()
        .unwrap();
    }
}

impl Drop for Mortal {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `probe` holds, for at most `limit`.
async fn until(what: &str, limit: Duration, probe: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The batch (`b<n>`) a frame of [`session_frames`] is about; it must name
/// only that one.
fn tag(text: &str) -> &str {
    let tags: Vec<&str> = ["b1", "b2", "b3"]
        .into_iter()
        .filter(|tag| text.contains(&format!("{tag} button")))
        .collect();
    assert_eq!(tags.len(), 1, "{text}");
    tags[0]
}

/// (event, summary text or first action title) of the frames of `session` read
/// until `quiet` passes without one.
async fn session_frames(sse: &mut Sse, session: &str, quiet: Duration) -> Vec<(String, String)> {
    let mut frames = Vec::new();
    while let Some((_, event, data)) = sse.next(quiet).await {
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        if value["session_id"] != session {
            continue;
        }
        let text = match event.as_str() {
            "summary" => value["summary"].as_str().unwrap().to_owned(),
            _ => value["actions"][0]["title"].as_str().unwrap().to_owned(),
        };
        frames.push((event, text));
    }
    frames
}

fn due_left(redis: &RedisServer) -> (usize, usize) {
    let pending = match redis_command(redis, &["XPENDING", "autoplay:{acme}:due", "summaries"]) {
        redis::Value::Array(parts) => redis::from_redis_value(parts[0].clone()).unwrap(),
        other => panic!("XPENDING answered {other:?}"),
    };
    let entries =
        redis::from_redis_value(redis_command(redis, &["XLEN", "autoplay:{acme}:due"])).unwrap();
    (entries, pending)
}

/// Replica A takes a due batch (its webhook crossed the threshold, answered
/// 200), asks its LLM, which never answers, and dies. Replica B, with a short
/// lease, takes that batch over and writes its summary: exactly one for that
/// threshold, after its actions, and before the session's next summary,
/// which B made due meanwhile and which waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_whose_replica_died_is_written_by_another() {
    const THRESHOLD: usize = 2;
    let redis = RedisServer::start(false);
    let (llm, counts) = echo_llm(Duration::from_secs(3600)).await;
    let mut a = Mortal::start(claiming_config(
        &redis,
        "summary_lease_s=600",
        &llm,
        THRESHOLD,
    ));
    let b = Server::start(claiming_config(
        &redis,
        "summary_lease_s=2&claim_interval_s=1",
        &llm,
        THRESHOLD,
    ))
    .await;
    let mut watcher = Sse::open(&b, None).await;
    async fn post(server: &Server, tag: &str) {
        let body = tagged_body("s", tag, THRESHOLD);
        assert_eq!(server.post_events("acme", &body).await.status(), 200);
    }

    post(a.server(), "b1").await;
    let asked = || counts[0].load(std::sync::atomic::Ordering::SeqCst);
    until("A asked its LLM", Duration::from_secs(5), || asked() == 1).await;
    a.kill();
    assert_eq!(due_left(&redis), (1, 1), "the batch is pending for A");
    // The next batch falls due on B: its summary waits for the first.
    post(&b, "b2").await;
    let frames = session_frames(&mut watcher, "s", Duration::from_secs(10)).await;
    let got: Vec<(&str, &str)> = frames
        .iter()
        .map(|(e, text)| (e.as_str(), tag(text)))
        .collect();
    assert_eq!(
        got,
        [
            ("actions", "b1"),
            ("actions", "b2"),
            ("summary", "b1"),
            ("summary", "b2"),
        ],
        "{frames:?}"
    );
    assert_eq!(due_left(&redis), (0, 0), "nothing left pending");

    // The session goes on, on B: its next summary, once, after those.
    post(&b, "b3").await;
    let frames = session_frames(&mut watcher, "s", Duration::from_secs(2)).await;
    let got: Vec<(&str, &str)> = frames
        .iter()
        .map(|(e, text)| (e.as_str(), tag(text)))
        .collect();
    assert_eq!(got, [("actions", "b3"), ("summary", "b3")], "{frames:?}");
    assert_eq!(due_left(&redis), (0, 0));
    assert_eq!(asked(), 4, "A's request, then B's three");
    assert_eq!(b.metric("autoplay_summaries_total").await, 3.0);
    assert_eq!(b.metric("autoplay_summary_takeovers_total").await, 1.0);
    // A's consumer, holding nothing and idle for the lease, was dropped: the
    // consumers of dead replicas do not pile up.
    let consumers = redis_command(
        &redis,
        &["XINFO", "CONSUMERS", "autoplay:{acme}:due", "summaries"],
    );
    let consumers: Vec<redis::Value> = redis::from_redis_value(consumers).unwrap();
    assert_eq!(consumers.len(), 1, "B's alone: {consumers:?}");
}

/// Replica A is alive but its LLM answers after A's batch's lease expired:
/// replica B took the batch over and published its summary; A's summary,
/// when it comes, is not published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_owner_does_not_publish_a_summary_taken_over() {
    const THRESHOLD: usize = 2;
    let redis = RedisServer::start(false);
    let (llm, counts) = echo_llm(Duration::from_secs(5)).await;
    let a = Server::start(claiming_config(
        &redis,
        "summary_lease_s=600",
        &llm,
        THRESHOLD,
    ))
    .await;
    let b = Server::start(claiming_config(
        &redis,
        "summary_lease_s=2&claim_interval_s=1",
        &llm,
        THRESHOLD,
    ))
    .await;
    let mut watcher = Sse::open(&a, None).await;
    let body = tagged_body("s", "b1", THRESHOLD);
    assert_eq!(a.post_events("acme", &body).await.status(), 200);
    let count = |i: usize| counts[i].load(std::sync::atomic::Ordering::SeqCst);
    // B's request is the second, answered at once; A's the first, slow.
    until("B took the batch over", Duration::from_secs(8), || {
        count(0) == 2
    })
    .await;
    until("A's LLM answered", Duration::from_secs(8), || count(1) == 2).await;
    // A's summary goes to Redis at once: give it the time, and more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames = session_frames(&mut watcher, "s", Duration::from_secs(1)).await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], ("actions".into(), "b1 button 0".into()));
    assert_eq!(frames[1].0, "summary");
    assert!(frames[1].1.starts_with("#2 "), "B's, not A's: {frames:?}");
    assert_eq!(due_left(&redis), (0, 0));
    // Each replica counts what it published.
    assert_eq!(a.metric("autoplay_summaries_total").await, 0.0);
    assert_eq!(b.metric("autoplay_summaries_total").await, 1.0);
}
