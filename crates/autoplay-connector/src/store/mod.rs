//! The storage seam: each product's event log (append with an id, replay after
//! an id, tail live, trim to the window) and the session state summaries and
//! email learning need, behind one type whatever keeps them.
//!
//! # Backends
//!
//! - **Memory** ([`memory`], `store = "memory"`, the default and what `autoplay
//!   demo` uses): everything in this process; a restart starts from nothing.
//! - **Embedded** ([`embedded`], `store = "file:///var/lib/autoplay"` or a bare
//!   directory): the same in-memory window in front of a redb file that every
//!   event, pending session and learnt email is written to before the webhook
//!   that produced it is answered 200 (group commit). After a crash the window,
//!   the ids, the sessions waiting for a summary and the emails come back.
//! - **Redis** ([`redis`], `store = "redis://host:port[/db]"`): each product's
//!   log is a Redis stream shared by any number of replicas; each replica tails
//!   it into its own window and live queues. Ids are Redis's (`ms-seq`).
//!
//! The backends are an enum, not a trait object: the set is closed and chosen at
//! start-up, an `async fn` in a trait is not object-safe without boxing a future
//! per call, and `append` is on the ingest hot path (the memory backend must stay
//! as fast as the code before the seam). A match costs nothing there.
//!
//! # Ids, replay and live without a gap
//!
//! Ids are decimal integers on the wire (opaque strings to clients), per product,
//! strictly increasing within one store and never reused, also across restarts of
//! the embedded store. A subscriber takes the log's lock once to read its replay
//! ([`crate::replay`]) *and* register its live queue ([`crate::fanout`]); frames
//! enter the window and the live queues under the same lock, in id order, so no
//! frame falls between the two and none is in both. With the embedded store a
//! frame enters them only once it is on disk: no client ever sees an id that a
//! crash could hand out again.

pub(crate) mod embedded;
pub(crate) mod memory;
pub(crate) mod products;
pub(crate) mod redis;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::StoreConfig;
use crate::metrics::{self, Metrics};
use crate::replay::{Gap, Replay, ReplayWindow, Resume, Ring};
use memory::MemoryLog;

/// Why a store could not open or could not make an event durable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database could not be opened or read.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The file or directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing to the store failed; nothing after the failure is acknowledged.
    #[error("the store failed to write: {0}")]
    Write(String),
}

/// What a new subscriber gets: frames to replay first, then the live queue.
pub(crate) struct Subscription {
    pub replay: Vec<Bytes>,
    pub live: mpsc::Receiver<Bytes>,
}

/// Something written that may not be durable yet: [`Store::durable`] waits for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
#[must_use]
pub(crate) struct Ticket(u64);

impl Ticket {
    /// The later of two tickets (waiting for it waits for both).
    pub fn max(self, other: Ticket) -> Ticket {
        std::cmp::Ord::max(self, other)
    }
}

/// One product's event log.
pub(crate) struct ProductLog {
    product_id: Arc<str>,
    inner: Mutex<MemoryLog>,
    writer: Option<Arc<embedded::Writer>>,
    /// With the Redis store: its stream, window and live queues (`inner` is
    /// then unused).
    stream: Option<self::redis::StreamSide>,
    metrics: Arc<Metrics>,
}

impl ProductLog {
    fn stream_side(&self) -> &self::redis::StreamSide {
        self.stream
            .as_ref()
            .expect("only logs of the Redis store are tailed")
    }

