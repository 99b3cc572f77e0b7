//! `GET /users/{product_id}/{user_id}/live-activity?limit=N`: what one user is
//! doing now, for a chatbot or an agent that asks rather than subscribes (and
//! the data of the MCP tool `get_live_user_activity`, [`crate::mcp`]).
//!
//! Read from the product's replay window, the same frames a subscriber resuming
//! from before the window replays: there is no second copy of the events, and
//! what falls out of the window (by count or bytes) falls out of this answer
//! too. The window is taken under the log's lock as reference counts and
//! decoded outside it.
//!
//! # Response
//!
//! `200 application/json`, a [`LiveActivity`]:
//!
//! ```json
//! {
//!   "product_id": "acme",
//!   "user_id": "u_42",
//!   "email": "ada@example.com",
//!   "actions": [
//!     {"session_id": "s1", "type": "click", "event_type": "click", "title": "Clicked Pay",
//!      "description": "…", "canonical_url": "/checkout", "ts": "…", "index": 3, "…": "…"}
//!   ],
//!   "summary": {"session_id": "s1", "summary": "The user is paying…", "replaces": 10, "ts": "…"},
//!   "window_events": 120
//! }
//! ```
//!
//! - `actions`: the user's newest `limit` actions (default
//!   [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) **oldest first**, each as the
//!   stream sends it (both generations' fields) with its `session_id`;
//! - `summary`: the newest summary of one of the user's sessions in the window,
//!   or `null`;
//! - `email`: the newest email seen on the user's payloads, or `null`;
//! - `window_events`: frames in the product's window now (how far back this
//!   answer could look).
//!
//! Errors: `400` for a `limit` that is not an integer in `1..=MAX_LIMIT`, `401`
//! without a key of any product (with `WWW-Authenticate: Bearer`), `403` with
//! another product's key, `404` for an unknown product. All as `{"error": …}`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{self, StreamDenied};
use crate::metrics;
use crate::server::{AppState, Product, json_error};

/// Actions returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 500;

/// What `GET /users/{product_id}/{user_id}/live-activity` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveActivity {
    /// The product asked about.
    pub product_id: String,
    /// The user asked about.
    pub user_id: String,
    /// The newest email seen with this user's payloads.
    pub email: Option<String>,
    /// The user's newest actions, oldest first, as streamed, with `session_id`.
    pub actions: Vec<Value>,
    /// The newest summary of one of the user's sessions, as streamed.
    pub summary: Option<Value>,
    /// Frames in the product's window when this was read.
    pub window_events: usize,
}

/// Why a `limit` was refused.
pub(crate) fn parse_limit(raw: Option<&str>) -> Result<usize, String> {
    let Some(text) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit must be an integer from 1 to {MAX_LIMIT} (got {text:?})"
        )),
    }
}

/// The user's activity in `product`'s window now.
pub(crate) fn read(product: &Product, user_id: &str, limit: usize) -> LiveActivity {
    let frames = product.log.window();
    let window_events = frames.len();
    let mut actions: Vec<Value> = Vec::new();
    let mut sessions: HashSet<String> = HashSet::new();
    let mut email = None;
    let mut summaries: Vec<Value> = Vec::new();
    // The user id as the frames spell it (same serialiser): a frame without it
    // is not decoded at all, so a pull read over a 64 MiB window parses only
    // this user's frames and the (small) summaries.
    let needle = serde_json::to_string(user_id).expect("a string serialises");
    for frame in &frames {
        let Some((kind, data)) = split_frame(frame) else {
            continue;
        };
        if kind == autoplay_sdk::models::ACTIONS_TYPE && !data.contains(&needle) {
            continue;
        }
        let Ok(Value::Object(mut payload)) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        match kind {
            autoplay_sdk::models::ACTIONS_TYPE => {
                let session_id = payload.get("session_id").cloned().unwrap_or(Value::Null);
                let payload_user = payload.get("user_id").and_then(Value::as_str) == Some(user_id);
                let Some(Value::Array(list)) = payload.remove("actions") else {
                    continue;
                };
                let mut ours = false;
                for mut action in list {
                    let action_user = action.get("user_id").and_then(Value::as_str);
                    if !(action_user == Some(user_id) || (action_user.is_none() && payload_user)) {
                        continue;
                    }
                    ours = true;
                    if let Value::Object(fields) = &mut action
                        && fields.get("session_id").is_none_or(Value::is_null)
                    {
                        fields.insert("session_id".into(), session_id.clone());
                    }
                    actions.push(action);
                }
                // Bounded as it goes: the window may hold far more than `limit`.
                if actions.len() > 2 * limit {
                    actions.drain(..actions.len() - limit);
                }
                if ours {
                    if let Some(id) = session_id.as_str() {
                        sessions.insert(id.to_owned());
                    }
                    if let Some(e) = payload.get("email").and_then(Value::as_str) {
                        email = Some(e.to_owned());
                    }
                }
            }
            autoplay_sdk::models::SUMMARY_TYPE => summaries.push(Value::Object(payload)),
            _ => {}
        }
    }
    if actions.len() > limit {
        actions.drain(..actions.len() - limit);
    }
    // A summary is written after the actions it covers, so the user's sessions
    // are known by the time any of their summaries is looked at.
    let summary = summaries.into_iter().rev().find(|s| {
        s.get("session_id")
            .and_then(Value::as_str)
            .is_some_and(|id| sessions.contains(id))
    });
    LiveActivity {
        product_id: product.id.to_string(),
        user_id: user_id.to_owned(),
        email,
        actions,
        summary,
        window_events,
    }
}

/// `event: <kind>` and `data: <json>` of one stored frame.
fn split_frame(frame: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(frame).ok()?;
    let mut kind = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = Some(k);
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = Some(d);
        }
    }
    Some((kind?, data?))
}

/// A refusal of a pull read's key, as HTTP.
pub(crate) fn refusal(state: &AppState, denied: StreamDenied) -> Response {
    metrics::inc(&state.metrics.auth_failures);
    match denied {
        StreamDenied::Unauthorized => {
            let mut response = json_error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        StreamDenied::Forbidden => json_error(
            StatusCode::FORBIDDEN,
            "this API key belongs to another product",
        ),
    }
}

pub(crate) async fn handler(
    State(state): State<Arc<AppState>>,
    Path((product_id, user_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(product) = state.products.get(&product_id) else {
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    if let Err(denied) = auth::check_product_key(&state.products, &product, &headers) {
        return refusal(&state, denied);
    }
    let raw_limit = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(name, _)| *name == "limit")
            .map(|(_, value)| value)
    });
    let limit = match parse_limit(raw_limit) {
        Ok(limit) => limit,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    axum::Json(read(&product, &user_id, limit)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("500")), Ok(MAX_LIMIT));
        for bad in ["0", "501", "-1", "ten", "", "1.5"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn frames() {
        assert_eq!(
            split_frame(b"id: 3\nevent: actions\ndata: {\"a\":1}\n\n"),
            Some(("actions", "{\"a\":1}"))
        );
        assert_eq!(split_frame(b"event: heartbeat\ndata:\n\n"), None);
    }
}
