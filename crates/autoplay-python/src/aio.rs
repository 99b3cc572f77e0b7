//! The asyncio side of `AsyncConnectorClient`: the core's async client on a tokio
//! runtime this module owns, its payloads taken by the event loop in batches.
//!
//! The core's engine task reads, parses and (when the consumer is behind) decodes on
//! the runtime, without the GIL. The event loop's coroutine polls the core's
//! `events()` stream itself, in `take`: everything ready, up to a batch, in one call,
//! with the GIL let go while it polls (the stream decodes what the reader did not).
//! There is no task in between moving payloads from one queue to another, so a
//! payload is handed over once, as with the sync client's callback thread. Only when
//! `take` finds nothing does the coroutine park an asyncio future; the stream's waker
//! then has a small task complete it with `loop.call_soon_threadsafe` (the waker
//! itself runs on the reader, which must never wait for the GIL). A consumer that
//! keeps up costs one wake-up per batch; one that is behind costs none. Nothing polls.
//!
//! Connection hooks go to the loop as notices, ahead of the payloads of the same
//! `take`, so the event loop calls (and awaits) them on its own thread. Drop notices
//! go to the loop on their own (a consumer busy in a callback is exactly when events
//! drop), in batches, from a blocking task so that the reader never waits for the GIL.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use autoplay_sdk::{AsyncConnectorClient, DisconnectReason, Error, Event, StopHandle};
use futures_util::Stream;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::errors;
use crate::models::{drop_dict, event_to_py};
use crate::options::{EngineOptions, apply_engine_options};

/// `take`'s share of `max_queue_bytes` (as the core's batch share): one call hands
/// over at most that many bytes of payloads (one heavier payload passes alone), so
/// what the loop holds besides the core's queue stays a fraction of the bound.
const TAKE_BYTES_SHARE: usize = 8;

/// What a decoded payload costs while the loop holds it, roughly: its strings and
/// its structs. `take`'s byte bound is counted with it.
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
/// Drop notices waiting for the loop beyond which further ones are not told (the
/// total in the next notice and `dropped_count` stay exact).
const MAX_DROP_NOTES: usize = 4096;

/// The runtime every async client's engine runs on (two workers: the reader, and the
/// wake-ups and drop notices, which may wait for the GIL), made on first use.
/// Interpreter exit takes it out and shuts it down.
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

/// A connection hook's news, for the event loop to call the hook with.
enum Notice {
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

/// The core's payload stream, polled by `take` on the event loop's thread.
type PayloadStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;

#[derive(Default)]
struct Buffer {
    /// Hook notices not yet taken, in the order the hooks ran.
    notices: VecDeque<Notice>,
    /// Set by the stream's waker (and by a notice): something may be ready since the
    /// last `take`, so the consumer must not park.
    woken: bool,
    /// Drop notices not yet handed to the loop, and whether a hand-over is under way.
    drop_notes: Vec<DropNote>,
    drops_scheduled: bool,
    /// The stream ended (or the run was closed); `error` is how, when it failed.
    finished: bool,
    error: Option<Error>,
    waiter: Option<Waiter>,
}

/// `on_drops(list of (payload_dict, total))`, called on `event_loop`.
struct DropListener {
    event_loop: Arc<Py<PyAny>>,
    callback: Arc<Py<PyAny>>,
}

/// One run's state, shared by the consumer (`take`), the stream's waker, the core's
/// hooks and the wake-up task.
struct Shared {
    buffer: Mutex<Buffer>,
    /// The core's stream until it ends or the run closes. Only `take` polls it (and
    /// holds the lock no longer than one batch, without the GIL).
    stream: Mutex<Option<PayloadStream>>,
    /// The stream's waker: marks the buffer woken and, when a consumer is parked,
    /// tells the wake-up task.
    waker: Waker,
    /// A parked consumer is to be woken (the wake-up task waits on it).
    wakeups: Arc<Notify>,
    runtime: tokio::runtime::Handle,
    /// The most bytes of payloads (by [`weight`]) one `take` hands over.
    max_bytes: usize,
    /// `wake(future)`: completes a parked future on its loop.
    wake: Py<PyAny>,
    /// Where drop notices go, when someone listens.
    drops: Option<DropListener>,
    stop: StopHandle,
    waking: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// The stream's waker. It runs wherever the stream's progress happens (the reader
/// task, mostly), so it only marks and notifies: the GIL is the wake-up task's to take.
struct StreamWaker(Weak<Shared>);

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.ready();
        }
    }
}

