//! The async client against scripted HTTP servers on 127.0.0.1.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoplay_sdk::{AsyncConnectorClient, AsyncConnectorClientBuilder, Error, Event};
use futures_util::StreamExt;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn fast(url: &str) -> AsyncConnectorClientBuilder {
    AsyncConnectorClient::builder(url)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn async_callbacks_receive_typed_payloads() {
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
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, s) = (seen.clone(), seen.clone());
    let client = fast(&server.url())
        .on_actions(move |p| {
            let a = a.clone();
            async move {
                // A slow async callback must not stall the reader.
                tokio::time::sleep(Duration::from_millis(5)).await;
                a.lock()
                    .unwrap()
                    .push(format!("actions:{}", p.session_id.unwrap_or_default()));
            }
        })
        .on_summary(move |p| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push(format!("summary:{}", p.session_id.unwrap_or_default()))
            }
        })
        .build()
        .unwrap();
    let task = client.run_in_background();
    wait_for("3 payloads", || seen.lock().unwrap().len() == 3).await;
    client.stop();
    task.await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["actions:ps_1", "summary:ps_1", "actions:ps_2"]
    );
    assert_eq!(client.dropped_count(), 0);
}

#[tokio::test]
async fn events_stream_yields_payloads_in_order() {
    let body: Vec<Step> = (1..=5)
        .map(|i| write(actions_frame(i, "s", &i.to_string())))
        .chain([write(summary_frame(6, "s", "done")), Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let client = fast(&server.url()).build().unwrap();
    let events: Vec<Event> = client.events().take(6).map(Result::unwrap).collect().await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Actions(p) => p.actions[0].title.to_string(),
            Event::Summary(p) => p.summary.to_string(),
        })
        .collect();
    assert_eq!(kinds, vec!["1", "2", "3", "4", "5", "done"]);
}

#[tokio::test]
async fn events_stream_ends_with_the_fatal_error() {
    let server = TestServer::always(Reply::status(403));
    let client = fast(&server.url()).build().unwrap();
    let items: Vec<Result<Event, Error>> = client.events().collect().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().status_code(), Some(403));
}

