//! From queued SSE events to typed payloads and worker choice: the part of the
//! consumer side both clients share.
//!
//! Decoding JSON is the costliest step of the read path, so it is shared between
//! the two threads: the consumer decodes what it pops, and when the consumer is
//! behind (events are waiting in the queue) the reader decodes an event itself
//! before queueing it, since its thread would otherwise only wait on the socket.
//! The queue stays one FIFO, so the order never changes.

use std::hash::{BuildHasher, Hasher};

use tracing::warn;

use crate::models::{Event, SlimAction};
use crate::queue::Weigh;
use crate::sse::SseEvent;

/// How much of a bad payload to show in a log line.
const LOGGED_DATA_CHARS: usize = 200;

/// Which consumer a run serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Typed payloads: heartbeats are dropped by the reader, which may decode ahead.
    Payloads,
    /// Every SSE event as parsed, heartbeats included, never decoded.
    Raw,
}

/// What the reader hands the consumers.
#[derive(Debug)]
pub(crate) enum Queued {
    /// An event as parsed; the consumer decodes it.
    Sse(SseEvent),
    /// A payload the reader already decoded (only in [`Delivery::Payloads`] runs),
    /// with its weight. Boxed, so that the queue's entries stay the size of an
    /// [`SseEvent`] (small enough to move without a `memcpy` call), not of the
    /// largest payload.
    Payload(Box<Event>, usize),
}

/// What one queued item costs besides its data: the item itself and the
/// allocator's bookkeeping.
const ITEM_OVERHEAD: usize = std::mem::size_of::<Queued>() + 16;

impl Queued {
    /// A decoded payload, weighed from the JSON it was decoded from.
    pub(crate) fn payload(payload: Event, json_len: usize) -> Queued {
        let weight = payload_weight(&payload, json_len);
        Queued::Payload(Box::new(payload), weight)
    }
}

/// What a payload decoded from `json_len` bytes of JSON holds: the payload itself
/// (boxed in the queue), its strings (at most the JSON's bytes), and each action
/// its struct (its list may have grown to twice its length).
fn payload_weight(payload: &Event, json_len: usize) -> usize {
    let actions = match payload {
        Event::Actions(p) => p.actions.len(),
        Event::Summary(_) => 0,
    };
    ITEM_OVERHEAD
        + std::mem::size_of::<Event>()
        + json_len
        + 2 * actions * std::mem::size_of::<SlimAction>()
}

/// A decoded payload on its way to a worker, with its weight, so the worker lanes
/// are bounded by bytes like the main queue.
#[derive(Debug)]
pub(crate) struct Weighed(pub Event, pub usize);

impl Weigh for Weighed {
    fn weight(&self) -> usize {
        self.1
    }
}

impl Weigh for Queued {
    fn weight(&self) -> usize {
        match self {
            // The id is shared with the events around it, and short ones are inline.
            Queued::Sse(event) => ITEM_OVERHEAD + event.data.len() + event.event.len(),
            Queued::Payload(_, weight) => *weight,
        }
    }
}

impl Queued {
    /// The typed payload, decoded here unless the reader did it; `None` (logged) when
    /// the event is not a valid payload.
    pub(crate) fn into_payload(self) -> Option<Event> {
        match self {
            Queued::Sse(event) => decode(&event),
            Queued::Payload(payload, _) => Some(*payload),
        }
    }

    /// [`into_payload`](Self::into_payload), putting the event's spent data
    /// buffer into `spent`, for the reader to reuse (see [`EventQueue::give_back`]).
    ///
    /// [`EventQueue::give_back`]: crate::queue::EventQueue::give_back
    pub(crate) fn into_payload_keeping(self, spent: &mut Vec<Vec<u8>>) -> Option<Event> {
        match self {
            Queued::Sse(event) => {
                let payload = decode(&event);
                keep_data(event, spent);
                payload
            }
            Queued::Payload(payload, _) => Some(*payload),
        }
    }

    /// The typed payload with its weight, decoded here unless the reader did it,
    /// putting the event's spent data buffer into `spent`; `None` (logged) when the
    /// event is not a valid payload.
    pub(crate) fn into_weighed(self, spent: &mut Vec<Vec<u8>>) -> Option<Weighed> {
        match self {
            Queued::Sse(event) => {
                let weighed = decode(&event).map(|p| {
                    let weight = payload_weight(&p, event.data.len());
                    Weighed(p, weight)
                });
                keep_data(event, spent);
                weighed
            }
            Queued::Payload(payload, weight) => Some(Weighed(*payload, weight)),
        }
    }

    /// The event as parsed. A [`Delivery::Raw`] run never decodes ahead, so its
    /// consumer always gets `Some`.
    pub(crate) fn into_sse(self) -> Option<SseEvent> {
        match self {
            Queued::Sse(event) => Some(event),
            Queued::Payload(..) => None,
        }
    }
}

/// Puts a decoded event's data buffer into `spent`, if it is worth reusing.
fn keep_data(event: SseEvent, spent: &mut Vec<Vec<u8>>) {
    if let Some(buffer) = crate::sse::reusable(event.data.into_bytes()) {
        spent.push(buffer);
    }
}

/// Decodes a parsed event, logging and skipping what is not a payload.
pub(crate) fn decode(event: &SseEvent) -> Option<Event> {
    match Event::decode(&event.data, &event.event) {
        Ok(payload) => Some(payload),
        Err(e) => {
            warn!(
                id = event.id.as_deref(),
                event = %event.event,
                error = %e,
                data = truncated(&event.data),
                "skipping an event that is not a valid payload"
            );
            None
        }
    }
}

fn truncated(data: &str) -> &str {
    match data.char_indices().nth(LOGGED_DATA_CHARS) {
        Some((end, _)) => &data[..end],
        None => data,
    }
}

/// The worker that handles this event's session; one session always maps to the
/// same worker, which keeps each session in order.
pub(crate) fn worker_index(event: &Event, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // A fixed-key hasher: the mapping only has to be stable within one process.
    let mut hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    hasher.write(event.session_id().unwrap_or("").as_bytes());
    (hasher.finish() % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_entry_is_no_larger_than_a_parsed_event() {
        // Entries are moved several times between the socket and the callback.
        assert!(std::mem::size_of::<Queued>() <= std::mem::size_of::<SseEvent>() + 8);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(500);
        assert_eq!(truncated(&long).chars().count(), LOGGED_DATA_CHARS);
        assert_eq!(truncated("short"), "short");
    }
}
