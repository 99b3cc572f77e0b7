//! The Redis Streams backend (`store = "redis://host:port[/db]"`), for running
//! any number of replicas on the same products.
//!
//! Each product's log is one stream, `autoplay:{<product>}:log` (the braces are
//! a cluster hash tag), whose entries hold one field, `e`: the frame after its
//! `id:` line. Redis gives the ids (`ms-seq`), and they go on the wire verbatim.
//!
//! - **Append**: one writer task takes what is queued (up to [`MAX_BATCH`]
//!   events), and sends it as one `MULTI`/`XADD … MAXLEN ~ <window>`/`EXEC`
//!   (all or nothing, one round trip: group commit). The frames of a webhook
//!   that need a script (a once key, a session) go as one [`APPEND_SCRIPT`]
//!   call, by its SHA1 (`EVALSHA`, the script loaded in the same
//!   transaction). A webhook is answered 200 once its `EXEC` returned *and*
//!   this replica's tail has read the ids back ([`ack_loop`]), so a client of
//!   this replica sees its own events; the writer sends the next batch
//!   meanwhile. When Redis fails the batch, its webhooks get 503 and the
//!   sender retries.
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
//!   runs as [`APPEND_SCRIPT`] (in the same transaction), which appends the
//!   frame, then the actions to the session's list and, once `threshold` are
//!   pending, takes them all: it adds them as one entry to the product's due
//!   stream ([`due_name`]) and reads that entry as this replica's consumer of
//!   [`GROUP`], so the batch is pending for this replica, and returns it.
//!   Redis runs a script atomically, so whichever replica's webhooks cross a
//!   threshold, exactly one of them gets that batch, and only after its
//!   actions are on the stream. Should the reply that carried it be lost,
//!   the retried webhook takes the batch over.
//! - **At least once written, exactly once published**: the batch stays
//!   pending until its summary is appended by [`SUMMARY_SCRIPT`], which
//!   acknowledges and deletes the entry in the same step, and only if it is
//!   still pending for the replica appending. A replica that stops (or whose
//!   LLM hangs) after taking a batch leaves it pending: every replica, at
//!   start and every `claim_interval_s` ([`CLAIM_INTERVAL`]), takes over
//!   (`XAUTOCLAIM`, [`CLAIM_SCRIPT`]) the batches pending longer than
//!   `summary_lease_s` ([`SUMMARY_LEASE`]) and writes them; the slow owner,
//!   should it finish after that, is refused.
//! - **Once per webhook**: an `EXEC` that Redis applied but whose reply was
//!   lost answers 503, and PostHog sends the body again. A webhook whose
//!   events carry `uuid`s appends each frame through [`APPEND_SCRIPT`] with a
//!   key naming the body and the frame ([`Once`]), set `NX` with a TTL
//!   (`?dedupe_ttl_s=`, default [`DEDUPE_TTL`]) in the same step: the retry
//!   appends, and counts for summaries, only the frames not appended yet.
//! - **Order of summaries**: each batch taken is numbered in the session's
//!   hash; its summary is appended by [`SUMMARY_SCRIPT`] only once the one
//!   before it is not pending any more, whichever replica writes it (waiting
//!   at most the lease, a claim interval and [`ORDER_WAIT`]).
//! - **Products and emails** changed on one replica are published on
//!   [`CHANGES`] in the same transaction; each replica follows it
//!   ([`Redis::follow`]), reading the key again, and everything after each
//!   (re)subscription.
//! - When Redis goes away, open streams stay open, the tail retries with
//!   backoff from the last id it delivered, and appends fail (503).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use autoplay_sdk::models::SlimAction;
use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
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
    /// The hash, and the field in it, that mark this frame appended ([`Once`]).
    once: Option<(String, usize)>,
    /// A summary published in its session's order ([`SUMMARY_SCRIPT`]);
    /// boxed, as only summaries have one.
    order: Option<Box<Order>>,
}

/// Where a summary stands in its session's order.
struct Order {
    /// The session's hash (its counters, and the claims of its due batches).
    who: String,
    /// The product's due stream ([`due_name`]).
    due: String,
    /// The batch it summarises: its place among the session's summaries
    /// (1, 2, ...) and its entry in the due stream.
    claim: Claim,
    /// This replica's consumer in [`GROUP`].
    consumer: Arc<str>,
    /// Publish even if the previous one is not out (waited long enough).
    force: bool,
    /// What [`SUMMARY_SCRIPT`] said.
    turn: Option<oneshot::Sender<Turn>>,
}

/// What [`SUMMARY_SCRIPT`] did with a summary.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Appended,
    /// Not its turn yet: the previous summary is not out.
    Wait,
    /// Out already (another delivery of its webhook, or a replica that took
    /// its batch over, wrote it).
    Done,
    /// Its lease expired and another replica took the batch over: that one
    /// writes it.
    Lost,
}

/// How long a summary waits, at most, for the previous summary of its session
/// (written on any replica) to be published, on top of the lease and a claim
/// interval (what it takes the others to take over a batch whose replica
/// stopped): longer than the LLM's default `timeout_s` (10 s) plus the
/// embedded summariser after it. After that it goes out anyway, and the
/// previous one after it when it comes.
pub(crate) const ORDER_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting summary asks whether its turn came.
const ORDER_POLL: Duration = Duration::from_millis(25);

/// How long a replica holds a due batch, by default, before the others may
/// take it over and write its summary: more than twice the LLM's default
/// `timeout_s` (10 s), so a replica that is alive is done before.
pub(crate) const SUMMARY_LEASE: Duration = Duration::from_secs(60);

/// The store URL's query parameter that sets [`SUMMARY_LEASE`].
pub(crate) const LEASE_PARAM: &str = "summary_lease_s";

/// How often, by default, each replica takes over the due batches whose lease
/// expired ([`CLAIM_SCRIPT`]); also done once when it starts.
pub(crate) const CLAIM_INTERVAL: Duration = Duration::from_secs(5);

/// The store URL's query parameter that sets [`CLAIM_INTERVAL`].
pub(crate) const CLAIM_INTERVAL_PARAM: &str = "claim_interval_s";

/// Due batches taken over per product per claim, at most.
const CLAIM_COUNT: usize = 32;

/// The consumer group of every product's due stream: each replica is one
/// consumer of it, and a batch pending for a consumer is that replica's to
/// write until its lease expires.
const GROUP: &str = "summaries";

/// The due stream of a product: one entry per batch whose summary fell due
/// and is not out yet (fields `s` session, `n` its place, `u` user, `m` email,
/// `a` the actions as a JSON array), pending in [`GROUP`] for the replica
/// writing it.
pub(crate) fn due_name(product_id: &str) -> String {
    format!("autoplay:{{{product_id}}}:due")
}

/// An entry of a due stream as Redis gives it: (id, [name, value, ...]).
type DueEntry = (String, Vec<Vec<u8>>);

