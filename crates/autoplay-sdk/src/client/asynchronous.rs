//! The async client: the engine runs as a tokio task; callbacks are awaited on the
//! task that called `run`, so a slow callback never stalls the reader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream};
use tokio::task::JoinHandle;
use tracing::warn;

use super::{Core, RunGuard, StopHandle};
use crate::config::{ConfigBuilder, config_setters};
use crate::consumer::{Handler, Tasks, consume, warn_discarded};
use crate::dispatch::{Delivery, Queued};
use crate::error::Error;
use crate::models::{ActionsPayload, Event, SummaryPayload};
use crate::queue::{Batch, EventQueue, Popped};
use crate::sse::SseEvent;

type AsyncActionsCallback = Arc<dyn Fn(ActionsPayload) -> BoxFuture<'static, ()> + Send + Sync>;
type AsyncSummaryCallback = Arc<dyn Fn(SummaryPayload) -> BoxFuture<'static, ()> + Send + Sync>;

/// Builds an [`AsyncConnectorClient`]; options are checked by [`build`](Self::build).
#[must_use = "a builder does nothing until built"]
pub struct AsyncConnectorClientBuilder {
    config: ConfigBuilder,
    stop: StopHandle,
    on_actions: Option<AsyncActionsCallback>,
    on_summary: Option<AsyncSummaryCallback>,
}

config_setters!(AsyncConnectorClientBuilder);

impl AsyncConnectorClientBuilder {
    /// An async callback for every actions batch.
    pub fn on_actions<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ActionsPayload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_actions = Some(Arc::new(move |p| f(p).boxed()));
        self
    }

    /// An async callback for every session summary.
    pub fn on_summary<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SummaryPayload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_summary = Some(Arc::new(move |p| f(p).boxed()));
        self
    }

    /// A handle that stops the client this builder will build.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Checks the options and builds the client.
    pub fn build(self) -> Result<AsyncConnectorClient, Error> {
        Ok(AsyncConnectorClient {
            inner: Arc::new(Inner {
                core: Core::new(self.config, self.stop)?,
                callbacks: Callbacks {
                    on_actions: self.on_actions,
                    on_summary: self.on_summary,
                },
            }),
        })
    }
}

#[derive(Clone)]
struct Callbacks {
    on_actions: Option<AsyncActionsCallback>,
    on_summary: Option<AsyncSummaryCallback>,
}

impl Handler for Callbacks {
    async fn handle(&self, event: Event) {
        let future = match event {
            Event::Actions(payload) => self.on_actions.as_ref().map(|f| f(payload)),
            Event::Summary(payload) => self.on_summary.as_ref().map(|f| f(payload)),
        };
        if let Some(future) = future
            && std::panic::AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .is_err()
        {
            warn!("a callback panicked; the event is skipped and the client goes on");
        }
    }
}

struct Inner {
    core: Core,
    callbacks: Callbacks,
}

/// The async client, for tokio applications (RAG pipelines with async embedding and
/// vector-store calls). Cloning gives another handle to the same client.
///
/// ```no_run
/// use autoplay_sdk::AsyncConnectorClient;
///
/// # async fn example() -> Result<(), autoplay_sdk::Error> {
/// let client = AsyncConnectorClient::builder("https://connector.example.com/stream/acme")
///     .token("uk_live_...")
///     .on_actions(|payload| async move {
///         // embed payload.to_text() and upsert it
///         println!("{}", payload.to_text());
///     })
///     .build()?;
/// client.run().await
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncConnectorClient {
    inner: Arc<Inner>,
}

/// Aborts the engine task if its owner goes away early (a dropped `run` future or
/// event stream), so no reader outlives its consumer.
struct EngineTask {
    handle: Option<JoinHandle<Result<(), Error>>>,
    stop: StopHandle,
}

impl EngineTask {
    async fn finish(&mut self) -> Result<(), Error> {
        match self.handle.take() {
            None => Ok(()),
            Some(handle) => handle.await.unwrap_or_else(|e| {
                Err(Error::Io(std::io::Error::other(format!(
                    "the reader task failed: {e}"
                ))))
            }),
        }
    }
}

impl Drop for EngineTask {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            self.stop.stop();
            handle.abort();
        }
    }
}

impl AsyncConnectorClient {
    /// Starts a builder for the stream at `url`.
    pub fn builder(url: impl Into<String>) -> AsyncConnectorClientBuilder {
        AsyncConnectorClientBuilder {
            config: ConfigBuilder::new(url),
            stop: StopHandle::default(),
            on_actions: None,
            on_summary: None,
        }
    }

    fn start(&self, delivery: Delivery) -> (Arc<EventQueue<Queued>>, EngineTask) {
        let (queue, engine) = self.inner.core.prepare(delivery);
        let task = EngineTask {
            handle: Some(tokio::spawn(engine.run())),
            stop: self.inner.core.stop_handle().clone(),
        };
        (queue, task)
    }

    /// Connects and awaits the callbacks until [`stop`](Self::stop) (then `Ok`) or a
    /// fatal status or exhausted retries (then `Err`). Dropping this future stops the client.
    pub async fn run(&self) -> Result<(), Error> {
        let _running = self.inner.core.begin_run()?;
        let (queue, mut engine) = self.start(Delivery::Payloads);
        let consumed = consume::<Tasks, _>(
            &queue,
            self.inner.core.config(),
            &self.inner.callbacks,
            self.inner.core.stop_handle(),
            Arc::as_ptr(&self.inner) as usize,
        )
        .await;
        if consumed.is_err() {
            // No worker to hand events to: the reader must not go on alone.
            self.inner.core.stop_handle().stop();
        }
        let finished = engine.finish().await;
        consumed.and(finished)
    }

