//! `POST /webhook/{product_id}` (PostHog) and `POST /events/{product_id}`
//! (already-extracted actions).
//!
//! Checks run in this order: unknown product (404), credentials in the headers
//! (401), the body (413 over the limit, 408 not in within the body timeout), an
//! HMAC signature over it (401), JSON and shape (400). Only a request signed with
//! an HMAC has its body read before it is known to be the product's: everything
//! else is refused from its headers, so an unauthenticated request costs no
//! buffering and no wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::models::{ActionsPayload, CompactString, SlimAction};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use crate::auth;
use crate::clock::unix_now;
use crate::extract::{self, EmailLookup, format_rfc3339};
use crate::metrics;
use crate::products::Registry;
use crate::server::{AppState, Product, json_error};
use crate::store::{Store, Ticket};
use crate::summary;

/// Emails learnt from `$identify`, `$set` and persons, by (product, user), so later
/// events of the same user carry it. Forgotten after the session idle time.
#[derive(Default)]
pub(crate) struct EmailBook {
    emails: Mutex<HashMap<UserKey, (String, Instant)>>,
}

/// (product, user id).
type UserKey = (Arc<str>, String);

impl EmailBook {
    /// Learns `pairs` of (user, email), and writes the new ones to `store`.
    fn learn(&self, store: &Store, product_id: &Arc<str>, pairs: &[(String, String)]) -> Ticket {
        if pairs.is_empty() {
            return Ticket::default();
        }
        let mut ticket = Ticket::default();
        let mut emails = self.emails.lock().unwrap_or_else(|e| e.into_inner());
        for (user, email) in pairs {
            let previous = emails.insert(
                (product_id.clone(), user.clone()),
                (email.clone(), Instant::now()),
            );
            if store.keeps_emails() && previous.is_none_or(|(known, _)| known != *email) {
                ticket = ticket.max(store.put_email(product_id, user, Some(email)));
            }
        }
        ticket
    }

    /// Takes back the emails a durable store kept (`(product, user, email)`),
    /// of the products that still exist.
    pub fn restore(&self, products: &Registry, kept: Vec<(String, String, String)>) {
        let mut emails = self.emails.lock().unwrap_or_else(|e| e.into_inner());
        for (product_id, user_id, email) in kept {
            if let Some(product) = products.get(&product_id) {
                emails.insert((product.id.clone(), user_id), (email, Instant::now()));
            }
        }
    }

    /// Forgets emails not used for longer than `idle`, here and in `store`.
    pub fn forget_idle(&self, store: &Store, idle: Duration) {
        let mut evicted = Vec::new();
        self.emails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, (_, seen)| {
                let keep = seen.elapsed() < idle;
                if !keep {
                    evicted.push(key.clone());
                }
                keep
            });
        for (product_id, user_id) in evicted {
            let _ = store.put_email(&product_id, &user_id, None);
        }
    }
}

struct ProductEmails<'a> {
    book: &'a EmailBook,
    product_id: &'a Arc<str>,
}

impl EmailLookup for ProductEmails<'_> {
    fn email_of(&self, user_id: &str) -> Option<String> {
        let mut emails = self.book.emails.lock().unwrap_or_else(|e| e.into_inner());
        let entry = emails.get_mut(&(self.product_id.clone(), user_id.to_owned()))?;
        entry.1 = Instant::now();
        Some(entry.0.clone())
    }
}

/// The common front of both endpoints: product, credentials, body.
async fn authenticated_body(
    state: &AppState,
    product_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Arc<Product>, Bytes), ApiError> {
    let Some(product) = state.products.get(product_id) else {
        return Err(ApiError(StatusCode::NOT_FOUND, "unknown product".into()));
    };
    let check = auth::check_ingest_headers(&product.config, headers)
        .map_err(|denied| refuse(state, product_id, denied))?;
    let bytes = read_body(state, body).await?;
    if let auth::IngestCheck::Signed(signatures) = &check {
        auth::verify_signatures(&product.config, signatures, &bytes)
            .map_err(|denied| refuse(state, product_id, denied))?;
    }
    Ok((product, bytes))
}

fn refuse(state: &AppState, product_id: &str, denied: auth::IngestDenied) -> ApiError {
    metrics::inc(&state.metrics.auth_failures);
    if denied.bad_signature {
        metrics::inc(&state.metrics.webhook_signature_failures);
    }
    debug!(
        product_id,
        bad_signature = denied.bad_signature,
        "ingest request refused"
    );
    ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or invalid webhook secret or signature".into(),
    )
}

/// The body, up to the limit and within the body timeout: a sender that trickles
/// its body holds a connection and a buffer, so it gets a deadline for the whole
/// body, not only for each read.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", state.body_limit),
        )
    };
    // A Content-Length over the limit is refused before a byte is read.
    if axum::body::HttpBody::size_hint(&body).lower() > state.body_limit as u64 {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, state.body_limit);
    match tokio::time::timeout(state.body_read_timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if over_limit {
                too_large()
            } else {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body".into(),
                )
            })
        }
        Err(_) => {
            metrics::inc(&state.metrics.body_read_timeouts);
            Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    state.body_read_timeout.as_secs_f64()
                ),
            ))
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

