//! What the client logs, under the `autoplay_sdk` target, and that the token never
//! appears. One test binary of its own: it installs the global subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
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

#[test]
fn logs_the_connection_story_without_the_token() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .init();

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
