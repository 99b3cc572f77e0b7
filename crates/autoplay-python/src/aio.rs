//! The asyncio side of `AsyncConnectorClient`: the core's async client on a tokio
//! runtime this module owns, handing payloads to the event loop in batches.
//!
//! Per run, one tokio task (the pump) pulls the core's `events()` stream, so reading,
//! parsing and decoding never hold the GIL, and moves whole batches into a small
//! bounded buffer. The event loop's coroutine takes from that buffer synchronously
//! (one lock and one call per batch); only when it finds the buffer empty does it
//! park an asyncio future there, which the pump completes with
//! `loop.call_soon_threadsafe` when the next batch lands. A consumer that keeps up
//! costs one wake-up per batch; one that is behind costs none. Nothing polls.
//!
//! Connection hooks travel through the same buffer, so the event loop calls (and
//! awaits) them on its own thread in order with the payloads. Drop notices go to the
//! loop on their own (a consumer busy in a callback is exactly when events drop), in
//! batches, from a blocking task so that the reader never waits for the GIL.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use autoplay_sdk::{AsyncConnectorClient, DisconnectReason, Error, Event, StopHandle};
use futures_util::{FutureExt, StreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::errors;
use crate::models::{drop_dict, event_to_py};
use crate::options::{EngineOptions, apply_engine_options};

/// Payloads the buffer between the pump and the event loop holds at most; also the
/// most one `take` hands over. Large enough that a wake-up is shared by many
/// payloads, small enough that it adds little to `max_queue_size`.
const BUFFER: usize = 256;

/// The buffer's share of `max_queue_bytes` (as the core's batch share): it holds at
/// most that many bytes of payloads (one heavier payload passes alone), so a run
/// holds at most about `max_queue_bytes * (1 + 1/8)` plus the core's batch.
const BUFFER_BYTES_SHARE: usize = 8;

/// What a decoded payload costs in the buffer, roughly: its strings and its structs.
/// The pump's byte bound is counted with it.
fn weight(event: &Event) -> usize {
    const OVERHEAD: usize = 64;
    fn opt(s: Option<&str>) -> usize {
        s.map_or(0, str::len)
    }
    match event {
        Event::Actions(p) => {
            OVERHEAD
                + p.actions
                    .iter()
                    .map(|a| {
                        std::mem::size_of_val(a)
                            + a.event_type.len()
                            + a.title.len()
                            + a.description.len()
                            + a.canonical_url.len()
                            + opt(a.raw_url.as_deref())
                            + opt(a.ts.as_deref())
                            + a.properties.as_json().len()
                    })
                    .sum::<usize>()
        }
        Event::Summary(p) => OVERHEAD + p.summary.len(),
    }
}
// `take`'s default is written out (a literal shows in its Python signature).
const _: () = assert!(BUFFER == 256);

/// Drop notices waiting for the loop beyond which further ones are not told (the
/// total in the next notice and `dropped_count` stay exact).
const MAX_DROP_NOTES: usize = 4096;

/// The runtime every async client's engine and pump run on (two workers, so the
/// reader and the decoding pump can use both cores while the event loop runs
/// Python), made on first use. Interpreter exit takes it out and shuts it down.
static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);

