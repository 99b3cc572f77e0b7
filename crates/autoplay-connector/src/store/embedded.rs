//! The embedded durable backend: a [redb](https://docs.rs/redb) file,
//! `<dir>/autoplay.redb`, behind the memory window.
//!
//! One writer thread owns the write side. Appends, session states and emails are
//! queued to it in order with a sequence number; it takes everything queued
//! (up to [`MAX_BATCH`] operations), writes it in one transaction, commits with
//! fsync (redb's `Durability::Immediate`), and only then puts the batch's frames
//! into the products' windows and live queues and says how far it is durable.
//! A webhook is answered 200 once its last write is durable ([`Writer::durable`]),
//! so a `kill -9` (or power loss) loses nothing that was acknowledged, and no
//! subscriber ever sees an id that a crash could hand out again: ids go on from
//! the newest one on disk. Concurrent requests share a commit (group commit), so
//! fsyncs per second stay bounded whatever the request rate.
//!
//! A commit writes each product's new frames as one row, a *chunk* keyed by its
//! first id ([`encode_chunk`]), not a row per frame: the B-tree then gets one
//! insert and one contiguous value per product per commit instead of hundreds of
//! small ones, and redb writes (and checksums) a few pages instead of a page per
//! three or four frames, which is what bounded the commit rate.
//!
//! The disk keeps what the window keeps: once a chunk's last frame leaves the
//! window the writer deletes the chunk in its next transaction (so the disk may
//! hold up to one commit's frames more than the window). Opening reads each product's
//! newest window back, the sessions waiting for a summary and the emails learnt.
//! If a write fails (disk full, I/O error) the writer stops: nothing after it is
//! acknowledged (ingest answers 503) and the error is logged.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::watch;
use tracing::error;

use super::products::StoredProduct;
use super::{ProductLog, Restored, SessionRecord, StoreError, Ticket};
use crate::replay::{ReplayWindow, Ring};

/// (product, id of the chunk's first frame) → the frames of one commit
/// ([`encode_chunk`]).
const CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("event_chunks");
/// (product, session) → JSON [`SessionRecord`], compressed ([`pack`]).
const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");
/// (product, user) → email.
const EMAILS: TableDefinition<(&str, &str), &str> = TableDefinition::new("emails");

/// product id → JSON [`StoredProduct`] (products registered at run time).
const PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("products");
/// `"format"` → the on-disk format's version, [`FORMAT`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The on-disk format this code reads and writes. 1 (no `meta` table) kept a row
/// per frame; 2 keeps chunks. A file in another format is refused at open with
/// a message saying so, never misread.
pub(crate) const FORMAT: u64 = 2;

/// Operations written in one transaction at most.
pub(crate) const MAX_BATCH: usize = 16_384;

/// The database's file name in the store directory.
pub const FILE_NAME: &str = "autoplay.redb";

enum Op {
    Append {
        log: Arc<ProductLog>,
        id: u64,
        frame: Bytes,
        /// A session state written in the same transaction.
        session: Option<(String, SessionRecord)>,
    },
    Session {
        product_id: String,
        session_id: String,
        record: Option<SessionRecord>,
    },
    Email {
        product_id: String,
        user_id: String,
        email: Option<String>,
    },
    Product {
        product_id: String,
        record: Option<Vec<u8>>,
    },
}

#[derive(Clone, Default)]
struct Progress {
    /// Every operation up to this sequence number is durable.
    durable: u64,
    /// Set when the writer stopped on an error.
    failed: Option<Arc<str>>,
}

/// The chunks on disk of each product: (first id, last id), oldest first.
type ChunkIndex = HashMap<Arc<str>, VecDeque<(u64, u64)>>;

/// What opening the store read back.
pub(crate) struct Loaded {
    /// Each product's window.
    pub logs: HashMap<String, Ring>,
    pub state: Restored,
    /// Products registered at run time.
    pub products: Vec<StoredProduct>,
}

/// The last sequence number given, and the queue (`None` once closed).
type Queue = (u64, Option<std_mpsc::Sender<(u64, Op)>>);

