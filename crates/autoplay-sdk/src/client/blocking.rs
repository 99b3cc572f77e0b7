//! The blocking client: a reader thread runs the engine; the calling thread (or
//! worker threads) run the callbacks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::{ConsumerMark, Core, StopHandle, is_consumer_of};
use crate::config::{ConfigBuilder, config_setters};
use crate::consumer::{Handler, Threads, block_on, consume};
use crate::dispatch::Delivery;
use crate::error::Error;
use crate::models::{ActionsPayload, Event, SummaryPayload};

type ActionsCallback = Arc<dyn Fn(ActionsPayload) + Send + Sync>;
type SummaryCallback = Arc<dyn Fn(SummaryPayload) + Send + Sync>;

/// Builds a [`ConnectorClient`]; options are checked by [`build`](Self::build).
#[must_use = "a builder does nothing until built or run"]
pub struct ConnectorClientBuilder {
    config: ConfigBuilder,
    stop: StopHandle,
    on_actions: Option<ActionsCallback>,
    on_summary: Option<SummaryCallback>,
}

config_setters!(ConnectorClientBuilder);

impl ConnectorClientBuilder {
    /// Called with every actions batch, on a worker thread (never the reader).
    pub fn on_actions(mut self, f: impl Fn(ActionsPayload) + Send + Sync + 'static) -> Self {
        self.on_actions = Some(Arc::new(f));
        self
    }

    /// Called with every session summary, on a worker thread.
    pub fn on_summary(mut self, f: impl Fn(SummaryPayload) + Send + Sync + 'static) -> Self {
        self.on_summary = Some(Arc::new(f));
        self
    }

    /// A handle that stops the client this builder will build; move it into a
    /// callback to stop from inside one.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Checks the options (URL scheme, sizes, backoff bounds, headers) and builds the client.
    pub fn build(self) -> Result<ConnectorClient, Error> {
        Ok(ConnectorClient {
            inner: Arc::new(Inner {
                core: Core::new(self.config, self.stop)?,
                callbacks: Callbacks {
                    on_actions: self.on_actions,
                    on_summary: self.on_summary,
                },
            }),
        })
    }

    /// Builds and runs on this thread; see [`ConnectorClient::run`].
    pub fn run(self) -> Result<(), Error> {
        self.build()?.run()
    }

    /// Builds and runs on a background thread; see [`ConnectorClient::run_in_background`].
    pub fn run_in_background(self) -> Result<BackgroundClient, Error> {
        self.build()?.run_in_background()
    }
}

#[derive(Clone)]
struct Callbacks {
    on_actions: Option<ActionsCallback>,
    on_summary: Option<SummaryCallback>,
}

impl Callbacks {
    /// Runs the callback for one payload; a panic is logged and the worker lives on.
    fn call(&self, event: Event) {
        let outcome = match event {
            Event::Actions(payload) => match &self.on_actions {
                Some(f) => catch_unwind(AssertUnwindSafe(|| f(payload))),
                None => Ok(()),
            },
            Event::Summary(payload) => match &self.on_summary {
                Some(f) => catch_unwind(AssertUnwindSafe(|| f(payload))),
                None => Ok(()),
            },
        };
        if outcome.is_err() {
            warn!("a callback panicked; the event is skipped and the client goes on");
        }
    }
}

impl Handler for Callbacks {
    async fn handle(&self, event: Event) {
        self.call(event);
    }
}

struct Inner {
    core: Core,
    callbacks: Callbacks,
}

/// The blocking client: subscribes to `GET /stream/{product_id}` and calls your
/// callbacks with typed payloads, reconnecting through any failure.
///
/// The reader thread never waits on a callback: events pass through a bounded queue
/// (`max_queue_size`) to the worker(s). Cloning gives another handle to the same client.
///
/// ```no_run
/// use autoplay_sdk::ConnectorClient;
///
/// ConnectorClient::builder("https://connector.example.com/stream/acme")
///     .token("uk_live_...")
///     .on_actions(|payload| println!("{}", payload.to_text()))
///     .on_summary(|summary| println!("summary: {}", summary.to_text()))
///     .run()?;
/// # Ok::<(), autoplay_sdk::Error>(())
/// ```
#[derive(Clone)]
pub struct ConnectorClient {
    inner: Arc<Inner>,
}

impl ConnectorClient {
    /// Starts a builder for the stream at `url` (`http(s)://host/stream/{product_id}`).
    pub fn builder(url: impl Into<String>) -> ConnectorClientBuilder {
        ConnectorClientBuilder {
            config: ConfigBuilder::new(url),
            stop: StopHandle::default(),
            on_actions: None,
            on_summary: None,
        }
    }

