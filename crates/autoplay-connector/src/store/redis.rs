//! The Redis Streams backend (`store = "redis://host:port[/db]"`), for running
//! any number of replicas on the same products.
//!
//! Each product's log is one stream, `autoplay:{<product>}:log` (the braces are
//! a cluster hash tag), whose entries hold one field, `e`: the frame after its
//! `id:` line. Redis gives the ids (`ms-seq`), and they go on the wire verbatim.
//!
//! - **Append**: one writer task takes what is queued (up to [`MAX_BATCH`]
//!   events), and sends it as one `MULTI`/`XADD … MAXLEN ~ <window>`/`EXEC`
//!   (all or nothing, one round trip: group commit). A webhook is answered 200
//!   once its `EXEC` returned *and* this replica's tail has read the ids back,
//!   so a client of this replica sees its own events; when Redis fails the
//!   batch, its webhooks get 503 and the sender retries.
//! - **Tail**: every replica runs one blocking `XREAD` loop per product and puts
//!   what it reads, in stream order, into the product's window
//!   ([`StreamRing`]) and its own subscribers' queues, under one lock. It loads
//!   the newest window with `XREVRANGE` first.
//! - **Replay** is served from that window: a subscriber takes the lock once to
//!   read what it missed up to the newest id the tail delivered and to register
//!   its live queue, so it gets everything after its `Last-Event-ID` once,
//!   whichever replica appended it. A client that moved from a replica whose
//!   tail was a little ahead resumes after its id when the tail reaches it.
//!   `MAXLEN ~` lets Redis keep somewhat more than the window (it trims whole
//!   nodes); the window itself is exact.
//! - **Sessions** (summaries): an append that carries a session's actions
//!   also runs [`SESSION_SCRIPT`] in the same transaction, which appends them
//!   to the session's list and, once `threshold` are pending, takes them all
//!   and returns them. Redis runs a script atomically, so whichever replica's
//!   webhooks cross a threshold, exactly one of them gets that batch, and
//!   only after its actions are on the stream.
//! - When Redis goes away, open streams stay open, the tail retries with
//!   backoff from the last id it delivered, and appends fail (503).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use autoplay_sdk::models::SlimAction;
use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::products::StoredProduct;
use super::{ProductLog, StoreError, Ticket};
use crate::fanout::Fanout;
use crate::metrics::{self, Metrics};
use crate::replay::{ReplayWindow, StreamRing, stream_id, stream_key};

/// Events sent to Redis in one transaction at most.
pub(crate) const MAX_BATCH: usize = 4096;

/// How long one `XREAD` blocks: also how soon a tail notices its product went.
const BLOCK: Duration = Duration::from_secs(1);

/// Reconnection backoff: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// How long an append waits for this replica's tail to read its id back
/// before it is acknowledged anyway (it is in Redis; subscribers get it when
/// the tail catches up).
const TAIL_WAIT: Duration = Duration::from_secs(5);

/// The stream key of a product.
pub(crate) fn stream_name(product_id: &str) -> String {
    format!("autoplay:{{{product_id}}}:log")
}

/// Every operation up to `done` was answered; `failed` holds the recent
/// ranges that Redis refused.
#[derive(Clone, Default)]
struct Progress {
    done: u64,
    failed: std::collections::VecDeque<(u64, u64)>,
    closed: bool,
}

/// Failed ranges remembered (a waiter looks right after its batch).
const FAILED_KEPT: usize = 1024;

struct Append {
    log: Arc<ProductLog>,
    body: Bytes,
    session: Option<(SessionDelta, oneshot::Sender<Option<SharedDue>>)>,
}

/// A session's new actions, counted in Redis with an append.
pub(crate) struct SessionDelta {
    pub session_id: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    /// Each action as JSON.
    pub actions: Vec<String>,
    pub threshold: usize,
    /// Redis forgets a session idle this long.
    pub idle: Duration,
}

/// A batch of a session whose summary fell due on this replica.
#[derive(Debug)]
pub(crate) struct SharedDue {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub actions: Vec<SlimAction>,
}