    /// Waits (up to a few seconds) until the log has its window
    /// ([`wait_ready`](Self::wait_ready)).
    #[cfg(test)]
    pub async fn ready(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.wait_ready()).await;
    }

    /// Whether the log has its window: always, but with the Redis store only
    /// once its tail loaded it. A subscriber resuming before that would be
    /// told its id is unknown, and get an empty replay: it waits instead.
    pub fn is_ready(&self) -> bool {
        self.stream
            .as_ref()
            .is_none_or(|side| side.delivered.borrow().0)
    }

    /// Waits until [`is_ready`](Self::is_ready): with the Redis store, until
    /// Redis answers and the tail loaded the window, however long that takes
    /// (a subscriber waiting for it gets heartbeats meanwhile).
    pub async fn wait_ready(&self) {
        if let Some(side) = &self.stream {
            let mut delivered = side.delivered.subscribe();
            let _ = delivered.wait_for(|(loaded, _)| *loaded).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryLog> {
        // Nothing under this lock can leave the state half-updated, so a panic
        // elsewhere while holding it is no reason to stop streaming.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event (`kind` and its one-line JSON, rendered by the caller
    /// outside the lock) and returns its id and when it is durable. With the
    /// Redis store the id is 0: Redis gives it when the event is written.
    pub fn append(self: &Arc<Self>, kind: &str, json: &str) -> (u64, Ticket) {
        if let Some(side) = &self.stream {
            let body = Bytes::from(autoplay_sdk::wire::encode_frame(None, kind, json));
            return (0, side.redis.append(self.clone(), body, None, None).0);
        }
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let frame = Bytes::from(autoplay_sdk::wire::encode_frame(Some(id), kind, json));
        match &self.writer {
            None => {
                inner.publish(&self.product_id, id, frame, &self.metrics);
                (id, Ticket::default())
            }
            // Sent under the lock, so the writer gets this product's frames in
            // id order.
            Some(writer) => (id, writer.append(self.clone(), id, frame)),
        }
    }

    /// [`append`](Self::append) of a webhook's frame that the Redis store
    /// appends at most once per [`Store::once`] key (a retried body). Other
    /// stores append it as [`append`](Self::append) does.
    pub fn append_once(
        self: &Arc<Self>,
        kind: &str,
        json: &str,
        once: Option<&self::redis::Once>,
    ) -> Ticket {
        match &self.stream {
            Some(side) if once.is_some() => {
                let body = Bytes::from(autoplay_sdk::wire::encode_frame(None, kind, json));
                side.redis.append(self.clone(), body, None, once).0
            }
            _ => self.append(kind, json).1,
        }
    }

    /// Appends an event that carries a session's new actions (the Redis store
    /// only, see [`Store::counts_sessions`]): Redis counts them with the
    /// append, atomically (and, with `once`, only if the frame was not
    /// appended before); the receiver gets the batch whose summary fell due.
    pub fn append_counting(
        self: &Arc<Self>,
        kind: &str,
        json: &str,
        session: self::redis::SessionDelta,
        once: Option<&self::redis::Once>,
    ) -> (
        Ticket,
        Option<tokio::sync::oneshot::Receiver<Option<self::redis::SharedDue>>>,
    ) {
        let side = self
            .stream
            .as_ref()
            .expect("only the Redis store counts sessions");
        let body = Bytes::from(autoplay_sdk::wire::encode_frame(None, kind, json));
        side.redis.append(self.clone(), body, Some(session), once)
    }

    /// Appends a summary of a session counted in the Redis store
    /// ([`Store::counts_sessions`]) on the batch `claim`, after the session's
    /// previous summary, whichever replica writes that one, and only while
    /// the batch is this replica's (its lease did not expire, or no other
    /// replica took it over). Returns once Redis answered: whether this
    /// call appended it.
    pub async fn append_summary(
        self: &Arc<Self>,
        kind: &str,
        json: &str,
        session_id: &str,
        claim: &self::redis::Claim,
    ) -> Result<bool, StoreError> {
        let side = self
            .stream
            .as_ref()
            .expect("only the Redis store counts sessions");
        let body = Bytes::from(autoplay_sdk::wire::encode_frame(None, kind, json));
        side.redis
            .append_summary(self.clone(), body, session_id, claim)
            .await
    }

    /// Takes over some of the Redis store's due batches of this product
    /// whose replica did not write their summary within the lease (it
    /// stopped, or is too slow), scanning on from `cursor`: this replica
    /// writes them. Nothing with the other stores.
    pub async fn claim_expired(&self, cursor: &mut String) -> Vec<self::redis::SharedDue> {
        let Some(side) = &self.stream else {
            return Vec::new();
        };
        // A failure is logged once per outage; the next tick tries again.
        side.redis
            .claim_expired(self, cursor)
            .await
            .unwrap_or_default()
    }

    /// Appends a summary together with its session's new state, so the two are
    /// durable in the same commit: a restart never writes a summary twice.
    pub fn append_with_session(
        self: &Arc<Self>,
        kind: &str,
        json: &str,
        session: Option<(&str, SessionRecord)>,
    ) -> Ticket {
        let Some(writer) = &self.writer else {
            return self.append(kind, json).1;
        };
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let frame = Bytes::from(autoplay_sdk::wire::encode_frame(Some(id), kind, json));
        writer.append_with_session(self.clone(), id, frame, session)
    }

    /// Called by the embedded writer once `frame` is on disk.
    fn publish_durable(&self, id: u64, frame: Bytes) {
        self.lock()
            .publish(&self.product_id, id, frame, &self.metrics);
    }

    /// The oldest id still in the window (what the disk may drop below).
    fn oldest(&self) -> Option<u64> {
        self.lock().oldest()
    }

    /// Registers a subscriber, with what it missed after `resume`. An id older
    /// than the window, newer than anything appended, or not ours gets the whole
    /// window; the gap is logged and counted.
    pub fn subscribe(&self, resume: Resume) -> Subscription {
        let (Replay { frames, gap }, live) = match &self.stream {
            None => self.lock().subscribe(resume),
            Some(side) => {
                let mut inner = side.lock();
                let (replay, live_after) = inner.ring.after(resume);
                let live = match live_after {
                    None => inner.fanout.add(),
                    Some(after) => inner.fanout.add_after(after),
                };
                (replay, live)
            }
        };
        if let Some(gap) = gap {
            metrics::inc(&self.metrics.replay_gaps);
            let product_id = &*self.product_id;
            match gap {
                Gap::Ahead { last, newest } => info!(
                    product_id,
                    last,
                    newest,
                    "Last-Event-ID is ahead of this stream; replaying the whole window"
                ),
                Gap::Trimmed {
                    last,
                    oldest,
                    missed,
                } => warn!(
                    product_id,
                    last,
                    oldest,
                    missed,
                    "Last-Event-ID is older than the replay window; events were lost to this client"
                ),
                Gap::Foreign => warn!(
                    product_id,
                    "Last-Event-ID is not an id of this store; replaying the whole window"
                ),
                Gap::StreamTrimmed { last, oldest } => warn!(
                    product_id,
                    last = self::redis::display(last),
                    oldest = self::redis::display(oldest),
                    "Last-Event-ID is older than the replay window; events were lost to this client"
                ),
                Gap::StreamAhead { last, newest } => info!(
                    product_id,
                    last = self::redis::display(last),
                    newest = self::redis::display(newest),
                    "Last-Event-ID is far ahead of this stream; replaying the whole window"
                ),
            }
        }
        Subscription {
            replay: frames,
            live,
        }
    }

    /// The frames in the window now, oldest first: what a subscriber resuming
    /// from before the window would replay. Cheap under the lock (reference
    /// counts); decode them after.
    pub fn window(&self) -> Vec<Bytes> {
        match &self.stream {
            None => self.lock().window(),
            Some(side) => side.lock().ring.window(),
        }
    }

    /// Live subscribers registered now (some may have gone since the last event).
    #[cfg(test)]
    pub fn subscriber_count(&self) -> usize {
        match &self.stream {
            None => self.lock().subscriber_count(),
            Some(side) => side.lock().fanout.len(),
        }
    }
}

/// A session's state as the store keeps it: who, and the actions no published
/// summary covers yet, `due` being those whose summary fell due (in batches, in
/// order) and `pending` the rest.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionRecord {
    pub user_id: Option<autoplay_sdk::models::CompactString>,
    pub email: Option<autoplay_sdk::models::CompactString>,
    pub due: Vec<Vec<autoplay_sdk::models::SlimAction>>,
    pub pending: Vec<autoplay_sdk::models::SlimAction>,
}

/// What a durable store had when it opened.
#[derive(Default)]
pub(crate) struct Restored {
    /// (product, session, state).
    pub sessions: Vec<(String, String, SessionRecord)>,
    /// (product, user, email).
    pub emails: Vec<(String, String, String)>,
}

/// Where the logs and the session state live.
pub(crate) struct Store {
    writer: Option<Arc<embedded::Writer>>,
    redis: Option<Arc<self::redis::Redis>>,
    window: ReplayWindow,
    subscriber_buffer: usize,
    metrics: Arc<Metrics>,
    restored: Mutex<Option<embedded::Loaded>>,
}

impl Store {
    /// Opens the configured store.
    pub fn open(
        config: &StoreConfig,
        window: ReplayWindow,
        subscriber_buffer: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let mut redis = None;
        let (writer, restored) = match config {
            StoreConfig::Memory => (None, None),
            StoreConfig::Embedded(dir) => {
                let (writer, loaded) = embedded::open(dir, window)?;
                (Some(Arc::new(writer)), Some(loaded))
            }
            StoreConfig::Redis(url) => {
                let opened = self::redis::Redis::open(url, window, metrics.clone())?;
                let emails = opened.load_emails();
                let products = opened.load_products();
                redis = Some(opened);
                let loaded = embedded::Loaded {
                    logs: Default::default(),
                    state: Restored {
                        sessions: Vec::new(),
                        emails,
                    },
                    products,
                };
                (None, Some(loaded))
            }
        };
        Ok(Self {
            writer,
            redis,
            window,
            subscriber_buffer,
            metrics,
            restored: Mutex::new(restored),
        })
    }

    /// Whether what is written survives a restart.
    pub fn is_durable(&self) -> bool {
        self.writer.is_some()
    }

    /// A product's log, with its window and next id as the store has them.
    pub fn log(&self, product_id: &str) -> Arc<ProductLog> {
        if let Some(redis) = &self.redis {
            let log = Arc::new(ProductLog {
                product_id: Arc::from(product_id),
                inner: Mutex::new(MemoryLog::new(
                    Ring::new(ReplayWindow {
                        events: 0,
                        bytes: 0,
                    }),
                    0,
                )),
                writer: None,
                stream: Some(redis.side(product_id, self.subscriber_buffer)),
                metrics: self.metrics.clone(),
            });
            redis.start_tail(&log);
            return log;
        }
        let ring = self
            .restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|loaded| loaded.logs.remove(product_id))
            .unwrap_or_else(|| Ring::new(self.window));
        Arc::new(ProductLog {
            product_id: Arc::from(product_id),
            inner: Mutex::new(MemoryLog::new(ring, self.subscriber_buffer)),
            writer: self.writer.clone(),
            stream: None,
            metrics: self.metrics.clone(),
        })
    }

    /// A new, empty log for a product registered now: what a durable store
    /// kept under this id (a product deleted earlier) is not its history.
    pub fn fresh_log(&self, product_id: &str) -> Arc<ProductLog> {
        if let Some(loaded) = self
            .restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            loaded.logs.remove(product_id);
        }
        self.log(product_id)
    }

    /// The sessions and emails a durable store had when it opened (once).
    pub fn take_restored(&self) -> Restored {
        let mut restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
        restored
            .as_mut()
            .map(|loaded| std::mem::take(&mut loaded.state))
            .unwrap_or_default()
    }

    /// Writes a session's state (`None`: forget it).
    pub fn put_session(
        &self,
        product_id: &str,
        session_id: &str,
        record: Option<SessionRecord>,
    ) -> Ticket {
        match &self.writer {
            None => Ticket::default(),
            Some(writer) => writer.put_session(product_id, session_id, record),
        }
    }

    /// The products registered through the admin API that a durable store had
    /// when it opened (once; none for the memory store).
    pub fn take_products(&self) -> Vec<products::StoredProduct> {
        let mut restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
        restored
            .as_mut()
            .map(|loaded| std::mem::take(&mut loaded.products))
            .unwrap_or_default()
    }

    /// Writes a product registered at run time (`None`: forget it, and its
    /// events, so a product registered later under the same id starts empty).
    pub fn put_product(
        &self,
        product_id: &str,
        record: Option<&products::StoredProduct>,
    ) -> Ticket {
        if let Some(redis) = &self.redis {
            return redis.put_product(product_id, record);
        }
        match &self.writer {
            None => Ticket::default(),
            Some(writer) => writer.put_product(product_id, record),
        }
    }

    /// Writes a learnt email (`None`: forget it).
    pub fn put_email(&self, product_id: &str, user_id: &str, email: Option<&str>) -> Ticket {
        if let Some(redis) = &self.redis {
            return redis.put_email(product_id, user_id, email);
        }
        match &self.writer {
            None => Ticket::default(),
            Some(writer) => writer.put_email(product_id, user_id, email),
        }
    }

    /// Where the store's queue stands now, taken before a request writes:
    /// [`durable_since`](Self::durable_since) then fails the request if any of
    /// its writes failed, not only its last (the Redis store may send a
    /// request's writes in two transactions).
    pub fn mark(&self) -> Ticket {
        self.redis
            .as_ref()
            .map_or_else(Ticket::default, |redis| redis.mark())
    }

    /// [`durable`](Self::durable), and an error if anything written after
    /// `since` ([`mark`](Self::mark)) failed.
    pub async fn durable_since(&self, since: Ticket, ticket: Ticket) -> Result<(), StoreError> {
        match &self.redis {
            Some(redis) => redis.durable_since(since, ticket).await,
            None => self.durable(ticket).await,
        }
    }

    /// Waits until everything written up to `ticket` is durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            return redis.durable(ticket).await;
        }
        match &self.writer {
            None => Ok(()),
            Some(writer) => writer.durable(ticket).await,
        }
    }

    /// Whether learnt emails are written to the store ([`Store::put_email`])
    /// and read back at start.
    pub fn keeps_emails(&self) -> bool {
        self.writer.is_some() || self.redis.is_some()
    }

    /// What makes the frames of a webhook whose events carry these `uuid`s
    /// appended once, should PostHog deliver it again: with the Redis store,
    /// where a reply lost after Redis applied the events answers 503 (see
    /// [`redis::Once`]). `None` with the other stores (their 503s are for
    /// events that were not written) and for a body without `uuid`s.
    pub fn once(&self, product_id: &str, uuids: &[String]) -> Option<self::redis::Once> {
        self.redis.as_ref()?.once(product_id, uuids)
    }

    /// What other replicas change in the store from now on (products and
    /// emails), for the Redis store; `None` for the others, which only this
    /// process writes.
    pub fn follow(&self) -> Option<tokio::sync::mpsc::Receiver<self::redis::Change>> {
        self.redis.as_ref().map(|redis| redis.follow())
    }

    /// Whether sessions are counted in the store, shared by every replica
    /// (Redis): then [`ProductLog::append_counting`] says when a summary is
    /// due, not the in-process tracker.
    pub fn counts_sessions(&self) -> bool {
        self.redis.is_some()
    }

    /// How often to take over the due batches whose lease expired, and the
    /// lease ([`ProductLog::claim_expired`]): the Redis store only.
    pub fn claim_schedule(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        self.redis.as_ref().map(|redis| redis.claim_schedule())
    }

    /// Whether the store is unreachable now (the Redis store only): ingest
    /// answers 503 and `/healthz` says `degraded`.
    pub fn is_degraded(&self) -> bool {
        self.redis.as_ref().is_some_and(|redis| redis.is_down())
    }

    /// Stops the writer after what it was given is written.
    pub fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close();
        }
        if let Some(redis) = &self.redis {
            redis.close();
        }
    }
}

/// A store URL without the password it may carry, for messages.
pub(crate) fn redacted(url: &str) -> String {
    StoreConfig::Redis(url.to_owned()).to_string()
}

#[cfg(test)]
mod conformance;
