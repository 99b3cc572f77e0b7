//! The seam's conformance suite: every backend passes the same tests (append,
//! replay after an id, tail, trim, restart). Ids are compared as the opaque
//! strings clients see, since the Redis store's are `ms-seq`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{ProductLog, SessionRecord, Store};
use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::replay::{ReplayWindow, Resume};

#[path = "../../tests/store_redis_server/mod.rs"]
mod redis_server;

/// A backend under test; an embedded one owns its directory, a Redis one its
/// `redis-server`.
struct Backend {
    config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<redis_server::RedisServer>,
}

impl Backend {
    /// An id of this store's scheme newer than anything it gave.
    fn ahead(&self) -> &'static str {
        match self.config {
            StoreConfig::Redis(_) => "9999999999999999-0",
            _ => "99",
        }
    }
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let redis = redis_server::RedisServer::start(false);
    vec![
        Backend {
            config: StoreConfig::Memory,
            _dir: None,
            _redis: None,
        },
        Backend {
            config: StoreConfig::Embedded(dir.path().join("store")),
            _dir: Some(dir),
            _redis: None,
        },
        Backend {
            config: StoreConfig::Redis(redis.url()),
            _dir: None,
            _redis: Some(redis),
        },
    ]
}

fn at(id: &str) -> Resume {
    Resume::from_header(Some(id.as_bytes()))
}

fn window(events: usize) -> ReplayWindow {
    ReplayWindow {
        events,
        bytes: usize::MAX,
    }
}

fn open(backend: &Backend, window: ReplayWindow, buffer: usize) -> (Store, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(&backend.config, window, buffer, metrics.clone()).unwrap();
    (store, metrics)
}

/// Appends `n` events and waits until they are durable; returns the ids of
/// the window then.
async fn append(store: &Store, log: &Arc<ProductLog>, n: usize) -> Vec<String> {
    let mut last = (0, Default::default());
    for i in 0..n {
        last = log.append("summary", &format!("{{\"n\":{i}}}"));
    }
    store.durable(last.1).await.unwrap();
    ids(&log.window())
}

fn ids(frames: &[Bytes]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(f).unwrap();
            let line = text.strip_prefix("id: ").unwrap();
            line.split('\n').next().unwrap().to_owned()
        })
        .collect()
}

/// Ids strictly increase (as integers, or as Redis `ms-seq` pairs).
fn increasing(ids: &[String]) -> bool {
    let key = |id: &String| crate::replay::stream_key(id).unwrap_or_else(|| id.parse().unwrap());
    ids.windows(2).all(|w| key(&w[0]) < key(&w[1]))
}

fn drain(live: &mut mpsc::Receiver<Bytes>) -> Vec<Bytes> {
    let mut got = Vec::new();
    while let Ok(frame) = live.try_recv() {
        got.push(frame);
    }
    got
}

#[tokio::test]
async fn append_and_replay_after_an_id() {
    for backend in backends() {
        let name = backend.config.to_string();
        let (store, metrics) = open(&backend, window(5), 8);
        let log = store.log("p");
        log.ready().await;
        let mut all = append(&store, &log, 2).await;
        let window = append(&store, &log, 5).await;
        all.extend(window.iter().cloned());
        assert_eq!(all.len(), 7, "{name}");
        assert!(increasing(&all), "{name}: {all:?}");
        if !matches!(backend.config, StoreConfig::Redis(_)) {
            assert_eq!(all, ["1", "2", "3", "4", "5", "6", "7"]);
        }
        let after = |id: &str| ids(&log.subscribe(at(id)).replay);
        assert_eq!(after(&all[3]), all[4..], "{name}");
        assert_eq!(after(&all[1]), all[2..], "{name}");
        assert!(after(&all[6]).is_empty(), "{name}");
        assert!(log.subscribe(Resume::Live).replay.is_empty(), "{name}");
        assert_eq!(metrics.replay_gaps.load(Ordering::Relaxed), 0, "{name}");
        // The first id is trimmed (the second left too, but nothing after it
        // did), an id far ahead was never given, and the last is not ours:
        // the whole window, and a gap each.
        assert_eq!(after(&all[0]), all[2..], "{name}");
        assert_eq!(after(backend.ahead()), all[2..], "{name}");
        assert_eq!(
            ids(&log.subscribe(Resume::Foreign).replay),
            all[2..],
            "{name}"
        );
        assert_eq!(metrics.replay_gaps.load(Ordering::Relaxed), 3, "{name}");
        store.close();
    }
}

