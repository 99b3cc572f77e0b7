//! What the client logs, under the `autoplay_sdk` target, and that no secret (the
//! token, the URL's credentials) ever appears. One test binary of its own: it
//! installs the global subscriber, once, for all its tests; each test looks at the
//! lines that name its own server.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use autoplay_sdk::ConnectorClient;
use support::*;
use tracing_subscriber::fmt::MakeWriter;

const TOKEN: &str = "uk_secret_never_logged_42";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The logs of every test of this binary.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .init();
        logs
    })
}

#[test]
fn logs_the_connection_story_without_the_token() {
    let logs = logs();

    let long_garbage = format!("not json {}", "x".repeat(5000));
    let server = TestServer::start(move |n, _| match n {
        0 => Reply::status(500),
        1 => Reply::stream(vec![
            write(actions_frame(1, "s", "a")),
            write(format!("id: 2\ndata: {long_garbage}\n\n")),
        ]),
        _ => Reply::status(401),
    });
    let err = ConnectorClient::builder(server.url())
        .token(TOKEN)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(10))
        .on_actions(|_| {})
        .run()
        .unwrap_err();
    assert_eq!(err.status_code(), Some(401));

    let text = logs.text();
    assert!(
        !text.contains(TOKEN),
        "the token leaked into the logs:\n{text}"
    );
    for expected in [
        "connecting",
        "connected",
        "disconnected",
        "reconnecting",
        "skipping an event that is not a valid payload",
        "fatal status",
    ] {
        assert!(
            text.contains(expected),
            "no {expected:?} in the logs:\n{text}"
        );
    }
    assert!(
        text.contains("autoplay_sdk"),
        "logs use the autoplay_sdk target"
    );
    let bad_line = text
        .lines()
        .find(|l| l.contains("skipping an event"))
        .unwrap();
    assert!(
        bad_line.len() < 1000,
        "bad data is truncated in the log: {} bytes",
        bad_line.len()
    );
}

const SECRET: &str = "pw_never_logged_7";

#[test]
fn url_credentials_never_reach_the_logs() {
    let logs = logs();
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write(actions_frame(1, "s", "a"))]),
        1 => Reply::status(500),
        _ => Reply::status(403),
    });
    let url = format!("http://bob:{SECRET}@{}/stream/acme", server.addr);
    let err = ConnectorClient::builder(url)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(10))
        .on_actions(|_| {})
        .run()
        .unwrap_err();
    assert_eq!(err.status_code(), Some(403));
    let text = logs.text();
    let port = server.addr.port().to_string();
    let mine: Vec<&str> = text.lines().filter(|l| l.contains(&port)).collect();
    assert!(mine.len() >= 4, "{text}");
    assert!(
        mine.iter()
            .any(|l| l.contains(&format!("***@127.0.0.1:{port}"))),
        "{text}"
    );
    assert!(
        !text.contains(SECRET) && !text.contains("bob:"),
        "a credential leaked into the logs:\n{text}"
    );
}

#[test]
fn an_id_that_cannot_be_sent_is_logged_once_and_left_out() {
    let logs = logs();
    // The id's marker ties the log line to this test.
    let server = TestServer::start(|n, _| match n {
        0..=3 => Reply::stream(vec![write(format!(
            "id: once-{n}\u{1}\n{}",
            actions_frame_without_id("s", "a")
        ))]),
        _ => Reply::stream(vec![write(format!(
            "id: once-3\u{1}\n{}",
            actions_frame_without_id("s", "a")
        ))]),
    });
    let bg = ConnectorClient::builder(server.url())
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(10))
        .on_actions(|_| {})
        .run_in_background()
        .unwrap();
    let requests = server.wait_for_requests(8, Duration::from_secs(10));
    drop(bg);
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.header("last-event-id").is_none())
    );
    let text = logs.text();
    let warned = |id: &str| {
        text.lines()
            .filter(|l| l.contains("cannot be sent as Last-Event-ID") && l.contains(id))
            .count()
    };
    // A new id is new news; the same one again is not.
    assert_eq!(warned("once-0"), 1, "{text}");
    assert_eq!(warned("once-2"), 1, "{text}");
    assert_eq!(warned("once-3"), 1, "{text}");
}
