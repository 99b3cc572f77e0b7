//! Stream tickets: how a browser's `EventSource`, which cannot send an
//! `Authorization` header, is let into `GET /stream/{product_id}`.
//!
//! The page posts the product's API key once, in a header, to
//! `POST /tickets/{product_id}` and gets back a short-lived ticket, which it puts
//! in the stream URL: `/stream/{product_id}?ticket=<ticket>`. The API key itself
//! never goes in a URL (URLs end up in logs, history and `Referer` headers); a
//! stream request that tries is refused with a message saying so.
//!
//! # What a ticket is
//!
//! 56 bytes in hex: the expiry (milliseconds since the connector
//! started, on the monotonic clock: a ticket never outlives its process, so a
//! wall-clock jump cannot stretch or cut it), a random nonce
//! and an HMAC-SHA256 over both and the product id, keyed with a secret the
//! connector draws from the OS at start and never writes anywhere. So a ticket
//! - is bound to its product: another product's stream refuses it (403);
//! - expires [`ConnectorConfig::ticket_ttl`](crate::ConnectorConfig::ticket_ttl)
//!   after it was issued (60 s by default; 401 after that);
//! - needs no table: nothing is stored per ticket, so issuing many costs no
//!   memory and there is nothing to bound or sweep;
//! - dies with the process: a restarted connector has a new secret and refuses
//!   every earlier ticket.
//!
//! A ticket is not single-use: within its lifetime it opens any number of
//! streams of its product. That is what lets the browser's own reconnect (same
//! URL, `Last-Event-ID` header set by the browser) succeed after a dropped
//! connection. Expiry is checked only when a stream opens; an open stream is
//! never cut because its ticket expired.
//!
//! # Reconnecting after the ticket died
//!
//! When the browser reconnects with a ticket that expired, or after a restart,
//! the stream answers 401 and `EventSource` gives up for good (it retries only
//! network errors, never an HTTP error). The page then fetches a fresh ticket
//! with the key it holds in memory and opens a new `EventSource`. A new
//! `EventSource` cannot set `Last-Event-ID`, so the page passes the last id it
//! saw as `lastEventId=<n>` in the URL; the stream takes it when the
//! `Last-Event-ID` header is absent (the header, the browser's own and always the
//! newer, wins).
//!
//! Tickets are never logged: no log line of the connector carries a request's
//! URI or query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tracing::info;

use crate::auth::{self, StreamDenied};
use crate::config::sha256;
use crate::metrics;
use crate::server::{AppState, Product, json_error};

/// Expiry (8) + nonce (16) + MAC (32).
const TICKET_BYTES: usize = 8 + 16 + 32;
/// Keeps a ticket's MAC apart from any other use of the key.
const DOMAIN: &[u8] = b"autoplay stream ticket v1\0";

/// Query parameters that look like someone put an API key in the URL.
const KEY_PARAMETERS: [&str; 6] = [
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "authorization",
];

/// Mints and checks tickets with the connector's per-process secret.
pub(crate) struct TicketKey {
    secret: [u8; 32],
    ttl: Duration,
    /// Expiries count from here.
    epoch: Instant,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketDenied {
    /// Not a ticket of this connector run: malformed, forged, or from before a
    /// restart.
    Invalid,
    /// Issued for another product.
    OtherProduct,
    /// Past its expiry.
    Expired,
}

impl TicketKey {
    /// A key with a fresh random secret.
    pub(crate) fn new(ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random number generator is available");
        Self {
            secret,
            ttl,
            epoch: Instant::now(),
        }
    }

    /// How long a ticket lives.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The MAC over a ticket's expiry and nonce for `product_id`, not yet
    /// finalised. The id's length goes in first, so `ab` + `c…` never signs like
    /// `a` + `bc…`.
    fn mac(&self, product_id: &str, expiry_and_nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(DOMAIN);
        mac.update(&(product_id.len() as u64).to_be_bytes());
        mac.update(product_id.as_bytes());
        mac.update(expiry_and_nonce);
        mac
    }

    /// A ticket for `product_id`, valid until `now` + the TTL.
    pub(crate) fn issue(&self, product_id: &str, now: Instant) -> String {
        let expiry = self.millis(now).saturating_add(self.ttl.as_millis() as u64);
        let mut bytes = [0u8; TICKET_BYTES];
        bytes[..8].copy_from_slice(&expiry.to_be_bytes());
        getrandom::fill(&mut bytes[8..24]).expect("the OS random number generator is available");
        let mac = self.mac(product_id, &bytes[..24]).finalize().into_bytes();
        bytes[24..].copy_from_slice(&mac);
        hex::encode(bytes)
    }