/// Appends a session's actions (`ARGV[5..]`) to its list (`KEYS[1]`), keeps
/// its user and email (`ARGV[3]`, `ARGV[4]`, in hash `KEYS[2]`), and once
/// `ARGV[1]` are pending takes them: returns `{user, email, actions...}`, or
/// `{}` while fewer are pending. Both keys expire after `ARGV[2]` idle seconds.
pub(crate) const SESSION_SCRIPT: &str = r#"
local list, who = KEYS[1], KEYS[2]
local threshold, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', who, 'user', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', who, 'email', ARGV[4]) end
local n = 0
for i = 5, #ARGV do n = redis.call('RPUSH', list, ARGV[i]) end
redis.call('EXPIRE', list, idle)
redis.call('EXPIRE', who, idle)
if n < threshold then return {} end
local actions = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list)
local out = {redis.call('HGET', who, 'user') or '', redis.call('HGET', who, 'email') or ''}
for _, action in ipairs(actions) do out[#out + 1] = action end
return out
"#;

/// The keys of a session: its pending actions, and who it is.
fn session_keys(product_id: &str, session_id: &str) -> (String, String) {
    let list = format!("autoplay:{{{product_id}}}:session:{session_id}");
    let who = format!("{list}:who");
    (list, who)
}

fn shared_due(reply: Vec<Vec<u8>>) -> Option<SharedDue> {
    let mut parts = reply.into_iter();
    let text = |b: Vec<u8>| String::from_utf8(b).ok().filter(|s| !s.is_empty());
    let user_id = text(parts.next()?);
    let email = parts.next().and_then(text);
    let actions = parts
        .filter_map(|json| match serde_json::from_slice(&json) {
            Ok(action) => Some(action),
            Err(e) => {
                warn!(error = %e, "unreadable action in a Redis session; skipped");
                None
            }
        })
        .collect();
    Some(SharedDue {
        user_id,
        email,
        actions,
    })
}

/// What the writer sends to Redis, in order.
enum Op {
    Append(Append),
    /// A learnt email (`None`: forget it), in the product's hash
    /// `autoplay:{<product>}:emails`.
    Email {
        key: String,
        user_id: String,
        email: Option<String>,
    },
    /// A product registered at run time (JSON; `None`: deleted, and its
    /// stream with it, so one registered again under the id starts empty).
    Product {
        product_id: String,
        record: Option<Vec<u8>>,
    },
}

/// The hash of the products registered through the admin API (id → JSON).
const PRODUCTS_KEY: &str = "autoplay:products";

type Queue = (u64, Option<mpsc::UnboundedSender<(u64, Op)>>);

/// The hash of a product's learnt emails (user id → email).
fn emails_key(product_id: &str) -> String {
    format!("autoplay:{{{product_id}}}:emails")
}

/// What the Redis store shares between its writer, its tails and its logs.
pub(crate) struct Redis {
    client: redis::Client,
    window: ReplayWindow,
    queue: Mutex<Queue>,
    progress: watch::Sender<Progress>,
    metrics: Arc<Metrics>,
    /// Set while the last command to Redis failed, so it is logged once.
    down: AtomicBool,
}

/// A product's stream as this replica sees it, behind the log's lock.
pub(crate) struct StreamLog {
    pub ring: StreamRing,
    pub fanout: Fanout,
}

/// The Redis side of a [`ProductLog`].
pub(crate) struct StreamSide {
    pub key: String,
    pub inner: Mutex<StreamLog>,
    /// (loaded, newest key delivered to the window).
    pub delivered: watch::Sender<(bool, u128)>,
    pub redis: Arc<Redis>,
}

impl StreamSide {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, StreamLog> {
        // Nothing under this lock can leave the state half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Redis {
    /// Opens a client for `url` and starts the writer (connections are made,
    /// and made again, by the tasks that use them).
    pub fn open(
        url: &str,
        window: ReplayWindow,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Open {
            path: super::redacted(url),
            reason: e.to_string(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress, _) = watch::channel(Progress::default());
        let redis = Arc::new(Self {
            client,
            window,
            queue: Mutex::new((0, Some(tx))),
            progress,
            metrics,
            down: AtomicBool::new(false),
        });
        tokio::spawn(write_loop(redis.clone(), rx));
        Ok(redis)
    }

    /// The side of a new log for `product_id`; its tail starts with `log`.
    pub fn side(self: &Arc<Self>, product_id: &str, subscriber_buffer: usize) -> StreamSide {
        StreamSide {
            key: stream_name(product_id),
            inner: Mutex::new(StreamLog {
                ring: StreamRing::new(self.window, None),
                fanout: Fanout::new(subscriber_buffer),
            }),
            delivered: watch::channel((false, 0)).0,
            redis: self.clone(),
        }
    }

    /// Starts the tail of `log` (which has a [`StreamSide`]).
    pub fn start_tail(self: &Arc<Self>, log: &Arc<ProductLog>) {
        tokio::spawn(tail_loop(self.clone(), Arc::downgrade(log)));
    }

    /// Queues an event of `log`, and the session's actions it carries: the
    /// receiver gets the batch whose summary fell due with it, if any (nothing
    /// when Redis failed: the webhook gets 503 and is sent again).
    pub fn append(
        &self,
        log: Arc<ProductLog>,
        body: Bytes,
        session: Option<SessionDelta>,
    ) -> (Ticket, Option<oneshot::Receiver<Option<SharedDue>>>) {
        let (session, rx) = match session {
            None => (None, None),
            Some(delta) => {
                let (tx, rx) = oneshot::channel();
                (Some((delta, tx)), Some(rx))
            }
        };
        (self.send(Op::Append(Append { log, body, session })), rx)
    }

    /// Queues a learnt email (`None`: forget it).
    pub fn put_email(&self, product_id: &str, user_id: &str, email: Option<&str>) -> Ticket {
        self.send(Op::Email {
            key: emails_key(product_id),
            user_id: user_id.to_owned(),
            email: email.map(str::to_owned),
        })
    }

    /// Queues a product registered at run time (`None`: forget it and its events).
    pub fn put_product(&self, product_id: &str, record: Option<&StoredProduct>) -> Ticket {
        self.send(Op::Product {
            product_id: product_id.to_owned(),
            record: record.map(|r| serde_json::to_vec(r).unwrap_or_default()),
        })
    }

    /// The products registered through the admin API, read at start (none,
    /// logged, when Redis is unreachable).
    pub fn load_products(&self) -> Vec<StoredProduct> {
        let load = || -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
            let mut conn = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))?;
            redis::cmd("HGETALL").arg(PRODUCTS_KEY).query(&mut conn)
        };
        let entries = load().unwrap_or_else(|e| {
            self.failed("HGETALL products", &e);
            Vec::new()
        });
        entries
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_slice(&json) {
                Ok(product) => Some(product),
                Err(e) => {
                    error!(product_id = id, error = %e, "unreadable product in Redis; skipped");
                    None
                }
            })
            .collect()
    }

    fn send(&self, op: Op) -> Ticket {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.0 += 1;
        let seq = queue.0;
        if let Some(tx) = &queue.1 {
            let _ = tx.send((seq, op));
        }
        Ticket(seq)
    }

    /// Every product's learnt emails, (product, user, email), read at start
    /// so that a replica knows what the others learnt before it started. An
    /// unreachable Redis gives none (logged): the connector starts degraded.
    pub fn load_emails(&self) -> Vec<(String, String, String)> {
        let load = || -> redis::RedisResult<Vec<(String, String, String)>> {
            let mut conn = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))?;
            // SCAN, not KEYS: it does not stall a Redis with a large keyspace.
            let mut scan = redis::cmd("SCAN");
            scan.cursor_arg(0)
                .arg("MATCH")
                .arg("autoplay:{*}:emails")
                .arg("COUNT")
                .arg(1000);
            let keys: Vec<String> = scan
                .iter::<String>(&mut conn)?
                .collect::<redis::RedisResult<_>>()?;
            let mut emails = Vec::new();
            for key in keys {
                let Some(product) = key
                    .strip_prefix("autoplay:{")
                    .and_then(|rest| rest.strip_suffix("}:emails"))
                else {
                    continue;
                };
                let pairs: Vec<(String, String)> =
                    redis::cmd("HGETALL").arg(&key).query(&mut conn)?;
                for (user, email) in pairs {
                    emails.push((product.to_owned(), user, email));
                }
            }
            Ok(emails)
        };
        load().unwrap_or_else(|e| {
            self.failed("HGETALL emails", &e);
            Vec::new()
        })
    }

    /// Waits until Redis took everything up to `ticket`.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        if ticket.0 == 0 {
            return Ok(());
        }
        let mut progress = self.progress.subscribe();
        let progress = progress
            .wait_for(|p| p.done >= ticket.0 || p.closed)
            .await
            .map_err(|_| StoreError::Write("the Redis writer stopped".into()))?;
        if progress.done < ticket.0 {
            return Err(StoreError::Write("the store is closed".into()));
        }
        if progress
            .failed
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&ticket.0))
        {
            return Err(StoreError::Write("Redis did not take the events".into()));
        }
        Ok(())
    }

    /// Stops taking appends; what is queued is still sent.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Notes a failed command: logged and counted once per outage.
    fn failed(&self, what: &str, error: &redis::RedisError) {
        if !self.down.swap(true, Ordering::Relaxed) {
            metrics::inc(&self.metrics.store_outages);
            error!(error = %error, what, "Redis is unavailable: webhooks get 503, streams stay open; reconnecting");
        }
    }

    /// Notes a command that worked.
    fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            info!("Redis is available again");
        }
    }

    /// Whether the last command to Redis failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

