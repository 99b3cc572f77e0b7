//! Option conversions shared by `ConnectorClient` and `AsyncConnectorClient`: Python
//! values into the core's, with the core's own validation messages where it has one.

use std::time::Duration;

use autoplay_sdk::OverflowPolicy;
use pyo3::prelude::*;
use pyo3::types::PyDict;

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

/// "No liveness timeout" (`read_timeout_s=None`): a year.
const NO_READ_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The options both clients take, converted from Python's values: applied once, by
/// [`apply_engine_options`], to the core builder the client then keeps and clones
/// for each run.
pub(crate) struct EngineOptions {
    pub(crate) max_queue_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_retries: Option<u32>,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) overflow_grace: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_event_size: Option<usize>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) last_event_id: Option<String>,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_server_delay: Duration,
    pub(crate) backoff_reset_after: Duration,
    pub(crate) max_id_len: usize,
}

impl EngineOptions {
    /// The keyword arguments as the Python signatures name them; `ValueError` for a
    /// negative or non-finite duration, a negative `max_retries` or an unknown
    /// overflow policy (sizes are left to the core's checks).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        py: Python<'_>,
        max_queue_size: i64,
        connect_timeout: f64,
        read_timeout_s: Option<f64>,
        initial_backoff_s: f64,
        max_backoff_s: f64,
        max_retries: Option<i64>,
        overflow_policy: &str,
        overflow_grace_s: f64,
        drain_timeout_s: f64,
        max_event_size: Option<usize>,
        headers: Option<&Bound<'_, PyDict>>,
        last_event_id: Option<String>,
        max_queue_bytes: i64,
        max_server_delay_s: f64,
        backoff_reset_after_s: f64,
        max_id_len: i64,
    ) -> PyResult<Self> {
        let mut header_list = Vec::new();
        if let Some(headers) = headers {
            for (k, v) in headers.iter() {
                header_list.push((k.extract::<String>()?, v.extract::<String>()?));
            }
        }
        let max_retries = match max_retries {
            None => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                errors::invalid(py, format!("max_retries must be >= 0 or None, got {n}"))
            })?),
        };
        Ok(EngineOptions {
            max_queue_size: usize::try_from(max_queue_size).unwrap_or(0),
            connect_timeout: seconds(py, "connect_timeout", connect_timeout)?,
            read_timeout: match read_timeout_s {
                None => NO_READ_TIMEOUT,
                Some(s) => seconds(py, "read_timeout_s", s)?,
            },
            initial_backoff: seconds(py, "initial_backoff_s", initial_backoff_s)?,
            max_backoff: seconds(py, "max_backoff_s", max_backoff_s)?,
            max_retries,
            overflow: self::overflow_policy(py, overflow_policy)?,
            overflow_grace: seconds(py, "overflow_grace_s", overflow_grace_s)?,
            drain_timeout: seconds(py, "drain_timeout_s", drain_timeout_s)?,
            max_event_size,
            headers: header_list,
            last_event_id,
            max_queue_bytes: at_least_one(max_queue_bytes),
            max_server_delay: seconds(py, "max_server_delay_s", max_server_delay_s)?,
            backoff_reset_after: seconds(py, "backoff_reset_after_s", backoff_reset_after_s)?,
            max_id_len: at_least_one(max_id_len),
        })
    }
}

/// Sets [`EngineOptions`] on a core builder of either kind: the two builders have the
/// same setters (the core's `config_setters!`) but no common type, so one body
/// serves both.
macro_rules! apply_engine_options {
    ($builder:expr, $o:expr) => {{
        let o: $crate::options::EngineOptions = $o;
        let mut b = $builder
            .max_queue_size(o.max_queue_size)
            .connect_timeout(o.connect_timeout)
            .read_timeout(o.read_timeout)
            .initial_backoff(o.initial_backoff)
            .max_backoff(o.max_backoff)
            .overflow_policy(o.overflow)
            .overflow_grace(o.overflow_grace)
            .drain_timeout(o.drain_timeout)
            .max_queue_bytes(o.max_queue_bytes)
            .max_server_delay(o.max_server_delay)
            .backoff_reset_after(o.backoff_reset_after)
            .max_id_len(o.max_id_len)
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
        for (name, value) in o.headers {
            b = b.header(name, value);
        }
        if let Some(id) = o.last_event_id {
            b = b.last_event_id(id);
        }
        b
    }};
}
pub(crate) use apply_engine_options;