    /// Checks `ticket` for `product_id` at `now`; `others` are the other
    /// products' ids, to tell a ticket of another product (403) from garbage.
    pub(crate) fn check<'a>(
        &self,
        ticket: &str,
        product_id: &str,
        others: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> Result<(), TicketDenied> {
        let mut bytes = [0u8; TICKET_BYTES];
        hex::decode_to_slice(ticket.trim(), &mut bytes).map_err(|_| TicketDenied::Invalid)?;
        let (signed, mac) = bytes.split_at(24);
        // Constant-time, through hmac's own comparison.
        let verifies = |id: &str| self.mac(id, signed).verify_slice(mac).is_ok();
        if !verifies(product_id) {
            let mut others = others;
            return Err(if others.any(|id| id != product_id && verifies(id)) {
                TicketDenied::OtherProduct
            } else {
                TicketDenied::Invalid
            });
        }
        let expiry = u64::from_be_bytes(signed[..8].try_into().expect("8 bytes"));
        if self.millis(now) >= expiry {
            return Err(TicketDenied::Expired);
        }
        Ok(())
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// What `GET /stream/{product_id}` takes from its query string.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamQuery {
    /// `ticket=`: a stream ticket instead of the `Authorization` header.
    pub ticket: Option<String>,
    /// `lastEventId=`: the resume id for a page that had to open a new
    /// `EventSource`; the `Last-Event-ID` header wins over it.
    pub last_event_id: Option<String>,
    /// The name of a parameter that looks like an API key (`api_key=`, `token=`…).
    pub key_parameter: Option<String>,
}

impl StreamQuery {
    /// Parses a raw query; unknown parameters are ignored.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match name {
                "ticket" => query.ticket = Some(value),
                "lastEventId" | "last_event_id" => query.last_event_id = Some(value),
                _ if KEY_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) => {
                    query.key_parameter = Some(name.to_owned());
                }
                _ => {}
            }
        }
        query
    }
}