/// A due batch as a replica holds it: its place among its session's
/// summaries and its entry in the due stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub seq: u64,
    pub entry: String,
}

/// Publishes a summary (`ARGV[2]`) of a session: appends it to the stream
/// `KEYS[1]` (`MAXLEN ~ ARGV[1]`), acknowledges and deletes its batch's entry
/// `ARGV[4]` of the due stream `KEYS[3]`, and forgets its claim in the
/// session's hash `KEYS[2]`, all in one step, and returns `{'ok', id}`; only
/// if that entry is still pending for this replica's consumer `ARGV[6]` of
/// the group `ARGV[5]`: `{'done'}` when it is not pending any more (its
/// summary is out), `{'lost'}` when another replica took it over. It waits,
/// `{'wait'}` (renewing its lease), while the session's previous batch
/// (`ARGV[3] - 1`, its entry in the hash) is pending, unless `ARGV[7]` is
/// `'1'` (waited long enough).
pub(crate) const SUMMARY_SCRIPT: &str = r#"
local due, group, entry, me = KEYS[3], ARGV[5], ARGV[4], ARGV[6]
local function pending(id)
  local p = redis.pcall('XPENDING', due, group, id, id, 1)
  if type(p) ~= 'table' or p.err or #p == 0 then return nil end
  return p[1][2]
end
local owner = pending(entry)
if not owner then return {'done'} end
if owner ~= me then return {'lost'} end
local seq = tonumber(ARGV[3])
if ARGV[7] ~= '1' then
  local previous = redis.call('HGET', KEYS[2], 'd' .. (seq - 1))
  if previous and pending(previous) then
    redis.call('XCLAIM', due, group, me, 0, entry, 'JUSTID')
    return {'wait'}
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('XACK', due, group, entry)
redis.call('XDEL', due, entry)
redis.call('HDEL', KEYS[2], 'd' .. seq)
return {'ok', id}
"#;

/// Takes over, for this replica's consumer `ARGV[2]` of the group `ARGV[1]`,
/// the entries of the due stream `KEYS[1]` pending for longer than `ARGV[3]`
/// ms (a replica that stopped, or is too slow), `ARGV[5]` at most, scanning
/// from the cursor `ARGV[4]`; returns `{cursor, {{entry, fields}, ...}}`. It
/// then drops the consumers that hold nothing and were idle for the lease
/// (replicas that stopped; one that is running is made again when it next
/// takes a batch), in the same step, so none holding a batch is dropped.
pub(crate) const CLAIM_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', {}} end
local claimed = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
if type(claimed) ~= 'table' or claimed.err then return {'0-0', {}} end
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) == 'table' and not consumers.err then
  for _, c in ipairs(consumers) do
    local info = {}
    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
    if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    end
  end
end
return {claimed[1], claimed[2]}
"#;

/// How long a webhook's frames are remembered as appended, by default: a body
/// PostHog sends again within this time appends nothing twice.
pub(crate) const DEDUPE_TTL: Duration = Duration::from_secs(60 * 60);

/// The store URL's query parameter that sets [`DEDUPE_TTL`] (`0`: off).
pub(crate) const DEDUPE_TTL_PARAM: &str = "dedupe_ttl_s";

/// What makes the frames of one webhook recognisable when PostHog delivers
/// the same body again (it retries after a 503, also one answered after Redis
/// applied the events but its reply was lost).
///
/// The mark of a frame is a field, its position among the body's frames, of
/// a hash named by the product and a digest of the body's event `uuid`s in
/// body order (one hash per webhook, not a key per frame): the same body
/// extracts to the same frames, so a retry appends exactly the frames the
/// lost attempt did not, and answers 200. A body whose events carry no `uuid`
/// has no `Once`: it is appended again on a retry.
pub(crate) struct Once {
    base: String,
    next: std::cell::Cell<usize>,
}