#[tokio::test]
async fn tail_gets_what_follows_the_replay() {
    for backend in backends() {
        let name = backend.config.to_string();
        let (store, _) = open(&backend, window(100), 64);
        let log = store.log("p");
        log.ready().await;
        let first = append(&store, &log, 3).await;
        let mut sub = log.subscribe(at(&first[0]));
        assert_eq!(ids(&sub.replay), first[1..], "{name}");
        let all = append(&store, &log, 2).await;
        assert_eq!(all.len(), 5, "{name}");
        assert_eq!(ids(&drain(&mut sub.live)), all[3..], "{name}");
        let frame = log.subscribe(at(&all[3])).replay.remove(0);
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            format!("id: {}\nevent: summary\ndata: {{\"n\":1}}\n\n", all[4]),
            "{name}"
        );
        store.close();
    }
}

/// Subscribers resuming while another thread appends: replay then live is every
/// id after the resume point, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_and_no_duplicate_between_replay_and_live() {
    for backend in backends() {
        let name = backend.config.to_string();
        let (store, _) = open(&backend, window(100_000), 100_000);
        let store = Arc::new(store);
        let log = store.log("p");
        log.ready().await;
        let first = append(&store, &log, 10).await;
        let total = 3_000usize;
        let appender = {
            let (store, log) = (store.clone(), log.clone());
            tokio::spawn(async move {
                for _ in 0..total / 100 {
                    append(&store, &log, 100).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut subs = Vec::new();
        // Resume points the log had before the appender started.
        for i in 0..30usize {
            let resume = i % 10;
            subs.push((resume, log.subscribe(at(&first[resume]))));
            tokio::task::yield_now().await;
        }
        appender.await.unwrap();
        let all = ids(&log.window());
        assert_eq!(all.len(), total + 10, "{name}");
        assert!(increasing(&all), "{name}");
        for (resume, mut sub) in subs {
            let mut got = ids(&sub.replay);
            got.extend(ids(&drain(&mut sub.live)));
            assert!(got == all[resume + 1..], "{name}: resumed after {resume}");
        }
        store.close();
    }
}

#[tokio::test]
async fn the_window_is_trimmed_by_count_and_bytes() {
    for backend in backends() {
        let name = backend.config.to_string();
        // Redis ids are `<13-digit ms>-<seq>`; seqs of up to two digits fit
        // the slack.
        let id_len = match backend.config {
            StoreConfig::Redis(_) => "1700000000000-0".len(),
            _ => "10".len(),
        };
        let frame_len = "id: \nevent: summary\ndata: {\"n\":0}\n\n".len() + id_len;
        // Room for three frames of this size, not four.
        let bytes = frame_len * 3 + 5;
        let (store, _) = open(&backend, ReplayWindow { events: 100, bytes }, 8);
        let log = store.log("p");
        log.ready().await;
        let kept = append(&store, &log, 12).await;
        assert_eq!(kept.len(), 3, "{name}");
        let replay = log.window();
        assert!(replay.iter().map(Bytes::len).sum::<usize>() <= bytes);
        // A frame bigger than the whole window is still kept, alone.
        let (_, ticket) = log.append("summary", &"x".repeat(bytes));
        store.durable(ticket).await.unwrap();
        let alone = log.window();
        assert_eq!(alone.len(), 1, "{name}");
        assert!(alone[0].len() > bytes && increasing(&[kept[2].clone(), ids(&alone)[0].clone()]));
        store.close();
    }
}

#[tokio::test]
async fn a_full_subscriber_is_dropped_not_skipped() {
    for backend in backends() {
        let name = backend.config.to_string();
        let (store, metrics) = open(&backend, window(100), 2);
        let log = store.log("p");
        log.ready().await;
        let mut slow = log.subscribe(Resume::Live);
        let all = append(&store, &log, 5).await;
        assert_eq!(log.subscriber_count(), 0, "{name}");
        assert_eq!(ids(&drain(&mut slow.live)), all[..2], "{name}");
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(
            metrics.slow_subscriber_disconnects.load(Ordering::Relaxed),
            1
        );
        // It resumes where it stopped.
        assert_eq!(ids(&log.subscribe(at(&all[1])).replay), all[2..], "{name}");
        store.close();
    }
}

/// A restart: the embedded store gives back its window, its ids go on, and its
/// sessions and emails come back; the memory store starts from nothing.
#[tokio::test]
async fn restart() {
    for backend in backends() {
        let name = backend.config.to_string();
        let record = SessionRecord {
            email: Some("a@example.com".into()),
            due: vec![vec![Default::default()]],
            ..SessionRecord::default()
        };
        let before = {
            let (store, _) = open(&backend, window(5), 8);
            let log = store.log("p");
            log.ready().await;
            let before = append(&store, &log, 8).await;
            let other = store.log("q");
            other.ready().await;
            append(&store, &log, 0).await;
            append(&store, &other, 2).await;
            let ticket = store
                .put_session("p", "s1", Some(record.clone()))
                .max(store.put_email("p", "u1", Some("a@example.com")))
                .max(store.put_email("p", "u2", Some("b@example.com")))
                .max(store.put_email("p", "u2", None));
            store.durable(ticket).await.unwrap();
            store.close();
            before
        };
        let (store, _) = open(&backend, window(5), 8);
        let log = store.log("p");
        let other = store.log("q");
        log.ready().await;
        other.ready().await;
        let restored = store.take_restored();
        if let StoreConfig::Redis(_) = backend.config {
            // The stream is Redis's: the window and the ids go on.
            assert_eq!(ids(&log.subscribe(at(&before[1])).replay), before[2..]);
            let after = append(&store, &log, 1).await;
            assert!(
                increasing(&[before[4].clone(), after[4].clone()]),
                "ids go on"
            );
            assert_eq!(append(&store, &other, 1).await.len(), 3);
            // Emails are kept in Redis; sessions are counted there, not restored.
            assert!(restored.sessions.is_empty());
            assert_eq!(
                restored.emails,
                [("p".into(), "u1".into(), "a@example.com".into())]
            );
        } else if store.is_durable() {
            assert_eq!(before, ["4", "5", "6", "7", "8"]);
            assert_eq!(
                ids(&log.subscribe(Resume::After(5)).replay),
                ["6", "7", "8"]
            );
            assert_eq!(append(&store, &log, 1).await[4], "9", "ids go on");
            assert_eq!(append(&store, &other, 1).await[2], "3");
            assert_eq!(restored.sessions.len(), 1);
            let (product, session, kept) = &restored.sessions[0];
            assert_eq!((product.as_str(), session.as_str()), ("p", "s1"));
            assert_eq!(kept.email, record.email);
            assert_eq!(kept.due.len(), 1);
            assert_eq!(
                restored.emails,
                [("p".into(), "u1".into(), "a@example.com".into())]
            );
        } else {
            assert!(log.subscribe(Resume::After(0)).replay.is_empty(), "{name}");
            assert_eq!(append(&store, &log, 1).await, ["1"], "{name}");
            assert!(restored.sessions.is_empty() && restored.emails.is_empty());
        }
        store.close();
    }
}

/// What left the window leaves the disk: a restart with a bigger window gets
/// only what the smaller one kept.
#[tokio::test]
async fn the_disk_keeps_only_the_window() {
    let backend = backends().swap_remove(1);
    assert!(matches!(backend.config, StoreConfig::Embedded(_)));
    {
        let (store, _) = open(&backend, window(10), 8);
        let log = store.log("p");
        for _ in 0..10 {
            append(&store, &log, 10).await;
        }
        store.close();
    }
    let (store, _) = open(&backend, window(1000), 8);
    let log = store.log("p");
    let kept = ids(&log.subscribe(Resume::After(0)).replay);
    // Trimming runs one batch behind the window: at most one batch extra.
    assert!(kept.len() <= 20, "{} frames kept", kept.len());
    assert_eq!(kept.last().map(String::as_str), Some("100"));
    store.close();
}