async fn write_loop(redis: Arc<Redis>, mut rx: mpsc::UnboundedReceiver<(u64, Op)>) {
    let maxlen = redis.window.events.max(1);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut batch: Vec<(u64, Op)> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let (lo, hi) = (batch[0].0, batch[batch.len() - 1].0);
        let result = async {
            if conn.is_none() {
                conn = Some(redis.connect(Duration::from_secs(5)).await?);
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, op) in &batch {
                let append = match op {
                    Op::Append(append) => append,
                    Op::Product {
                        product_id,
                        record: Some(json),
                    } => {
                        pipe.cmd("HSET")
                            .arg(PRODUCTS_KEY)
                            .arg(product_id)
                            .arg(&json[..]);
                        continue;
                    }
                    Op::Product {
                        product_id,
                        record: None,
                    } => {
                        pipe.cmd("HDEL").arg(PRODUCTS_KEY).arg(product_id);
                        pipe.cmd("DEL").arg(stream_name(product_id));
                        continue;
                    }
                    Op::Email {
                        key,
                        user_id,
                        email: Some(email),
                    } => {
                        pipe.cmd("HSET").arg(key).arg(user_id).arg(email);
                        continue;
                    }
                    Op::Email {
                        key,
                        user_id,
                        email: None,
                    } => {
                        pipe.cmd("HDEL").arg(key).arg(user_id);
                        continue;
                    }
                };
                let key = &append.log.stream_side().key;
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(maxlen)
                    .arg("*")
                    .arg("e")
                    .arg(&append.body[..]);
                if let Some((delta, _)) = &append.session {
                    let (list, who) = session_keys(&append.log.product_id, &delta.session_id);
                    let cmd = pipe
                        .cmd("EVAL")
                        .arg(SESSION_SCRIPT)
                        .arg(2)
                        .arg(list)
                        .arg(who)
                        .arg(delta.threshold)
                        .arg(delta.idle.as_secs().max(1))
                        .arg(delta.user_id.as_deref().unwrap_or(""))
                        .arg(delta.email.as_deref().unwrap_or(""));
                    for action in &delta.actions {
                        cmd.arg(action);
                    }
                }
            }
            let conn = conn.as_mut().expect("connected above");
            pipe.query_async::<Vec<redis::Value>>(conn).await
        }
        .await;
        match result {
            Ok(replies) => {
                redis.up();
                let mut replies = replies.into_iter();
                let mut ids = Vec::with_capacity(batch.len());
                let mut appends = Vec::with_capacity(batch.len());
                for (_, op) in &mut batch {
                    let append = match op {
                        Op::Append(append) => append,
                        Op::Product { record: None, .. } => {
                            replies.next();
                            replies.next();
                            continue;
                        }
                        Op::Email { .. } | Op::Product { .. } => {
                            replies.next();
                            continue;
                        }
                    };
                    let id: String = replies
                        .next()
                        .and_then(|v| redis::from_redis_value(v).ok())
                        .unwrap_or_default();
                    ids.push(id);
                    if let Some((_, tx)) = append.session.take() {
                        let due = replies
                            .next()
                            .and_then(|v| redis::from_redis_value::<Vec<Vec<u8>>>(v).ok())
                            .and_then(shared_due);
                        let _ = tx.send(due);
                    }
                    appends.push(&*append);
                }
                // The newest id per log, then wait for this replica's tail.
                let mut newest: Vec<(&Arc<ProductLog>, u128)> = Vec::new();
                for (append, id) in appends.iter().zip(&ids) {
                    let key = stream_key(id).unwrap_or(0);
                    match newest
                        .iter_mut()
                        .find(|(log, _)| Arc::ptr_eq(log, &append.log))
                    {
                        Some(entry) => entry.1 = entry.1.max(key),
                        None => newest.push((&append.log, key)),
                    }
                }
                for (log, key) in newest {
                    let mut delivered = log.stream_side().delivered.subscribe();
                    let _ = tokio::time::timeout(
                        TAIL_WAIT,
                        delivered.wait_for(|(loaded, at)| *loaded && *at >= key),
                    )
                    .await;
                }
                redis.progress.send_modify(|p| p.done = hi);
            }
            Err(e) => {
                redis.failed("XADD", &e);
                conn = None;
                redis.progress.send_modify(|p| {
                    p.failed.push_back((lo, hi));
                    if p.failed.len() > FAILED_KEPT {
                        p.failed.pop_front();
                    }
                    p.done = hi;
                });
            }
        }
        batch.clear();
    }
    redis.progress.send_modify(|p| p.closed = true);
}