    /// Connects and handles events on this thread until [`stop`](Self::stop) (then `Ok`)
    /// or a fatal status or exhausted retries (then `Err`). Reconnects by itself
    /// through everything else. Queued events are handled before it returns, for up to
    /// the drain timeout.
    pub fn run(&self) -> Result<(), Error> {
        let _running = self.inner.core.begin_run()?;
        let config = self.inner.core.config().clone();
        let (queue, engine) = self.inner.core.prepare(Delivery::Payloads);
        let reader = std::thread::Builder::new()
            .name("autoplay-reader".into())
            .spawn(move || -> Result<(), Error> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(engine.run())
            });
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                queue.close();
                return Err(Error::Io(e));
            }
        };

        let consumed = {
            let _mark = ConsumerMark::set(self.id());
            block_on(consume::<Threads, _>(
                &queue,
                &config,
                &self.inner.callbacks,
                self.inner.core.stop_handle(),
                self.id(),
            ))
        };
        if consumed.is_err() {
            // No worker to hand events to: the reader must not go on alone.
            self.inner.core.stop_handle().stop();
        }
        let result = match reader.join() {
            Ok(result) => result,
            Err(_) => Err(Error::Io(std::io::Error::other(
                "the reader thread panicked",
            ))),
        };
        let result = consumed.and(result);
        info!(ok = result.is_ok(), "client stopped");
        result
    }

    /// Runs the client on a background thread and returns at once. The returned
    /// handle stops the client when dropped (the Rust form of a context manager).
    pub fn run_in_background(&self) -> Result<BackgroundClient, Error> {
        let client = self.clone();
        let thread = std::thread::Builder::new()
            .name("autoplay-client".into())
            .spawn(move || client.run())?;
        Ok(BackgroundClient {
            client: self.clone(),
            thread: Some(thread),
        })
    }

    /// Stops the client; callable from any thread, including inside a callback.
    /// Queued events are still handled, up to the drain timeout.
    pub fn stop(&self) {
        self.inner.core.stop_handle().stop();
    }

    /// Stops the client without draining; see [`StopHandle::stop_now`].
    pub fn stop_now(&self) {
        self.inner.core.stop_handle().stop_now();
    }

    /// Whether the calling thread is one that runs this client's callbacks (the
    /// thread in [`run`](Self::run), or a worker). Code that waits for the client
    /// to finish must not wait there: the client waits for that very callback.
    pub fn is_callback_thread(&self) -> bool {
        is_consumer_of(self.id())
    }

    /// This client's identity, shared by its clones.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
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

/// A client running on a background thread. Dropping it stops the client and
/// waits for it to finish.
pub struct BackgroundClient {
    client: ConnectorClient,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl BackgroundClient {
    /// Asks the client to stop; [`join`](Self::join) waits for it.
    pub fn stop(&self) {
        self.client.stop();
    }

    /// Stops without draining; see [`StopHandle::stop_now`].
    pub fn stop_now(&self) {
        self.client.stop_now();
    }

    /// Waits until the client has stopped and returns how it ended.
    pub fn join(mut self) -> Result<(), Error> {
        self.wait()
    }

    /// Whether the client has already stopped (after `stop`, a fatal status or
    /// exhausted retries).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The running client, for its counters and its stop handle.
    pub fn client(&self) -> &ConnectorClient {
        &self.client
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.client.dropped_count()
    }

    /// Events skipped so far because they exceeded `max_event_size`.
    pub fn oversized_count(&self) -> u64 {
        self.client.oversized_count()
    }

    /// Events waiting in the queue right now. The callback side's current batch
    /// (see `max_queue_size`) counts whole until its last event is handed out, so
    /// this can read up to a batch less one higher than what is left.
    pub fn queue_size(&self) -> usize {
        self.client.queue_size()
    }

    fn wait(&mut self) -> Result<(), Error> {
        // Dropped inside one of the client's own callbacks (on its run thread or a
        // worker): joining would wait for this very callback, forever.
        if self.client.is_callback_thread() {
            return Ok(());
        }
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Io(std::io::Error::other(
                "the client thread panicked",
            ))),
        }
    }
}

impl Drop for BackgroundClient {
    fn drop(&mut self) {
        self.client.stop();
        if let Err(e) = self.wait() {
            warn!(error = %e, "the background client ended with an error");
        }
    }
}
