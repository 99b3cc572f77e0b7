//! [`EventBuffer`]: a thread-safe in-memory buffer to wire as a callback and drain
//! in batches (for a job that embeds every few seconds, say).
//!
//! ```
//! use std::sync::Arc;
//! use autoplay_sdk::buffer::EventBuffer;
//! use autoplay_sdk::{ActionsPayload, Event, SummaryPayload};
//!
//! let buffer: Arc<EventBuffer> = Arc::new(EventBuffer::new(1000));
//! // client.on_actions({ let b = buffer.clone(); move |p| b.add(p) })
//! buffer.add(ActionsPayload::default());
//! buffer.add(SummaryPayload::default());
//! let summaries = buffer.drain_by_type(false, true);
//! assert_eq!(summaries.len(), 1);
//! assert_eq!(buffer.len(), 1);
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::models::Event;

/// The default capacity, as in the published package.
pub const DEFAULT_BUFFER_SIZE: usize = 1000;

/// What the buffer needs to know of an item to drain by kind.
pub trait BufferItem {
    /// Whether the item is a summary (otherwise it is a batch of actions).
    fn is_summary(&self) -> bool;
}

impl BufferItem for Event {
    fn is_summary(&self) -> bool {
        matches!(self, Event::Summary(_))
    }
}

/// A bounded FIFO of payloads: when full, adding drops the oldest.
///
/// Generic so bindings can buffer their own payload objects with the same logic;
/// Rust users take the default, [`Event`].
#[derive(Debug)]
pub struct EventBuffer<T = Event> {
    items: Mutex<VecDeque<T>>,
    max_size: usize,
    evicted: AtomicU64,
}

impl<T> Default for EventBuffer<T> {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_SIZE)
    }
}

impl<T> EventBuffer<T> {
    /// A buffer holding at most `max_size` items; `0` means unbounded.
    pub fn new(max_size: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(max_size.min(DEFAULT_BUFFER_SIZE))),
            max_size,
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        // A panic while holding the lock cannot leave the deque half-changed, so a
        // poisoned lock is still safe to use.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an item, dropping the oldest when the buffer is full.
    pub fn add(&self, item: impl Into<T>) {
        drop(self.push(item));
    }

    /// Adds an item; returns the oldest one when the buffer was full and it was
    /// dropped to make room (for an `on_drop` hook, called outside the lock). The
    /// first drop, and each after a power of two of them, is logged at WARN.
    pub fn push(&self, item: impl Into<T>) -> Option<T> {
        let mut items = self.lock();
        let dropped = if self.max_size != 0 && items.len() >= self.max_size {
            let total = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
            if total.is_power_of_two() {
                tracing::warn!(
                    max_size = self.max_size,
                    dropped = total,
                    "EventBuffer full: the oldest payload was dropped to make room"
                );
            }
            items.pop_front()
        } else {
            None
        };
        items.push_back(item.into());
        dropped
    }

    /// Takes every item, oldest first, leaving the buffer empty.
    pub fn drain(&self) -> Vec<T> {
        self.lock().drain(..).collect()
    }

    /// Removes every item.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many items are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Same as [`EventBuffer::len`] (the published package's name).
    pub fn size(&self) -> usize {
        self.len()
    }

    /// Whether the buffer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The capacity; `0` means unbounded.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// How many items were dropped because the buffer was full.
    pub fn evicted_count(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl<T: Clone> EventBuffer<T> {
    /// The newest `n` items (all with `None`), oldest first, without removing them.
    pub fn peek(&self, n: Option<usize>) -> Vec<T> {
        let items = self.lock();
        let skip = n.map_or(0, |n| items.len().saturating_sub(n));
        items.iter().skip(skip).cloned().collect()
    }
}

impl<T: BufferItem> EventBuffer<T> {
    /// Takes the actions batches and/or the summaries, oldest first, and keeps the
    /// rest in order.
    pub fn drain_by_type(&self, actions: bool, summaries: bool) -> Vec<T> {
        let mut items = self.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(items.len());
        for item in items.drain(..) {
            let wanted = if item.is_summary() {
                summaries
            } else {
                actions
            };
            if wanted {
                taken.push(item)
            } else {
                kept.push_back(item)
            }
        }
        *items = kept;
        taken
    }
}
