//! The bounded queue between the reader and the callbacks.
//!
//! One structure serves both clients: the reader pushes asynchronously (so the
//! `Block` policy can wait for room without blocking a runtime thread), and
//! consumers pop either from threads (blocking client) or from tasks (async
//! client). The overflow policy is applied here, in one place.
//!
//! The queue is bounded twice: by a count of items and by a budget of bytes (each
//! item says what it weighs, [`Weigh`]); the overflow policy applies to whichever
//! bound is reached first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::OverflowPolicy;

/// What an item costs the queue's byte budget: roughly the memory it holds.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

/// Result of a push.
#[derive(Debug)]
pub(crate) enum Pushed<T> {
    Queued,
    /// The queue was full (or closed); this item was dropped: the new one under
    /// `DropNewest`, the oldest under `DropOldest`.
    Dropped(T),
    /// `DropOldest` dropped these, oldest first, to make room for a heavy item.
    DroppedMany(Vec<T>),
}

/// Result of a blocking pop.
#[derive(Debug)]
pub(crate) enum Popped<T> {
    Item(T),
    /// Closed and empty: the consumer is done.
    Closed,
    /// The deadline passed with nothing to take.
    TimedOut,
}

struct State<T> {
    /// The items with their weights.
    items: VecDeque<(T, usize)>,
    /// The weight of `items` (a consumer's batch no longer counts).
    bytes: usize,
    /// When the queue was closed: consumers drain what is left until the drain timeout.
    closed_at: Option<Instant>,
    /// Threads parked on a condvar; notifying a condvar costs a syscall even when
    /// nobody waits, so the hot path only notifies when someone does.
    consumers_parked: usize,
    producers_parked: usize,
    /// A drop policy's grace ran out: drop at once, without waiting again, until
    /// the queue has drained to half.
    overflowing: bool,
    /// A producer found no room and waits (or is about to): the next batch that
    /// makes enough room wakes it.
    room_wanted: bool,
}

impl<T> State<T> {
    /// Closed longer ago than the drain timeout: what is still waiting is discarded.
    fn drain_over(&self, drain_timeout: Duration) -> bool {
        self.closed_at
            .is_some_and(|at| at.elapsed() >= drain_timeout)
    }
}

/// Items a consumer has taken from the queue in one go and not handed out yet.
///
/// Taking items one lock at a time made the reader and the consumer trade the
/// lock's cache line once per event; a batch trades it once per batch. Each
/// consumer of a queue keeps one `Batch` and passes it to every pop.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    items: VecDeque<T>,
    /// How many items this batch took; they leave the queue's count together,
    /// once the last one is handed out.
    taken: usize,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            items: VecDeque::new(),
            taken: 0,
        }
    }
}

/// A consumer takes at most this many items per lock...
const MAX_BATCH: usize = 32;
/// ...and at most this share of the queue's capacity (1/8), and of its byte budget
/// (but always at least one item).
const MAX_BATCH_SHARE: usize = 8;

pub(crate) struct EventQueue<T> {
    state: Mutex<State<T>>,
    /// The number of items waiting, counting a consumer's current batch whole until
    /// its last item is handed out (so it can read up to a batch less one high).
    /// Kept outside the lock so the reader can look at it for every event (to decide
    /// whether to decode ahead). The consumer updates it once per batch, not once
    /// per item: a counter both threads wrote for every event made its cache line
    /// travel between the cores twice per event.
    len: AtomicUsize,
    /// Set once by [`close`](Self::close); lets a consumer handing out its batch
    /// see a close without taking the lock.
    closed: AtomicBool,
    capacity: usize,
    /// The byte budget.
    max_bytes: usize,
    /// The most items a consumer takes per lock.
    batch_size: usize,
    /// The most bytes a consumer takes per lock, unless the first item alone weighs more.
    batch_bytes: usize,
    policy: OverflowPolicy,
    /// How long a full queue waits for room before a drop policy drops.
    grace: Duration,
    /// Wakes consumer threads.
    items_cv: Condvar,
    /// Wakes consumer tasks.
    items_notify: Notify,
    /// Wakes a producer thread waiting for room (`Block`).
    room_cv: Condvar,
    /// Wakes a producer task waiting for room (`Block`).
    room_notify: Notify,
    /// Spent buffers the consumers hand back for the producer to reuse (see
    /// [`give_back`](Self::give_back)); behind a lock of their own, so handing
    /// them over never waits on the queue's.
    spent: Mutex<Vec<Vec<u8>>>,
    /// Items were queued without waking the consumers (see
    /// [`push_deferring_wake`](Self::push_deferring_wake)).
    wake_owed: AtomicBool,
}