/// `%XX` and `+` decoding, lossy on bad UTF-8 (a ticket is hex, an id digits:
/// anything else is refused later anyway).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let mut byte = [0u8; 1];
                if hex::decode_to_slice(&bytes[i + 1..i + 3], &mut byte).is_ok() {
                    out.push(byte[0]);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the query string says about a stream request's credentials.
pub(crate) enum Admission {
    /// A valid ticket lets it in.
    Ticket,
    /// No ticket: the `Authorization` header decides.
    NoTicket,
    /// Refused (a bad ticket, or a key in the URL), with the response to send.
    Refused(Response),
}

/// The stream's half of the ticket check. Never logs the ticket.
pub(crate) fn admit_stream(state: &AppState, product: &Product, query: &StreamQuery) -> Admission {
    let product_id = &*product.id;
    if let Some(name) = &query.key_parameter {
        metrics::inc(&state.metrics.auth_failures);
        info!(
            product_id,
            status = 401,
            parameter = name.as_str(),
            "stream request refused: a credential in the URL"
        );
        return Admission::Refused(unauthorized(&format!(
            "an API key never goes in a URL (`{name}=`): send it as \
             `Authorization: Bearer <key>`, or POST it that way to /tickets/{product_id} \
             and open /stream/{product_id}?ticket=<ticket>"
        )));
    }
    let Some(ticket) = &query.ticket else {
        return Admission::NoTicket;
    };
    let checked = state.products.with_configs(|all| {
        state.tickets.check(
            ticket,
            product_id,
            all.map(|p| p.id.as_str()),
            Instant::now(),
        )
    });
    let denied = match checked {
        Ok(()) => return Admission::Ticket,
        Err(denied) => denied,
    };
    metrics::inc(&state.metrics.auth_failures);
    let digest = sha256(ticket.trim().as_bytes());
    let is_api_key = state.products.with_configs(|all| {
        all.flat_map(|p| p.api_keys.iter())
            .fold(false, |found, key| found | key.matches_digest(&digest))
    });
    let response = if is_api_key {
        info!(
            product_id,
            status = 401,
            "stream request refused: an API key given as a ticket"
        );
        unauthorized(&format!(
            "that is an API key, not a ticket, and an API key never goes in a URL: \
             POST it as `Authorization: Bearer <key>` to /tickets/{product_id} for a ticket"
        ))
    } else {
        match denied {
            TicketDenied::Invalid => {
                info!(
                    product_id,
                    status = 401,
                    "stream request refused: invalid ticket"
                );
                unauthorized(&format!(
                    "invalid ticket (tickets do not survive a connector restart): \
                     get a new one from POST /tickets/{product_id}"
                ))
            }
            TicketDenied::Expired => {
                info!(
                    product_id,
                    status = 401,
                    "stream request refused: expired ticket"
                );
                unauthorized(&format!(
                    "expired ticket: get a new one from POST /tickets/{product_id}"
                ))
            }
            TicketDenied::OtherProduct => {
                info!(
                    product_id,
                    status = 403,
                    "stream request refused: a ticket of another product"
                );
                json_error(StatusCode::FORBIDDEN, "this ticket is for another product")
            }
        }
    };
    Admission::Refused(response)
}

fn unauthorized(message: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// `POST /tickets/{product_id}` with `Authorization: Bearer <API key>`:
/// 200 `{"ticket", "expires_in_s", "stream"}`; 401, 403 and 404 as the stream.
pub(crate) async fn issue(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(product) = state.products.get(&product_id) else {
        info!(
            product_id,
            status = 404,
            "ticket request refused: unknown product"
        );
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    if let Err(denied) = auth::check_product_key(&state.products, &product, &headers) {
        metrics::inc(&state.metrics.auth_failures);
        return match denied {
            StreamDenied::Unauthorized => {
                info!(
                    product_id,
                    status = 401,
                    "ticket request refused: missing or wrong API key"
                );
                unauthorized("missing or invalid API key: send `Authorization: Bearer <API key>`")
            }
            StreamDenied::Forbidden => {
                info!(
                    product_id,
                    status = 403,
                    "ticket request refused: the API key belongs to another product"
                );
                json_error(
                    StatusCode::FORBIDDEN,
                    "this API key belongs to another product",
                )
            }
        };
    }
    let ticket = state.tickets.issue(&product_id, Instant::now());
    info!(product_id, "stream ticket issued");
    let body = json!({
        "stream": format!("/stream/{product_id}?ticket={ticket}"),
        "expires_in_s": state.tickets.ttl().as_secs_f64(),
        "ticket": ticket,
    });
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 3_600_000;

    fn at(key: &TicketKey, millis: u64) -> Instant {
        key.epoch + Duration::from_millis(millis)
    }

    #[test]
    fn a_ticket_opens_its_product_until_it_expires() {
        let key = TicketKey::new(Duration::from_secs(60));
        let ticket = key.issue("acme", at(&key, NOW));
        assert_eq!(ticket.len(), TICKET_BYTES * 2);
        let others = || ["acme", "beta"].into_iter();
        assert_eq!(key.check(&ticket, "acme", others(), at(&key, NOW)), Ok(()));
        assert_eq!(
            key.check(&ticket, "acme", others(), at(&key, NOW + 59_999)),
            Ok(())
        );
        assert_eq!(
            key.check(&ticket, "acme", others(), at(&key, NOW + 60_000)),
            Err(TicketDenied::Expired)
        );
        assert_eq!(
            key.check(&ticket, "beta", others(), at(&key, NOW)),
            Err(TicketDenied::OtherProduct)
        );
        // Two tickets for the same product and instant still differ (the nonce).
        assert_ne!(ticket, key.issue("acme", at(&key, NOW)));
    }

    #[test]
    fn forged_and_foreign_tickets_are_invalid() {
        let key = TicketKey::new(Duration::from_secs(60));
        let ticket = key.issue("acme", at(&key, NOW));
        let others = || std::iter::empty();
        // Another run of the connector (a restart) has another secret.
        let restarted = TicketKey::new(Duration::from_secs(60));
        assert_eq!(
            restarted.check(&ticket, "acme", others(), at(&restarted, NOW)),
            Err(TicketDenied::Invalid)
        );
        // Pushing the expiry out breaks the MAC.
        let mut bytes = hex::decode(&ticket).unwrap();
        bytes[0] ^= 0x40;
        assert_eq!(
            key.check(&hex::encode(bytes), "acme", others(), at(&key, NOW)),
            Err(TicketDenied::Invalid)
        );
        for garbage in ["", "zz", &ticket[..ticket.len() - 2], "ak_acme"] {
            assert_eq!(
                key.check(garbage, "acme", others(), at(&key, NOW)),
                Err(TicketDenied::Invalid),
                "{garbage:?}"
            );
        }
        // A product id that is a prefix of another does not share its tickets.
        let ab = key.issue("ab", at(&key, NOW));
        assert_eq!(
            key.check(&ab, "a", others(), at(&key, NOW)),
            Err(TicketDenied::Invalid)
        );
    }

    #[test]
    fn stream_query() {
        assert_eq!(StreamQuery::parse(None), StreamQuery::default());
        let q = StreamQuery::parse(Some("ticket=ab%43d&lastEventId=42&x=1"));
        assert_eq!(q.ticket.as_deref(), Some("abCd"));
        assert_eq!(q.last_event_id.as_deref(), Some("42"));
        assert_eq!(q.key_parameter, None);
        let q = StreamQuery::parse(Some("API_KEY=ak_acme"));
        assert_eq!(q.key_parameter.as_deref(), Some("API_KEY"));
        assert_eq!(
            StreamQuery::parse(Some("ticket=%4")).ticket.as_deref(),
            Some("%4")
        );
        assert_eq!(
            StreamQuery::parse(Some("ticket=a+b")).ticket.as_deref(),
            Some("a b")
        );
    }
}