fn runtime() -> PyResult<tokio::runtime::Handle> {
    let mut runtime = lock(&RUNTIME);
    if let Some(rt) = runtime.as_ref() {
        return Ok(rt.handle().clone());
    }
    if FINALISING.load(Ordering::SeqCst) {
        return Err(errors::runtime("the interpreter is exiting"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("autoplay-aio")
        .enable_all()
        .build()
        .map_err(|e| errors::runtime(format!("could not start the async runtime: {e}")))?;
    let handle = rt.handle().clone();
    *runtime = Some(rt);
    Ok(handle)
}

/// Set at interpreter exit: from then on no run or runtime starts.
static FINALISING: AtomicBool = AtomicBool::new(false);

/// How long interpreter exit waits for the runtime's tasks to end.
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// Every run not yet closed, so that interpreter exit can stop them.
fn live_runs() -> &'static Mutex<Vec<Weak<Shared>>> {
    static RUNS: OnceLock<Mutex<Vec<Weak<Shared>>>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Interpreter exit (the package's exit hook, before the gate of [`crate::gil`]
/// shuts): no new run or runtime starts, every run still going is closed (a loop
/// still running sees its stream end), and the runtime is shut down with the GIL let
/// go, so its tasks end while they may still log, and none of its threads is left
/// to touch the interpreter later (bounded by `EXIT_WAIT`).
pub(crate) fn stop_all_at_exit(py: Python<'_>) {
    FINALISING.store(true, Ordering::SeqCst);
    let runs: Vec<Arc<Shared>> = lock(live_runs())
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    for run in runs {
        run.close();
    }
    let runtime = lock(&RUNTIME).take();
    py.detach(move || {
        if let Some(runtime) = runtime {
            runtime.shutdown_timeout(EXIT_WAIT);
        }
    });
}

/// What the buffer carries to the event loop, in the order it happened.
enum Item {
    Event(Event),
    Connect(String),
    Disconnect(String),
    Retry(u32, f64, String),
}

/// One dropped event, for `on_drop`.
struct DropNote {
    kind: &'static str,
    session_id: Option<String>,
    product_id: Option<String>,
    total: u64,
}

/// An asyncio future parked by the consumer, and its loop.
struct Waiter {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
}

#[derive(Default)]
struct Buffer {
    items: VecDeque<Item>,
    /// How many of `items` are payloads (hooks do not count to `BUFFER`), and their
    /// [`weight`]s together.
    payloads: usize,
    bytes: usize,
    /// Drop notices not yet handed to the loop, and whether a hand-over is under way.
    drop_notes: Vec<DropNote>,
    drops_scheduled: bool,
    /// The stream ended; `error` is how, when it failed.
    finished: bool,
    error: Option<Error>,
    waiter: Option<Waiter>,
}

/// `on_drops(list of (payload_dict, total))`, called on `event_loop`.
struct DropListener {
    event_loop: Arc<Py<PyAny>>,
    callback: Arc<Py<PyAny>>,
}

/// One run's state, shared by the pump, the core's hooks and the Python side.
struct Shared {
    buffer: Mutex<Buffer>,
    /// Room in the buffer again (the consumer took a batch).
    room: Notify,
    /// `wake(future)`: completes a parked future on its loop.
    wake: Py<PyAny>,
    /// Where drop notices go, when someone listens.
    drops: Option<DropListener>,
    stop: StopHandle,
    pump: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Shared {
    /// Appends items (and the end of the stream, if `end`), then wakes a parked consumer.
    fn push(&self, items: impl IntoIterator<Item = Item>, end: Option<Option<Error>>) {
        let waiter = {
            let mut buffer = lock(&self.buffer);
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            for item in items {
                if let Item::Event(event) = &item {
                    buffer.payloads += 1;
                    buffer.bytes += weight(event);
                }
                buffer.items.push_back(item);
            }
            if let Some(error) = end {
                buffer.finished = true;
                buffer.error = error;
            }
            buffer.waiter.take()
        };
        if let Some(waiter) = waiter {
            self.wake(waiter);
        }
    }

    /// Queues a drop notice and, unless one is under way, schedules handing the
    /// queued notices to `on_drops(list)` on the loop.
    fn tell_drop(self: &Arc<Self>, note: DropNote) {
        let Some(drops) = &self.drops else { return };
        {
            let mut buffer = lock(&self.buffer);
            if self.closed.load(Ordering::Acquire) || buffer.drop_notes.len() >= MAX_DROP_NOTES {
                return;
            }
            buffer.drop_notes.push(note);
            if std::mem::replace(&mut buffer.drops_scheduled, true) {
                return;
            }
        }
        let (shared, event_loop, callback) = (
            self.clone(),
            drops.event_loop.clone(),
            drops.callback.clone(),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The reader must not wait for the GIL: a blocking task takes it instead.
        drop(runtime.spawn_blocking(move || {
            crate::gil::attach_once(|py| {
                let notes = {
                    let mut buffer = lock(&shared.buffer);
                    buffer.drops_scheduled = false;
                    std::mem::take(&mut buffer.drop_notes)
                };
                let list = PyList::empty(py);
                for note in notes {
                    let item = drop_dict(
                        py,
                        note.kind,
                        note.session_id.as_deref(),
                        note.product_id.as_deref(),
                    )
                    .and_then(|d| (d, note.total).into_pyobject(py));
                    if let Ok(item) = item {
                        let _ = list.append(item);
                    }
                }
                // A closed loop raises RuntimeError: nobody listens any more.
                let _ = event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (callback.bind(py), list));
            });
        }));
    }

    fn wake(&self, waiter: Waiter) {
        // Without the interpreter (it is shutting down) there is nobody to wake.
        let _ = crate::gil::attach_once(|py| {
            // A closed loop raises RuntimeError: nobody waits any more.
            let _ = waiter.event_loop.call_method1(
                py,
                "call_soon_threadsafe",
                (self.wake.clone_ref(py), waiter.future.clone_ref(py)),
            );
            drop(waiter);
        });
    }

    /// Ends the run now: stops the core client, aborts the pump (which drops the
    /// stream and so the engine), discards what is buffered and releases a parked
    /// consumer. Idempotent; callable from any thread.
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop.stop_now();
        if let Some(pump) = lock(&self.pump).take() {
            pump.abort();
        }
        let waiter = {
            let mut buffer = lock(&self.buffer);
            buffer.items.clear();
            buffer.payloads = 0;
            buffer.bytes = 0;
            buffer.finished = true;
            buffer.waiter.take()
        };
        if let Some(waiter) = waiter {
            self.wake(waiter);
        }
    }
}

/// Moves the stream's payloads into the buffer in batches until it ends. It waits
/// while the buffer is full (by count or by bytes), so a consumer slower than the
/// stream holds the core's queue back, whose overflow policy then decides (`block`,
/// the async client's default: the reader waits, nothing is lost).
async fn pump(
    stream: impl futures_util::Stream<Item = Result<Event, Error>>,
    shared: Arc<Shared>,
    max_bytes: usize,
) {
    let mut stream = pin!(stream);
    let mut batch = Vec::with_capacity(BUFFER);
    loop {
        let (room, room_bytes) = loop {
            let notified = shared.room.notified();
            let (payloads, bytes) = {
                let buffer = lock(&shared.buffer);
                (buffer.payloads, buffer.bytes)
            };
            // An empty buffer takes one payload whatever it weighs.
            if payloads == 0 || (payloads < BUFFER && bytes < max_bytes) {
                break (BUFFER - payloads, max_bytes.saturating_sub(bytes));
            }
            notified.await;
        };
        let mut taken_bytes = 0;
        let mut end = match stream.next().await {
            Some(Ok(event)) => {
                taken_bytes += weight(&event);
                batch.push(Item::Event(event));
                None
            }
            Some(Err(e)) => Some(Some(e)),
            None => Some(None),
        };
        // Whatever is ready now goes in the same batch, so one wake-up serves it all.
        while end.is_none() && batch.len() < room && taken_bytes < room_bytes {
            match stream.next().now_or_never() {
                None => break,
                Some(Some(Ok(event))) => {
                    taken_bytes += weight(&event);
                    batch.push(Item::Event(event));
                }
                Some(Some(Err(e))) => end = Some(Some(e)),
                Some(None) => end = Some(None),
            }
        }
        let done = end.is_some();
        shared.push(batch.drain(..), end);
        if done {
            return;
        }
    }
}

/// Which hooks the Python side wants told.
#[derive(Clone, Copy)]
struct Hooks {
    connect: bool,
    disconnect: bool,
    retry: bool,
}

#[derive(Default)]
struct ClientState {
    /// The current (or last) run: for `stop()`, the counters and "already running".
    current: Option<(AsyncConnectorClient, Arc<Shared>)>,
}

/// The engine of `autoplay_sdk.AsyncConnectorClient` (`_async.py` drives it).
#[pyclass(module = "autoplay_sdk._native", name = "_AsyncEngine", frozen)]
pub(crate) struct PyAsyncEngine {
    url: String,
    /// Configured once with every option; cloned (with a stop handle of its own)
    /// for each run, the hooks then added.
    builder: autoplay_sdk::AsyncConnectorClientBuilder,
    hooks: Hooks,
    state: Mutex<ClientState>,
}

impl PyAsyncEngine {
    /// The core's hooks, each a marker in the run's buffer. `shared` is weak: the
    /// core client outlives the run in `ClientState`, and must not keep it alive.
    fn wire_hooks(
        &self,
        mut b: autoplay_sdk::AsyncConnectorClientBuilder,
        shared: &Weak<Shared>,
    ) -> autoplay_sdk::AsyncConnectorClientBuilder {
        let tell = |shared: &Weak<Shared>, item: Item| {
            if let Some(shared) = shared.upgrade() {
                shared.push([item], None);
            }
        };
        if self.hooks.connect {
            let s = shared.clone();
            b = b.on_connect(move |url: &str| tell(&s, Item::Connect(url.to_owned())));
        }
        if self.hooks.disconnect {
            let s = shared.clone();
            b = b.on_disconnect(move |reason: &DisconnectReason| {
                tell(&s, Item::Disconnect(reason.to_string()))
            });
        }
        if self.hooks.retry {
            let s = shared.clone();
            b = b.on_retry(move |attempt, delay, reason| {
                tell(
                    &s,
                    Item::Retry(attempt, delay.as_secs_f64(), reason.to_string()),
                )
            });
        }
        if shared.upgrade().is_some_and(|s| s.drops.is_some()) {
            let s = shared.clone();
            b = b.on_drop(move |event: &Event, total| {
                let (session_id, product_id) = match event {
                    Event::Actions(p) => (p.session_id.as_deref(), p.product_id.as_deref()),
                    Event::Summary(p) => (p.session_id.as_deref(), p.product_id.as_deref()),
                };
                if let Some(s) = s.upgrade() {
                    s.tell_drop(DropNote {
                        kind: event.kind(),
                        session_id: session_id.map(str::to_owned),
                        product_id: product_id.map(str::to_owned),
                        total,
                    });
                }
            });
        }
        b
    }
}

#[pymethods]
impl PyAsyncEngine {
    #[new]
    #[pyo3(signature = (
        url, token, *, max_queue_size=500, connect_timeout=10.0, read_timeout_s=Some(90.0),
        initial_backoff_s=1.0, max_backoff_s=30.0, max_retries=None,
        overflow_policy="block", drain_timeout_s=5.0, max_event_size=None,
        headers=None, last_event_id=None, overflow_grace_s=0.025,
        on_connect=false, on_disconnect=false, on_retry=false, max_queue_bytes=16777216,
        max_server_delay_s=600.0, backoff_reset_after_s=60.0, max_id_len=4096
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        token: String,
        max_queue_size: i64,
        connect_timeout: f64,
        read_timeout_s: Option<f64>,
        initial_backoff_s: f64,
        max_backoff_s: f64,
        max_retries: Option<i64>,
        overflow_policy: &str,
        drain_timeout_s: f64,
        max_event_size: Option<usize>,
        headers: Option<&Bound<'_, PyDict>>,
        last_event_id: Option<String>,
        overflow_grace_s: f64,
        on_connect: bool,
        on_disconnect: bool,
        on_retry: bool,
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
        let builder = apply_engine_options!(
            AsyncConnectorClient::builder(url.clone()).token(token),
            options
        );
        // Check every option now, so a mistake raises here rather than in run().
        builder.clone().build().map_err(|e| errors::to_py(py, e))?;
        Ok(Self {
            url,
            builder,
            hooks: Hooks {
                connect: on_connect,
                disconnect: on_disconnect,
                retry: on_retry,
            },
            state: Mutex::default(),
        })
    }

    /// Starts a run: connects on the binding's runtime and returns its handle.
    /// `wake(future)` is called on the loop to complete a parked future;
    /// `on_drops([(payload_dict, total), ...])`, when given, is called on the running
    /// loop with the events dropped since its last call.
    #[pyo3(signature = (wake, on_drops=None))]
    fn start(
        &self,
        py: Python<'_>,
        wake: Py<PyAny>,
        on_drops: Option<Py<PyAny>>,
    ) -> PyResult<PyAsyncRun> {
        crate::logging::refresh_log_level(py);
        let rt = runtime()?;
        let mut state = lock(&self.state);
        if let Some((_, shared)) = &state.current
            && !shared.closed.load(Ordering::Acquire)
        {
            return Err(errors::to_py(py, Error::AlreadyRunning));
        }
        let builder = self.builder.clone();
        let stop = builder.stop_handle();
        let drops = match on_drops {
            None => None,
            Some(callback) => Some(DropListener {
                event_loop: Arc::new(
                    py.import("asyncio")?
                        .call_method0("get_running_loop")?
                        .unbind(),
                ),
                callback: Arc::new(callback),
            }),
        };
        let shared = Arc::new(Shared {
            buffer: Mutex::default(),
            room: Notify::new(),
            wake,
            drops,
            stop,
            pump: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let client = self
            .wire_hooks(builder, &Arc::downgrade(&shared))
            .build()
            .map_err(|e| errors::to_py(py, e))?;
        let stream = {
            // `events()` spawns the engine task, so it needs the runtime's context.
            let _entered = rt.enter();
            client.events()
        };
        let max_bytes = (self.builder.configured_max_queue_bytes() / BUFFER_BYTES_SHARE).max(1);
        *lock(&shared.pump) = Some(rt.spawn(pump(stream, shared.clone(), max_bytes)));
        {
            let mut runs = lock(live_runs());
            runs.retain(|w| w.strong_count() > 0);
            runs.push(Arc::downgrade(&shared));
        }
        state.current = Some((client, shared.clone()));
        Ok(PyAsyncRun { shared })
    }

    /// Stops the current run: the reader ends, what is queued is still handed out
    /// (up to the drain timeout), then the run's stream ends.
    fn stop(&self) {
        if let Some((client, _)) = &lock(&self.state).current {
            client.stop();
        }
    }

    /// Events dropped so far in the current (or last) run because the queue was full.
    #[getter]
    fn dropped_count(&self) -> u64 {
        lock(&self.state)
            .current
            .as_ref()
            .map_or(0, |(client, _)| client.dropped_count())
    }

    /// Events skipped so far in the current (or last) run because they were larger
    /// than `max_event_size`.
    #[getter]
    fn oversized_count(&self) -> u64 {
        lock(&self.state)
            .current
            .as_ref()
            .map_or(0, |(client, _)| client.oversized_count())
    }

    /// Payloads waiting in the core's queue and in the run's buffer right now.
    #[getter]
    fn queue_size(&self) -> usize {
        lock(&self.state)
            .current
            .as_ref()
            .map_or(0, |(client, shared)| {
                client.queue_size() + lock(&shared.buffer).payloads
            })
    }

    /// The stream URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }
}

/// One run of a `_AsyncEngine`: what the event loop takes payloads from.
#[pyclass(module = "autoplay_sdk._native", name = "_AsyncRun", frozen)]
pub(crate) struct PyAsyncRun {
    shared: Arc<Shared>,
}

#[pymethods]
impl PyAsyncRun {
    /// Takes up to `max_items` items at once, in order: payloads, and tuples for the
    /// hooks (`("connect", url)`, `("disconnect", reason)`, `("retry", attempt,
    /// delay_s, reason)`). An empty list when
    /// nothing is ready; `None` once the stream has ended; raises the `SdkError`
    /// that ended it.
    #[pyo3(signature = (max_items=256))]
    fn take<'py>(&self, py: Python<'py>, max_items: usize) -> PyResult<Option<Bound<'py, PyList>>> {
        let (items, error) = {
            let mut buffer = lock(&self.shared.buffer);
            let n = buffer.items.len().min(max_items.max(1));
            let items: Vec<Item> = buffer.items.drain(..n).collect();
            for item in &items {
                if let Item::Event(event) = item {
                    buffer.payloads -= 1;
                    buffer.bytes = buffer.bytes.saturating_sub(weight(event));
                }
            }
            if items.is_empty() && buffer.finished {
                (None, buffer.error.take())
            } else {
                (Some(items), None)
            }
        };
        let Some(items) = items else {
            self.shared.close();
            return match error {
                Some(e) => Err(errors::to_py(py, e)),
                None => Ok(None),
            };
        };
        if !items.is_empty() {
            self.shared.room.notify_one();
        }
        let list = PyList::empty(py);
        for item in items {
            let obj: Bound<'py, PyAny> = match item {
                Item::Event(event) => event_to_py(py, event)?.into_bound(py),
                Item::Connect(url) => PyTuple::new(py, ["connect", url.as_str()])?.into_any(),
                Item::Disconnect(reason) => {
                    PyTuple::new(py, ["disconnect", reason.as_str()])?.into_any()
                }
                Item::Retry(attempt, delay, reason) => ("retry", attempt, delay, reason)
                    .into_pyobject(py)?
                    .into_any(),
            };
            list.append(obj)?;
        }
        Ok(Some(list))
    }

    /// Parks `future` (of `event_loop`) until items arrive or the stream ends; `False`
    /// when there is something to take already (then nothing is parked).
    fn park(&self, event_loop: Py<PyAny>, future: Py<PyAny>) -> bool {
        let mut buffer = lock(&self.shared.buffer);
        if !buffer.items.is_empty() || buffer.finished {
            return false;
        }
        buffer.waiter = Some(Waiter { event_loop, future });
        true
    }

    /// Ends the run at once (cancellation): nothing more is handed out.
    fn close(&self) {
        self.shared.close();
    }

    /// Payloads waiting in the run's buffer.
    #[getter]
    fn buffered(&self) -> usize {
        lock(&self.shared.buffer).payloads
    }
}

impl Drop for PyAsyncRun {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Adds the async engine's classes to the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAsyncEngine>()?;
    m.add_class::<PyAsyncRun>()?;
    Ok(())
}
