//! `ConnectorClient`: the core's blocking client, driven from Python.
//!
//! The core's reader thread parses and decodes without the GIL; the core's worker
//! thread takes the GIL only while a Python callback runs. `run()` waits with the
//! GIL released and checks for signals every 100 ms, so Ctrl-C stops the client and
//! `run()` returns normally.
//!
//! Shutdown: `stop()` (and so `__exit__`) returns once the run has ended, that is once
//! the queued events were handled (up to the drain timeout). At interpreter exit the
//! package's hook ([`stop_all_at_exit`]) stops every running client and waits for
//! each, before finalisation starts; see `gil.rs` for why no Rust thread may call
//! into Python after that.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use autoplay_sdk::{ConnectorClient, DisconnectReason, Event, FailureReason};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use tracing::{info, warn};

use crate::errors;
use crate::logging::log_callback_error;
use crate::models::{PyActionsPayload, PySummaryPayload, drop_dict};
use crate::options::{EngineOptions, apply_engine_options};

/// How often `run()` wakes up to check for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// After Ctrl-C, how long `run()` lets the client finish handling queued events.
const INTERRUPT_GRACE: Duration = Duration::from_millis(700);

/// How much longer than the drain timeout `stop()` and the exit hook wait for a run
/// to end: the callback running when the drain timeout passes is waited for, up to this.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Every client whose `run()` is in progress, for the exit hook.
static RUNNING: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// Set (under `RUNNING`'s lock) by the exit hook: no run may start after it looked.
static EXITING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The client (its `Shared` address) whose Python callback this thread is
    /// running, or 0: `stop()` from inside a callback must not wait for the run,
    /// which waits for that callback.
    static IN_CALLBACK_OF: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as running a callback of one client while it lives.
struct CallbackScope(usize);

impl CallbackScope {
    fn enter(client: usize) -> Self {
        CallbackScope(IN_CALLBACK_OF.with(|c| c.replace(client)))
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        IN_CALLBACK_OF.with(|c| c.set(self.0));
    }
}

/// A Python callable; `with_arg` says whether hooks get an argument.
struct Hook {
    f: Py<PyAny>,
    with_arg: bool,
}

#[derive(Default)]
struct Callbacks {
    on_actions: Option<Arc<Py<PyAny>>>,
    on_summary: Option<Arc<Py<PyAny>>>,
    on_drop: Option<Arc<Py<PyAny>>>,
    on_connect: Option<Arc<Hook>>,
    on_disconnect: Option<Arc<Hook>>,
    on_retry: Option<Arc<Py<PyAny>>>,
    metrics: Option<Arc<Metrics>>,
}

/// The methods of a 0.13.0 `SdkMetricsHook` object that this client calls, looked up
/// once; a missing one is not called, as in 0.13.0.
struct Metrics {
    record_event_dropped: Option<Py<PyAny>>,
    record_queue_depth: Option<Py<PyAny>>,
}

impl Metrics {
    fn new(obj: &Bound<'_, PyAny>) -> Self {
        let method = |name: &str| {
            obj.getattr(name)
                .ok()
                .filter(|m| m.is_callable())
                .map(Bound::unbind)
        };
        Metrics {
            record_event_dropped: method("record_event_dropped"),
            record_queue_depth: method("record_queue_depth"),
        }
    }
}

