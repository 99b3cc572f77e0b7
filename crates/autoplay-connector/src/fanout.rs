//! Live fan-out: one bounded queue per subscriber of a product.
//!
//! A frame is offered to every queue with `try_send`; a subscriber whose queue
//! is full is dropped: its queue closes, its stream drains what it holds and
//! ends, and the client reconnects with `Last-Event-ID`. Skipping events for it
//! silently would lose them; blocking the publisher would let one slow reader
//! stall everyone. Replay is not this module's business ([`crate::replay`]):
//! the store's log decides what a new subscriber missed, and holds its own lock
//! across reading that and [`Fanout::add`], so nothing falls between the two.

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use crate::metrics::{self, Metrics};

/// The live subscribers of one product.
pub(crate) struct Fanout {
    /// Each queue, and the Redis stream key its live events must be newer than
    /// (0 for all: a subscriber that resumed from an id this replica had not
    /// read yet skips up to it).
    subscribers: Vec<(mpsc::Sender<Bytes>, u128)>,
    buffer: usize,
}

impl Fanout {
    /// Subscribers get queues of `buffer` frames.
    pub fn new(buffer: usize) -> Self {
        Self {
            subscribers: Vec::new(),
            buffer,
        }
    }

    /// A new subscriber's queue.
    pub fn add(&mut self) -> mpsc::Receiver<Bytes> {
        self.add_after(0)
    }

    /// A new subscriber's queue that gets only frames with a Redis stream key
    /// above `after`.
    pub fn add_after(&mut self, after: u128) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(self.buffer);
        self.subscribers.push((tx, after));
        rx
    }

    /// Offers `frame` (id `id`) to every subscriber, dropping the full ones.
    pub fn offer(&mut self, product_id: &str, id: u64, frame: &Bytes, metrics: &Metrics) {
        self.offer_keyed(product_id, u128::from(id), &id, frame, metrics);
    }

    /// Offers `frame` (Redis stream key `key`) to every subscriber waiting for
    /// it, dropping the full ones.
    pub fn offer_stream(&mut self, product_id: &str, key: u128, frame: &Bytes, metrics: &Metrics) {
        let id = crate::replay::stream_id(key);
        self.offer_keyed(product_id, key, &id, frame, metrics);
    }

    fn offer_keyed(
        &mut self,
        product_id: &str,
        key: u128,
        id: &dyn std::fmt::Display,
        frame: &Bytes,
        metrics: &Metrics,
    ) {
        self.subscribers.retain(|(tx, after)| match key > *after {
            false => !tx.is_closed(),
            true => match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::inc(&metrics.slow_subscriber_disconnects);
                    warn!(
                        product_id,
                        %id, "subscriber too slow: its send buffer is full; disconnecting it"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        });
    }

    /// Subscribers registered now (some may have gone since the last offer).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }
}
