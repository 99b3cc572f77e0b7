//! `GET /stream/{product_id}`: the Server-Sent-Events endpoint.
//!
//! The body is written by hand rather than through axum's `Sse`: frames are
//! rendered once at publish time and shared as [`Bytes`], so a thousand
//! subscribers cost a thousand reference counts, not a thousand serialisations.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::{self, StreamDenied};
use crate::broadcast::{HEARTBEAT, Subscription};
use crate::metrics::{self, Metrics};
use crate::server::{AppState, json_error};

/// The `Last-Event-ID` request header.
pub const LAST_EVENT_ID: &str = "last-event-id";

pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(product) = state.products.get(&product_id) else {
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    if let Err(denied) = auth::check_stream_key(
        &product.config,
        state.products.values().map(|p| &p.config),
        &headers,
    ) {
        metrics::inc(&state.metrics.auth_failures);
        debug!(product_id, ?denied, "stream request refused");
        return match denied {
            StreamDenied::Unauthorized => {
                let mut response =
                    json_error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            StreamDenied::Forbidden => json_error(
                StatusCode::FORBIDDEN,
                "this API key belongs to another product",
            ),
        };
    }

    let last_event_id = match headers
        .get(LAST_EVENT_ID)
        .map(|v| v.to_str().map(str::trim))
    {
        None | Some(Ok("")) => None,
        Some(Ok(text)) => match text.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                // Not one of ours (another server's id scheme): treat it like an
                // id we do not know, which replays the whole buffer.
                warn!(
                    product_id,
                    "Last-Event-ID is not a number; replaying the whole buffer"
                );
                Some(u64::MAX)
            }
        },
        Some(Err(_)) => Some(u64::MAX),
    };
    let subscription = product.channel.subscribe(last_event_id);
    let body = sse_body(
        subscription,
        state.heartbeat,
        state.shutdown.clone(),
        state.metrics.clone(),
    );

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

/// Counts the subscriber as live for as long as its body exists.
struct LiveGuard(Arc<Metrics>);

impl LiveGuard {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.live_subscribers.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live_subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

struct BodyState {
    replay: std::vec::IntoIter<Bytes>,
    subscription: tokio::sync::mpsc::Receiver<Bytes>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    guard: LiveGuard,
}

fn sse_body(
    subscription: Subscription,
    heartbeat: Duration,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Body {
    let mut interval = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    // After a stall, one heartbeat is enough; a burst of them says nothing more.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = BodyState {
        replay: subscription.replay.into_iter(),
        subscription: subscription.live,
        heartbeat: interval,
        shutdown,
        guard: LiveGuard::new(metrics),
    };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        if let Some(frame) = state.replay.next() {
            metrics::inc(&state.guard.0.events_sent);
            return Some((Ok::<_, std::convert::Infallible>(frame), state));
        }
        tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => None,
            frame = state.subscription.recv() => {
                // `None`: the channel dropped us (too slow); ending the body makes
                // the client reconnect and resume by id.
                let frame = frame?;
                metrics::inc(&state.guard.0.events_sent);
                Some((Ok(frame), state))
            }
            _ = state.heartbeat.tick() => Some((Ok(Bytes::from_static(HEARTBEAT)), state)),
        }
    });
    Body::from_stream(frames)
}