impl Once {
    /// The hash of the body, and the field of its next frame.
    fn next_key(&self) -> (String, usize) {
        let i = self.next.get();
        self.next.set(i + 1);
        (self.base.clone(), i)
    }
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

/// A batch of a session whose summary this replica is to write: it fell due
/// here, or this replica took it over from one whose lease expired.
#[derive(Debug)]
pub(crate) struct SharedDue {
    /// Its place among the session's batches (1, 2, ...), whichever replicas
    /// took them: what [`ProductLog::append_summary`] publishes it in order by.
    pub seq: u64,
    /// Its entry in the due stream, which this replica holds.
    pub entry: String,
    pub session_id: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub actions: Vec<SlimAction>,
}

impl SharedDue {
    /// What this replica holds of the batch.
    pub fn claim(&self) -> Claim {
        Claim {
            seq: self.seq,
            entry: self.entry.clone(),
        }
    }
}

/// Appends a run of frames of one product, in order, to its stream `KEYS[1]`
/// (then trims it once, `MAXLEN ~ ARGV[1]`), and returns, per frame, `{id}`, with two options a
/// frame may have:
///
/// - **once** (the hash of its webhook among the frame's keys, and a field
///   of it): if the field is there already the frame was appended by an
///   earlier delivery of the same webhook, and nothing is appended: `nil`, or,
///   when that delivery made a batch due whose summary is not out yet (its
///   reply was lost with the batch), `{'', entry, fields...}`: this delivery
///   takes the batch over (`XCLAIM`) and writes the summary.
/// - **session** (a threshold, not `''`): appends the session's actions to its
///   list (the frame's next key) and keeps its user and email (in the hash
///   after it); once the threshold are pending, numbers the batch (`due` in
///   the hash), adds it to the product's due stream `KEYS[2]` and reads it
///   there as the consumer `ARGV[4]` of the group `ARGV[3]` (so it is pending
///   for this replica until its summary is out, [`SUMMARY_SCRIPT`], or its
///   lease expires, [`CLAIM_SCRIPT`]), notes its entry in the hash (`d<seq>`)
///   and in the once field, and returns `{id, entry, fields...}` (the entry's
///   fields, `s` being the session). The session's keys expire after its idle
///   seconds; the due stream does not (its entries go when their summary is
///   out).
///
/// The keys after `KEYS[2]` are each frame's, in order: its once hash (if it
/// has one), then its session's list and hash (if it has a session). The
/// arguments after `ARGV[4]` are each frame's, in order: its body, its field
/// in the once hash (else `''`), its threshold (`''`: no session) and, with
/// a session, the idle seconds, user, email, session id, the number of
/// actions and the actions (JSON).
///
/// One script for the whole run (one call per webhook, not per frame), so
/// the checks, the appends and the counts are one atomic step: a retried body
/// neither appends nor counts a frame twice. The once hashes are read with
/// one `HMGET` and written with one `HSET` per webhook, not a key per frame,
/// and expire `ARGV[2]` seconds after the last delivery that appended.
pub(crate) const APPEND_SCRIPT: &str = r#"
local stream, due = KEYS[1], KEYS[2]
local maxlen, ttl, group, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local frames = {}
local k, a = 3, 5
while a <= #ARGV do
  local f = {body = ARGV[a], field = ARGV[a + 1], threshold = ARGV[a + 2]}
  if f.field ~= '' then
    f.once = KEYS[k]
    k = k + 1
  end
  a = a + 3
  if f.threshold ~= '' then
    f.list, f.who = KEYS[k], KEYS[k + 1]
    k = k + 2
    f.idle, f.user, f.email, f.session = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    f.first = a + 5
    f.last = a + 4 + tonumber(ARGV[a + 4])
    a = f.last + 1
  end
  frames[#frames + 1] = f
end
-- What earlier deliveries of these webhooks appended: one read per webhook.
local wanted, seen, marks = {}, {}, {}
for _, f in ipairs(frames) do
  if f.once then
    if not wanted[f.once] then wanted[f.once] = {} end
    table.insert(wanted[f.once], f.field)
  end
end
for key, names in pairs(wanted) do
  local known = {}
  for i = 1, #names, 512 do
    local last = math.min(i + 511, #names)
    local values = redis.call('HMGET', key, unpack(names, i, last))
    for j = i, last do known[names[j]] = values[j - i + 1] end
  end
  seen[key], marks[key] = known, {}
end
local function mark(f, value)
  seen[f.once][f.field] = value
  local m = marks[f.once]
  m[#m + 1] = f.field
  m[#m + 1] = value
end
local appended, grouped = false, false
local function append(f)
  if f.once then
    local entry = seen[f.once][f.field]
    if entry then
      if f.threshold == '' or entry == '1' then return false end
      local claimed = redis.pcall('XCLAIM', due, group, me, 0, entry)
      if type(claimed) ~= 'table' or claimed.err or not claimed[1] then return false end
      local out = {'', entry}
      for _, v in ipairs(claimed[1][2]) do out[#out + 1] = v end
      return out
    end
    mark(f, '1')
  end
  -- Trimmed once for the whole call, below: `MAXLEN` on each `XADD` costs
  -- a third of it.
  local id = redis.call('XADD', stream, '*', 'e', f.body)
  appended = true
  if f.threshold == '' then return {id} end
  local who = f.who
  -- As few calls as can be: each costs more in a script than its own work.
  if f.user ~= '' and f.email ~= '' then
    redis.call('HSET', who, 'user', f.user, 'email', f.email)
  elseif f.user ~= '' then
    redis.call('HSET', who, 'user', f.user)
  elseif f.email ~= '' then
    redis.call('HSET', who, 'email', f.email)
  end
  local n = 0
  for i = f.first, f.last, 512 do
    n = redis.call('RPUSH', f.list, unpack(ARGV, i, math.min(i + 511, f.last)))
  end
  redis.call('EXPIRE', f.list, f.idle)
  redis.call('EXPIRE', who, f.idle)
  if n < tonumber(f.threshold) then return {id} end
  local actions = redis.call('LRANGE', f.list, 0, -1)
  redis.call('DEL', f.list)
  local seq = redis.call('HINCRBY', who, 'due', 1)
  local batch = {'s', f.session, 'n', tostring(seq),
    'u', redis.call('HGET', who, 'user') or '', 'm', redis.call('HGET', who, 'email') or '',
    'a', '[' .. table.concat(actions, ',') .. ']'}
  -- Made with the stream, at its end: the batch read next is the one added now.
  if not grouped then
    redis.pcall('XGROUP', 'CREATE', due, group, '$', 'MKSTREAM')
    grouped = true
  end
  local entry = redis.call('XADD', due, '*', unpack(batch))
  redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', 1, 'STREAMS', due, '>')
  redis.call('HSET', who, 'd' .. seq, entry)
  -- '1' means "appended"; an entry "appended, and made that batch due".
  if f.once then mark(f, entry) end
  local out = {id, entry}
  for _, v in ipairs(batch) do out[#out + 1] = v end
  return out
end
local results = {}
for _, f in ipairs(frames) do results[#results + 1] = append(f) end
if appended then redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen) end
for key, m in pairs(marks) do
  for i = 1, #m, 1024 do
    redis.call('HSET', key, unpack(m, i, math.min(i + 1023, #m)))
  end
  if #m > 0 then redis.call('EXPIRE', key, ttl) end
end
return results
"#;

/// The keys of a session: its pending actions, and who it is.
fn session_keys(product_id: &str, session_id: &str) -> (String, String) {
    let list = format!("autoplay:{{{product_id}}}:session:{session_id}");
    let who = format!("{list}:who");
    (list, who)
}

/// The id of a frame [`APPEND_SCRIPT`] appended (`None`: appended before),
/// and the batch of its session that fell due with it.
fn appended(reply: Option<redis::Value>) -> (Option<String>, Option<SharedDue>) {
    let Some(parts) = reply.and_then(|v| redis::from_redis_value::<Option<Vec<Vec<u8>>>>(v).ok())
    else {
        return (None, None);
    };
    let Some(mut parts) = parts else {
        return (None, None);
    };
    if parts.is_empty() {
        return (None, None);
    }
    // An empty id: not appended (appended before), but its batch is due here.
    let id = String::from_utf8(parts.remove(0))
        .ok()
        .filter(|id| !id.is_empty());
    let due = (!parts.is_empty())
        .then(|| {
            let entry = String::from_utf8(parts.remove(0)).ok()?;
            shared_due(entry, parts)
        })
        .flatten();
    (id, due)
}

/// A batch from its entry in the due stream (`fields`: name, value, ...);
/// `None` (logged) when the entry is not one.
fn shared_due(entry: String, fields: Vec<Vec<u8>>) -> Option<SharedDue> {
    let mut map = std::collections::HashMap::new();
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        map.insert(name, value);
    }
    let mut text = |name: &[u8]| {
        map.remove(name)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
    };
    let (Some(session_id), Some(seq), Some(actions)) = (
        text(b"s"),
        text(b"n").and_then(|n| n.parse().ok()),
        text(b"a"),
    ) else {
        warn!(
            entry,
            "a due batch in Redis without its session, place or actions; skipped"
        );
        return None;
    };
    let (user_id, email) = (text(b"u"), text(b"m"));
    // Straight into actions (what this connector wrote); only a batch with an
    // unreadable action goes through `Value`s, to keep the others.
    let actions = match serde_json::from_str::<Vec<SlimAction>>(&actions) {
        Ok(actions) => actions,
        Err(_) => match serde_json::from_str::<Vec<serde_json::Value>>(&actions) {
            Ok(actions) => actions
                .into_iter()
                .filter_map(|action| match serde_json::from_value(action) {
                    Ok(action) => Some(action),
                    Err(e) => {
                        warn!(error = %e, "unreadable action in a Redis session; skipped");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                warn!(entry, error = %e, "unreadable actions in a due batch in Redis; skipped");
                return None;
            }
        },
    };
    Some(SharedDue {
        seq,
        entry,
        session_id,
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
        product_id: String,
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

/// The pub/sub channel on which a change of a product or an email is told:
/// `["p", product]` or `["e", product, user]` (JSON); the receivers read the
/// key again, so the message carries no secret and order does not matter.
const CHANGES: &str = "autoplay:changes";

/// How long the change subscription may be silent before it is checked with a
/// `PING` (a dead connection is found within this and [`PING_TIMEOUT`]).
const SILENCE: Duration = Duration::from_secs(10);

/// How long a `PING` of the change subscription may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What another replica (or this one) changed in the store, read from Redis.
pub(crate) enum Change {
    /// Everything the store has: after each (re)subscription, since what was
    /// told while this replica was not subscribed is not told again.
    All {
        products: Vec<StoredProduct>,
        /// (product, user, email).
        emails: Vec<(String, String, String)>,
    },
    /// A product registered or rotated (`Some`), or deleted (`None`).
    Product {
        id: String,
        record: Option<StoredProduct>,
    },
    /// An email learnt (`Some`) or forgotten (`None`).
    Email {
        product_id: String,
        user_id: String,
        email: Option<String>,
    },
}

type Queue = (u64, Option<mpsc::UnboundedSender<(u64, Op)>>);

/// The hash of a product's learnt emails (user id → email).
fn emails_key(product_id: &str) -> String {
    format!("autoplay:{{{product_id}}}:emails")
}

/// What a store URL's query sets (`?dedupe_ttl_s=N&summary_lease_s=N&claim_interval_s=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    dedupe_ttl: Duration,
    /// How long a replica holds a due batch before the others may take it.
    lease: Duration,
    /// How often each replica looks for batches whose lease expired.
    claim_interval: Duration,
}

/// Reads the store URL's query; an unknown parameter is the redis crate's.
fn options(url: &str) -> Result<Options, String> {
    let mut options = Options {
        dedupe_ttl: DEDUPE_TTL,
        lease: SUMMARY_LEASE,
        claim_interval: CLAIM_INTERVAL,
    };
    let Some((_, query)) = url.split_once('?') else {
        return Ok(options);
    };
    for (name, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        let (slot, zero_ok, example) = match name {
            DEDUPE_TTL_PARAM => (&mut options.dedupe_ttl, true, "3600 (0 turns dedupe off)"),
            LEASE_PARAM => (&mut options.lease, false, "60"),
            CLAIM_INTERVAL_PARAM => (&mut options.claim_interval, false, "5"),
            _ => continue,
        };
        *slot = value
            .parse()
            .ok()
            .filter(|&n: &u64| zero_ok || n > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                let what = if zero_ok {
                    "a number"
                } else {
                    "a positive number"
                };
                format!(
                    "{name}={value:?} is not {what} of seconds; expected e.g. \
                     redis://127.0.0.1:6379/0?{name}={example}"
                )
            })?;
    }
    Ok(options)
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
    /// What the store URL's query set.
    options: Options,
    /// This replica's consumer in each product's due stream: unique per
    /// process, so a batch pending for it is this process's to write.
    consumer: Arc<str>,
    /// The connection [`Redis::claim_expired`] uses, made when first needed.
    claim_conn: Mutex<Option<MultiplexedConnection>>,
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
        let open_error = |reason: String| StoreError::Open {
            path: super::redacted(url),
            reason,
        };
        let options = options(url).map_err(open_error)?;
        let client = redis::Client::open(url).map_err(|e| open_error(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress, _) = watch::channel(Progress::default());
        let redis = Arc::new(Self {
            client,
            window,
            queue: Mutex::new((0, Some(tx))),
            progress,
            metrics,
            down: AtomicBool::new(false),
            options,
            consumer: consumer_name().into(),
            claim_conn: Mutex::new(None),
        });
        let (acks, acked) = mpsc::channel(ACKS_IN_FLIGHT);
        tokio::spawn(write_loop(redis.clone(), rx, acks));
        tokio::spawn(ack_loop(redis.clone(), acked));
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
    /// when Redis failed: the webhook gets 503 and is sent again; nothing
    /// either when `once` says the frame was appended already).
    pub fn append(
        &self,
        log: Arc<ProductLog>,
        body: Bytes,
        session: Option<SessionDelta>,
        once: Option<&Once>,
    ) -> (Ticket, Option<oneshot::Receiver<Option<SharedDue>>>) {
        let (session, rx) = match session {
            None => (None, None),
            Some(delta) => {
                let (tx, rx) = oneshot::channel();
                (Some((delta, tx)), Some(rx))
            }
        };
        let once = once.map(Once::next_key);
        let append = Append {
            log,
            body,
            session,
            once,
            order: None,
        };
        (self.send(Op::Append(append)), rx)
    }

    /// Appends the summary `body` of `session_id` on the batch `claim`, once
    /// the session's previous batch is out (on any replica), waiting at most
    /// [`order_wait`](Self::order_wait) for it; not at all if the batch is
    /// not this replica's any more (its lease expired and another replica
    /// took it over, or its summary is out). Whether it was appended (here).
    /// An error: Redis failed (the
    /// summary is not published; the batch stays pending, and is taken over
    /// once its lease expires).
    pub async fn append_summary(
        &self,
        log: Arc<ProductLog>,
        body: Bytes,
        session_id: &str,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        let (_, who) = session_keys(&log.product_id, session_id);
        let due = due_name(&log.product_id);
        let wait = self.order_wait();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let force = tokio::time::Instant::now() >= deadline;
            let (tx, rx) = oneshot::channel();
            let append = Append {
                log: log.clone(),
                body: body.clone(),
                session: None,
                once: None,
                order: Some(Box::new(Order {
                    who: who.clone(),
                    due: due.clone(),
                    claim: claim.clone(),
                    consumer: self.consumer.clone(),
                    force,
                    turn: Some(tx),
                })),
            };
            let ticket = self.send(Op::Append(append));
            self.durable(ticket).await?;
            let (product_id, seq) = (&*log.product_id, claim.seq);
            match rx.await.unwrap_or(Turn::Wait) {
                Turn::Appended => return Ok(true),
                Turn::Done => {
                    info!(
                        product_id,
                        session_id, seq, "this summary is out already; not published twice"
                    );
                    return Ok(false);
                }
                Turn::Lost => {
                    info!(
                        product_id,
                        session_id,
                        seq,
                        "this summary's lease expired and another replica took it over; not published here"
                    );
                    return Ok(false);
                }
                Turn::Wait => {}
            }
            if force {
                return Err(StoreError::Write("the summary was not appended".into()));
            }
            tokio::time::sleep(ORDER_POLL).await;
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    product_id,
                    session_id,
                    seq,
                    "the previous summary of this session is not out after {wait:?}; publishing this one anyway"
                );
            }
        }
    }

    /// How long a summary waits, at most, for its session's previous one:
    /// long enough for another replica to take that one over when the
    /// replica writing it stopped ([`ORDER_WAIT`]).
    fn order_wait(&self) -> Duration {
        self.options.lease + self.options.claim_interval + ORDER_WAIT
    }

    /// (How often to look for due batches whose lease expired, the lease.)
    pub fn claim_schedule(&self) -> (Duration, Duration) {
        (self.options.claim_interval, self.options.lease)
    }

    /// Takes over up to [`CLAIM_COUNT`] due batches of `log`'s product whose
    /// lease expired ([`CLAIM_SCRIPT`]), scanning from `cursor` (`"0-0"`
    /// first; the call moves it on, back to `"0-0"` once it went round): this
    /// replica is to write their summaries now. An entry that is not a batch
    /// is dropped (logged).
    pub async fn claim_expired(
        &self,
        log: &ProductLog,
        cursor: &mut String,
    ) -> redis::RedisResult<Vec<SharedDue>> {
        let due = due_name(&log.product_id);
        let conn = self
            .claim_conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut conn = match conn {
            Some(conn) => conn,
            None => {
                let conn = self.connect(Duration::from_secs(5)).await?;
                *self.claim_conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                conn
            }
        };
        let reply: redis::RedisResult<(String, Vec<DueEntry>)> = redis::cmd("EVAL")
            .arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(&due)
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg(self.options.lease.as_millis() as u64)
            .arg(&*cursor)
            .arg(CLAIM_COUNT)
            .query_async(&mut conn)
            .await;
        let (next, entries) = match reply {
            Ok(reply) => reply,
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                *self.claim_conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.failed("XAUTOCLAIM", &e);
                return Err(e);
            }
            Err(e) => {
                // Redis answered, but not what the script returns: not an outage.
                warn!(product_id = &*log.product_id, error = %e, "unreadable answer to a claim of due summaries; skipped");
                return Err(e);
            }
        };
        *cursor = next;
        let mut claimed = Vec::with_capacity(entries.len());
        for (entry, fields) in entries {
            match shared_due(entry.clone(), fields) {
                Some(due) => claimed.push(due),
                None => {
                    // Not a batch of ours: nobody could ever write it.
                    let _: redis::RedisResult<()> = redis::pipe()
                        .cmd("XACK")
                        .arg(&due)
                        .arg(GROUP)
                        .arg(&entry)
                        .ignore()
                        .cmd("XDEL")
                        .arg(&due)
                        .arg(&entry)
                        .ignore()
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
        metrics::add(&self.metrics.summary_takeovers, claimed.len());
        Ok(claimed)
    }

    /// The [`Once`] of a webhook of `product_id` whose events carry these
    /// `uuid`s: `None` when none does, or when dedupe is off.
    pub fn once(&self, product_id: &str, uuids: &[String]) -> Option<Once> {
        if uuids.is_empty() || self.options.dedupe_ttl.is_zero() {
            return None;
        }
        let digest = crate::config::sha256(uuids.join("\n").as_bytes());
        Some(Once {
            base: format!(
                "autoplay:{{{product_id}}}:seen:{}",
                hex::encode(&digest[..16])
            ),
            next: std::cell::Cell::new(0),
        })
    }

    /// Queues a learnt email (`None`: forget it).
    pub fn put_email(&self, product_id: &str, user_id: &str, email: Option<&str>) -> Ticket {
        self.send(Op::Email {
            product_id: product_id.to_owned(),
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

    /// Starts following what is changed in the store (by any replica): the
    /// receiver gets a [`Change::All`] each time the subscription starts, then
    /// each change as it is told. Reconnects with backoff while Redis is away.
    pub fn follow(self: &Arc<Self>) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow_loop(self.clone(), tx));
        rx
    }

    /// Waits until Redis took everything up to `ticket`.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.durable_since(Ticket(ticket.0.saturating_sub(1)), ticket)
            .await
    }

    /// Where the queue stands now: what [`durable_since`](Self::durable_since)
    /// checks from.
    pub fn mark(&self) -> Ticket {
        Ticket(self.queue.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// Waits until Redis took everything up to `ticket`, and fails if any of
    /// what was queued after `since` failed: a request's frames may span two
    /// batches, and the first one failing must fail the request, not only the
    /// last one.
    pub async fn durable_since(&self, since: Ticket, ticket: Ticket) -> Result<(), StoreError> {
        if ticket.0 == 0 || ticket <= since {
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
            .any(|(lo, hi)| *lo <= ticket.0 && *hi > since.0)
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

/// Frames sent in one [`APPEND_SCRIPT`] call at most.
const MAX_RUN: usize = 1024;

/// The append `op` is when it goes through [`APPEND_SCRIPT`] (it has a once
/// key or a session), so it may share a call with the frames around it.
fn scripted(op: &Op) -> Option<&Append> {
    match op {
        Op::Append(append)
            if append.order.is_none() && (append.session.is_some() || append.once.is_some()) =>
        {
            Some(append)
        }
        _ => None,
    }
}

/// The SHA1s of the scripts the writer runs, as Redis gave them (`SCRIPT
/// LOAD`): the same for every connection and every server, so asked once.
struct Shas {
    append: String,
    summary: String,
}

impl Shas {
    async fn load(conn: &mut MultiplexedConnection) -> redis::RedisResult<Self> {
        let load = |script: &'static str| {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(script);
            cmd
        };
        Ok(Self {
            append: load(APPEND_SCRIPT).query_async(conn).await?,
            summary: load(SUMMARY_SCRIPT).query_async(conn).await?,
        })
    }
}

/// Batches written to Redis whose webhooks still wait for this replica's
/// tail to read them back, at most: the writer sends the next batch
/// meanwhile, and waits once this many are behind the tail.
const ACKS_IN_FLIGHT: usize = 64;

/// What became of a batch, for [`ack_loop`], in the order they were sent.
enum Ack {
    /// Redis applied the operations up to `hi`; the newest id appended to
    /// each log, which this replica's tail is to read back first.
    Applied {
        hi: u64,
        newest: Vec<(Arc<ProductLog>, u128)>,
    },
    /// Redis did not take the operations `lo..=hi` (or its reply was lost).
    Failed { lo: u64, hi: u64 },
}

/// Marks the batches done, in order: an applied one once this replica's tail
/// read its ids back (or [`TAIL_WAIT`] passed), so a client of this replica
/// sees its own events; meanwhile the writer goes on with the next batches.
async fn ack_loop(redis: Arc<Redis>, mut acks: mpsc::Receiver<Ack>) {
    while let Some(ack) = acks.recv().await {
        match ack {
            Ack::Applied { hi, newest } => {
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
            Ack::Failed { lo, hi } => {
                redis.progress.send_modify(|p| {
                    p.failed.push_back((lo, hi));
                    if p.failed.len() > FAILED_KEPT {
                        p.failed.pop_front();
                    }
                    p.done = hi;
                });
            }
        }
    }
    redis.progress.send_modify(|p| p.closed = true);
}

/// Transactions the writer has sent and not yet had answered, at most: a
/// second one is sent while Redis runs the first, so Redis is not idle while
/// this replica reads a reply and gathers the next batch.
const IN_FLIGHT: usize = 2;

/// A batch sent, with its first and last operations, and the replies to it
/// (one per operation's command, [`APPEND_SCRIPT`] runs unfolded).
type Sent = (
    Vec<(u64, Op)>,
    u64,
    u64,
    redis::RedisResult<Vec<redis::Value>>,
);

async fn write_loop(
    redis: Arc<Redis>,
    mut rx: mpsc::UnboundedReceiver<(u64, Op)>,
    acks: mpsc::Sender<Ack>,
) {
    use futures_util::StreamExt;
    let maxlen = redis.window.events.max(1);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut shas: Option<Shas> = None;
    // In the order sent: a transaction is written to the connection when its
    // future is first polled, which the queue does in the order pushed, and
    // Redis runs a connection's commands in the order written.
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        let first = tokio::select! {
            biased;
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => {
                let (batch, lo, hi, result): Sent = sent;
                if !finish(&redis, &acks, batch, lo, hi, result, &mut conn).await {
                    break;
                }
                continue;
            }
            first = rx.recv(), if open && in_flight.len() < IN_FLIGHT => first,
        };
        let Some(first) = first else {
            open = false;
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let (lo, hi) = (batch[0].0, batch[batch.len() - 1].0);
        let prepared = async {
            if conn.is_none() {
                conn = Some(redis.connect(Duration::from_secs(5)).await?);
            }
            let conn = conn.as_mut().expect("connected above");
            if shas.is_none() {
                shas = Some(Shas::load(conn).await?);
            }
            let shas = shas.as_ref().expect("loaded above");
            let (pipe, shape) = transaction(&redis, &batch, shas, maxlen);
            Ok::<_, redis::RedisError>((conn.clone(), pipe, shape))
        }
        .await;
        in_flight.push_back(async move {
            let result = match prepared {
                Ok((mut conn, pipe, shape)) => query(&mut conn, &pipe, shape).await,
                Err(e) => Err(e),
            };
            (batch, lo, hi, result)
        });
    }
}

/// The transaction of `batch`, and the shape of its replies (per reply:
/// `Some(n)` for an [`APPEND_SCRIPT`] run of n frames, whose reply holds one
/// per frame).
fn transaction(
    redis: &Redis,
    batch: &[(u64, Op)],
    shas: &Shas,
    maxlen: usize,
) -> (redis::Pipeline, Vec<Option<usize>>) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    // The scripts go by their SHA1 (`EVALSHA`), not their text with
    // every frame; loaded again first in the same transaction, so a
    // server that lost them (a restart, `SCRIPT FLUSH`) still runs
    // every one: an `EVALSHA` failing in `EXEC` would not undo the
    // commands before it.
    let (mut appends, mut summaries) = (false, false);
    for (_, op) in batch {
        appends |= scripted(op).is_some();
        summaries |= matches!(op, Op::Append(append) if append.order.is_some());
    }
    if appends {
        pipe.cmd("SCRIPT").arg("LOAD").arg(APPEND_SCRIPT).ignore();
    }
    if summaries {
        pipe.cmd("SCRIPT").arg("LOAD").arg(SUMMARY_SCRIPT).ignore();
    }
    // Per reply of the transaction: `Some(n)` for an [`APPEND_SCRIPT`]
    // run of n frames, whose reply holds one per frame.
    let mut shape: Vec<Option<usize>> = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let op = &batch[i].1;
        i += 1;
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
                publish(&mut pipe, ("p", product_id));
                shape.push(None);
                continue;
            }
            Op::Product {
                product_id,
                record: None,
            } => {
                pipe.cmd("HDEL").arg(PRODUCTS_KEY).arg(product_id);
                pipe.cmd("DEL")
                    .arg(stream_name(product_id))
                    .arg(due_name(product_id));
                publish(&mut pipe, ("p", product_id));
                shape.extend([None, None]);
                continue;
            }
            Op::Email {
                product_id,
                user_id,
                email: Some(email),
            } => {
                pipe.cmd("HSET")
                    .arg(emails_key(product_id))
                    .arg(user_id)
                    .arg(email);
                publish(&mut pipe, ("e", product_id, user_id));
                shape.push(None);
                continue;
            }
            Op::Email {
                product_id,
                user_id,
                email: None,
            } => {
                pipe.cmd("HDEL").arg(emails_key(product_id)).arg(user_id);
                publish(&mut pipe, ("e", product_id, user_id));
                shape.push(None);
                continue;
            }
        };
        let key = &append.log.stream_side().key;
        if let Some(order) = &append.order {
            pipe.cmd("EVALSHA")
                .arg(&shas.summary)
                .arg(3)
                .arg(key)
                .arg(&order.who)
                .arg(&order.due)
                .arg(maxlen)
                .arg(&append.body[..])
                .arg(order.claim.seq)
                .arg(&order.claim.entry)
                .arg(GROUP)
                .arg(&*order.consumer)
                .arg(if order.force { "1" } else { "0" });
            shape.push(None);
            continue;
        }
        if scripted(op).is_none() {
            pipe.cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("e")
                .arg(&append.body[..]);
            shape.push(None);
            continue;
        }
        // One script call for this frame and the scripted frames of
        // the same log queued right after it (a webhook's frames).
        let start = i - 1;
        while i < batch.len()
            && i - start < MAX_RUN
            && scripted(&batch[i].1).is_some_and(|next| Arc::ptr_eq(&next.log, &append.log))
        {
            i += 1;
        }
        let run: Vec<&Append> = batch[start..i]
            .iter()
            .filter_map(|(_, op)| scripted(op))
            .collect();
        let product_id = &append.log.product_id;
        let mut keys: Vec<String> = Vec::new();
        for frame in &run {
            if let Some((once, _)) = &frame.once {
                keys.push(once.clone());
            }
            if let Some((delta, _)) = &frame.session {
                let (list, who) = session_keys(product_id, &delta.session_id);
                keys.extend([list, who]);
            }
        }
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(&shas.append)
            .arg(2 + keys.len())
            .arg(key)
            .arg(due_name(product_id));
        for key in &keys {
            cmd.arg(key);
        }
        cmd.arg(maxlen)
            .arg(redis.options.dedupe_ttl.as_secs().max(1))
            .arg(GROUP)
            .arg(&*redis.consumer);
        for frame in &run {
            cmd.arg(&frame.body[..]);
            match &frame.once {
                Some((_, field)) => cmd.arg(field),
                None => cmd.arg(""),
            };
            match &frame.session {
                None => {
                    cmd.arg("");
                }
                Some((delta, _)) => {
                    cmd.arg(delta.threshold)
                        .arg(delta.idle.as_secs().max(1))
                        .arg(delta.user_id.as_deref().unwrap_or(""))
                        .arg(delta.email.as_deref().unwrap_or(""))
                        .arg(&delta.session_id)
                        .arg(delta.actions.len());
                    for action in &delta.actions {
                        cmd.arg(action);
                    }
                }
            }
        }
        shape.push(Some(run.len()));
    }
    (pipe, shape)
}

/// Sends `pipe`; its replies, [`APPEND_SCRIPT`] runs unfolded (`shape`).
async fn query(
    conn: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
    shape: Vec<Option<usize>>,
) -> redis::RedisResult<Vec<redis::Value>> {
    let replies = pipe.query_async::<Vec<redis::Value>>(conn).await?;
    let malformed = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "a transaction's replies do not match its commands",
        ))
    };
    if replies.len() != shape.len() {
        return Err(malformed());
    }
    let mut flat = Vec::with_capacity(shape.len());
    for (reply, shape) in replies.into_iter().zip(shape) {
        match (shape, reply) {
            (None, reply) => flat.push(reply),
            (Some(n), redis::Value::Array(frames)) if frames.len() == n => flat.extend(frames),
            (Some(_), _) => return Err(malformed()),
        }
    }
    Ok(flat)
}

/// Hands the outcome of `batch` to the replies' receivers and [`ack_loop`];
/// `false` once nobody takes acknowledgements any more.
async fn finish(
    redis: &Redis,
    acks: &mpsc::Sender<Ack>,
    mut batch: Vec<(u64, Op)>,
    lo: u64,
    hi: u64,
    result: redis::RedisResult<Vec<redis::Value>>,
    conn: &mut Option<MultiplexedConnection>,
) -> bool {
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
                let reply = replies.next();
                if let Some(order) = &mut append.order {
                    let reply: Vec<String> = reply
                        .and_then(|v| redis::from_redis_value(v).ok())
                        .unwrap_or_default();
                    let (turn, id) = match reply.as_slice() {
                        [ok, id] if ok == "ok" => (Turn::Appended, Some(id.clone())),
                        [done] if done == "done" => (Turn::Done, None),
                        [lost] if lost == "lost" => (Turn::Lost, None),
                        _ => (Turn::Wait, None),
                    };
                    if let Some(tx) = order.turn.take() {
                        let _ = tx.send(turn);
                    }
                    if let Some(id) = id {
                        ids.push(id);
                        appends.push(&*append);
                    }
                    continue;
                }
                let scripted = append.session.is_some() || append.once.is_some();
                let (id, due) = if scripted {
                    appended(reply)
                } else {
                    let id = reply.and_then(|v| redis::from_redis_value(v).ok());
                    (id, None)
                };
                if let Some((_, tx)) = append.session.take() {
                    let _ = tx.send(due);
                }
                let Some(id) = id else {
                    // An earlier delivery of the same webhook appended it.
                    info!(
                        product_id = &*append.log.product_id,
                        "a frame of a webhook delivered again was appended already; not appended twice"
                    );
                    continue;
                };
                ids.push(id);
                appends.push(&*append);
            }
            // The newest id per log, which the tail is to read back.
            let mut newest: Vec<(Arc<ProductLog>, u128)> = Vec::new();
            for (append, id) in appends.iter().zip(&ids) {
                let key = stream_key(id).unwrap_or(0);
                match newest
                    .iter_mut()
                    .find(|(log, _)| Arc::ptr_eq(log, &append.log))
                {
                    Some(entry) => entry.1 = entry.1.max(key),
                    None => newest.push((append.log.clone(), key)),
                }
            }
            acks.send(Ack::Applied { hi, newest }).await.is_ok()
        }
        Err(e) => {
            redis.failed("XADD", &e);
            *conn = None;
            acks.send(Ack::Failed { lo, hi }).await.is_ok()
        }
    }
}

/// Tells the other replicas what changed (their [`follow_loop`]), in the
/// transaction that changes it; its reply is not among the batch's.
fn publish(pipe: &mut redis::Pipeline, change: impl serde::Serialize) {
    let message = serde_json::to_string(&change).unwrap_or_default();
    pipe.cmd("PUBLISH").arg(CHANGES).arg(message).ignore();
}

/// A stream entry as `XRANGE`/`XREVRANGE`/`XREAD` reply it: the id and the
/// field-value pairs. Decoded straight into this shape, not `redis::streams`' map per
/// entry, so each body is moved out of the reply, never copied, on the hot path of
/// the tail and of loading a window of 100,000s of entries.
type Entry = (String, Vec<(String, Vec<u8>)>);

/// An `XREAD` reply: per stream, its key and its entries.
type ReadReply = Vec<(String, Vec<Entry>)>;

/// The frame of a stream entry, or `None` (logged) when it is not ours.
fn frame(key: &str, (entry_id, fields): &Entry) -> Option<(u128, Bytes)> {
    let id = stream_key(entry_id)?;
    let Some((_, body)) = fields.iter().find(|(field, _)| field == "e") else {
        warn!(
            stream = key,
            id = entry_id,
            "stream entry without an `e` field; skipped"
        );
        return None;
    };
    // The entry holds the frame without its id (Redis gives the id): put it first.
    let mut frame = Vec::with_capacity(body.len() + entry_id.len() + 5);
    frame.extend_from_slice(autoplay_sdk::wire::ID_FIELD.as_bytes());
    frame.extend_from_slice(b": ");
    frame.extend_from_slice(entry_id.as_bytes());
    frame.push(b'\n');
    frame.extend_from_slice(body);
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
                    let mut entries: Vec<Entry> = redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(count + 1)
                        .query_async(conn)
                        .await?;
                    let floor = (entries.len() > count)
                        .then(|| entries.pop())
                        .flatten()
                        .and_then(|(id, _)| stream_key(&id));
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
                            .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone()),
                    );
                    side.delivered.send_replace((true, newest));
                }
                Some(after) => {
                    let reply: Option<ReadReply> = redis::cmd("XREAD")
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
                        for entry in reply.iter().flat_map(|(_, entries)| entries) {
                            last = Some(entry.0.clone());
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

fn product_from(id: &str, json: &[u8]) -> Option<StoredProduct> {
    match serde_json::from_slice(json) {
        Ok(product) => Some(product),
        Err(e) => {
            error!(product_id = id, error = %e, "unreadable product in Redis; skipped");
            None
        }
    }
}

/// Every product and email the store has, read on `conn`.
async fn read_all(conn: &mut MultiplexedConnection) -> redis::RedisResult<Change> {
    let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(PRODUCTS_KEY)
        .query_async(conn)
        .await?;
    let products = entries
        .iter()
        .filter_map(|(id, json)| product_from(id, json))
        .collect();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        // SCAN, not KEYS: it does not stall a Redis with a large keyspace.
        let (next, mut page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("autoplay:{*}:emails")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.append(&mut page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut emails = Vec::new();
    for key in keys {
        let Some(product) = key
            .strip_prefix("autoplay:{")
            .and_then(|rest| rest.strip_suffix("}:emails"))
        else {
            continue;
        };
        let pairs: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
        for (user, email) in pairs {
            emails.push((product.to_owned(), user, email));
        }
    }
    Ok(Change::All { products, emails })
}

/// What a message of [`CHANGES`] is about, read again from Redis.
async fn read_change(
    conn: &mut MultiplexedConnection,
    message: &str,
) -> redis::RedisResult<Option<Change>> {
    let parts: Vec<String> = match serde_json::from_str(message) {
        Ok(parts) => parts,
        Err(_) => {
            warn!(message, "unreadable message on {CHANGES}; skipped");
            return Ok(None);
        }
    };
    Ok(match parts.as_slice() {
        [kind, id] if kind == "p" => {
            let json: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(PRODUCTS_KEY)
                .arg(id)
                .query_async(conn)
                .await?;
            Some(Change::Product {
                id: id.clone(),
                record: json.and_then(|json| product_from(id, &json)),
            })
        }
        [kind, product_id, user_id] if kind == "e" => {
            let email: Option<String> = redis::cmd("HGET")
                .arg(emails_key(product_id))
                .arg(user_id)
                .query_async(conn)
                .await?;
            Some(Change::Email {
                product_id: product_id.clone(),
                user_id: user_id.clone(),
                email,
            })
        }
        _ => {
            warn!(message, "unknown message on {CHANGES}; skipped");
            None
        }
    })
}

/// Subscribes to [`CHANGES`], hands over everything once subscribed, then
/// each change; on any failure starts again (with backoff), so what was told
/// meanwhile is in the next [`Change::All`].
async fn follow_loop(redis: Arc<Redis>, tx: mpsc::Sender<Change>) {
    use futures_util::StreamExt;
    let mut backoff = BACKOFF.0;
    while !tx.is_closed() {
        let result: redis::RedisResult<()> = async {
            let mut pubsub = timed(PING_TIMEOUT, redis.client.get_async_pubsub()).await?;
            timed(PING_TIMEOUT, pubsub.subscribe(CHANGES)).await?;
            let mut conn = redis.connect(Duration::from_secs(5)).await?;
            // Subscribed first, read after: a change made in between is in
            // both, and reading it twice does no harm.
            let all = read_all(&mut conn).await?;
            if tx.send(all).await.is_err() {
                return Ok(());
            }
            backoff = BACKOFF.0;
            let (mut sink, mut messages) = pubsub.split();
            loop {
                let next = tokio::select! {
                    // Nobody follows any more (the connector stopped).
                    _ = tx.closed() => return Ok(()),
                    next = tokio::time::timeout(SILENCE, messages.next()) => next,
                };
                let message = match next {
                    Ok(Some(message)) => message,
                    Ok(None) => return Err(io_error(std::io::ErrorKind::ConnectionReset)),
                    Err(_) => {
                        // In subscribed mode PING answers `["pong", ""]`.
                        timed(PING_TIMEOUT, sink.ping::<redis::Value>()).await?;
                        continue;
                    }
                };
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                if let Some(change) = read_change(&mut conn, &text).await?
                    && tx.send(change).await.is_err()
                {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            // Not an outage by itself (the writer and the tails say when
            // Redis is away): the subscription is made again, and what was
            // told meanwhile read then.
            if backoff == BACKOFF.0 {
                warn!(error = %e, "the subscription to {CHANGES} dropped; subscribing again");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }
}

/// A name for this process's consumer of the due streams: its pid and 64
/// random bits, so no two replicas (nor a replica and its restart) share one.
fn consumer_name() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: the time still tells two processes apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos as u64).to_le_bytes();
    }
    format!("{}-{}", std::process::id(), hex::encode(bytes))
}

fn io_error(kind: std::io::ErrorKind) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(kind))
}

/// `future`, failed as timed out after `limit`.
async fn timed<T>(
    limit: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| Err(io_error(std::io::ErrorKind::TimedOut)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of a due entry for `actions` (a JSON array).
    fn due_fields(actions: &str) -> Vec<Vec<u8>> {
        [
            "s",
            "session-1",
            "n",
            "3",
            "u",
            "user-1",
            "m",
            "",
            "a",
            actions,
        ]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
    }

    #[test]
    fn a_due_batch_keeps_its_readable_actions() {
        let action: SlimAction = serde_json::from_str(
            r#"{"type":"click","title":"Export","description":"Clicked Export","canonical_url":"/d"}"#,
        )
        .unwrap();
        let json = serde_json::to_string(&action).unwrap();
        let all = shared_due("1-0".into(), due_fields(&format!("[{json},{json}]"))).unwrap();
        assert_eq!((all.seq, all.session_id.as_str()), (3, "session-1"));
        assert_eq!(all.user_id.as_deref(), Some("user-1"));
        assert_eq!(all.email, None);
        assert_eq!(all.actions, vec![action.clone(), action.clone()]);
        // One unreadable action is skipped, not the batch.
        let some = shared_due("1-1".into(), due_fields(&format!("[{json},42,{json}]"))).unwrap();
        assert_eq!(some.actions, vec![action.clone(), action]);
        assert!(shared_due("1-2".into(), due_fields("[not json")).is_none());
    }

    #[test]
    fn the_query_is_read_from_the_url() {
        let defaults = options("redis://h:1").unwrap();
        assert_eq!(
            defaults,
            Options {
                dedupe_ttl: DEDUPE_TTL,
                lease: SUMMARY_LEASE,
                claim_interval: CLAIM_INTERVAL,
            }
        );
        // The redis crate takes the URL with our parameters in it.
        let url = "redis://h:1/2?dedupe_ttl_s=60&summary_lease_s=30&claim_interval_s=2";
        assert!(redis::Client::open(url).is_ok());
        assert_eq!(
            options(url).unwrap(),
            Options {
                dedupe_ttl: Duration::from_secs(60),
                lease: Duration::from_secs(30),
                claim_interval: Duration::from_secs(2),
            }
        );
        assert_eq!(
            options("redis://h:1?dedupe_ttl_s=0").unwrap().dedupe_ttl,
            Duration::ZERO
        );
        let error = options("redis://h:1?dedupe_ttl_s=1h").unwrap_err();
        assert!(error.contains("dedupe_ttl_s=3600"), "{error}");
        // A lease or an interval of 0 would have every batch taken over at once.
        let error = options("redis://h:1?summary_lease_s=0").unwrap_err();
        assert!(error.contains("a positive number"), "{error}");
        assert!(error.contains("summary_lease_s=60"), "{error}");
        let error = options("redis://h:1?claim_interval_s=x").unwrap_err();
        assert!(error.contains("claim_interval_s=5"), "{error}");
    }

    #[test]
    fn consumers_are_unique() {
        assert_ne!(consumer_name(), consumer_name());
    }
}
