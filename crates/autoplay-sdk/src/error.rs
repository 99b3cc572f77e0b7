//! The one error type users match on.

use std::fmt;

use crate::retry::FailureReason;

/// Why a client stopped with an error.
///
/// Transient failures (network errors, 5xx, stalls, oversized events, malformed
/// payloads) never surface here: the client logs them and reconnects or skips.
/// Only what retrying cannot fix ends [`run`](crate::ConnectorClient::run).
///
/// No message shows a secret: URLs appear with their credentials redacted
/// (`https://***@host/...`), and the token never appears.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connector answered a status that retrying cannot fix (401, 403, 404) or
    /// that tells the client to stop (204).
    #[error("the connector answered {status} for {url}: {}", FatalStatus(*.status, *.credentials_sent))]
    FatalStatus {
        /// The HTTP status code.
        status: u16,
        /// The URL that was requested, credentials redacted.
        url: String,
        /// Whether the request carried credentials (a token, an `Authorization`
        /// header or a user in the URL): a 401 without them means "configure a
        /// token", with them "this key was refused".
        credentials_sent: bool,
    },
    /// `max_retries` consecutive connection attempts failed.
    #[error(
        "gave up on {url} after {attempts} failed connection attempts; last failure: {last_failure}"
    )]
    RetriesExhausted {
        /// How many attempts failed in a row.
        attempts: u32,
        /// The URL that was requested, credentials redacted.
        url: String,
        /// Why the last attempt failed.
        last_failure: FailureReason,
    },
    /// The client was configured with values that cannot work; the message says what to fix.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// `run` was called while the same client was already running.
    #[error("this client is already running; stop it or build another client")]
    AlreadyRunning,
    /// The operating system refused a resource the client needs (a thread, a runtime).
    #[error("could not start the client: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The HTTP status of a [`Error::FatalStatus`], for callers that only care about it.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::FatalStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Explains a fatal status in terms of what the user should check.
struct FatalStatus(u16, bool);

impl fmt::Display for FatalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.0, self.1) {
            (204, _) => "No Content: the server asked the client to stop",
            (401, false) => {
                "Unauthorized: no API key was sent; set one with the token option or AUTOPLAY_TOKEN"
            }
            (401, true) => "Unauthorized: the connector refused the API key, check the token",
            (403, _) => {
                "Forbidden: the API key belongs to another product, check the URL and the token"
            }
            (404, _) => "Not Found: unknown product or path, check the URL",
            _ => "not retryable",
        })
    }
}

/// Statuses after which the client stops instead of reconnecting.
pub(crate) fn is_fatal_status(status: u16) -> bool {
    matches!(status, 204 | 401 | 403 | 404)
}
