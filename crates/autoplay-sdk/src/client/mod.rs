//! The two clients over the one engine: [`ConnectorClient`] (threads) and
//! [`AsyncConnectorClient`] (tokio).

mod asynchronous;
mod blocking;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

pub use asynchronous::{AsyncConnectorClient, AsyncConnectorClientBuilder};
pub use blocking::{BackgroundClient, ConnectorClient, ConnectorClientBuilder};

use crate::error::Error;

/// Stops a client from anywhere: another thread, a signal handler, or inside one of
/// its own callbacks. Cheap to clone. Stopping is final for that client.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    cancel: CancellationToken,
}

impl StopHandle {
    /// Asks the client to stop: the reader ends, queued events are handled (up to the
    /// drain timeout), then `run` returns.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.cancel.clone()
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