/// Calls a metrics method with keyword arguments; as 0.13.0, a failing metrics hook
/// is logged at DEBUG and never disturbs the stream.
fn call_metric(
    py: Python<'_>,
    method: &Py<PyAny>,
    name: &str,
    kwargs: &[(&str, Bound<'_, PyAny>)],
) {
    let result = (|| {
        let dict = PyDict::new(py);
        for (k, v) in kwargs {
            dict.set_item(*k, v)?;
        }
        method.call(py, (), Some(&dict))
    })();
    if let Err(e) = result {
        tracing::debug!(target: "autoplay_sdk::python", "metrics hook {name} raised (ignored): {e}");
    }
}

#[derive(Default)]
struct State {
    /// The client of the current (or last) run, for `stop()` and the counters.
    current: Option<ConnectorClient>,
    stopped: bool,
    running: bool,
    /// The thread in `run()`: a signal handler calling `stop()` runs there.
    run_thread: Option<ThreadId>,
}

/// What `stop()`, the run and the exit hook share.
struct Shared {
    state: Mutex<State>,
    /// Notified when a run ends.
    ended: Condvar,
    drain_timeout: Duration,
}

impl Shared {
    fn id(&self) -> usize {
        self as *const Shared as usize
    }

    /// Asks the current run, if any, to stop; later runs return at once.
    fn request_stop(&self) {
        let mut state = lock(&self.state);
        state.stopped = true;
        if let Some(client) = &state.current {
            client.stop();
        }
    }

    /// Waits with the GIL released until no run is in progress or `deadline`
    /// passes. Returns at once where waiting could never end: on the run's own
    /// thread, or inside one of this client's callbacks.
    fn wait_ended(&self, py: Python<'_>, deadline: Instant) -> bool {
        let here = std::thread::current().id();
        if IN_CALLBACK_OF.with(Cell::get) == self.id() {
            return false;
        }
        py.detach(|| {
            let mut state = lock(&self.state);
            while state.running {
                if state.run_thread == Some(here) {
                    return false;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                state = self
                    .ended
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            true
        })
    }
}

/// The exit hook's half for the clients: stops every running client, then waits
/// for all of them (bounded by the longest drain timeout plus [`STOP_GRACE`]).
pub(crate) fn stop_all_at_exit(py: Python<'_>) {
    let clients: Vec<Arc<Shared>> = {
        let running = lock(&RUNNING);
        EXITING.store(true, Ordering::SeqCst);
        running.iter().filter_map(Weak::upgrade).collect()
    };
    clients.iter().for_each(|c| c.request_stop());
    let longest = clients
        .iter()
        .map(|c| c.drain_timeout)
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + longest + STOP_GRACE;
    for client in &clients {
        if !client.wait_ended(py, deadline) {
            // The forwarding layer takes `autoplay*` targets only; this crate's own
            // module path is `_native::...`.
            warn!(
                target: "autoplay_sdk::python",
                "a client was still running at interpreter exit (a callback did not return)"
            );
        }
    }
}

/// Ends a run's bookkeeping when dropped, also if the run panicked: `stop()` and the
/// exit hook wait for it.
///
/// It holds what the run still does in Python at its end (closing the async
/// callbacks' loops, letting the client and its callbacks go) and does that first:
/// once the run is reported ended, the main thread may begin finalising, and a
/// thread that then waits for the GIL inside Rust frames is ended by CPython with
/// `pthread_exit`, whose unwinding aborts the process ("FATAL: exception not
/// rethrown").
struct RunEnd<'a> {
    shared: &'a Arc<Shared>,
    context: Option<ContextEnd>,
    client: Option<ConnectorClient>,
}

impl Drop for RunEnd<'_> {
    fn drop(&mut self) {
        drop(self.client.take());
        drop(self.context.take());
        let shared = self.shared;
        lock(&RUNNING).retain(|c| c.strong_count() > 0 && !std::ptr::eq(c.as_ptr(), &**shared));
        {
            let mut state = lock(&shared.state);
            state.running = false;
            state.run_thread = None;
            // A stop ends the run it was for: `run()` again connects again.
            state.stopped = false;
        }
        shared.ended.notify_all();
    }
}

/// Blocking client for `GET /stream/{product_id}`.
#[pyclass(module = "autoplay_sdk", name = "ConnectorClient", subclass, frozen)]
pub(crate) struct PyConnectorClient {
    url: String,
    /// Configured once with every option; cloned (with a stop handle of its own)
    /// for each run, the callbacks then added.
    builder: autoplay_sdk::ConnectorClientBuilder,
    callbacks: Mutex<Callbacks>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hook(py: Python<'_>, f: &Bound<'_, PyAny>) -> PyResult<Arc<Hook>> {
    let with_arg = py
        .import("autoplay_sdk._util")?
        .call_method1("wants_argument", (f,))?
        .extract()?;
    Ok(Arc::new(Hook {
        f: f.clone().unbind(),
        with_arg,
    }))
}

fn call_hook(client: usize, hook: &Hook, what: &str, arg: String) {
    let _scope = CallbackScope::enter(client);
    crate::gil::attach_once(|py| {
        let result = if hook.with_arg {
            hook.f.call1(py, (arg,))
        } else {
            hook.f.call0(py)
        };
        if let Err(e) = result {
            log_callback_error(py, what, e);
        }
    });
}

/// One dropped event, told to `on_drop` from a relay thread so that the reader
/// never waits for the GIL.
struct DropNote {
    kind: &'static str,
    session_id: Option<String>,
    product_id: Option<String>,
    total: u64,
}

/// A built core client and what its run needs besides.
struct Built {
    client: ConnectorClient,
    relay: Option<mpsc::Receiver<DropNote>>,
    context: Arc<RunContext>,
}

/// Calls `on_drop` and the metrics hook's `record_event_dropped` on its own thread
/// until `done` is set.
fn spawn_drop_relay(
    client: usize,
    f: Option<Arc<Py<PyAny>>>,
    metrics: Option<Arc<Metrics>>,
    rx: mpsc::Receiver<DropNote>,
    done: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("autoplay-on-drop".into())
        .spawn(move || {
            let _scope = CallbackScope::enter(client);
            let call = |note: DropNote| {
                crate::gil::attach(|py| {
                    if let Some(m) = metrics
                        .as_ref()
                        .and_then(|m| m.record_event_dropped.as_ref())
                    {
                        let kwargs = [
                            ("reason", PyString::new(py, "queue_full").into_any()),
                            ("event_type", PyString::new(py, note.kind).into_any()),
                            (
                                "session_id",
                                note.session_id
                                    .as_deref()
                                    .into_pyobject(py)
                                    .map(Bound::into_any)
                                    .unwrap_or_else(|_| py.None().into_bound(py)),
                            ),
                            (
                                "product_id",
                                note.product_id
                                    .as_deref()
                                    .into_pyobject(py)
                                    .map(Bound::into_any)
                                    .unwrap_or_else(|_| py.None().into_bound(py)),
                            ),
                        ];
                        call_metric(py, m, "record_event_dropped", &kwargs);
                    }
                    let Some(f) = &f else { return };
                    let result = drop_dict(
                        py,
                        note.kind,
                        note.session_id.as_deref(),
                        note.product_id.as_deref(),
                    )
                    .and_then(|d| f.call1(py, (d, note.total)));
                    if let Err(e) = result {
                        log_callback_error(py, "on_drop callback", e);
                    }
                });
            };
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(note) => call(note),
                    Err(RecvTimeoutError::Timeout) => {
                        if done.load(Ordering::Acquire) {
                            while let Ok(note) = rx.try_recv() {
                                call(note);
                            }
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })
}

/// What a run's payload callbacks share: the private event loops for `async def`
/// callbacks, and the run's client for the queue depth the metrics hook is told.
struct RunContext {
    loops: Py<PyAny>,
    client: Mutex<Option<ConnectorClient>>,
    metrics: Option<Arc<Metrics>>,
}

impl RunContext {
    /// Calls a payload callback; a coroutine (an `async def` callback) is run to its
    /// end on this worker thread's private event loop, as 0.13.0 ran it.
    fn call(&self, py: Python<'_>, f: &Py<PyAny>, payload: Bound<'_, PyAny>) -> PyResult<()> {
        if let Some(m) = self
            .metrics
            .as_ref()
            .and_then(|m| m.record_queue_depth.as_ref())
        {
            let depth = lock(&self.client)
                .as_ref()
                .map_or(0, ConnectorClient::queue_size);
            call_metric(
                py,
                m,
                "record_queue_depth",
                &[("depth", depth.into_pyobject(py)?.into_any())],
            );
        }
        let result = f.bind(py).call1((payload,))?;
        if result.is_none() {
            return Ok(());
        }
        let awaitable: bool = py
            .import("inspect")?
            .call_method1("isawaitable", (&result,))?
            .extract()?;
        if awaitable {
            self.loops.bind(py).call_method1("run", (result,))?;
        }
        Ok(())
    }
}

/// Ends a run's [`RunContext`] when dropped, however `run()` returns: the workers
/// have ended, so their private loops are closed, and the run's client is let go
/// (it holds the callbacks, which hold the context).
struct ContextEnd(Arc<RunContext>);

impl Drop for ContextEnd {
    fn drop(&mut self) {
        lock(&self.0.client).take();
        // `run()`'s thread, which holds the GIL: attaching again is only a count.
        Python::attach(|py| {
            if let Err(e) = self.0.loops.bind(py).call_method0("close") {
                log_callback_error(py, "closing the event loops of async callbacks", e);
            }
        });
    }
}

/// Whether this thread is running an asyncio event loop (`stop()` from a coroutine).
fn on_a_running_event_loop(py: Python<'_>) -> bool {
    py.import("asyncio")
        .and_then(|asyncio| asyncio.call_method0("_get_running_loop"))
        .is_ok_and(|running| !running.is_none())
}

impl PyConnectorClient {
    /// Builds the core client with the Python callbacks wired in.
    fn build(&self, py: Python<'_>) -> PyResult<Built> {
        let id = self.shared.id();
        let mut b = self.builder.clone();
        let callbacks = lock(&self.callbacks);
        let context = Arc::new(RunContext {
            loops: py
                .import("autoplay_sdk._util")?
                .getattr("LoopPerThread")?
                .call0()?
                .unbind(),
            client: Mutex::new(None),
            metrics: callbacks.metrics.clone(),
        });
        if let Some(f) = callbacks.on_actions.clone() {
            let context = context.clone();
            b = b.on_actions(move |payload| {
                let _scope = CallbackScope::enter(id);
                crate::gil::attach(|py| {
                    let result = Bound::new(py, PyActionsPayload::from_core(payload))
                        .and_then(|obj| context.call(py, &f, obj.into_any()));
                    if let Err(e) = result {
                        log_callback_error(py, "on_actions callback", e);
                    }
                });
            });
        }
        if let Some(f) = callbacks.on_summary.clone() {
            let context = context.clone();
            b = b.on_summary(move |payload| {
                let _scope = CallbackScope::enter(id);
                crate::gil::attach(|py| {
                    let result = Bound::new(py, PySummaryPayload { inner: payload })
                        .and_then(|obj| context.call(py, &f, obj.into_any()));
                    if let Err(e) = result {
                        log_callback_error(py, "on_summary callback", e);
                    }
                });
            });
        }
        if let Some(h) = callbacks.on_connect.clone() {
            b = b.on_connect(move |url: &str| {
                call_hook(id, &h, "on_connect callback", url.to_owned())
            });
        }
        if let Some(h) = callbacks.on_disconnect.clone() {
            b = b.on_disconnect(move |reason: &DisconnectReason| {
                call_hook(id, &h, "on_disconnect callback", reason.to_string())
            });
        }
        // The core tells `on_disconnect` when an established stream ends; 0.13.0 also
        // told it after an attempt that failed before a stream was had. Those reach the
        // core's retry hook (with a reason other than `Disconnected`), so they are told
        // from there, and the one that exhausts the retries from `run()`.
        let disconnect_on_failure = callbacks.on_disconnect.clone();
        let on_retry = callbacks.on_retry.clone();
        if on_retry.is_some() || disconnect_on_failure.is_some() {
            // Called just before the reader waits anyway, so waiting for the GIL
            // here costs the stream nothing.
            b = b.on_retry(move |attempt, delay, reason| {
                if let Some(h) = &disconnect_on_failure
                    && !matches!(reason, FailureReason::Disconnected(_))
                {
                    call_hook(id, h, "on_disconnect callback", reason.to_string());
                }
                let Some(f) = &on_retry else { return };
                let _scope = CallbackScope::enter(id);
                crate::gil::attach_once(|py| {
                    let reason = reason.to_string();
                    if let Err(e) = f.call1(py, (attempt, delay.as_secs_f64(), reason)) {
                        log_callback_error(py, "on_retry callback", e);
                    }
                });
            });
        }
        let mut relay = None;
        if callbacks.on_drop.is_some()
            || callbacks
                .metrics
                .as_ref()
                .is_some_and(|m| m.record_event_dropped.is_some())
        {
            let (tx, rx) = mpsc::sync_channel::<DropNote>(4096);
            b = b.on_drop(move |event: &Event, total| {
                let (session_id, product_id) = match event {
                    Event::Actions(p) => (p.session_id.as_deref(), p.product_id.as_deref()),
                    Event::Summary(p) => (p.session_id.as_deref(), p.product_id.as_deref()),
                };
                // A full relay only loses a notification; the total stays exact.
                let _ = tx.try_send(DropNote {
                    kind: event.kind(),
                    session_id: session_id.map(str::to_owned),
                    product_id: product_id.map(str::to_owned),
                    total,
                });
            });
            relay = Some(rx);
        }
        drop(callbacks);
        let client = b.build().map_err(|e| errors::to_py(py, e))?;
        if context.metrics.is_some() {
            *lock(&context.client) = Some(client.clone());
        }
        Ok(Built {
            client,
            relay,
            context,
        })
    }

    fn set_callback(&self, which: &str, f: &Bound<'_, PyAny>) -> PyResult<()> {
        if !f.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{which} needs a callable"
            )));
        }
        let f = Arc::new(f.clone().unbind());
        let mut callbacks = lock(&self.callbacks);
        match which {
            "on_actions" => callbacks.on_actions = Some(f),
            "on_summary" => callbacks.on_summary = Some(f),
            _ => callbacks.on_drop = Some(f),
        }
        Ok(())
    }
}

#[pymethods]
impl PyConnectorClient {
    #[new]
    #[pyo3(signature = (
        url, token="", max_queue_size=500,
        connect_timeout=10.0, read_timeout_s=Some(90.0), initial_backoff_s=1.0, max_backoff_s=30.0,
        max_retries=None, on_connect=None, on_disconnect=None, metrics=None, *,
        overflow_policy="drop_newest", workers=1, drain_timeout_s=5.0,
        max_event_size=None, headers=None, last_event_id=None, overflow_grace_s=0.025,
        on_retry=None, max_queue_bytes=16777216, max_server_delay_s=600.0,
        backoff_reset_after_s=60.0, max_id_len=4096
    ))]
    // Written out because the signature's `Some(90.0)` would show as `...`.
    #[pyo3(
        text_signature = "(url, token='', max_queue_size=500, connect_timeout=10.0, \
        read_timeout_s=90.0, initial_backoff_s=1.0, max_backoff_s=30.0, max_retries=None, \
        on_connect=None, on_disconnect=None, metrics=None, *, overflow_policy='drop_newest', \
        workers=1, drain_timeout_s=5.0, max_event_size=None, headers=None, last_event_id=None, \
        overflow_grace_s=0.025, on_retry=None, max_queue_bytes=16777216, \
        max_server_delay_s=600.0, backoff_reset_after_s=60.0, max_id_len=4096)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        token: &str,
        max_queue_size: i64,
        connect_timeout: f64,
        read_timeout_s: Option<f64>,
        initial_backoff_s: f64,
        max_backoff_s: f64,
        max_retries: Option<i64>,
        on_connect: Option<&Bound<'_, PyAny>>,
        on_disconnect: Option<&Bound<'_, PyAny>>,
        metrics: Option<&Bound<'_, PyAny>>,
        overflow_policy: &str,
        workers: usize,
        drain_timeout_s: f64,
        max_event_size: Option<usize>,
        headers: Option<&Bound<'_, PyDict>>,
        last_event_id: Option<String>,
        overflow_grace_s: f64,
        on_retry: Option<&Bound<'_, PyAny>>,
        max_queue_bytes: i64,
        max_server_delay_s: f64,
        backoff_reset_after_s: f64,
        max_id_len: i64,
    ) -> PyResult<Self> {
        let options = EngineOptions::new(
            py,
            max_queue_size,
            connect_timeout,
            read_timeout_s,
            initial_backoff_s,
            max_backoff_s,
            max_retries,
            overflow_policy,
            overflow_grace_s,
            drain_timeout_s,
            max_event_size,
            headers,
            last_event_id,
            max_queue_bytes,
            max_server_delay_s,
            backoff_reset_after_s,
            max_id_len,
        )?;
        let builder = ConnectorClient::builder(url.clone())
            // Empty: the core falls back to `AUTOPLAY_TOKEN`, then 0.13.0's
            // `AUTOPLAY_APP_UNKEY_TOKEN`, read at each build.
            .token(token)
            .workers(workers);
        let builder = apply_engine_options!(builder, options);
        let mut callbacks = Callbacks::default();
        if let Some(f) = on_connect.filter(|f| !f.is_none()) {
            callbacks.on_connect = Some(hook(py, f)?);
        }
        if let Some(f) = on_disconnect.filter(|f| !f.is_none()) {
            callbacks.on_disconnect = Some(hook(py, f)?);
        }
        if let Some(f) = on_retry.filter(|f| !f.is_none()) {
            if !f.is_callable() {
                return Err(errors::invalid(
                    py,
                    "on_retry must be callable as on_retry(attempt, delay_s, reason)",
                ));
            }
            callbacks.on_retry = Some(Arc::new(f.clone().unbind()));
        }
        if let Some(m) = metrics.filter(|m| !m.is_none()) {
            callbacks.metrics = Some(Arc::new(Metrics::new(m)));
        }
        // Check every option now, so a mistake raises here rather than in run().
        builder.clone().build().map_err(|e| errors::to_py(py, e))?;
        let client = Self {
            url,
            shared: Arc::new(Shared {
                state: Mutex::default(),
                ended: Condvar::new(),
                drain_timeout: builder.configured_drain_timeout(),
            }),
            builder,
            callbacks: Mutex::new(callbacks),
        };
        Ok(client)
    }

    /// Registers `fn(ActionsPayload)`; returns the client, for chaining.
    fn on_actions<'py>(
        slf: Bound<'py, Self>,
        r#fn: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Self>> {
        slf.get().set_callback("on_actions", r#fn)?;
        Ok(slf)
    }

    /// Registers `fn(SummaryPayload)`; returns the client, for chaining.
    fn on_summary<'py>(
        slf: Bound<'py, Self>,
        r#fn: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Self>> {
        slf.get().set_callback("on_summary", r#fn)?;
        Ok(slf)
    }

    /// Registers `fn(payload_dict, total_dropped)`, called for each event dropped
    /// because the queue was full; returns the client, for chaining.
    fn on_drop<'py>(slf: Bound<'py, Self>, r#fn: &Bound<'py, PyAny>) -> PyResult<Bound<'py, Self>> {
        slf.get().set_callback("on_drop", r#fn)?;
        Ok(slf)
    }

    /// Connects and handles events until `stop()` or Ctrl-C (then returns), or a
    /// fatal status / exhausted retries (then raises an `SdkError`).
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        crate::logging::refresh_log_level(py);
        let built = self.build(py)?;
        let context = ContextEnd(built.context.clone());
        let client = built.client.clone();
        {
            let mut state = lock(&self.shared.state);
            if state.running {
                return Err(errors::to_py(py, autoplay_sdk::Error::AlreadyRunning));
            }
            if state.stopped {
                // `stop()` came before this run started (e.g. just after
                // `run_in_background()`): it is this run's stop.
                state.stopped = false;
                return Ok(());
            }
            {
                let mut running = lock(&RUNNING);
                if EXITING.load(Ordering::SeqCst) {
                    // The interpreter is exiting: no new run may start calling into it.
                    return Ok(());
                }
                running.retain(|c| c.strong_count() > 0);
                running.push(Arc::downgrade(&self.shared));
            }
            state.running = true;
            state.run_thread = Some(std::thread::current().id());
            state.current = Some(client.clone());
        }
        let _end = RunEnd {
            shared: &self.shared,
            context: Some(context),
            client: Some(client),
        };
        self.run_client(py, built)
    }

    /// Starts `run()` on a daemon `threading.Thread` and returns the thread.
    fn run_in_background<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item("target", slf.getattr("run")?)?;
        kwargs.set_item("daemon", true)?;
        kwargs.set_item("name", "autoplay-sdk-client")?;
        let thread = py
            .import("threading")?
            .getattr("Thread")?
            .call((), Some(&kwargs))?;
        thread.call_method0("start")?;
        Ok(thread)
    }

    /// Stops the client and returns once `run()` has: the reader ends, queued
    /// events are handled (up to the drain timeout), then both return. Inside a
    /// callback (or a signal handler on `run()`'s thread) it only asks, since the run
    /// waits for that callback; so it does on a thread running an asyncio loop.
    fn stop(&self, py: Python<'_>) {
        self.shared.request_stop();
        if on_a_running_event_loop(py) {
            // Blocking the loop for the drain would stall every coroutine on it,
            // including callbacks bridged to it that the drain waits for.
            return;
        }
        let deadline = Instant::now() + self.shared.drain_timeout + STOP_GRACE;
        self.shared.wait_ended(py, deadline);
    }

    /// Events dropped so far because the queue was full.
    #[getter]
    fn dropped_count(&self) -> u64 {
        lock(&self.shared.state)
            .current
            .as_ref()
            .map_or(0, ConnectorClient::dropped_count)
    }

    /// Events skipped so far because they were larger than `max_event_size` (the
    /// stream goes on after each).
    #[getter]
    fn oversized_count(&self) -> u64 {
        lock(&self.shared.state)
            .current
            .as_ref()
            .map_or(0, ConnectorClient::oversized_count)
    }

    /// Events waiting in the queue right now.
    #[getter]
    fn queue_size(&self) -> usize {
        lock(&self.shared.state)
            .current
            .as_ref()
            .map_or(0, ConnectorClient::queue_size)
    }

    /// The stream URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    /// 0.13.0's: `ConnectorClient(url='...', running=False, dropped=0)`.
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let running = lock(&self.shared.state).running;
        Ok(format!(
            "ConnectorClient(url={}, running={}, dropped={})",
            PyString::new(py, &self.url).repr()?,
            if running { "True" } else { "False" },
            self.dropped_count()
        ))
    }
}

