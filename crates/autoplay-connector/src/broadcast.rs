//! Per-product fan-out with ids and a replay buffer.
//!
//! One [`Channel`] per product. Publishing takes its lock once: it assigns the next
//! id, renders the SSE frame once (a [`Bytes`] every subscriber shares), appends it
//! to the replay ring and offers it to every subscriber's bounded queue.
//! Subscribing takes the same lock to copy the replay tail *and* register the
//! subscriber, so no event can fall between the replay and the live part (no gap)
//! or be in both (no duplicate).
//!
//! A subscriber whose queue is full is dropped from the channel: its queue closes,
//! the stream drains what it holds and ends, and the client reconnects with
//! `Last-Event-ID`. Skipping events for it silently would lose them; blocking the
//! publisher would let one slow reader stall everyone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::{self, Metrics};

/// A heartbeat frame: an event with an empty data line.
pub(crate) const HEARTBEAT: &[u8] = autoplay_sdk::wire::HEARTBEAT_FRAME;

/// What a new subscriber gets: frames to replay first, then the live queue.
pub(crate) struct Subscription {
    pub replay: Vec<Bytes>,
    pub live: mpsc::Receiver<Bytes>,
}

struct Inner {
    next_id: u64,
    ring: VecDeque<(u64, Bytes)>,
    /// Bytes of the frames in `ring`.
    ring_bytes: usize,
    subscribers: Vec<mpsc::Sender<Bytes>>,
}

/// One product's stream.
pub(crate) struct Channel {
    product_id: String,
    inner: Mutex<Inner>,
    replay_capacity: usize,
    replay_bytes: usize,
    subscriber_buffer: usize,
    metrics: Arc<Metrics>,
}

/// How much of a product's stream is kept for replay: the newest `events`
/// frames, fewer when they would take more than `bytes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayWindow {
    pub events: usize,
    pub bytes: usize,
}

