//! The live view: `GET /ui`, a page that shows a product's sessions, actions and
//! summaries as they arrive, and `GET /`, which points to it.
//!
//! The page is three static files compiled into the binary (`assets/`): no build
//! step, nothing fetched from elsewhere, so it works offline. It reads
//! `GET /stream/{product_id}` with the browser's own `EventSource`, let in by a
//! stream ticket (see the `tickets` module): the user pastes the product's API key
//! once, the page keeps it in memory only (never in storage, never in a URL) and
//! trades it for a ticket whenever it has to open a stream.
//!
//! Event text is only ever put in the page as text (`textContent`), never as
//! HTML, and a Content-Security-Policy allows no script but the page's own, so a
//! payload cannot run code in the viewer's browser.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../assets/live.html");
const SCRIPT: &str = include_str!("../assets/live.js");
const STYLE: &str = include_str!("../assets/live.css");
const INDEX: &str = include_str!("../assets/index.html");

/// Nothing but the page's own files, its own origin to talk to, and no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Stream URLs carry a ticket: keep them out of other sites' logs.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: a short page naming the routes, linking to the live view.
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui`: the live view.
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /ui/live.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/live.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