/// The write side: a queue to the writer thread.
pub(crate) struct Writer {
    /// One lock for both, so the queue is in sequence order.
    queue: Mutex<Queue>,
    progress: watch::Sender<Progress>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Opens (or creates) `<dir>/autoplay.redb` and starts its writer.
pub(crate) fn open(dir: &Path, window: ReplayWindow) -> Result<(Writer, Loaded), StoreError> {
    let path = dir.join(FILE_NAME);
    let open_error = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let db = Database::create(&path).map_err(|e| open_error(e.to_string()))?;
    let (loaded, chunks) = load(&db, window).map_err(open_error)?;
    let (tx, rx) = std_mpsc::channel();
    let (progress, _) = watch::channel(Progress::default());
    let thread = {
        let progress = progress.clone();
        let path = path.clone();
        std::thread::Builder::new()
            .name("autoplay-store".into())
            .spawn(move || write_loop(db, path, rx, progress, chunks))
            .map_err(|e| open_error(e.to_string()))?
    };
    Ok((
        Writer {
            queue: Mutex::new((0, Some(tx))),
            progress,
            thread: Mutex::new(Some(thread)),
        },
        loaded,
    ))
}

/// Checks the file's format (writing it into a new file) and creates the tables
/// so that the reads of [`load`] find them.
fn prepare(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let any_table = txn
        .list_tables()
        .map_err(|e| e.to_string())?
        .next()
        .is_some();
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let format = meta
            .get("format")
            .map_err(|e| e.to_string())?
            .map(|v| v.value());
        match format {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(format!(
                    "the file is in on-disk format {other}, and this connector reads format {FORMAT} only; \
                     run the connector version that wrote it, or move the directory away to start empty"
                ));
            }
            None if any_table => {
                return Err(format!(
                    "the file is in on-disk format 1 (written by an older connector), and this connector \
                     reads format {FORMAT} only; move the directory away to start empty"
                ));
            }
            None => {
                meta.insert("format", FORMAT).map_err(|e| e.to_string())?;
            }
        }
    }
    txn.open_table(CHUNKS).map_err(|e| e.to_string())?;
    txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
    txn.open_table(EMAILS).map_err(|e| e.to_string())?;
    txn.open_table(PRODUCTS).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}

/// What the file holds, and where its chunks are (for the writer to trim).
fn load(db: &Database, window: ReplayWindow) -> Result<(Loaded, ChunkIndex), String> {
    prepare(db)?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut logs: HashMap<String, Ring> = HashMap::new();
    let mut chunks = ChunkIndex::new();
    let table = txn.open_table(CHUNKS).map_err(|e| e.to_string())?;
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (key, chunk) = entry.map_err(|e| e.to_string())?;
        let (product_id, first) = key.value();
        let unpacked = unpack(chunk.value());
        let frames = match unpacked
            .as_deref()
            .map_err(Clone::clone)
            .and_then(decode_chunk)
        {
            Ok(frames) => frames,
            Err(e) => {
                error!(product_id, first, error = %e, "unreadable events in the store; skipped");
                continue;
            }
        };
        let Some(&(last, _)) = frames.last() else {
            continue;
        };
        let ring = logs
            .entry(product_id.to_owned())
            .or_insert_with(|| Ring::new(window));
        for (id, frame) in frames {
            // The window holds consecutive ids: after a chunk that could not be
            // read, it starts again at the next one that could.
            if ring.newest().is_some_and(|newest| id != newest + 1) {
                *ring = Ring::new(window);
            }
            ring.push(id, Bytes::copy_from_slice(frame));
        }
        chunks
            .entry(Arc::from(product_id))
            .or_default()
            .push_back((first, last));
    }
    let mut state = Restored::default();
    let sessions = txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
    for entry in sessions.iter().map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let (product_id, session_id) = key.value();
        let record = unpack(value.value()).and_then(|json| {
            serde_json::from_slice::<SessionRecord>(&json).map_err(|e| e.to_string())
        });
        match record {
            Ok(record) => {
                state
                    .sessions
                    .push((product_id.to_owned(), session_id.to_owned(), record))
            }
            Err(e) => {
                error!(product_id, session_id, error = %e, "unreadable session state in the store; skipped")
            }
        }
    }
    let emails = txn.open_table(EMAILS).map_err(|e| e.to_string())?;
    for entry in emails.iter().map_err(|e| e.to_string())? {
        let (key, email) = entry.map_err(|e| e.to_string())?;
        let (product_id, user_id) = key.value();
        state.emails.push((
            product_id.to_owned(),
            user_id.to_owned(),
            email.value().to_owned(),
        ));
    }
    let mut products = Vec::new();
    let table = txn.open_table(PRODUCTS).map_err(|e| e.to_string())?;
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        match serde_json::from_slice::<StoredProduct>(value.value()) {
            Ok(product) => products.push(product),
            Err(e) => {
                error!(product_id = key.value(), error = %e, "unreadable product in the store; skipped")
            }
        }
    }
    Ok((
        Loaded {
            logs,
            state,
            products,
        },
        chunks,
    ))
}

