//! `autoplay listen`: the async client's event streams, printed.

use std::time::Duration;

use autoplay_sdk::sse::SseEvent;
use autoplay_sdk::{AsyncConnectorClient, DisconnectReason, OverflowPolicy, redact_url};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::CliError;
use crate::cli::{Format, ListenArgs};
use crate::output::{self, Stdout, WriteError};
use crate::signal::Shutdown;

/// The SDK's default longest reconnect delay.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(args: ListenArgs, mut shutdown: Shutdown) -> Result<(), CliError> {
    let mut builder = AsyncConnectorClient::builder(args.url.as_str())
        // Never drop: a slow stdout slows the reader, and the connector makes a
        // subscriber that falls too far behind reconnect and resume by id.
        .overflow_policy(OverflowPolicy::Block)
        // The SDK passes the URL with its credentials redacted.
        .on_connect(|url| output::status(format_args!("connected to {url}")))
        .on_disconnect(|reason| {
            if *reason != DisconnectReason::Stopped {
                output::status(format_args!("disconnected: {reason}"));
            }
        })
        .on_retry(|attempt, delay, reason| {
            let delay = human_delay(delay);
            if attempt == 0 {
                output::status(format_args!("reconnecting in {delay}"));
            } else {
                output::status(format_args!(
                    "attempt {attempt} failed ({reason}); retrying in {delay}"
                ));
            }
        });
    if let Some(token) = args.token {
        builder = builder.token(token);
    }
    for header in args.headers {
        builder = builder.header(header.name, header.value);
    }
    if let Some(id) = args.last_event_id {
        builder = builder.last_event_id(id);
    }
    let initial = args.initial_backoff_ms.map(Duration::from_millis);
    let max = args.max_backoff_ms.map(Duration::from_millis);
    if let Some(initial) = initial {
        builder = builder.initial_backoff(initial);
    }
    match (initial, max) {
        (_, Some(max)) => builder = builder.max_backoff(max),
        // A long first delay alone raises the cap rather than being refused.
        (Some(initial), None) if initial > DEFAULT_MAX_BACKOFF => {
            builder = builder.max_backoff(initial);
        }
        _ => {}
    }
    if let Some(secs) = args.read_timeout_s {
        builder = builder.read_timeout(Duration::from_secs_f64(secs));
    }
    if let Some(retries) = args.max_retries {
        builder = builder.max_retries(retries);
    }
    let client = builder.build()?;

    // Credentials in the URL are never printed (the SDK redacts them in its own
    // messages, `on_connect`'s URL and its errors too).
    output::status(format_args!("connecting to {}", redact_url(&args.url)));
    let max_events = args.max_events;
    match args.format {
        Format::Text => {
            print_stream(client.events(), max_events, &mut shutdown, |event, out| {
                out.extend_from_slice(event.to_text().as_bytes());
                out.extend_from_slice(b"\n\n");
            })
            .await
        }
        Format::Json => {
            print_stream(client.events(), max_events, &mut shutdown, |event, out| {
                out.extend_from_slice(event.to_json().as_bytes());
                out.push(b'\n');
            })
            .await
        }
        Format::Raw => print_stream(client.raw_events(), max_events, &mut shutdown, raw_line).await,
    }
}

/// `850 ms`, `2.4 s`: precise enough for a person watching the stream.
fn human_delay(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// One SSE event as `--format raw` prints it: `{"event":..,"data":..,"id":..}`.
#[derive(Serialize)]
struct RawLine<'a> {
    event: &'a str,
    data: &'a str,
    id: Option<&'a str>,
}

fn raw_line(event: &SseEvent, out: &mut Vec<u8>) {
    let line = RawLine {
        event: &event.event,
        data: &event.data,
        id: event.id.as_deref(),
    };
    serde_json::to_writer(&mut *out, &line).expect("strings always serialise");
    out.push(b'\n');
}

/// Prints each item of `stream` until it ends, `max_events` items are printed, a
/// signal arrives, or stdout is closed (all status 0); a client error ends it with
/// that error's status.
pub async fn print_stream<T>(
    stream: impl Stream<Item = Result<T, autoplay_sdk::Error>>,
    max_events: Option<u64>,
    shutdown: &mut Shutdown,
    render: impl Fn(&T, &mut Vec<u8>),
) -> Result<(), CliError> {
    let mut stream = std::pin::pin!(stream);
    let mut stdout = Stdout::new();
    // One buffer, reused for every item.
    let mut text = Vec::new();
    let mut printed = 0u64;
    loop {
        let item = tokio::select! {
            biased;
            () = shutdown.recv() => return Ok(()),
            item = stream.next() => item,
        };
        let item = match item {
            None => return Ok(()),
            Some(item) => item?,
        };
        text.clear();
        render(&item, &mut text);
        match stdout.emit(&text) {
            Ok(()) => {}
            Err(WriteError::Closed) => return Ok(()),
            Err(WriteError::Failed(e)) => {
                return Err(CliError::failure(format!("cannot write to stdout: {e}")));
            }
        }
        printed += 1;
        if max_events.is_some_and(|max| printed >= max) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(event: &SseEvent) -> String {
        let mut out = Vec::new();
        raw_line(event, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn raw_lines_keep_field_order_and_null_ids() {
        let event = SseEvent {
            event: "heartbeat".into(),
            data: String::new(),
            id: None,
        };
        assert_eq!(
            raw(&event),
            "{\"event\":\"heartbeat\",\"data\":\"\",\"id\":null}\n"
        );
        let event = SseEvent {
            event: "message".into(),
            data: "a\n\"b\"".into(),
            id: Some("7".into()),
        };
        assert_eq!(
            raw(&event),
            "{\"event\":\"message\",\"data\":\"a\\n\\\"b\\\"\",\"id\":\"7\"}\n"
        );
    }
}
