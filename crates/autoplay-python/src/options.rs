//! Option conversions shared by `ConnectorClient` and `AsyncConnectorClient`: Python
//! values into the core's, with the core's own validation messages where it has one.

use std::time::Duration;

use autoplay_sdk::{AsyncConnectorClientBuilder, ConnectorClientBuilder, OverflowPolicy};
use pyo3::prelude::*;

use crate::errors;

// The defaults of the engine limits are written out as literals in the Python
// signatures (client.rs, aio.rs, `_native.pyi`, `_async.py`) so that they show there:
// max_queue_bytes=16777216, max_server_delay_s=600.0, backoff_reset_after_s=60.0,
// max_id_len=4096. They must stay the core's.
const _: () = {
    assert!(autoplay_sdk::DEFAULT_MAX_QUEUE_BYTES == 16_777_216);
    assert!(autoplay_sdk::DEFAULT_MAX_SERVER_DELAY.as_millis() == 600_000);
    assert!(autoplay_sdk::DEFAULT_BACKOFF_RESET_AFTER.as_millis() == 60_000);
    assert!(autoplay_sdk::sse::DEFAULT_MAX_ID_LEN == 4096);
};

/// A duration given in seconds.
pub(crate) fn seconds(py: Python<'_>, name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        errors::invalid(
            py,
            format!("{name} must be a non-negative number of seconds"),
        )
    })
}

pub(crate) fn overflow_policy(py: Python<'_>, name: &str) -> PyResult<OverflowPolicy> {
    match name.to_ascii_lowercase().replace('-', "_").as_str() {
        "drop_newest" | "newest" => Ok(OverflowPolicy::DropNewest),
        "drop_oldest" | "oldest" => Ok(OverflowPolicy::DropOldest),
        "block" => Ok(OverflowPolicy::Block),
        _ => Err(errors::invalid(
            py,
            format!("overflow_policy {name:?}: use \"drop_newest\", \"drop_oldest\" or \"block\""),
        )),
    }
}

/// A size that must be at least 1: a negative one is passed on as 0, which the core
/// rejects with its own message ("... must be at least 1 byte").
fn at_least_one(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}

/// The engine's bounds and retry limits beyond 0.13.0's options, as both clients take
/// them (`max_queue_bytes`, `max_server_delay_s`, `backoff_reset_after_s`,
/// `max_id_len`).
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    max_queue_bytes: usize,
    max_server_delay: Duration,
    backoff_reset_after: Duration,
    max_id_len: usize,
}

impl Limits {
    pub(crate) fn new(
        py: Python<'_>,
        max_queue_bytes: i64,
        max_server_delay_s: f64,
        backoff_reset_after_s: f64,
        max_id_len: i64,
    ) -> PyResult<Self> {
        Ok(Limits {
            max_queue_bytes: at_least_one(max_queue_bytes),
            max_server_delay: seconds(py, "max_server_delay_s", max_server_delay_s)?,
            backoff_reset_after: seconds(py, "backoff_reset_after_s", backoff_reset_after_s)?,
            max_id_len: at_least_one(max_id_len),
        })
    }

    pub(crate) fn apply(&self, b: ConnectorClientBuilder) -> ConnectorClientBuilder {
        b.max_queue_bytes(self.max_queue_bytes)
            .max_server_delay(self.max_server_delay)
            .backoff_reset_after(self.backoff_reset_after)
            .max_id_len(self.max_id_len)
    }

    pub(crate) fn apply_async(
        &self,
        b: AsyncConnectorClientBuilder,
    ) -> AsyncConnectorClientBuilder {
        b.max_queue_bytes(self.max_queue_bytes)
            .max_server_delay(self.max_server_delay)
            .backoff_reset_after(self.backoff_reset_after)
            .max_id_len(self.max_id_len)
    }
}