impl PyConnectorClient {
    fn run_client(&self, py: Python<'_>, built: Built) -> PyResult<()> {
        let Built { client, relay, .. } = built;
        let relay_done = Arc::new(AtomicBool::new(false));
        let (on_drop, metrics) = {
            let callbacks = lock(&self.callbacks);
            (callbacks.on_drop.clone(), callbacks.metrics.clone())
        };
        let relay_thread = match relay {
            Some(rx) => Some(
                spawn_drop_relay(self.shared.id(), on_drop, metrics, rx, relay_done.clone())
                    .map_err(|e| errors::runtime(format!("could not start a thread: {e}")))?,
            ),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let rx = Mutex::new(rx);
        let runner = client.clone();
        std::thread::Builder::new()
            .name("autoplay-run".into())
            .spawn(move || {
                let _ = tx.send(runner.run());
            })
            .map_err(|e| errors::runtime(format!("could not start a thread: {e}")))?;

        let mut interrupted: Option<Instant> = None;
        let mut pending_error: Option<PyErr> = None;
        let outcome = loop {
            match py.detach(|| lock(&rx).recv_timeout(SIGNAL_POLL)) {
                Ok(result) => break Some(result),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    if interrupted.is_some_and(|at| at.elapsed() >= INTERRUPT_GRACE) {
                        // Ctrl-C means now: events still queued are discarded rather
                        // than holding `run()`; only a callback already running is
                        // waited for.
                        client.stop_now();
                    }
                    if let Err(e) = py.check_signals() {
                        client.stop();
                        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                            if interrupted.is_none() {
                                info!(target: "autoplay_sdk::python", "interrupted; stopping the client");
                                interrupted = Some(Instant::now());
                            } else {
                                client.stop_now();
                            }
                            continue;
                        }
                        // Another exception from a signal handler: discard what is
                        // queued, wait for the client to end, then raise it.
                        client.stop_now();
                        pending_error = Some(e);
                    }
                }
            }
        };
        relay_done.store(true, Ordering::Release);
        if let Some(t) = relay_thread {
            py.detach(|| {
                let _ = t.join();
            });
        }
        if let Some(e) = pending_error {
            return Err(e);
        }
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                if let autoplay_sdk::Error::RetriesExhausted { last_failure, .. } = &e
                    && !matches!(last_failure, FailureReason::Disconnected(_))
                    && let Some(h) = lock(&self.callbacks).on_disconnect.clone()
                {
                    // The last failed attempt: the retry hook is not called for it.
                    call_hook(
                        self.shared.id(),
                        &h,
                        "on_disconnect callback",
                        last_failure.to_string(),
                    );
                }
                Err(errors::to_py(py, e))
            }
            None => Err(errors::runtime("the client thread ended unexpectedly")),
        }
    }
}
