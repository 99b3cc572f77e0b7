//! The memory backend: a product's window and live queues in this process.
//!
//! This is the whole of `store = "memory"`, and the front of the embedded store
//! too, which keeps the same window in memory (replay never reads the disk) and
//! feeds it only with frames already on disk. The session state and emails of
//! the memory store are the [`SessionTracker`](crate::summary::SessionTracker)
//! and [`EmailBook`](crate::ingest::EmailBook) alone.

use bytes::Bytes;

use crate::fanout::Fanout;
use crate::metrics::{self, Metrics};
use crate::replay::{Replay, Resume, Ring};

/// One product's window, ids and live queues; behind the log's lock.
pub(crate) struct MemoryLog {
    /// The id the next append gets.
    pub next_id: u64,
    /// The newest id in the window and the live queues (behind `next_id` while
    /// the embedded store's frames wait for the disk).
    published: u64,
    ring: Ring,
    fanout: Fanout,
}

impl MemoryLog {
    /// A log whose window holds `ring` (what a durable store had), ids going on
    /// after its newest.
    pub fn new(ring: Ring, subscriber_buffer: usize) -> Self {
        let published = ring.newest().unwrap_or(0);
        Self {
            next_id: published + 1,
            published,
            ring,
            fanout: Fanout::new(subscriber_buffer),
        }
    }

    /// Puts frame `id` in the window and offers it to every live subscriber.
    pub fn publish(&mut self, product_id: &str, id: u64, frame: Bytes, metrics: &Metrics) {
        self.ring.push(id, frame.clone());
        self.published = id;
        self.fanout.offer(product_id, id, &frame, metrics);
        metrics::inc(&metrics.events_published);
    }

    /// The replay after `resume` and a live queue, in one step.
    pub fn subscribe(&mut self, resume: Resume) -> (Replay, tokio::sync::mpsc::Receiver<Bytes>) {
        let replay = self.ring.after(resume, self.published);
        (replay, self.fanout.add())
    }

    /// The oldest id in the window.
    pub fn oldest(&self) -> Option<u64> {
        self.ring.oldest()
    }

    /// Every frame in the window, oldest first (reference counts, not copies).
    pub fn window(&self) -> Vec<Bytes> {
        // `After(0)` is the whole window, as ids start at 1; the gap it reports
        // is only counted for subscribers.
        self.ring.after(Resume::After(0), self.published).frames
    }

    /// Live subscribers registered now.
    #[cfg(test)]
    pub fn subscriber_count(&self) -> usize {
        self.fanout.len()
    }
}