impl Writer {
    fn send(&self, op: Op) -> Ticket {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.0 += 1;
        let seq = queue.0;
        // A closed queue (the writer stopped) leaves the ticket unmet, and
        // `durable` reports the writer's error.
        if let Some(tx) = &queue.1 {
            let _ = tx.send((seq, op));
        }
        Ticket(seq)
    }

    pub fn append(&self, log: Arc<ProductLog>, id: u64, frame: Bytes) -> Ticket {
        self.send(Op::Append {
            log,
            id,
            frame,
            session: None,
        })
    }

    pub fn append_with_session(
        &self,
        log: Arc<ProductLog>,
        id: u64,
        frame: Bytes,
        session: Option<(&str, SessionRecord)>,
    ) -> Ticket {
        let session = session.map(|(session_id, record)| (session_id.to_owned(), record));
        self.send(Op::Append {
            log,
            id,
            frame,
            session,
        })
    }

    pub fn put_session(
        &self,
        product_id: &str,
        session_id: &str,
        record: Option<SessionRecord>,
    ) -> Ticket {
        self.send(Op::Session {
            product_id: product_id.to_owned(),
            session_id: session_id.to_owned(),
            record,
        })
    }

    pub fn put_email(&self, product_id: &str, user_id: &str, email: Option<&str>) -> Ticket {
        self.send(Op::Email {
            product_id: product_id.to_owned(),
            user_id: user_id.to_owned(),
            email: email.map(str::to_owned),
        })
    }

