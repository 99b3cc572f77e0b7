//! Option conversions shared by `ConnectorClient` and `AsyncConnectorClient`: Python
//! values into the core's, with the core's own validation messages where it has one.

use std::time::Duration;

use autoplay_sdk::OverflowPolicy;
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
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_server_delay: Duration,
    pub(crate) backoff_reset_after: Duration,
    pub(crate) max_id_len: usize,
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
}

/// Sets the options both clients share on a core builder of either kind: the two
/// builders have the same setters (the core's `config_setters!`) but no common type,
/// and the two `Options` structs name their fields alike, so one body serves both.
macro_rules! apply_engine_options {
    ($builder:expr, $o:expr) => {{
        let o = $o;
        let mut b = $builder
            .max_queue_size(o.max_queue_size)
            .connect_timeout(o.connect_timeout)
            .read_timeout(o.read_timeout)
            .initial_backoff(o.initial_backoff)
            .max_backoff(o.max_backoff)
            .overflow_policy(o.overflow)
            .overflow_grace(o.overflow_grace)
            .drain_timeout(o.drain_timeout)
            .max_queue_bytes(o.limits.max_queue_bytes)
            .max_server_delay(o.limits.max_server_delay)
            .backoff_reset_after(o.limits.backoff_reset_after)
            .max_id_len(o.limits.max_id_len)
            // The extension runs on mimalloc, which frees what the reader decoded
            // cheaply on the callback's thread, and the callbacks hold the GIL:
            // decoding on the reader too keeps that work off the Python thread.
            .decode_ahead(true);
        if let Some(n) = o.max_retries {
            b = b.max_retries(n);
        }
        if let Some(n) = o.max_event_size {
            b = b.max_event_size(n);
        }
        for (name, value) in &o.headers {
            b = b.header(name.clone(), value.clone());
        }
        if let Some(id) = &o.last_event_id {
            b = b.last_event_id(id.clone());
        }
        b
    }};
}
pub(crate) use apply_engine_options;
