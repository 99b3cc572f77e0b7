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
//! The disk keeps what the window keeps: once a frame leaves the window the
//! writer deletes it in its next transaction. Opening reads each product's
//! newest window back, the sessions waiting for a summary and the emails learnt.
//! If a write fails (disk full, I/O error) the writer stops: nothing after it is
//! acknowledged (ingest answers 503) and the error is logged.

use std::collections::HashMap;
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

/// (product, id) → SSE frame.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (product, session) → JSON [`SessionRecord`].
const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");
/// (product, user) → email.
const EMAILS: TableDefinition<(&str, &str), &str> = TableDefinition::new("emails");

/// product id → JSON [`StoredProduct`] (products registered at run time).
const PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("products");

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
    let loaded = load(&db, window).map_err(open_error)?;
    let (tx, rx) = std_mpsc::channel();
    let (progress, _) = watch::channel(Progress::default());
    let thread = {
        let progress = progress.clone();
        let path = path.clone();
        std::thread::Builder::new()
            .name("autoplay-store".into())
            .spawn(move || write_loop(db, path, rx, progress))
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

fn load(db: &Database, window: ReplayWindow) -> Result<Loaded, String> {
    // Created on first open so the reads below find them.
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.open_table(EVENTS).map_err(|e| e.to_string())?;
    txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
    txn.open_table(EMAILS).map_err(|e| e.to_string())?;
    txn.open_table(PRODUCTS).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;

    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut logs: HashMap<String, Ring> = HashMap::new();
    let events = txn.open_table(EVENTS).map_err(|e| e.to_string())?;
    for entry in events.iter().map_err(|e| e.to_string())? {
        let (key, frame) = entry.map_err(|e| e.to_string())?;
        let (product_id, id) = key.value();
        let ring = logs
            .entry(product_id.to_owned())
            .or_insert_with(|| Ring::new(window));
        ring.push(id, Bytes::copy_from_slice(frame.value()));
    }
    let mut state = Restored::default();
    let sessions = txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
    for entry in sessions.iter().map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let (product_id, session_id) = key.value();
        match serde_json::from_slice::<SessionRecord>(value.value()) {
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
    Ok(Loaded {
        logs,
        state,
        products,
    })
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

fn write_loop(
    db: Database,
    path: PathBuf,
    rx: std_mpsc::Receiver<(u64, Op)>,
    progress: watch::Sender<Progress>,
) {
    // Per product: the log, and the id below which the disk holds nothing.
    let mut trimmed: HashMap<Arc<str>, (Arc<ProductLog>, u64)> = HashMap::new();
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        if let Err(reason) = write_batch(&db, &batch, &mut trimmed) {
            error!(path = %path.display(), error = %reason, "the store failed to write; webhooks get 503 from now on");
            progress.send_modify(|p| p.failed = Some(reason.into()));
            return;
        }
        for (_, op) in batch.drain(..) {
            if let Op::Append { log, id, frame, .. } = op {
                log.publish_durable(id, frame);
                let entry = trimmed
                    .entry(log.product_id.clone())
                    .or_insert_with(|| (log.clone(), 0));
                // A product deleted and registered again has a new log: trim
                // by the new one's window, not the old one's.
                if !Arc::ptr_eq(&entry.0, &log) {
                    *entry = (log.clone(), 0);
                }
            }
        }
        progress.send_modify(|p| p.durable = last);
    }
}

fn write_batch(
    db: &Database,
    batch: &[(u64, Op)],
    trimmed: &mut HashMap<Arc<str>, (Arc<ProductLog>, u64)>,
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut events = txn.open_table(EVENTS).map_err(|e| e.to_string())?;
        let mut sessions = txn.open_table(SESSIONS).map_err(|e| e.to_string())?;
        let mut emails = txn.open_table(EMAILS).map_err(|e| e.to_string())?;
        let mut products = txn.open_table(PRODUCTS).map_err(|e| e.to_string())?;
        // What left the windows since the last batch.
        for (product_id, (log, below)) in trimmed.iter_mut() {
            let Some(oldest) = log.oldest() else { continue };
            if oldest <= *below {
                continue;
            }
            let gone: Vec<u64> = events
                .range((&**product_id, *below)..(&**product_id, oldest))
                .map_err(|e| e.to_string())?
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for id in gone {
                events
                    .remove((&**product_id, id))
                    .map_err(|e| e.to_string())?;
            }
            *below = oldest;
        }
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
                    events
                        .insert((&*log.product_id, *id), &frame[..])
                        .map_err(|e| e.to_string())?;
                    if let Some((session_id, record)) = session {
                        states.insert((&*log.product_id, session_id.as_str()), Some(record));
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
                        trimmed.remove(product_id.as_str());
                    }
                },
            }
        }
        let mut json = Vec::new();
        for (key, record) in states {
            match record {
                Some(record) => {
                    json.clear();
                    serde_json::to_writer(&mut json, record).map_err(|e| e.to_string())?;
                    sessions.insert(key, &json[..]).map(drop)
                }
                None => sessions.remove(key).map(drop),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}