    pub fn put_product(&self, product_id: &str, record: Option<&StoredProduct>) -> Ticket {
        self.send(Op::Product {
            product_id: product_id.to_owned(),
            record: record.map(|r| serde_json::to_vec(r).unwrap_or_default()),
        })
    }

    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        let mut progress = self.progress.subscribe();
        let progress = progress
            .wait_for(|p| p.durable >= ticket.0 || p.failed.is_some())
            .await
            .map_err(|_| StoreError::Write("the store's writer stopped".into()))?;
        match &progress.failed {
            Some(reason) if progress.durable < ticket.0 => {
                Err(StoreError::Write(reason.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Closes the queue and waits for the writer to finish what it holds.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        // What is sent from now on (a summary task outliving the server) is
        // never written: waiting for it must end.
        self.progress.send_modify(|p| {
            p.failed.get_or_insert_with(|| "the store is closed".into());
        });
    }
}

/// A product's frames on disk, as the writer knows them.
struct OnDisk {
    /// The log whose window says what may go (the newest registered under this
    /// id; `None` until this run appends to it).
    log: Option<Arc<ProductLog>>,
    /// (first id, last id) of each chunk, oldest first.
    chunks: VecDeque<(u64, u64)>,
}

fn write_loop(
    db: Database,
    path: PathBuf,
    rx: std_mpsc::Receiver<(u64, Op)>,
    progress: watch::Sender<Progress>,
    chunks: ChunkIndex,
) {
    let mut disk: HashMap<Arc<str>, OnDisk> = chunks
        .into_iter()
        .map(|(product_id, chunks)| (product_id, OnDisk { log: None, chunks }))
        .collect();
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        if let Err(reason) = write_batch(&db, &batch, &mut disk) {
            error!(path = %path.display(), error = %reason, "the store failed to write; webhooks get 503 from now on");
            progress.send_modify(|p| p.failed = Some(reason.into()));
            return;
        }
        for (_, op) in batch.drain(..) {
            if let Op::Append { log, id, frame, .. } = op {
                log.publish_durable(id, frame);
            }
        }
        progress.send_modify(|p| p.durable = last);
    }
}

/// One product's frames of a batch, in id order.
struct Chunk<'a> {
    log: &'a Arc<ProductLog>,
    first: u64,
    last: u64,
    bytes: Vec<u8>,
}

/// A chunk is, per frame: its id (u64, little-endian), its length (u32,
/// little-endian), its bytes. Ids are stored, not implied, so a reader never
/// depends on them being consecutive.
fn encode_frame_into(chunk: &mut Vec<u8>, id: u64, frame: &[u8]) {
    chunk.extend_from_slice(&id.to_le_bytes());
    chunk.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    chunk.extend_from_slice(frame);
}

/// The (id, frame) pairs of a chunk written by [`encode_frame_into`].
fn decode_chunk(mut chunk: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut frames = Vec::new();
    while !chunk.is_empty() {
        let (head, rest) = chunk
            .split_at_checked(12)
            .ok_or("a chunk ends inside a frame's header")?;
        let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        let (frame, rest) = rest
            .split_at_checked(len)
            .ok_or("a chunk ends inside a frame")?;
        frames.push((id, frame));
        chunk = rest;
    }
    Ok(frames)
}

/// A chunk is closed at this size and the next frame starts another, so what
/// one row holds (and [`unpack`] allocates) stays bounded.
const CHUNK_BYTES: usize = 16 << 20;

/// A chunk or a session state on disk: its length (u32, little-endian), then
/// its bytes compressed with LZ4. Frames and actions repeat their keys, pages
/// and elements, so this is several times smaller, and the pages a commit
/// writes are what bounds its rate.
fn pack(json: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.resize(4 + lz4_flex::block::get_maximum_output_size(json.len()), 0);
    let written = lz4_flex::block::compress_into(json, &mut out[4..])
        .expect("the buffer has the maximum output size");
    out.truncate(4 + written);
}

/// The bytes [`pack`] was given.
fn unpack(packed: &[u8]) -> Result<Vec<u8>, String> {
    let (len, compressed) = packed
        .split_first_chunk::<4>()
        .ok_or("a value shorter than its length")?;
    let len = u32::from_le_bytes(*len) as usize;
    // LZ4 expands at most ~255 times: a damaged length claiming more must not
    // make this allocate it.
    if len > compressed.len().saturating_mul(255) + 16 {
        return Err(format!(
            "a value of {} bytes cannot hold {len} bytes",
            compressed.len()
        ));
    }
    lz4_flex::block::decompress(compressed, len).map_err(|e| e.to_string())
}

fn write_batch(
    db: &Database,
    batch: &[(u64, Op)],
    disk: &mut HashMap<Arc<str>, OnDisk>,
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut events = txn.open_table(CHUNKS).map_err(|e| e.to_string())?;
        let mut sessions = txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
        let mut emails = txn.open_table(EMAILS).map_err(|e| e.to_string())?;
        let mut products = txn.open_table(PRODUCTS).map_err(|e| e.to_string())?;
        // What left the windows since the last batch: whole chunks only.
        for (product_id, on_disk) in disk.iter_mut() {
            let Some(oldest) = on_disk.log.as_ref().and_then(|log| log.oldest()) else {
                continue;
            };
            while let Some(&(first, last)) = on_disk.chunks.front()
                && last < oldest
            {
                events
                    .remove((&**product_id, first))
                    .map_err(|e| e.to_string())?;
                on_disk.chunks.pop_front();
            }
        }
        // Each product's frames of this batch, in order; a new chunk where ids
        // do not follow on (a product deleted and registered again).
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut open: HashMap<&str, usize> = HashMap::new();
        // A session changes many times in a batch under load: only its last
        // state is written (and serialised).
        let mut states: HashMap<(&str, &str), Option<&SessionRecord>> = HashMap::new();
        for (_, op) in batch {
            match op {
                Op::Append {
                    log,
                    id,
                    frame,
                    session,
                } => {
                    let product_id = &*log.product_id;
                    let index = match open.get(product_id) {
                        Some(&i)
                            if chunks[i].last + 1 == *id && chunks[i].bytes.len() < CHUNK_BYTES =>
                        {
                            i
                        }
                        _ => {
                            chunks.push(Chunk {
                                log,
                                first: *id,
                                last: *id,
                                bytes: Vec::new(),
                            });
                            open.insert(product_id, chunks.len() - 1);
                            chunks.len() - 1
                        }
                    };
                    let chunk = &mut chunks[index];
                    chunk.last = *id;
                    encode_frame_into(&mut chunk.bytes, *id, frame);
                    if let Some((session_id, record)) = session {
                        states.insert((product_id, session_id.as_str()), Some(record));
                    }
                }
                Op::Session {
                    product_id,
                    session_id,
                    record,
                } => {
                    states.insert((product_id.as_str(), session_id.as_str()), record.as_ref());
                }
                Op::Email {
                    product_id,
                    user_id,
                    email,
                } => {
                    let key = (product_id.as_str(), user_id.as_str());
                    match email {
                        Some(email) => emails.insert(key, email.as_str()).map(drop),
                        None => emails.remove(key).map(drop),
                    }
                    .map_err(|e| e.to_string())?;
                }
                Op::Product { product_id, record } => match record {
                    Some(bytes) => {
                        products
                            .insert(product_id.as_str(), &bytes[..])
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        products
                            .remove(product_id.as_str())
                            .map_err(|e| e.to_string())?;
                        events
                            .retain_in(
                                (product_id.as_str(), 0)..=(product_id.as_str(), u64::MAX),
                                |_, _| false,
                            )
                            .map_err(|e| e.to_string())?;
                        disk.remove(product_id.as_str());
                        // Its frames earlier in this batch go with it.
                        if let Some(i) = open.remove(product_id.as_str()) {
                            chunks[i].bytes.clear();
                        }
                        for chunk in &mut chunks {
                            if &*chunk.log.product_id == product_id.as_str() {
                                chunk.bytes.clear();
                            }
                        }
                    }
                },
            }
        }
        let mut packed = Vec::new();
        for chunk in chunks.into_iter().filter(|c| !c.bytes.is_empty()) {
            let product_id = &chunk.log.product_id;
            pack(&chunk.bytes, &mut packed);
            events
                .insert((&**product_id, chunk.first), &packed[..])
                .map_err(|e| e.to_string())?;
            let on_disk = disk.entry(product_id.clone()).or_insert_with(|| OnDisk {
                log: None,
                chunks: VecDeque::new(),
            });
            // A product registered again has a new log: trim by its window.
            if !on_disk
                .log
                .as_ref()
                .is_some_and(|log| Arc::ptr_eq(log, chunk.log))
            {
                on_disk.log = Some(chunk.log.clone());
            }
            on_disk.chunks.push_back((chunk.first, chunk.last));
        }
        let mut json = Vec::new();
        let mut packed = Vec::new();
        for (key, record) in states {
            match record {
                Some(record) => {
                    json.clear();
                    serde_json::to_writer(&mut json, record).map_err(|e| e.to_string())?;
                    pack(&json, &mut packed);
                    sessions.insert(key, &packed[..]).map(drop)
                }
                None => sessions.remove(key).map(drop),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> ReplayWindow {
        ReplayWindow {
            events: 100,
            bytes: usize::MAX,
        }
    }

    fn open_error(dir: &Path) -> String {
        match open(dir, window()) {
            Ok((writer, _)) => {
                writer.close();
                panic!("the store opened");
            }
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_file_in_another_format_is_refused_with_its_format() {
        let dir = tempfile::tempdir().unwrap();
        // Format 1: a row per frame, no `meta` table.
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            let old: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
            txn.open_table(old)
                .unwrap()
                .insert(("p", 1), &b"id: 1\n\n"[..])
                .unwrap();
            txn.commit().unwrap();
        }
        let message = open_error(dir.path());
        assert!(message.contains("on-disk format 1"), "{message}");
        assert!(message.contains("reads format 2"), "{message}");

        let other = tempfile::tempdir().unwrap();
        {
            let db = Database::create(other.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("format", 99).unwrap();
            txn.commit().unwrap();
        }
        let message = open_error(other.path());
        assert!(message.contains("on-disk format 99"), "{message}");
    }

    #[test]
    fn a_new_file_gets_the_format_and_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            let (writer, _) = open(dir.path(), window()).unwrap();
            writer.close();
        }
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get("format").unwrap().unwrap().value(), FORMAT);
    }

    #[test]
    fn chunks_and_packed_values_round_trip_and_damage_is_an_error() {
        let mut chunk = Vec::new();
        encode_frame_into(&mut chunk, 7, b"id: 7\ndata: {}\n\n");
        encode_frame_into(&mut chunk, 8, b"");
        let mut packed = Vec::new();
        pack(&chunk, &mut packed);
        let unpacked = unpack(&packed).unwrap();
        assert_eq!(
            decode_chunk(&unpacked).unwrap(),
            [(7, &b"id: 7\ndata: {}\n\n"[..]), (8, &b""[..])]
        );
        assert!(
            decode_chunk(&unpacked[..unpacked.len() - 3]).is_err(),
            "cut inside a header"
        );
        assert!(decode_chunk(&unpacked[..20]).is_err(), "cut inside a frame");
        assert!(unpack(&packed[..2]).is_err());
        // A length no LZ4 block of this size can hold is refused before any
        // allocation.
        let mut huge = packed.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).unwrap_err().contains("cannot hold"));
        // A damaged block is an error, not a panic.
        let mut damaged = packed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        damaged.truncate(last - 2);
        assert!(unpack(&damaged).is_err());
    }
}