/// A refusal, rendered as [`json_error`] (kept small so `Result`s stay cheap).
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.0, &self.1);
        // Refused before or while its body was read: what is left of the body is
        // never read, so the connection cannot carry another request.
        if matches!(
            self.0,
            StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// The authenticated body parsed as JSON: syntax first, so a malformed body says
/// "invalid JSON" rather than "wrong shape".
async fn authenticated_json(
    state: &AppState,
    product_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Arc<Product>, serde_json::Value), ApiError> {
    let (product, bytes) = authenticated_body(state, product_id, headers, body).await?;
    Ok((product, parse_json(&bytes)?))
}

pub(crate) async fn webhook(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (product, value) = match authenticated_json(&state, &product_id, &headers, body).await {
        Ok(ok) => ok,
        Err(error) => return error.into_response(),
    };
    let now = unix_now();
    let lookup = ProductEmails {
        book: &state.emails,
        product_id: &product.id,
    };
    let extraction = match extract::extract(&value, &lookup, now) {
        Ok(extraction) => extraction,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.0),
    };
    let since = state.store.mark();
    let learnt = state
        .emails
        .learn(&state.store, &product.id, &extraction.learned_emails);
    metrics::add(&state.metrics.events_ingested, extraction.events);
    let actions = extraction.action_count();
    let once = state.store.once(&product.id, &extraction.event_uuids);
    let written = publish_actions(&state, &product, extraction.payloads, now, once.as_ref());
    if let Err(error) = state.store.durable_since(since, learnt.max(written)).await {
        return unavailable(&error);
    }
    Json(json!({"accepted": extraction.events, "actions": actions})).into_response()
}

/// One `/events` batch: a session's actions.
#[derive(Deserialize)]
struct DirectBatch {
    session_id: Option<CompactString>,
    #[serde(default)]
    user_id: Option<CompactString>,
    #[serde(default)]
    email: Option<CompactString>,
    actions: Vec<SlimAction>,
}

pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (product, value) = match authenticated_json(&state, &product_id, &headers, body).await {
        Ok(ok) => ok,
        Err(error) => return error.into_response(),
    };
    // Not an untagged enum: serde buffers those in a form that cannot carry an
    // action's raw `properties` JSON, so every action with properties would fail.
    let batches = match value {
        serde_json::Value::Array(_) => serde_json::from_value::<Vec<DirectBatch>>(value),
        one => serde_json::from_value::<DirectBatch>(one).map(|batch| vec![batch]),
    };
    let batches = match batches {
        Ok(batches) => batches,
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "expected {\"session_id\", \"user_id\"?, \"email\"?, \"actions\": [...]} or an array of those",
            );
        }
    };
    let accepted = batches.len();
    let payloads: Vec<ActionsPayload> = batches
        .into_iter()
        .filter(|b| !b.actions.is_empty())
        .map(|b| ActionsPayload {
            session_id: b.session_id,
            user_id: b.user_id,
            email: b.email,
            actions: b.actions,
            ..ActionsPayload::default()
        })
        .collect();
    let actions: usize = payloads.iter().map(|p| p.actions.len()).sum();
    let since = state.store.mark();
    let written = publish_actions(&state, &product, payloads, unix_now(), None);
    if let Err(error) = state.store.durable_since(since, written).await {
        return unavailable(&error);
    }
    Json(json!({"accepted": accepted, "actions": actions})).into_response()
}

/// The store could not make the request's events durable: 503, so the sender
/// (PostHog) retries; nothing unacknowledged is counted as delivered.
fn unavailable(error: &crate::store::StoreError) -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the connector's store is unavailable: {error}"),
    )
}

/// Gives each action the fields both generations of clients read, where the
/// sender left them out: `index` (its position in the batch), `timestamp_start`
/// from `ts` and `ts` from `timestamp_start`, and `timestamp_end`, the next
/// action's start (the last action's own start), as 0.13.0 defines it.
fn stamp_both_generations(actions: &mut [SlimAction]) {
    for (i, action) in actions.iter_mut().enumerate() {
        if action.index.is_none() {
            action.index = Some(i as u64);
        }
        if action.timestamp_start.is_none() {
            action.timestamp_start = action.ts.as_deref().and_then(extract::parse_rfc3339);
        }
        if action.ts.is_none() {
            action.ts = action.timestamp_start.map(|t| format_rfc3339(t).into());
        }
    }
    for i in 0..actions.len() {
        let next = actions.get(i + 1).and_then(|a| a.timestamp_start);
        let action = &mut actions[i];
        if action.timestamp_end.is_none()
            && let Some(start) = action.timestamp_start
        {
            action.timestamp_end = Some(next.map_or(start, |next| next.max(start)));
        }
    }
}

/// Stamps each payload (ids, both generations' fields, times) and hands it to
/// the summary orchestration, which appends it to the product's stream and
/// counts it toward its session's next summary. The ticket covers all of it
/// ([`Store::durable`]). `once` makes a retried webhook's frames appended once
/// ([`Store::once`]).
fn publish_actions(
    state: &Arc<AppState>,
    product: &Arc<Product>,
    payloads: Vec<ActionsPayload>,
    now: f64,
    once: Option<&crate::store::redis::Once>,
) -> Ticket {
    let mut ticket = Ticket::default();
    for mut payload in payloads {
        metrics::add(&state.metrics.actions_extracted, payload.actions.len());
        stamp_both_generations(&mut payload.actions);
        payload.product_id = Some(product.config.id.as_str().into());
        payload.forwarded_at = Some(now);
        if payload.ts.is_none() {
            payload.ts = Some(
                payload
                    .actions
                    .last()
                    .and_then(|a| a.ts.clone())
                    .unwrap_or_else(|| format_rfc3339(now).into()),
            );
        }
        ticket = ticket.max(summary::append_actions(state, product, &payload, once));
    }
    ticket
}