/// Completes the parked consumer's future each time it is told to. A task of its own
/// because completing it takes the GIL, which the reader must never wait for.
async fn wake_consumer(wakeups: Arc<Notify>, shared: Weak<Shared>) {
    loop {
        wakeups.notified().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let waiter = lock(&shared.buffer).waiter.take();
        if let Some(waiter) = waiter {
            shared.wake(waiter);
        }
    }
}

impl Shared {
    /// Something may be ready to take: a parked consumer is woken, and one about to
    /// park does not.
    fn ready(&self) {
        let parked = {
            let mut buffer = lock(&self.buffer);
            buffer.woken = true;
            buffer.waiter.is_some()
        };
        if parked {
            self.wakeups.notify_one();
        }
    }

    /// Queues a hook's notice for the consumer.
    fn tell(&self, notice: Notice) {
        {
            let mut buffer = lock(&self.buffer);
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            buffer.notices.push_back(notice);
        }
        self.ready();
    }

    /// Polls the stream for up to `room` payloads weighing up to `max_bytes` (what is
    /// ready now; none when it would wait, the waker then registered), and how it
    /// ended if it did. Decoding happens here for the payloads the reader did not
    /// decode ahead.
    fn poll_payloads(&self, room: usize) -> (Vec<Event>, Option<Option<Error>>) {
        let mut stream = lock(&self.stream);
        let Some(s) = stream.as_mut() else {
            return (Vec::new(), None);
        };
        // The stream may reach for the runtime (its engine task's handle).
        let _runtime = self.runtime.enter();
        let mut cx = Context::from_waker(&self.waker);
        let mut events = Vec::with_capacity(room.min(64));
        let mut end = None;
        let mut bytes = 0;
        while events.len() < room && bytes < self.max_bytes {
            match s.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(event))) => {
                    bytes += weight(&event);
                    events.push(event);
                }
                Poll::Ready(Some(Err(e))) => end = Some(Some(e)),
                Poll::Ready(None) => end = Some(None),
                Poll::Pending => break,
            }
            if end.is_some() {
                *stream = None;
                break;
            }
        }
        (events, end)
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

    /// Ends the run now: stops the core client, drops the stream (and so the
    /// engine), discards the notices and releases a parked consumer. Idempotent;
    /// callable from any thread.
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop.stop_now();
        // Waits for a `take` polling right now (one batch at most, no waiting inside).
        let stream = lock(&self.stream).take();
        drop(stream);
        if let Some(waking) = lock(&self.waking).take() {
            waking.abort();
        }
        let waiter = {
            let mut buffer = lock(&self.buffer);
            buffer.notices.clear();
            buffer.finished = true;
            buffer.waiter.take()
        };
        if let Some(waiter) = waiter {
            self.wake(waiter);
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
    /// The core's hooks, each a notice in the run's buffer. `shared` is weak: the
    /// core client outlives the run in `ClientState`, and must not keep it alive.
    fn wire_hooks(
        &self,
        mut b: autoplay_sdk::AsyncConnectorClientBuilder,
        shared: &Weak<Shared>,
    ) -> autoplay_sdk::AsyncConnectorClientBuilder {
        let tell = |shared: &Weak<Shared>, notice: Notice| {
            if let Some(shared) = shared.upgrade() {
                shared.tell(notice);
            }
        };
        if self.hooks.connect {
            let s = shared.clone();
            b = b.on_connect(move |url: &str| tell(&s, Notice::Connect(url.to_owned())));
        }
        if self.hooks.disconnect {
            let s = shared.clone();
            b = b.on_disconnect(move |reason: &DisconnectReason| {
                tell(&s, Notice::Disconnect(reason.to_string()))
            });
        }
        if self.hooks.retry {
            let s = shared.clone();
            b = b.on_retry(move |attempt, delay, reason| {
                tell(
                    &s,
                    Notice::Retry(attempt, delay.as_secs_f64(), reason.to_string()),
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
        let wakeups = Arc::new(Notify::new());
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            buffer: Mutex::default(),
            stream: Mutex::new(None),
            waker: Waker::from(Arc::new(StreamWaker(weak.clone()))),
            wakeups: wakeups.clone(),
            runtime: rt.clone(),
            max_bytes: (self.builder.configured_max_queue_bytes() / TAKE_BYTES_SHARE).max(1),
            wake,
            drops,
            stop,
            waking: Mutex::new(None),
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
        *lock(&shared.stream) = Some(Box::pin(stream));
        *lock(&shared.waking) = Some(rt.spawn(wake_consumer(wakeups, Arc::downgrade(&shared))));
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

    /// Payloads waiting in the core's queue right now.
    #[getter]
    fn queue_size(&self) -> usize {
        lock(&self.state)
            .current
            .as_ref()
            .map_or(0, |(client, _)| client.queue_size())
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
    /// Takes up to `max_items` items at once: tuples for the hooks that ran since the
    /// last call (`("connect", url)`, `("disconnect", reason)`, `("retry", attempt,
    /// delay_s, reason)`), then the payloads ready now, in order, up to an eighth of
    /// `max_queue_bytes` of them. An empty list when nothing is ready; `None` once
    /// the stream has ended; raises the `SdkError` that ended it. The default of 256
    /// lets one wake-up serve many payloads while the loop still gets back to its
    /// other work soon.
    #[pyo3(signature = (max_items=256))]
    fn take<'py>(&self, py: Python<'py>, max_items: usize) -> PyResult<Option<Bound<'py, PyList>>> {
        let max_items = max_items.max(1);
        let notices: Vec<Notice> = {
            let mut buffer = lock(&self.shared.buffer);
            buffer.woken = false;
            let n = buffer.notices.len().min(max_items);
            buffer.notices.drain(..n).collect()
        };
        let room = max_items - notices.len();
        let (events, end) = if room == 0 {
            (Vec::new(), None)
        } else {
            py.detach(|| self.shared.poll_payloads(room))
        };
        let finished = {
            let mut buffer = lock(&self.shared.buffer);
            if let Some(error) = end {
                buffer.finished = true;
                buffer.error = error;
            }
            buffer.finished
        };
        if notices.is_empty() && events.is_empty() && finished {
            let error = lock(&self.shared.buffer).error.take();
            self.shared.close();
            return match error {
                Some(e) => Err(errors::to_py(py, e)),
                None => Ok(None),
            };
        }
        let list = PyList::empty(py);
        for notice in notices {
            let obj: Bound<'py, PyAny> = match notice {
                Notice::Connect(url) => PyTuple::new(py, ["connect", url.as_str()])?.into_any(),
                Notice::Disconnect(reason) => {
                    PyTuple::new(py, ["disconnect", reason.as_str()])?.into_any()
                }
                Notice::Retry(attempt, delay, reason) => ("retry", attempt, delay, reason)
                    .into_pyobject(py)?
                    .into_any(),
            };
            list.append(obj)?;
        }
        for event in events {
            list.append(event_to_py(py, event)?)?;
        }
        Ok(Some(list))
    }

    /// Parks `future` (of `event_loop`) until items may be ready or the stream ends;
    /// `False` when something may be ready already (then nothing is parked).
    fn park(&self, event_loop: Py<PyAny>, future: Py<PyAny>) -> bool {
        let mut buffer = lock(&self.shared.buffer);
        if buffer.woken || !buffer.notices.is_empty() || buffer.finished {
            return false;
        }
        buffer.waiter = Some(Waiter { event_loop, future });
        true
    }

    /// Ends the run at once (cancellation): nothing more is handed out.
    fn close(&self) {
        self.shared.close();
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
