//! The two clients over the one engine: [`ConnectorClient`] (threads) and
//! [`AsyncConnectorClient`] (tokio).

mod asynchronous;
mod blocking;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub use asynchronous::{AsyncBackgroundClient, AsyncConnectorClient, AsyncConnectorClientBuilder};
pub use blocking::{BackgroundClient, ConnectorClient, ConnectorClientBuilder};

use crate::config::{ClientConfig, ConfigBuilder};
use crate::dispatch::{Delivery, Queued};
use crate::engine::{Engine, Stats};
use crate::error::Error;
use crate::queue::EventQueue;

/// What both clients hold besides their callbacks: the checked settings, the stop
/// signal, the counters, and the current run's queue.
pub(crate) struct Core {
    config: Arc<ClientConfig>,
    hooks: crate::config::Hooks,
    stop: StopHandle,
    stats: Arc<Stats>,
    running: Arc<AtomicBool>,
    /// The current run's queue, for `queue_size`.
    queue: Mutex<Option<Arc<EventQueue<Queued>>>>,
}

impl Core {
    /// Checks the options; this is where bad configuration fails.
    pub(crate) fn new(config: ConfigBuilder, stop: StopHandle) -> Result<Self, Error> {
        let (config, hooks) = config.build()?;
        Ok(Core {
            config: Arc::new(config),
            hooks,
            stop,
            stats: Arc::new(Stats::default()),
            running: Arc::new(AtomicBool::new(false)),
            queue: Mutex::new(None),
        })
    }

    pub(crate) fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Marks the client running until the guard drops; a second run fails.
    pub(crate) fn begin_run(&self) -> Result<RunGuard, Error> {
        RunGuard::acquire(&self.running)
    }

    /// A fresh queue for one run and the engine that fills it.
    pub(crate) fn prepare(&self, delivery: Delivery) -> (Arc<EventQueue<Queued>>, Engine) {
        let queue = Arc::new(EventQueue::with_limits(
            self.config.max_queue_size,
            self.config.max_queue_bytes,
            self.config.overflow,
            self.config.overflow_grace,
        ));
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(queue.clone());
        let engine = Engine::new(
            self.config.clone(),
            self.hooks.clone(),
            queue.clone(),
            self.stats.clone(),
            self.stop.token(),
            delivery,
        );
        (queue, engine)
    }

    pub(crate) fn stop_handle(&self) -> &StopHandle {
        &self.stop
    }

    pub(crate) fn dropped_count(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn oversized_count(&self) -> u64 {
        self.stats.oversized.load(Ordering::Relaxed)
    }

    pub(crate) fn queue_size(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |q| q.len())
    }
}

/// Stops a client from anywhere: another thread, a signal handler, or inside one of
/// its own callbacks. Cheap to clone. Stopping is final for that client.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    cancel: CancellationToken,
    /// Set by [`stop_now`](Self::stop_now): consumers hand out no more queued events.
    now: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the client to stop: the reader ends, queued events are handled (up to the
    /// drain timeout), then `run` returns.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Stops without draining: the reader ends and events still queued are
    /// discarded (counted in one warning) instead of handed to the callbacks. A
    /// callback already running finishes; `run` returns as soon as it has. Calling
    /// it after [`stop`](Self::stop) cuts a drain in progress short.
    pub fn stop_now(&self) {
        self.now.store(true, Ordering::Release);
        self.cancel.cancel();
    }

    /// Whether [`stop`](Self::stop) or [`stop_now`](Self::stop_now) was called.
    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Whether consumers must stop handing out queued events.
    pub(crate) fn discarding(&self) -> bool {
        self.now.load(Ordering::Acquire)
    }
}

/// Marks a client as running for as long as it lives, so one client never runs twice
/// at once.
pub(crate) struct RunGuard(Arc<AtomicBool>);

impl RunGuard {
    pub(crate) fn acquire(flag: &Arc<AtomicBool>) -> Result<Self, Error> {
        if flag.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyRunning);
        }
        Ok(RunGuard(flag.clone()))
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

thread_local! {
    /// The client whose callbacks this thread runs (its address), or 0.
    static CONSUMER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as running `client`'s callbacks while it lives, so that
/// waiting for that client to stop from one of them can be refused instead of
/// waiting forever.
pub(crate) struct ConsumerMark {
    previous: usize,
}

impl ConsumerMark {
    pub(crate) fn set(client: usize) -> Self {
        ConsumerMark {
            previous: CONSUMER_OF.with(|c| c.replace(client)),
        }
    }
}

impl Drop for ConsumerMark {
    fn drop(&mut self) {
        CONSUMER_OF.with(|c| c.set(self.previous));
    }
}

/// Whether the current thread runs the callbacks of the client at `client`.
pub(crate) fn is_consumer_of(client: usize) -> bool {
    CONSUMER_OF.with(|c| c.get()) == client
}