/// The most spent buffers waiting for the producer; more are freed where they are.
const MAX_SPENT: usize = 64;

impl<T: Weigh> EventQueue<T> {
    /// A queue bounded by count only, whose drop policies drop at once (no grace).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Self::with_limits(capacity, usize::MAX, policy, Duration::ZERO)
    }

    /// A queue of at most `capacity` items weighing at most `max_bytes` together
    /// (one heavier item passes alone), whose drop policies first wait up to `grace`
    /// for room.
    pub(crate) fn with_limits(
        capacity: usize,
        max_bytes: usize,
        policy: OverflowPolicy,
        grace: Duration,
    ) -> Self {
        EventQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(4096)),
                bytes: 0,
                closed_at: None,
                consumers_parked: 0,
                producers_parked: 0,
                overflowing: false,
                room_wanted: false,
            }),
            len: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            capacity,
            max_bytes,
            // A batch is extra room beyond `capacity` (the queue refills while the
            // consumer works through it), so it stays a small share of it.
            batch_size: (capacity / MAX_BATCH_SHARE).clamp(1, MAX_BATCH),
            batch_bytes: max_bytes / MAX_BATCH_SHARE,
            policy,
            grace,
            items_cv: Condvar::new(),
            items_notify: Notify::new(),
            room_cv: Condvar::new(),
            room_notify: Notify::new(),
            spent: Mutex::new(Vec::new()),
            wake_owed: AtomicBool::new(false),
        }
    }

    /// Hands `buffers` (emptied) back to the producer, in one batch, and leaves
    /// `buffers` empty. What the allocator would otherwise free on this thread is
    /// then reused, or freed, on the producer's: glibc's allocator, the one a Rust
    /// program has unless it chooses another, is slowest with memory allocated on
    /// one thread and freed on another. Beyond [`MAX_SPENT`] waiting, the rest
    /// are freed here.
    pub(crate) fn give_back(&self, buffers: &mut Vec<Vec<u8>>) {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_SPENT.saturating_sub(spent.len());
        let keep = buffers.len().min(room);
        spent.extend(buffers.drain(..keep));
        drop(spent);
        buffers.clear();
    }

    /// Moves the spent buffers handed back so far into `into` (the producer's).
    pub(crate) fn take_spent(&self, into: &mut Vec<Vec<u8>>) {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if into.is_empty() {
            std::mem::swap(&mut *spent, into);
        } else {
            into.append(&mut spent);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the deque inconsistent, so a
        // poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of waiting items, those in a consumer's batch included (a
    /// snapshot: it may change right after).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Ends the queue: consumers take what is left, then see `Closed`; producers
    /// waiting for room give up.
    pub(crate) fn close(&self) {
        self.lock().closed_at.get_or_insert_with(Instant::now);
        self.closed.store(true, Ordering::Release);
        self.items_cv.notify_all();
        self.items_notify.notify_waiters();
        self.room_cv.notify_all();
        self.room_notify.notify_waiters();
    }

    fn wake_consumers(&self, thread_parked: bool) {
        if thread_parked {
            self.items_cv.notify_one();
        }
        self.items_notify.notify_one();
    }

    /// Moves up to a batch of items from the queue, which must not be empty, into
    /// `batch` and hands out the first. A producer waits only while the queue is
    /// full, and is woken once the queue has drained to half (of its count and of its
    /// bytes), or is empty: waking it for every free slot would bounce both threads
    /// through the scheduler once per event.
    fn take_batch(&self, mut state: MutexGuard<'_, State<T>>, batch: &mut Batch<T>) -> T {
        let mut taken = 0;
        let mut taken_bytes = 0;
        while taken < self.batch_size {
            match state.items.front() {
                Some(&(_, weight)) if taken == 0 || taken_bytes + weight <= self.batch_bytes => {
                    let (item, weight) = state.items.pop_front().expect("a front item");
                    batch.items.push_back(item);
                    taken += 1;
                    taken_bytes += weight;
                }
                _ => break,
            }
        }
        state.bytes -= taken_bytes;
        let item = batch
            .items
            .pop_front()
            .expect("a batch taken from a non-empty queue has a first item");
        batch.taken = taken;
        self.settle_if_done(batch);
        let drained = state.items.len() <= self.capacity / 2 && state.bytes <= self.max_bytes / 2;
        if drained {
            state.overflowing = false;
        }
        if !state.room_wanted || !(drained || state.items.is_empty()) {
            return item;
        }
        state.room_wanted = false;
        let thread_parked = state.producers_parked > 0;
        drop(state);
        if thread_parked {
            self.room_cv.notify_one();
        }
        // Stores a permit when no task waits yet, so a producer that is about to
        // wait still sees it.
        self.room_notify.notify_one();
        item
    }

    /// The next item of the consumer's batch, unless the queue was closed longer
    /// ago than the drain timeout; `None` when the batch is empty.
    fn pop_from_batch(&self, batch: &mut Batch<T>, drain_timeout: Duration) -> Option<Popped<T>> {
        if batch.items.is_empty() {
            return None;
        }
        if self.closed.load(Ordering::Acquire) && self.lock().drain_over(drain_timeout) {
            return Some(Popped::TimedOut);
        }
        let item = batch.items.pop_front()?;
        self.settle_if_done(batch);
        Some(Popped::Item(item))
    }

    /// Once a batch has handed out its last item, its items leave the count.
    fn settle_if_done(&self, batch: &mut Batch<T>) {
        if batch.items.is_empty() && batch.taken > 0 {
            self.len.fetch_sub(batch.taken, Ordering::Relaxed);
            batch.taken = 0;
        }
    }

    /// Whether a push into a full queue waits for room (`Block`, or a drop policy
    /// still within its grace) rather than dropping now.
    fn waits_when_full(&self, state: &State<T>) -> bool {
        match self.policy {
            OverflowPolicy::Block => true,
            OverflowPolicy::DropNewest | OverflowPolicy::DropOldest => {
                !self.grace.is_zero() && !state.overflowing
            }
        }
    }

    /// When a producer that found the queue full stops waiting for room: never for
    /// `Block`, after the grace for the drop policies.
    fn wait_deadline(&self) -> Option<Instant> {
        (self.policy != OverflowPolicy::Block).then(|| Instant::now() + self.grace)
    }

    /// Whether an item of `weight` fits: below the count, and within the byte
    /// budget unless the queue is empty (so that any one item can pass).
    fn fits(&self, state: &State<T>, weight: usize) -> bool {
        state.items.len() < self.capacity
            && (state.items.is_empty() || state.bytes.saturating_add(weight) <= self.max_bytes)
    }

    /// Applies the overflow policy to a full queue, or queues the item. Returns the
    /// item back when the producer has to wait for room.
    fn try_push(&self, state: &mut State<T>, item: T) -> Result<Pushed<T>, T> {
        if state.closed_at.is_some() {
            return Ok(Pushed::Dropped(item));
        }
        let weight = item.weight();
        if self.fits(state, weight) {
            self.enqueue(state, item, weight);
            return Ok(Pushed::Queued);
        }
        if self.waits_when_full(state) {
            state.room_wanted = true;
            return Err(item);
        }
        match self.policy {
            OverflowPolicy::DropNewest => Ok(Pushed::Dropped(item)),
            OverflowPolicy::DropOldest => {
                // Full, so there is an oldest; out with as many as the new one needs.
                let mut dropped = Vec::new();
                while !self.fits(state, weight)
                    && let Some((oldest, w)) = state.items.pop_front()
                {
                    state.bytes -= w;
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    dropped.push(oldest);
                }
                self.enqueue(state, item, weight);
                Ok(match dropped.len() {
                    1 => Pushed::Dropped(dropped.pop().expect("one dropped item")),
                    _ => Pushed::DroppedMany(dropped),
                })
            }
            OverflowPolicy::Block => {
                state.room_wanted = true;
                Err(item)
            }
        }
    }

    fn enqueue(&self, state: &mut State<T>, item: T, weight: usize) {
        state.items.push_back((item, weight));
        state.bytes += weight;
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Pushes from a task; waiting for room (see [`OverflowPolicy`]) does not block
    /// the thread.
    pub(crate) async fn push(&self, item: T) -> Pushed<T> {
        self.push_waking(item, true).await
    }

    /// [`push`](Self::push), but the consumers are not woken for this item: the
    /// producer calls [`wake_consumers_owed`](Self::wake_consumers_owed) once it has
    /// pushed what it has at hand (the events of one socket read). Waking a parked
    /// consumer per event cost a futex call per event and, with both threads on
    /// one core, a switch to the consumer and back per event. A push that has to
    /// wait for room wakes them first, so a full queue never waits on a sleeper.
    pub(crate) async fn push_deferring_wake(&self, item: T) -> Pushed<T> {
        self.push_waking(item, false).await
    }

    /// Wakes the consumers if items were pushed by
    /// [`push_deferring_wake`](Self::push_deferring_wake) since the last wake.
    pub(crate) fn wake_consumers_owed(&self) {
        if self.wake_owed.swap(false, Ordering::Relaxed) {
            let parked = self.lock().consumers_parked > 0;
            self.wake_consumers(parked);
        }
    }

    async fn push_waking(&self, item: T, wake: bool) -> Pushed<T> {
        let mut item = match self.try_push_and_wake(item, wake) {
            Ok(pushed) => return pushed,
            Err(back) => back,
        };
        self.wake_consumers_owed();
        // Full. Registering as a waiter takes the notifier's lock, so it is done only
        // on this slow path, before looking again: a pop or a close in between is
        // then never missed.
        let deadline = self.wait_deadline().map(tokio::time::Instant::from_std);
        loop {
            let room = self.room_notify.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            item = match self.try_push_and_wake(item, true) {
                Ok(pushed) => return pushed,
                Err(back) => back,
            };
            match deadline {
                None => room.await,
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        self.lock().overflowing = true;
                    }
                }
            }
        }
    }

    fn try_push_and_wake(&self, item: T, wake: bool) -> Result<Pushed<T>, T> {
        let mut state = self.lock();
        let pushed = self.try_push(&mut state, item)?;
        let parked = state.consumers_parked > 0;
        drop(state);
        if matches!(pushed, Pushed::Queued) {
            if wake {
                self.wake_consumers(parked);
            } else {
                self.wake_owed.store(true, Ordering::Relaxed);
            }
        }
        Ok(pushed)
    }

    /// Pushes from a thread, waiting for room as [`OverflowPolicy`] says.
    pub(crate) fn push_blocking(&self, mut item: T) -> Pushed<T> {
        let mut deadline = None;
        let mut state = self.lock();
        loop {
            match self.try_push(&mut state, item) {
                Ok(pushed) => {
                    let parked = state.consumers_parked > 0;
                    drop(state);
                    if matches!(pushed, Pushed::Queued) {
                        self.wake_consumers(parked);
                    }
                    return pushed;
                }
                Err(back) => {
                    item = back;
                    state.producers_parked += 1;
                    state = match *deadline.get_or_insert_with(|| self.wait_deadline()) {
                        None => self.room_cv.wait(state).unwrap_or_else(|e| e.into_inner()),
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            let (mut state, waited) = self
                                .room_cv
                                .wait_timeout(state, left)
                                .unwrap_or_else(|e| e.into_inner());
                            if waited.timed_out() {
                                state.overflowing = true;
                            }
                            state
                        }
                    };
                    state.producers_parked -= 1;
                }
            }
        }
    }

    /// Pops from a thread, waiting until an item arrives or the queue is closed and
    /// empty. Once closed, items are handed out until `drain_timeout` has passed.
    /// Items come from `batch` first; when it is empty, up to a batch more are
    /// taken under one lock.
    pub(crate) fn pop_blocking(&self, batch: &mut Batch<T>, drain_timeout: Duration) -> Popped<T> {
        if let Some(popped) = self.pop_from_batch(batch, drain_timeout) {
            return popped;
        }
        let mut state = self.lock();
        loop {
            if state.drain_over(drain_timeout) && !state.items.is_empty() {
                return Popped::TimedOut;
            }
            if !state.items.is_empty() {
                return Popped::Item(self.take_batch(state, batch));
            }
            if state.closed_at.is_some() {
                return Popped::Closed;
            }
            state.consumers_parked += 1;
            state = self.items_cv.wait(state).unwrap_or_else(|e| e.into_inner());
            state.consumers_parked -= 1;
        }
    }

    /// Pops from a task; same contract as [`pop_blocking`](Self::pop_blocking).
    pub(crate) async fn pop(&self, batch: &mut Batch<T>, drain_timeout: Duration) -> Popped<T> {
        if let Some(popped) = self.pop_from_batch(batch, drain_timeout) {
            return popped;
        }
        if let Some(popped) = self.try_pop(batch, drain_timeout) {
            return popped;
        }
        // Empty: register as a waiter, then look again, so a push or a close in
        // between is never missed.
        loop {
            let arrived = self.items_notify.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(popped) = self.try_pop(batch, drain_timeout) {
                return popped;
            }
            arrived.await;
        }
    }

    /// An item, the end of the queue, or `None` when there is nothing yet.
    fn try_pop(&self, batch: &mut Batch<T>, drain_timeout: Duration) -> Option<Popped<T>> {
        let state = self.lock();
        if state.items.is_empty() {
            return state.closed_at.is_some().then_some(Popped::Closed);
        }
        if state.drain_over(drain_timeout) {
            return Some(Popped::TimedOut);
        }
        Some(Popped::Item(self.take_batch(state, batch)))
    }

    /// Takes everything left in the queue and in the consumer's batch, for counting
    /// what a shutdown discards.
    pub(crate) fn take_all(&self, batch: Batch<T>) -> Vec<T> {
        let mut state = self.lock();
        let mut items: Vec<T> = batch.items.into();
        items.extend(state.items.drain(..).map(|(item, _)| item));
        state.bytes = 0;
        self.len.store(0, Ordering::Relaxed);
        drop(state);
        self.room_cv.notify_all();
        self.room_notify.notify_waiters();
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const DRAIN: Duration = Duration::from_secs(5);

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            0
        }
    }

    /// An item that weighs what it says.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Heavy(usize);

    impl Weigh for Heavy {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn heavy(max_bytes: usize, policy: OverflowPolicy) -> EventQueue<Heavy> {
        EventQueue::with_limits(100, max_bytes, policy, Duration::ZERO)
    }

    #[test]
    fn the_byte_budget_bounds_the_queue_like_the_count() {
        let q = heavy(100, OverflowPolicy::DropNewest);
        assert!(matches!(q.push_blocking(Heavy(60)), Pushed::Queued));
        assert!(matches!(q.push_blocking(Heavy(40)), Pushed::Queued));
        assert!(matches!(
            q.push_blocking(Heavy(1)),
            Pushed::Dropped(Heavy(1))
        ));
        let mut b = Batch::default();
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(60))
        ));
        assert!(matches!(q.push_blocking(Heavy(50)), Pushed::Queued));
    }

    #[test]
    fn one_item_heavier_than_the_budget_passes_alone() {
        let q = heavy(100, OverflowPolicy::Block);
        assert!(matches!(q.push_blocking(Heavy(500)), Pushed::Queued));
        let q = heavy(100, OverflowPolicy::DropNewest);
        q.push_blocking(Heavy(10));
        assert!(matches!(
            q.push_blocking(Heavy(500)),
            Pushed::Dropped(Heavy(500))
        ));
    }

    #[test]
    fn drop_oldest_drops_as_many_as_a_heavy_item_needs() {
        let q = heavy(100, OverflowPolicy::DropOldest);
        for _ in 0..4 {
            q.push_blocking(Heavy(25));
        }
        assert!(matches!(
            q.push_blocking(Heavy(25)),
            Pushed::Dropped(Heavy(25))
        ));
        match q.push_blocking(Heavy(70)) {
            Pushed::DroppedMany(dropped) => assert_eq!(dropped, vec![Heavy(25); 3]),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.take_all(Batch::default()), vec![Heavy(25), Heavy(70)]);
    }

    #[test]
    fn a_batch_takes_at_most_an_eighth_of_the_budget_but_one_item_always() {
        let q = heavy(800, OverflowPolicy::Block);
        for w in [40, 40, 40, 200, 10] {
            q.push_blocking(Heavy(w));
        }
        let mut b = Batch::default();
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(40))
        ));
        assert_eq!(b.items.len(), 1, "40 + 40 fit in 100, a third does not");
        q.pop_blocking(&mut b, DRAIN);
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(40))
        ));
        assert!(b.items.is_empty());
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(200))
        ));
        assert!(b.items.is_empty(), "a heavy item goes alone");
    }

    #[test]
    fn a_producer_blocked_by_bytes_is_woken_when_its_item_can_fit() {
        // 30 waiting, 80 more do not fit in 100: the queue is below half of its
        // budget already, so only emptying it makes room.
        let q = Arc::new(heavy(100, OverflowPolicy::Block));
        q.push_blocking(Heavy(30));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || matches!(q.push_blocking(Heavy(80)), Pushed::Queued))
        };
        while q.lock().producers_parked == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut b = Batch::default();
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(30))
        ));
        assert!(producer.join().unwrap());
        assert!(matches!(
            q.pop_blocking(&mut b, DRAIN),
            Popped::Item(Heavy(80))
        ));
    }

    #[tokio::test]
    async fn an_async_producer_blocked_by_bytes_is_woken_too() {
        let q = Arc::new(heavy(100, OverflowPolicy::Block));
        q.push(Heavy(70)).await;
        let producer = {
            let q = q.clone();
            tokio::spawn(async move { matches!(q.push(Heavy(70)).await, Pushed::Queued) })
        };
        tokio::task::yield_now().await;
        assert!(!producer.is_finished());
        let mut b = Batch::default();
        assert!(matches!(
            q.pop(&mut b, DRAIN).await,
            Popped::Item(Heavy(70))
        ));
        assert!(producer.await.unwrap());
        assert_eq!(q.lock().bytes, 70);
    }

    #[test]
    fn spent_buffers_go_back_in_batches_up_to_a_bound() {
        let queue = EventQueue::<i32>::new(8, OverflowPolicy::Block);
        let mut spent: Vec<Vec<u8>> = (0..MAX_SPENT - 1).map(|_| vec![0; 8]).collect();
        queue.give_back(&mut spent);
        assert!(spent.is_empty());
        // Only one more fits; the rest are freed by the one giving them back.
        let mut more: Vec<Vec<u8>> = (0..5).map(|_| vec![1; 8]).collect();
        queue.give_back(&mut more);
        assert!(more.is_empty());
        let mut taken = vec![vec![2; 8]];
        queue.take_spent(&mut taken);
        assert_eq!(taken.len(), 1 + MAX_SPENT);
        assert_eq!(taken[0], vec![2; 8]);
        let mut again = Vec::new();
        queue.take_spent(&mut again);
        assert!(again.is_empty(), "taken once");
    }

    #[test]
    fn drop_newest_returns_the_new_item() {
        let mut b = Batch::default();
        let q = EventQueue::new(2, OverflowPolicy::DropNewest);
        assert!(matches!(q.push_blocking(1), Pushed::Queued));
        assert!(matches!(q.push_blocking(2), Pushed::Queued));
        assert!(matches!(q.push_blocking(3), Pushed::Dropped(3)));
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(1)));
    }

    #[test]
    fn drop_oldest_returns_the_oldest_item() {
        let mut b = Batch::default();
        let q = EventQueue::new(2, OverflowPolicy::DropOldest);
        q.push_blocking(1);
        q.push_blocking(2);
        assert!(matches!(q.push_blocking(3), Pushed::Dropped(1)));
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(2)));
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(3)));
    }

    #[test]
    fn block_waits_for_room_and_close_ends_consumers() {
        let mut b = Batch::default();
        let q = Arc::new(EventQueue::new(1, OverflowPolicy::Block));
        q.push_blocking(1);
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || matches!(q.push_blocking(2), Pushed::Queued))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(q.len(), 1, "the producer must wait while the queue is full");
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(1)));
        assert!(producer.join().unwrap());
        q.close();
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(2)));
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Closed));
    }

    #[test]
    fn closed_queue_hands_out_items_until_the_drain_timeout() {
        let mut b = Batch::default();
        let q = EventQueue::new(4, OverflowPolicy::Block);
        q.push_blocking(1);
        q.push_blocking(2);
        q.close();
        assert!(matches!(q.push_blocking(3), Pushed::Dropped(3)));
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            q.pop_blocking(&mut b, Duration::from_millis(1)),
            Popped::TimedOut
        ));
        assert_eq!(q.take_all(std::mem::take(&mut b)), vec![2]);
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Closed));
    }

    /// A consumer thread parked on an empty queue, and one item pushed without a
    /// wake: the owed wake delivers it.
    #[tokio::test]
    async fn a_deferred_wake_reaches_a_parked_consumer() {
        let q = Arc::new(EventQueue::new(8, OverflowPolicy::Block));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut b = Batch::default();
                matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(7))
            })
        };
        while q.lock().consumers_parked == 0 {
            std::thread::yield_now();
        }
        assert!(matches!(q.push_deferring_wake(7).await, Pushed::Queued));
        q.wake_consumers_owed();
        assert!(consumer.join().unwrap());
    }

    /// Deferred pushes into a full `Block` queue wake the consumers before waiting
    /// for room, though the producer never called `wake_consumers_owed`: a parked
    /// consumer would otherwise never make room.
    #[tokio::test]
    async fn a_deferring_push_that_waits_for_room_wakes_the_consumers_first() {
        let q = Arc::new(EventQueue::new(2, OverflowPolicy::Block));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut b = Batch::default();
                let mut got = Vec::new();
                while let Popped::Item(i) = q.pop_blocking(&mut b, DRAIN) {
                    got.push(i);
                }
                got
            })
        };
        while q.lock().consumers_parked == 0 {
            std::thread::yield_now();
        }
        for i in 0..10 {
            assert!(matches!(q.push_deferring_wake(i).await, Pushed::Queued));
        }
        q.close();
        assert_eq!(consumer.join().unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn async_push_blocks_until_an_async_pop() {
        let mut b = Batch::default();
        let q = Arc::new(EventQueue::new(1, OverflowPolicy::Block));
        q.push(1).await;
        let producer = {
            let q = q.clone();
            tokio::spawn(async move { matches!(q.push(2).await, Pushed::Queued) })
        };
        tokio::task::yield_now().await;
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(1)));
        assert!(producer.await.unwrap());
        q.close();
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(2)));
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Closed));
    }

    #[tokio::test]
    async fn a_drop_policy_waits_out_a_short_stall_within_the_grace() {
        for policy in [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest] {
            let q = Arc::new(EventQueue::with_limits(
                2,
                usize::MAX,
                policy,
                Duration::from_secs(10),
            ));
            q.push(1).await;
            q.push(2).await;
            let consumer = {
                let q = q.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let mut b = Batch::default();
                    (q.pop(&mut b, DRAIN).await, b)
                })
            };
            assert!(matches!(q.push(3).await, Pushed::Queued), "{policy:?}");
            let (popped, b) = consumer.await.unwrap();
            assert!(matches!(popped, Popped::Item(1)));
            assert_eq!(q.take_all(b), vec![2, 3]);
        }
    }

    #[tokio::test]
    async fn after_the_grace_runs_out_drops_are_immediate_until_half_drained() {
        let mut b = Batch::default();
        let grace = Duration::from_millis(30);
        let q = EventQueue::with_limits(4, usize::MAX, OverflowPolicy::DropNewest, grace);
        for i in 0..4 {
            q.push(i).await;
        }
        let started = Instant::now();
        assert!(matches!(q.push(4).await, Pushed::Dropped(4)));
        assert!(started.elapsed() >= grace, "the first drop waits the grace");
        let started = Instant::now();
        for i in 5..50 {
            assert!(matches!(q.push(i).await, Pushed::Dropped(_)));
        }
        assert!(
            started.elapsed() < grace,
            "later drops do not wait: {:?}",
            started.elapsed()
        );
        // One pop leaves the queue above half: still no waiting.
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(0)));
        q.push(50).await;
        let started = Instant::now();
        assert!(matches!(q.push(51).await, Pushed::Dropped(51)));
        assert!(started.elapsed() < grace);
        // Drained to half: the next full queue gets its grace again.
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(1)));
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(2)));
        q.push(52).await;
        q.push(53).await;
        let started = Instant::now();
        assert!(matches!(q.push(54).await, Pushed::Dropped(54)));
        assert!(started.elapsed() >= grace);
    }

    #[test]
    fn blocking_push_honours_the_grace_too() {
        let grace = Duration::from_millis(30);
        let q = EventQueue::with_limits(1, usize::MAX, OverflowPolicy::DropOldest, grace);
        q.push_blocking(1);
        let started = Instant::now();
        assert!(matches!(q.push_blocking(2), Pushed::Dropped(1)));
        assert!(started.elapsed() >= grace);
        assert!(matches!(q.push_blocking(3), Pushed::Dropped(2)));
        assert!(started.elapsed() < grace * 2);
    }

    #[test]
    fn a_consumer_takes_a_batch_per_lock_and_the_length_counts_it_until_done() {
        let q = EventQueue::new(64, OverflowPolicy::DropNewest);
        assert_eq!(q.batch_size, 8, "an eighth of the capacity");
        for i in 0..20 {
            q.push_blocking(i);
        }
        let mut b = Batch::default();
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(0)));
        assert_eq!(
            b.items.len(),
            7,
            "the rest of the batch waits with the consumer"
        );
        assert_eq!(q.lock().items.len(), 12);
        assert_eq!(q.len(), 20, "a batch counts whole until it is done");
        for want in 1..8 {
            assert_eq!(q.len(), 20);
            assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(n) if n == want));
        }
        assert_eq!(q.len(), 12, "the batch left the count with its last item");
        for want in 8..20 {
            assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(n) if n == want));
        }
        assert_eq!(q.len(), 0);
        q.push_blocking(20);
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(20)));
        assert_eq!(q.len(), 0, "a batch of one leaves the count at once");
    }

    #[tokio::test]
    async fn the_async_pop_takes_batches_too() {
        let q = EventQueue::new(500, OverflowPolicy::Block);
        for i in 0..100 {
            q.push(i).await;
        }
        let mut b = Batch::default();
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(0)));
        assert_eq!(b.items.len(), MAX_BATCH - 1, "at most {MAX_BATCH} per lock");
        for want in 1..100 {
            assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Item(n) if n == want));
        }
        q.close();
        assert!(matches!(q.pop(&mut b, DRAIN).await, Popped::Closed));
    }

    #[test]
    fn after_the_drain_timeout_the_batch_is_discarded_with_the_queue() {
        let q = EventQueue::new(64, OverflowPolicy::Block);
        for i in 0..20 {
            q.push_blocking(i);
        }
        let mut b = Batch::default();
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(0)));
        q.close();
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(1)));
        std::thread::sleep(Duration::from_millis(5));
        let short = Duration::from_millis(1);
        assert!(matches!(q.pop_blocking(&mut b, short), Popped::TimedOut));
        assert_eq!(q.take_all(b), (2..20).collect::<Vec<_>>());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_batch_that_drains_the_queue_to_half_wakes_a_blocked_producer() {
        let q = Arc::new(EventQueue::new(64, OverflowPolicy::Block));
        for i in 0..64 {
            q.push_blocking(i);
        }
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || matches!(q.push_blocking(64), Pushed::Queued))
        };
        while q.lock().producers_parked == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut b = Batch::default();
        // Batches of 8 leave 56, 48, 40, then 32 (half) in the queue.
        for want in 0..24 {
            assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(n) if n == want));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(!producer.is_finished(), "woken only at half");
        assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(24)));
        assert!(producer.join().unwrap());
        for want in 25..65 {
            assert!(matches!(q.pop_blocking(&mut b, DRAIN), Popped::Item(n) if n == want));
        }
    }
}
