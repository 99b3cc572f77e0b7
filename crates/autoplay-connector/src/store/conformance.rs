//! The seam's conformance suite: every backend passes the same tests (append,
//! replay after an id, tail, trim, restart).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{ProductLog, SessionRecord, Store};
use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::replay::{ReplayWindow, Resume};

/// A backend under test; an embedded one owns its directory.
struct Backend {
    config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    vec![
        Backend {
            config: StoreConfig::Memory,
            _dir: None,
        },
        Backend {
            config: StoreConfig::Embedded(dir.path().join("store")),
            _dir: Some(dir),
        },
    ]
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

/// Appends `n` events and waits until they are durable; returns the last id.
async fn append(store: &Store, log: &Arc<ProductLog>, n: usize) -> u64 {
    let mut last = (0, Default::default());
    for i in 0..n {
        last = log.append("summary", &format!("{{\"n\":{i}}}"));
    }
    store.durable(last.1).await.unwrap();
    last.0
}

fn ids(frames: &[Bytes]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(f).unwrap();
            let line = text.strip_prefix("id: ").unwrap();
            line.split('\n').next().unwrap().parse().unwrap()
        })
        .collect()
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
        assert_eq!(append(&store, &log, 7).await, 7, "{name}");
        let after = |id| ids(&log.subscribe(Resume::After(id)).replay);
        assert_eq!(after(4), [5, 6, 7], "{name}");
        assert_eq!(after(2), [3, 4, 5, 6, 7], "{name}");
        assert!(after(7).is_empty(), "{name}");
        assert!(log.subscribe(Resume::Live).replay.is_empty(), "{name}");
        assert_eq!(metrics.replay_gaps.load(Ordering::Relaxed), 0, "{name}");
        // Ids 1 and 2 are trimmed, 99 was never given, and the last is not ours:
        // the whole window, and a gap each.
        assert_eq!(after(0), [3, 4, 5, 6, 7], "{name}");
        assert_eq!(after(99), [3, 4, 5, 6, 7], "{name}");
        assert_eq!(
            ids(&log.subscribe(Resume::Foreign).replay),
            [3, 4, 5, 6, 7],
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
        append(&store, &log, 3).await;
        let mut sub = log.subscribe(Resume::After(1));
        assert_eq!(ids(&sub.replay), [2, 3], "{name}");
        append(&store, &log, 2).await;
        assert_eq!(ids(&drain(&mut sub.live)), [4, 5], "{name}");
        let frame = log.subscribe(Resume::After(4)).replay.remove(0);
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "id: 5\nevent: summary\ndata: {\"n\":1}\n\n",
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
        append(&store, &log, 10).await;
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
        for i in 0..30u64 {
            let resume = i % 11;
            subs.push((resume, log.subscribe(Resume::After(resume))));
            tokio::task::yield_now().await;
        }
        appender.await.unwrap();
        let newest = (total + 10) as u64;
        for (resume, mut sub) in subs {
            let mut got = ids(&sub.replay);
            got.extend(ids(&drain(&mut sub.live)));
            let want: Vec<u64> = (resume + 1..=newest).collect();
            assert_eq!(got, want, "{name}: resumed after {resume}");
        }
        store.close();
    }
}

#[tokio::test]
async fn the_window_is_trimmed_by_count_and_bytes() {
    for backend in backends() {
        let name = backend.config.to_string();
        let frame_len = "id: 10\nevent: summary\ndata: {\"n\":0}\n\n".len();
        // Room for three frames of this size, not four.
        let bytes = frame_len * 3 + 5;
        let (store, _) = open(&backend, ReplayWindow { events: 100, bytes }, 8);
        let log = store.log("p");
        append(&store, &log, 12).await;
        let replay = log.subscribe(Resume::After(0)).replay;
        assert_eq!(ids(&replay), [10, 11, 12], "{name}");
        assert!(replay.iter().map(Bytes::len).sum::<usize>() <= bytes);
        // A frame bigger than the whole window is still kept, alone.
        let (id, ticket) = log.append("summary", &"x".repeat(bytes));
        store.durable(ticket).await.unwrap();
        assert_eq!(ids(&log.subscribe(Resume::After(0)).replay), [id], "{name}");
        store.close();
    }
}

#[tokio::test]
async fn a_full_subscriber_is_dropped_not_skipped() {
    for backend in backends() {
        let name = backend.config.to_string();
        let (store, metrics) = open(&backend, window(100), 2);
        let log = store.log("p");
        let mut slow = log.subscribe(Resume::Live);
        append(&store, &log, 5).await;
        assert_eq!(log.subscriber_count(), 0, "{name}");
        assert_eq!(ids(&drain(&mut slow.live)), [1, 2], "{name}");
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(
            metrics.slow_subscriber_disconnects.load(Ordering::Relaxed),
            1
        );
        // It resumes where it stopped.
        assert_eq!(
            ids(&log.subscribe(Resume::After(2)).replay),
            [3, 4, 5],
            "{name}"
        );
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
        {
            let (store, _) = open(&backend, window(5), 8);
            let log = store.log("p");
            append(&store, &log, 8).await;
            let other = store.log("q");
            append(&store, &log, 0).await;
            append(&store, &other, 2).await;
            let ticket = store
                .put_session("p", "s1", Some(record.clone()))
                .max(store.put_email("p", "u1", Some("a@example.com")))
                .max(store.put_email("p", "u2", Some("b@example.com")))
                .max(store.put_email("p", "u2", None));
            store.durable(ticket).await.unwrap();
            store.close();
        }
        let (store, _) = open(&backend, window(5), 8);
        let log = store.log("p");
        let other = store.log("q");
        let restored = store.take_restored();
        if store.is_durable() {
            assert_eq!(ids(&log.subscribe(Resume::After(5)).replay), [6, 7, 8]);
            assert_eq!(append(&store, &log, 1).await, 9, "ids go on");
            assert_eq!(append(&store, &other, 1).await, 3);
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
            assert_eq!(append(&store, &log, 1).await, 1, "{name}");
            assert!(restored.sessions.is_empty() && restored.emails.is_empty());
        }
        store.close();
    }
}

/// What left the window leaves the disk: a restart with a bigger window gets
/// only what the smaller one kept.
#[tokio::test]
async fn the_disk_keeps_only_the_window() {
    let backend = backends().pop().unwrap();
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
    assert_eq!(kept.last(), Some(&100));
    store.close();
}