/// The frame of a stream entry, or `None` (logged) when it is not ours.
fn frame(key: &str, entry: &StreamId) -> Option<(u128, Bytes)> {
    let id = stream_key(&entry.id)?;
    let body: Vec<u8> = match entry.map.get("e").map(redis::from_redis_value_ref) {
        Some(Ok(body)) => body,
        _ => {
            warn!(
                stream = key,
                id = entry.id,
                "stream entry without an `e` field; skipped"
            );
            return None;
        }
    };
    // The entry holds the frame without its id (Redis gives the id): put it first.
    let mut frame = Vec::with_capacity(body.len() + entry.id.len() + 5);
    frame.extend_from_slice(autoplay_sdk::wire::ID_FIELD.as_bytes());
    frame.extend_from_slice(b": ");
    frame.extend_from_slice(entry.id.as_bytes());
    frame.push(b'\n');
    frame.extend_from_slice(&body);
    Some((id, Bytes::from(frame)))
}

async fn tail_loop(redis: Arc<Redis>, log: Weak<ProductLog>) {
    let Some(key) = log.upgrade().map(|log| log.stream_side().key.clone()) else {
        return;
    };
    let product_id: Arc<str> = log
        .upgrade()
        .map(|log| log.product_id.clone())
        .unwrap_or_else(|| Arc::from(""));
    let count = redis.window.events.max(1);
    let mut conn: Option<MultiplexedConnection> = None;
    // The id the next read follows; `None` until the window is loaded.
    let mut last: Option<String> = None;
    let mut backoff = BACKOFF.0;
    while log.strong_count() > 0 {
        let result: redis::RedisResult<()> = async {
            if conn.is_none() {
                conn = Some(redis.connect(BLOCK + Duration::from_secs(5)).await?);
            }
            let conn = conn.as_mut().expect("connected above");
            match &last {
                None => {
                    // The newest window, and one more: the newest id before it.
                    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(count + 1)
                        .query_async(conn)
                        .await?;
                    let mut entries = reply.ids;
                    let floor = (entries.len() > count)
                        .then(|| entries.pop())
                        .flatten()
                        .and_then(|e| stream_key(&e.id));
                    let Some(log) = log.upgrade() else {
                        return Ok(());
                    };
                    let side = log.stream_side();
                    let mut inner = side.lock();
                    let mut ring = StreamRing::new(redis.window, floor);
                    for entry in entries.iter().rev() {
                        if let Some((id, frame)) = frame(&key, entry) {
                            ring.push(id, frame);
                        }
                    }
                    let newest = ring.newest().unwrap_or(0);
                    inner.ring = ring;
                    last = Some(
                        entries
                            .first()
                            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()),
                    );
                    side.delivered.send_replace((true, newest));
                }
                Some(after) => {
                    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1024)
                        .arg("BLOCK")
                        .arg(BLOCK.as_millis() as u64)
                        .arg("STREAMS")
                        .arg(&key)
                        .arg(after)
                        .query_async(conn)
                        .await?;
                    let Some(reply) = reply else { return Ok(()) };
                    let Some(log) = log.upgrade() else {
                        return Ok(());
                    };
                    let side = log.stream_side();
                    let mut newest = None;
                    {
                        let mut inner = side.lock();
                        for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                            last = Some(entry.id.clone());
                            if let Some((id, frame)) = frame(&key, entry) {
                                inner.ring.push(id, frame.clone());
                                inner
                                    .fanout
                                    .offer_stream(&product_id, id, &frame, &redis.metrics);
                                metrics::inc(&redis.metrics.events_published);
                                newest = Some(id);
                            }
                        }
                    }
                    if let Some(newest) = newest {
                        side.delivered.send_replace((true, newest));
                    }
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                redis.up();
                backoff = BACKOFF.0;
            }
            Err(e) => {
                redis.failed("XREAD", &e);
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

/// The id a subscriber's `Last-Event-ID` would carry for `key`, for logs.
pub(crate) fn display(key: u128) -> String {
    stream_id(key)
}