    /// Spawns [`run`](Self::run) on the current tokio runtime and returns at once.
    /// Awaiting the handle gives how the run ended; dropping it stops the client
    /// (which then drains on the runtime, as after [`stop`](Self::stop)).
    pub fn run_in_background(&self) -> AsyncBackgroundClient {
        let client = self.clone();
        AsyncBackgroundClient {
            client: self.clone(),
            handle: tokio::spawn(async move { client.run().await }),
        }
    }

    /// Typed payloads as a stream, for pull-style code (no callbacks). The stream ends
    /// after [`stop`](Self::stop); a fatal status or exhausted retries arrive as its last
    /// item, an `Err`. Dropping the stream stops the client.
    pub fn events(&self) -> impl Stream<Item = Result<Event, Error>> + Send + 'static {
        self.stream(Delivery::Payloads, Queued::into_payload)
    }

    /// Every SSE event as the parser dispatched it, before any Autoplay interpretation:
    /// heartbeats, unknown types and malformed data included (for raw tails and debugging).
    pub fn raw_events(&self) -> impl Stream<Item = Result<SseEvent, Error>> + Send + 'static {
        self.stream(Delivery::Raw, Queued::into_sse)
    }

    fn stream<T: Send + 'static>(
        &self,
        delivery: Delivery,
        map: fn(Queued) -> Option<T>,
    ) -> impl Stream<Item = Result<T, Error>> + Send + 'static {
        struct State {
            queue: Arc<EventQueue<Queued>>,
            batch: Batch<Queued>,
            engine: EngineTask,
            drain: std::time::Duration,
            stop: StopHandle,
            _running: RunGuard,
        }
        let state = self.inner.core.begin_run().map(|running| {
            let (queue, engine) = self.start(delivery);
            State {
                queue,
                batch: Batch::default(),
                engine,
                drain: self.inner.core.config().drain_timeout,
                stop: self.inner.core.stop_handle().clone(),
                _running: running,
            }
        });
        futures_util::stream::unfold(Some(state), move |state| async move {
            let mut state = match state? {
                Ok(state) => state,
                Err(e) => return Some((Err(e), None)),
            };
            loop {
                match state.queue.pop(&mut state.batch, state.drain).await {
                    Popped::Item(_) if state.stop.discarding() => {
                        let discarded =
                            1 + state.queue.take_all(std::mem::take(&mut state.batch)).len();
                        warn_discarded(discarded, &state.stop, "events still queued");
                        return match state.engine.finish().await {
                            Ok(()) => None,
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                    Popped::Item(event) => {
                        if let Some(item) = map(event) {
                            return Some((Ok(item), Some(Ok(state))));
                        }
                    }
                    Popped::Closed | Popped::TimedOut => {
                        return match state.engine.finish().await {
                            Ok(()) => None,
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                }
            }
        })
    }

    /// Stops the client; callable from anywhere, including inside a callback.
    /// Queued events are still handled, up to the drain timeout.
    pub fn stop(&self) {
        self.inner.core.stop_handle().stop();
    }

    /// Stops the client without draining; see [`StopHandle::stop_now`].
    pub fn stop_now(&self) {
        self.inner.core.stop_handle().stop_now();
    }

    /// A handle that can stop this client from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.inner.core.stop_handle().clone()
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.inner.core.dropped_count()
    }

    /// Events skipped so far because they exceeded `max_event_size` (each is
    /// discarded up to its end and the stream goes on).
    pub fn oversized_count(&self) -> u64 {
        self.inner.core.oversized_count()
    }

    /// Events waiting in the queue right now. The callback side's current batch
    /// (see `max_queue_size`) counts whole until its last event is handed out, so
    /// this can read up to a batch less one higher than what is left.
    pub fn queue_size(&self) -> usize {
        self.inner.core.queue_size()
    }
}

/// An [`AsyncConnectorClient`] running as a tokio task, from
/// [`run_in_background`](AsyncConnectorClient::run_in_background). Awaiting it gives
/// how the run ended; dropping it stops the client, as dropping a
/// [`BackgroundClient`](crate::BackgroundClient) does (without waiting: a drop cannot
/// await, so the client drains on the runtime).
#[must_use = "dropping the handle stops the client"]
pub struct AsyncBackgroundClient {
    client: AsyncConnectorClient,
    handle: JoinHandle<Result<(), Error>>,
}

impl AsyncBackgroundClient {
    /// Asks the client to stop; awaiting the handle waits for it.
    pub fn stop(&self) {
        self.client.stop();
    }

    /// Stops without draining; see [`StopHandle::stop_now`].
    pub fn stop_now(&self) {
        self.client.stop_now();
    }

    /// Whether the client has already stopped.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The running client, for its counters and its stop handle.
    pub fn client(&self) -> &AsyncConnectorClient {
        &self.client
    }
}

impl Future for AsyncBackgroundClient {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handle).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(Error::Io(std::io::Error::other(format!(
                    "the client task failed: {e}"
                ))))
            })
        })
    }
}

impl Drop for AsyncBackgroundClient {
    fn drop(&mut self) {
        self.client.stop();
    }
}