#[tokio::test]
async fn run_returns_the_fatal_error() {
    let server = TestServer::always(Reply::status(401));
    let err = fast(&server.url())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FatalStatus { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn raw_events_include_heartbeats_and_unparsed_data() {
    let server = TestServer::start(|_, _| {
        Reply::stream(vec![
            write(include_str!("fixtures/wire/stream-mixed.sse")),
            Step::Stall,
        ])
    });
    let client = fast(&server.url()).build().unwrap();
    let raw: Vec<_> = client
        .raw_events()
        .take(6)
        .map(Result::unwrap)
        .collect()
        .await;
    let names: Vec<(&str, Option<&str>)> = raw
        .iter()
        .map(|e| (e.event.as_str(), e.id.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("actions", Some("1")),
            ("heartbeat", Some("1")),
            ("message", Some("2")),
            ("actions", Some("3")),
            ("message", Some("4")),
            ("actions", Some("5")),
        ]
    );
    assert_eq!(raw[4].data, "not json at all");
}

#[tokio::test]
async fn workers_keep_sessions_in_order() {
    let mut frames = String::new();
    let mut id = 0;
    for i in 0..20 {
        for s in 0..4 {
            id += 1;
            frames.push_str(&actions_frame(id, &format!("s{s}"), &i.to_string()));
        }
    }
    let server = TestServer::start(move |_, _| Reply::stream(vec![write(&frames), Step::Stall]));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let client = fast(&server.url())
        .workers(3)
        .overflow_policy(autoplay_sdk::OverflowPolicy::Block)
        .on_actions(move |p| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                s.lock().unwrap().push((
                    p.session_id.unwrap(),
                    p.actions[0].title.parse::<u32>().unwrap(),
                ));
            }
        })
        .build()
        .unwrap();
    let task = client.run_in_background();
    wait_for("80 events", || seen.lock().unwrap().len() == 80).await;
    client.stop();
    task.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    for s in 0..4 {
        let order: Vec<u32> = seen
            .iter()
            .filter(|(id, _)| *id == format!("s{s}"))
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn dropping_the_run_future_stops_the_reader() {
    let server = TestServer::always(Reply::stream(vec![Step::Stall]));
    let client = fast(&server.url()).build().unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(100), client.run()).await;
    // The client can run again: the first run released it and stopped its reader.
    assert!(client.stop_handle().is_stopped());
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn dropping_the_background_handle_stops_the_client() {
    let server = TestServer::always(Reply::stream(vec![
        write(actions_frame(1, "s", "x")),
        Step::Stall,
    ]));
    let seen = Arc::new(Mutex::new(0));
    let s = seen.clone();
    let client = fast(&server.url())
        .on_actions(move |_| {
            let s = s.clone();
            async move { *s.lock().unwrap() += 1 }
        })
        .build()
        .unwrap();
    let handle = client.run_in_background();
    wait_for("the first event", || *seen.lock().unwrap() == 1).await;
    assert!(!handle.is_finished());
    drop(handle);
    assert!(client.stop_handle().is_stopped());
    // A second run is refused only while the first lasts.
    tokio::time::timeout(WAIT, async {
        while matches!(client.run().await, Err(Error::AlreadyRunning)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the background run never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_inside_a_worker_callback_stops_without_deadlock() {
    let body: Vec<Step> = (1..=10)
        .map(|i| write(actions_frame(i, &format!("s{i}"), "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let slot: Arc<Mutex<Option<autoplay_sdk::AsyncBackgroundClient>>> = Arc::default();
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (sl, d) = (slot.clone(), dropped.clone());
    let client = fast(&server.url())
        .workers(3)
        .on_actions(move |_| {
            let bg = sl.lock().unwrap().take();
            let d = d.clone();
            async move {
                if let Some(bg) = bg {
                    drop(bg);
                    d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
        .build()
        .unwrap();
    *slot.lock().unwrap() = Some(client.run_in_background());
    wait_for("the drop inside the callback", || {
        dropped.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    assert!(client.stop_handle().is_stopped());
    tokio::time::timeout(WAIT, async {
        while matches!(client.run().await, Err(Error::AlreadyRunning)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the run stopped from inside a callback never ended");
}

async fn async_stop_now_run(workers: usize) {
    let body: Vec<Step> = (1..=30)
        .map(|i| write(actions_frame(i, &format!("s{}", i % 6), "x")))
        .chain([Step::Stall])
        .collect();
    let server = TestServer::start(move |_, _| Reply::stream(body.clone()));
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (st, h) = (started.clone(), handled.clone());
    use std::sync::atomic::Ordering::SeqCst;
    let client = fast(&server.url())
        .overflow_policy(autoplay_sdk::OverflowPolicy::Block)
        .max_queue_size(50)
        .workers(workers)
        .on_actions(move |_| {
            let (st, h) = (st.clone(), h.clone());
            async move {
                st.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                h.fetch_add(1, SeqCst);
            }
        })
        .build()
        .unwrap();
    let handle = client.run_in_background();
    wait_for("a callback running", || started.load(SeqCst) >= 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started_before = started.load(SeqCst);
    let stopping = std::time::Instant::now();
    handle.stop_now();
    handle.await.unwrap();
    let took = stopping.elapsed();
    // Draining thirty 100 ms callbacks would take 1 s or more even on three workers.
    assert!(took < Duration::from_millis(400), "{took:?}");
    assert_eq!(started.load(SeqCst), handled.load(SeqCst));
    assert!(handled.load(SeqCst) <= started_before + workers);
    assert!(handled.load(SeqCst) < 30);
}

#[tokio::test]
async fn stop_now_discards_the_queue() {
    async_stop_now_run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_now_with_workers_discards_the_worker_lanes_too() {
    async_stop_now_run(3).await;
}

#[tokio::test]
async fn stop_now_ends_the_events_stream_without_the_queued_events() {
    let frames: String = (1..=20).map(|i| actions_frame(i, "s", "x")).collect();
    let server = TestServer::start(move |_, _| Reply::stream(vec![write(&frames), Step::Stall]));
    let client = fast(&server.url()).build().unwrap();
    let mut events = Box::pin(client.events());
    events.next().await.unwrap().unwrap();
    wait_for("the rest queued", || client.queue_size() >= 19).await;
    client.stop_now();
    let rest = tokio::time::timeout(WAIT, events.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rest.len() <= 1, "{} events after stop_now", rest.len());
}
