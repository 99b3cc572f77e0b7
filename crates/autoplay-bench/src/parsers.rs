//! The parser comparison: our `SseParser` vs `eventsource-stream`
//! on the same bytes, fed from memory in 16 KiB chunks (what a socket read
//! returns). Shared by the main command (a timing loop) and the criterion bench
//! `benches/parsers.rs`.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use autoplay_sdk::sse::{SseItem, SseParser};
use futures_util::Stream;

/// Chunk size of the simulated socket reads.
pub const CHUNK: usize = 16 * 1024;

/// Parses `body` with our parser; returns the number of events dispatched.
pub fn ours(body: &[u8]) -> u64 {
    let mut parser = SseParser::new();
    let mut events = 0u64;
    for chunk in body.chunks(CHUNK) {
        parser
            .feed(chunk, |item| {
                if let SseItem::Event(e) = item {
                    std::hint::black_box(&e);
                    events += 1;
                }
            })
            .expect("parse");
    }
    events
}

/// Parses `body` with `eventsource-stream`; returns the number of events.
pub fn eventsource_stream(body: &[u8]) -> u64 {
    use eventsource_stream::Eventsource;
    let chunks = futures_util::stream::iter(
        body.chunks(CHUNK)
            .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::copy_from_slice(c))),
    );
    let mut stream = pin!(chunks.eventsource());
    let mut cx = Context::from_waker(Waker::noop());
    let mut events = 0u64;
    // The source is always ready, so polling with a no-op waker never parks.
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(Ok(e))) => {
                std::hint::black_box(&e);
                events += 1;
            }
            Poll::Ready(Some(Err(e))) => panic!("eventsource-stream: {e}"),
            Poll::Ready(None) => break,
            Poll::Pending => unreachable!("an in-memory stream is always ready"),
        }
    }
    events
}