impl Channel {
    pub fn new(
        product_id: String,
        replay: ReplayWindow,
        subscriber_buffer: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            product_id,
            inner: Mutex::new(Inner {
                next_id: 1,
                ring: VecDeque::with_capacity(replay.events.min(1024)),
                ring_bytes: 0,
                subscribers: Vec::new(),
            }),
            replay_capacity: replay.events,
            replay_bytes: replay.bytes,
            subscriber_buffer,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can leave the state half-updated, so a panic
        // elsewhere while holding it is no reason to stop streaming.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event (`kind` and its one-line JSON, rendered by the caller
    /// outside the lock) and returns its id.
    pub fn publish(&self, kind: &str, json: &str) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let frame = Bytes::from(autoplay_sdk::wire::encode_frame(Some(id), kind, json));
        // The newest frame always stays, whatever its size: a client resuming
        // just before it must still get it.
        while let Some((_, oldest)) = inner.ring.front()
            && (inner.ring.len() >= self.replay_capacity
                || inner.ring_bytes + frame.len() > self.replay_bytes)
        {
            inner.ring_bytes -= oldest.len();
            inner.ring.pop_front();
        }
        inner.ring_bytes += frame.len();
        inner.ring.push_back((id, frame.clone()));
        let metrics = &self.metrics;
        let product_id = &self.product_id;
        inner
            .subscribers
            .retain(|tx| match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::inc(&metrics.slow_subscriber_disconnects);
                    warn!(
                        product_id,
                        id, "subscriber too slow: its send buffer is full; disconnecting it"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        metrics::inc(&self.metrics.events_published);
        id
    }

    /// Registers a subscriber, with the frames after `last_event_id` to replay.
    ///
    /// An id older than the buffer, or newer than anything published (a client of
    /// an earlier run of the connector), gets the whole buffer; the gap is logged
    /// and counted.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.subscriber_buffer);
        let mut inner = self.lock();
        let replay = match last_event_id {
            None => Vec::new(),
            Some(last) => {
                let newest = inner.next_id - 1;
                let oldest = inner.ring.front().map_or(inner.next_id, |(id, _)| *id);
                if last > newest || last.saturating_add(1) < oldest {
                    metrics::inc(&self.metrics.replay_gaps);
                    if last > newest {
                        info!(
                            product_id = self.product_id,
                            last,
                            newest,
                            "Last-Event-ID is ahead of this stream; replaying the whole buffer"
                        );
                    } else {
                        warn!(
                            product_id = self.product_id,
                            last,
                            oldest,
                            missed = oldest - last - 1,
                            "Last-Event-ID is older than the replay buffer; events were lost to this client"
                        );
                    }
                    inner.ring.iter().map(|(_, frame)| frame.clone()).collect()
                } else {
                    // Ids in the ring are consecutive, so the position is arithmetic.
                    let skip = (last + 1 - oldest) as usize;
                    inner
                        .ring
                        .iter()
                        .skip(skip)
                        .map(|(_, frame)| frame.clone())
                        .collect()
                }
            }
        };
        inner.subscribers.push(tx);
        Subscription { replay, live: rx }
    }

    /// Live subscribers registered now (some may have gone since the last publish).
    #[cfg(test)]
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoplay_sdk::models::{Event, SummaryPayload};

    struct Published(Event);

    fn event(n: u64) -> Published {
        Published(Event::Summary(SummaryPayload {
            summary: format!("s{n}").into(),
            replaces: n,
            ..SummaryPayload::default()
        }))
    }

    fn window(events: usize) -> ReplayWindow {
        ReplayWindow {
            events,
            bytes: usize::MAX,
        }
    }

    impl Channel {
        fn publish_event(&self, event: &Published) -> u64 {
            self.publish(event.0.kind(), &event.0.to_stream_json())
        }
    }

    fn ids(frames: &[Bytes]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                text.strip_prefix("id: ")
                    .unwrap()
                    .split('\n')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn replay_from_an_id() {
        let channel = Channel::new("p".into(), window(5), 8, Arc::default());
        for n in 1..=7 {
            assert_eq!(channel.publish_event(&event(n)), n);
        }
        assert_eq!(ids(&channel.subscribe(Some(4)).replay), [5, 6, 7]);
        assert_eq!(ids(&channel.subscribe(Some(2)).replay), [3, 4, 5, 6, 7]);
        assert_eq!(ids(&channel.subscribe(Some(7)).replay), Vec::<u64>::new());
        assert!(channel.subscribe(None).replay.is_empty());
        assert_eq!(
            channel
                .metrics
                .replay_gaps
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        // Ids 1 and 2 are gone: the whole buffer, and a gap.
        assert_eq!(ids(&channel.subscribe(Some(0)).replay), [3, 4, 5, 6, 7]);
        assert_eq!(ids(&channel.subscribe(Some(99)).replay), [3, 4, 5, 6, 7]);
        assert_eq!(
            channel
                .metrics
                .replay_gaps
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn frames_are_sse() {
        let channel = Channel::new("p".into(), window(5), 8, Arc::default());
        let mut sub = channel.subscribe(None);
        channel.publish_event(&event(1));
        let frame = sub.live.try_recv().unwrap();
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "id: 1\nevent: summary\ndata: {\"type\":\"summary\",\"product_id\":null,\"session_id\":null,\"summary\":\"s1\",\"replaces\":1,\"ts\":null,\"forwarded_at\":null}\n\n"
        );
    }

    #[test]
    fn a_full_subscriber_is_dropped_not_skipped() {
        let channel = Channel::new("p".into(), window(100), 2, Arc::default());
        let mut slow = channel.subscribe(None);
        for n in 1..=5 {
            channel.publish_event(&event(n));
        }
        assert_eq!(channel.subscriber_count(), 0);
        let mut got = Vec::new();
        while let Ok(frame) = slow.live.try_recv() {
            got.push(frame);
        }
        assert_eq!(ids(&got), [1, 2]);
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(
            channel
                .metrics
                .slow_subscriber_disconnects
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // It resumes where it stopped.
        assert_eq!(ids(&channel.subscribe(Some(2)).replay), [3, 4, 5]);
    }

    #[test]
    fn the_replay_window_is_bounded_by_bytes_too() {
        let frame_len = |n: u64| {
            format!(
                "id: {n}\nevent: summary\ndata: {}\n\n",
                event(n).0.to_stream_json()
            )
            .len()
        };
        // Room for three frames of this size, not four.
        let bytes = frame_len(10) * 3 + 5;
        let channel = Channel::new(
            "p".into(),
            ReplayWindow { events: 100, bytes },
            8,
            Arc::default(),
        );
        for n in 10..=19 {
            channel.publish_event(&event(n));
        }
        let replay = channel.subscribe(Some(0)).replay;
        assert_eq!(ids(&replay), [8, 9, 10]);
        assert!(replay.iter().map(Bytes::len).sum::<usize>() <= bytes);
        // A frame bigger than the whole window is still kept, alone.
        let big = Published(Event::Summary(SummaryPayload {
            summary: "x".repeat(bytes).into(),
            ..SummaryPayload::default()
        }));
        channel.publish_event(&big);
        assert_eq!(ids(&channel.subscribe(Some(0)).replay), [11]);
    }
}
