//! `GET /stream/{product_id}`: the Server-Sent-Events endpoint.
//!
//! The body is written by hand rather than through axum's `Sse`: frames are
//! rendered once at publish time and shared as [`Bytes`], so a thousand
//! subscribers cost a thousand reference counts, not a thousand serialisations.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::auth::{self, StreamDenied};
use crate::metrics::{self, Metrics};
use crate::replay::Resume;
use crate::server::{AppState, json_error};
use crate::store::Subscription;
use crate::tickets;

/// The `Last-Event-ID` request header.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// A heartbeat frame: an event with an empty data line.
const HEARTBEAT: &[u8] = autoplay_sdk::wire::HEARTBEAT_FRAME;

pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // Refusals and subscribers are logged at INFO: they are what an operator
    // looks for when a client "does not connect". Never with the key.
    let Some(product) = state.products.get(&product_id) else {
        info!(
            product_id,
            status = 404,
            "stream request refused: unknown product"
        );
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    // A browser's EventSource cannot send Authorization: it brings a ticket.
    let query = tickets::StreamQuery::parse(query.as_deref());
    let by_ticket = match tickets::admit_stream(&state, &product, &query) {
        tickets::Admission::Ticket => true,
        tickets::Admission::NoTicket => false,
        tickets::Admission::Refused(response) => return response,
    };
    let key_check = if by_ticket {
        Ok(())
    } else {
        auth::check_product_key(&state.products, &product, &headers)
    };
    if let Err(denied) = key_check {
        metrics::inc(&state.metrics.auth_failures);
        return match denied {
            StreamDenied::Unauthorized => {
                if auth::bearer(&headers).is_some() {
                    info!(
                        product_id,
                        status = 401,
                        "stream request refused: wrong API key"
                    );
                } else {
                    info!(
                        product_id,
                        status = 401,
                        "stream request refused: no API key"
                    );
                }
                let mut response =
                    json_error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            StreamDenied::Forbidden => {
                info!(
                    product_id,
                    status = 403,
                    "stream request refused: the API key belongs to another product"
                );
                json_error(
                    StatusCode::FORBIDDEN,
                    "this API key belongs to another product",
                )
            }
        };
    }

    // The header (the browser's own, on its reconnects) wins over the query's
    // `lastEventId` (a page's new EventSource cannot set the header).
    let last_event_id = headers
        .get(LAST_EVENT_ID)
        .map(|v| v.as_bytes())
        .or_else(|| query.last_event_id.as_deref().map(str::as_bytes));
    let resume = Resume::from_header(last_event_id);
    if !product.log.is_ready() {
        // The Redis store before its tail read the window (Redis down at
        // start): the client gets its headers and heartbeats now, and what it
        // missed and the live events once the window is there.
        info!(
            product_id,
            "subscriber connected; waiting for the store to replay what it missed"
        );
        let body = waiting_body(
            product.log.clone(),
            resume,
            state.heartbeat,
            state.shutdown.clone(),
            LiveGuard::new(state.metrics.clone(), product.id.clone()),
        );
        return sse_response(body);
    }
    let subscription = product.log.subscribe(resume);
    info!(
        product_id,
        last_event_id = match resume {
            Resume::AfterStream(key) => Some(crate::replay::stream_id(key)),
            Resume::After(id) => Some(id.to_string()),
            Resume::Live | Resume::Foreign => None,
        }
        .map(tracing::field::display),
        replayed = subscription.replay.len(),
        "subscriber connected"
    );
    let body = sse_body(
        subscription,
        state.heartbeat,
        state.shutdown.clone(),
        LiveGuard::new(state.metrics.clone(), product.id.clone()),
    );
    sse_response(body)
}

fn sse_response(body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Reverse proxies (nginx) would otherwise buffer the stream.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Counts the subscriber as live for as long as its body exists, and logs its
/// leaving (however the body ends: the client left, it fell behind, shutdown).
struct LiveGuard {
    metrics: Arc<Metrics>,
    product_id: Arc<str>,
    since: Instant,
    sent: u64,
}

impl LiveGuard {
    fn new(metrics: Arc<Metrics>, product_id: Arc<str>) -> Self {
        metrics.live_subscribers.fetch_add(1, Ordering::Relaxed);
        Self {
            metrics,
            product_id,
            since: Instant::now(),
            sent: 0,
        }
    }

    fn sent_one(&mut self) {
        self.sent += 1;
        metrics::inc(&self.metrics.events_sent);
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.metrics
            .live_subscribers
            .fetch_sub(1, Ordering::Relaxed);
        info!(
            product_id = &*self.product_id,
            sent = self.sent,
            connected_s = self.since.elapsed().as_secs(),
            "subscriber left"
        );
    }
}

struct BodyState {
    replay: std::vec::IntoIter<Bytes>,
    subscription: tokio::sync::mpsc::Receiver<Bytes>,
    /// A frame taken from the replay or the queue that did not fit in the
    /// last chunk: the next chunk starts with it.
    held: Option<Bytes>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    guard: LiveGuard,
}

/// The most bytes of frames joined into one chunk of the body.
///
/// Every chunk hyper gets is at least one write system call, and on loopback or
/// a LAN the system call, not the bytes, is most of what a delivery costs (the
/// sender's kernel also runs the receiver's side of TCP). hyper joins at most
/// 16 chunks or 8 KiB (its write buffer, capped with the read buffer in
/// [`crate::server`]) into one `writev`; a subscriber that has fallen a burst
/// behind gets its frames in chunks of up to this size instead. The copy is
/// made only when two or more frames are ready at once, lives until the write
/// took it (normally at once: the kernel's socket buffer is far larger), and
/// costs far less than the system calls it saves.
const MAX_CHUNK: usize = 32 * 1024;

impl BodyState {
    /// The next frame that is ready without waiting, in stream order.
    fn ready_frame(&mut self) -> Option<Bytes> {
        if let Some(frame) = self.held.take() {
            return Some(frame);
        }
        if let Some(frame) = self.replay.next() {
            return Some(frame);
        }
        self.subscription.try_recv().ok()
    }

    /// `first` and the frames ready after it, as one chunk of at most
    /// [`MAX_CHUNK`] bytes (or `first` alone, uncopied, when nothing else is
    /// ready or it is that big on its own).
    fn chunk(&mut self, first: Bytes) -> Bytes {
        self.guard.sent_one();
        let Some(second) = self.ready_frame() else {
            return first;
        };
        if first.len() + second.len() > MAX_CHUNK {
            self.held = Some(second);
            return first;
        }
        self.guard.sent_one();
        let mut chunk = bytes::BytesMut::with_capacity(MAX_CHUNK);
        chunk.extend_from_slice(&first);
        chunk.extend_from_slice(&second);
        while let Some(frame) = self.ready_frame() {
            if chunk.len() + frame.len() > MAX_CHUNK {
                self.held = Some(frame);
                break;
            }
            self.guard.sent_one();
            chunk.extend_from_slice(&frame);
        }
        chunk.freeze()
    }
}

fn heartbeat_interval(heartbeat: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    // After a stall, one heartbeat is enough; a burst of them says nothing more.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The body of a subscriber that came before its log was ready: heartbeats
/// until it is, then [`sse_body`]'s frames from a subscription made then.
fn waiting_body(
    log: Arc<crate::store::ProductLog>,
    resume: Resume,
    heartbeat: Duration,
    shutdown: CancellationToken,
    guard: LiveGuard,
) -> Body {
    use futures_util::StreamExt;
    let beats = futures_util::stream::unfold(
        (heartbeat_interval(heartbeat), shutdown.clone()),
        |(mut interval, shutdown)| async move {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                _ = interval.tick() => Some((Bytes::from_static(HEARTBEAT), (interval, shutdown))),
            }
        },
    );
    let ready = {
        let log = log.clone();
        async move { log.wait_ready().await }
    };
    // Heartbeats until the log is ready (or shutdown), then the subscription.
    let frames = beats
        .take_until(ready)
        .map(Ok::<_, std::convert::Infallible>)
        .chain(
            futures_util::stream::once(async move {
                if shutdown.is_cancelled() {
                    return None;
                }
                let subscription = log.subscribe(resume);
                info!(
                    product_id = &*guard.product_id,
                    replayed = subscription.replay.len(),
                    "the store is ready; replaying to the waiting subscriber"
                );
                Some(frames(subscription, heartbeat, shutdown, guard))
            })
            .filter_map(std::future::ready)
            .flatten(),
        );
    Body::from_stream(frames)
}

fn sse_body(
    subscription: Subscription,
    heartbeat: Duration,
    shutdown: CancellationToken,
    guard: LiveGuard,
) -> Body {
    Body::from_stream(frames(subscription, heartbeat, shutdown, guard))
}

/// A subscription's frames: its replay, then its live queue, with heartbeats.
fn frames(
    subscription: Subscription,
    heartbeat: Duration,
    shutdown: CancellationToken,
    guard: LiveGuard,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let state = BodyState {
        replay: subscription.replay.into_iter(),
        subscription: subscription.live,
        held: None,
        heartbeat: heartbeat_interval(heartbeat),
        shutdown,
        guard,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        // The replay first, then the live queue: `ready_frame` keeps that order.
        if let Some(frame) = state.held.take().or_else(|| state.replay.next()) {
            let chunk = state.chunk(frame);
            return Some((Ok::<_, std::convert::Infallible>(chunk), state));
        }
        tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => None,
            frame = state.subscription.recv() => {
                // `None`: the channel dropped us (too slow); ending the body makes
                // the client reconnect and resume by id.
                let frame = frame?;
                let chunk = state.chunk(frame);
                Some((Ok(chunk), state))
            }
            _ = state.heartbeat.tick() => Some((Ok(Bytes::from_static(HEARTBEAT)), state)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn frame(i: usize, len: usize) -> Bytes {
        let mut f = format!("id: {i}\ndata: ").into_bytes();
        f.resize(len - 2, b'x');
        f.extend_from_slice(b"\n\n");
        Bytes::from(f)
    }

    /// Frames ready together go out as chunks of at most `MAX_CHUNK` bytes, the
    /// replay first, in order, each counted once; a lone frame goes uncopied.
    #[tokio::test]
    async fn ready_frames_are_joined_in_order_under_the_cap() {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let replay: Vec<Bytes> = (0..40).map(|i| frame(i, 700)).collect();
        let live: Vec<Bytes> = (40..140).map(|i| frame(i, 900)).collect();
        for f in &live {
            tx.try_send(f.clone()).unwrap();
        }
        let shutdown = CancellationToken::new();
        let body = frames(
            Subscription {
                replay: replay.clone(),
                live: rx,
            },
            Duration::from_secs(3600),
            shutdown.clone(),
            LiveGuard::new(metrics.clone(), Arc::from("p")),
        );
        tokio::pin!(body);
        let expected: Vec<u8> = replay
            .iter()
            .chain(&live)
            .flat_map(|f| f.to_vec())
            .collect();
        let mut got = Vec::new();
        let mut chunks = 0;
        while got.len() < expected.len() {
            let chunk = body.next().await.unwrap().unwrap();
            assert!(chunk.len() <= MAX_CHUNK, "{}", chunk.len());
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert_eq!(got, expected);
        // 40 × 700 + 100 × 900 bytes in 32 KiB chunks: 4, not 140 writes.
        assert!(chunks <= 5, "{chunks} chunks");
        assert_eq!(metrics.events_sent.load(Ordering::Relaxed), 140);

        // One frame alone is the very frame, not a copy.
        let one = frame(140, 500);
        tx.try_send(one.clone()).unwrap();
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(chunk.as_ptr(), one.as_ptr());
        assert_eq!(metrics.events_sent.load(Ordering::Relaxed), 141);

        // A frame bigger than the cap goes alone, after what was ready before it.
        let small = frame(141, 500);
        let big = frame(142, MAX_CHUNK + 10);
        tx.try_send(small.clone()).unwrap();
        tx.try_send(big.clone()).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), small);
        assert_eq!(body.next().await.unwrap().unwrap(), big);

        // Dropped by the fan-out (too slow): what was queued, then the end.
        tx.try_send(frame(143, 500)).unwrap();
        drop(tx);
        assert_eq!(body.next().await.unwrap().unwrap(), frame(143, 500));
        assert!(body.next().await.is_none());
    }
}
