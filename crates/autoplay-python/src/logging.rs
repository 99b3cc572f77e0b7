//! The core's `tracing` events, forwarded to Python's `logging` under the
//! `autoplay_sdk` logger, so `logging.getLogger("autoplay_sdk").setLevel(...)` works.
//!
//! The logger's effective level is cached and re-read at most once a second (and at
//! each `run()`), so events below it never take the interpreter lock.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The Python logger every SDK record goes to.
pub(crate) const LOGGER: &str = "autoplay_sdk";

/// Python's level below which records are not forwarded (WARNING until first read).
static THRESHOLD: AtomicU32 = AtomicU32::new(30);
/// When the threshold was last read, in ms since `EPOCH`.
static LAST_REFRESH_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
static LOGGER_OBJ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const REFRESH_EVERY_MS: u64 = 1000;

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The `autoplay_sdk` logger.
pub(crate) fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOGGER_OBJ
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("logging")?
                    .call_method1("getLogger", (LOGGER,))?
                    .unbind(),
            )
        })
        .map(|l| l.bind(py))
}

fn refresh(py: Python<'_>) {
    if let Ok(level) = logger(py)
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|l| l.extract::<u32>())
    {
        THRESHOLD.store(level, Ordering::Relaxed);
    }
    LAST_REFRESH_MS.store(now_ms(), Ordering::Relaxed);
}

/// Re-reads the `autoplay_sdk` logger's level now (after `setLevel`, say).
#[pyfunction]
pub(crate) fn refresh_log_level(py: Python<'_>) {
    refresh(py);
}

fn python_level(level: &Level) -> u32 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

/// Collects an event's message and fields as `message key=value ...`.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

struct PythonLogging;

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("autoplay") {
            return;
        }
        let level = python_level(meta.level());
        let stale =
            now_ms().saturating_sub(LAST_REFRESH_MS.load(Ordering::Relaxed)) > REFRESH_EVERY_MS;
        if level < THRESHOLD.load(Ordering::Relaxed) && !stale {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        // Through the gate: a record from a Rust thread after the exit hook (a client
        // that outlived it) is dropped rather than sent into a finalising interpreter.
        crate::gil::attach_once(|py| {
            if stale {
                refresh(py);
            }
            if level < THRESHOLD.load(Ordering::Relaxed) {
                return;
            }
            let text = format!("{}{}", message.message, message.fields);
            if let Ok(logger) = logger(py) {
                let extra = PyDict::new(py);
                let _ = extra.set_item("rust_target", meta.target());
                let kwargs = PyDict::new(py);
                let _ = kwargs.set_item("extra", extra);
                if logger
                    .call_method("log", (level, text), Some(&kwargs))
                    .is_err()
                {
                    // Logging must never break the stream.
                }
            }
        });
    }
}

/// Installs the forwarding subscriber, unless the process already has one.
pub(crate) fn install() {
    let _ = now_ms();
    let subscriber = tracing_subscriber::registry().with(PythonLogging);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Logs a Python exception raised by a user callback, with its traceback, and
/// goes on.
pub(crate) fn log_callback_error(py: Python<'_>, what: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", exc_info)?;
        logger(py)?.call_method(
            "error",
            (format!("{what} raised an exception; the stream goes on"),),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if logged.is_err() {
        err.print(py);
    }
}
