//! `autoplay-bench embedded-dbs` (feature `embedded-dbs`): the candidates for
//! the connector's embedded store (redb, fjall, SQLite through rusqlite) on our
//! frames, in this process.
//!
//! The connector's write pattern: SSE frames of the part-4 `/events` batches
//! (three actions, ~900 bytes each, ids 1, 2, ...), written in group commits of
//! `GROUP` frames with an fsync each (what the connector's writer does under
//! load: one commit for every request waiting), the frames that leave a
//! 10,000-frame window deleted in the next commit. Then replay: the whole window
//! read back in id order, `REPLAYS` times. Prints a Markdown table.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::report::thousands;

const FRAMES: u64 = 100_000;
const GROUP: u64 = 100;
const WINDOW: u64 = 10_000;
const REPLAYS: u64 = 10;
const PRODUCT: &str = "acme";

fn frame(id: u64) -> Vec<u8> {
    let json = crate::connector::event_batch(id, 1_700_000_000_000_000_000 + id);
    format!("id: {id}\nevent: actions\ndata: {json}\n\n").into_bytes()
}

/// One candidate: group-committed appends with trimming, and window replays.
trait Candidate {
    fn append_group(&mut self, frames: &[(u64, Vec<u8>)], trim_below: u64);
    /// Reads the frames with ids >= `from` in order; returns their bytes.
    fn replay(&mut self, from: u64) -> usize;
}

struct Redb(redb::Database);

const REDB_EVENTS: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("events");

impl Candidate for Redb {
    fn append_group(&mut self, frames: &[(u64, Vec<u8>)], trim_below: u64) {
        use redb::ReadableTable;
        let txn = self.0.begin_write().unwrap();
        {
            let mut table = txn.open_table(REDB_EVENTS).unwrap();
            let gone: Vec<u64> = table
                .range((PRODUCT, 0)..(PRODUCT, trim_below))
                .unwrap()
                .map(|e| e.unwrap().0.value().1)
                .collect();
            for id in gone {
                table.remove((PRODUCT, id)).unwrap();
            }
            for (id, frame) in frames {
                table.insert((PRODUCT, *id), &frame[..]).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn replay(&mut self, from: u64) -> usize {
        let txn = self.0.begin_read().unwrap();
        let table = txn.open_table(REDB_EVENTS).unwrap();
        table
            .range((PRODUCT, from)..=(PRODUCT, u64::MAX))
            .unwrap()
            .map(|e| e.unwrap().1.value().len())
            .sum()
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    events: fjall::PartitionHandle,
}

fn fjall_key(id: u64) -> Vec<u8> {
    let mut key = PRODUCT.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl Candidate for Fjall {
    fn append_group(&mut self, frames: &[(u64, Vec<u8>)], trim_below: u64) {
        let mut batch = self.keyspace.batch();
        let gone: Vec<_> = self
            .events
            .range(fjall_key(0)..fjall_key(trim_below))
            .map(|e| e.unwrap().0)
            .collect();
        for key in gone {
            batch.remove(&self.events, key);
        }
        for (id, frame) in frames {
            batch.insert(&self.events, fjall_key(*id), frame.as_slice());
        }
        batch.commit().unwrap();
        self.keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
    }

    fn replay(&mut self, from: u64) -> usize {
        self.events
            .range(fjall_key(from)..=fjall_key(u64::MAX))
            .map(|e| e.unwrap().1.len())
            .sum()
    }
}

struct Sqlite(rusqlite::Connection);

impl Candidate for Sqlite {
    fn append_group(&mut self, frames: &[(u64, Vec<u8>)], trim_below: u64) {
        let txn = self.0.transaction().unwrap();
        txn.execute(
            "DELETE FROM events WHERE product = ?1 AND id < ?2",
            rusqlite::params![PRODUCT, trim_below as i64],
        )
        .unwrap();
        {
            let mut insert = txn
                .prepare_cached("INSERT INTO events (product, id, frame) VALUES (?1, ?2, ?3)")
                .unwrap();
            for (id, frame) in frames {
                insert
                    .execute(rusqlite::params![PRODUCT, *id as i64, frame])
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn replay(&mut self, from: u64) -> usize {
        let mut select = self
            .0
            .prepare_cached("SELECT frame FROM events WHERE product = ?1 AND id >= ?2 ORDER BY id")
            .unwrap();
        let rows = select
            .query_map(rusqlite::params![PRODUCT, from as i64], |row| {
                row.get_ref(0).map(|v| v.as_blob().map_or(0, <[u8]>::len))
            })
            .unwrap();
        rows.map(Result::unwrap).sum()
    }
}

fn open(name: &str, dir: &Path) -> Box<dyn Candidate> {
    match name {
        "redb" => Box::new(Redb(redb::Database::create(dir.join("a.redb")).unwrap())),
        "fjall" => {
            let keyspace = fjall::Config::new(dir.join("fjall")).open().unwrap();
            let events = keyspace
                .open_partition("events", fjall::PartitionCreateOptions::default())
                .unwrap();
            Box::new(Fjall { keyspace, events })
        }
        _ => {
            let conn = rusqlite::Connection::open(dir.join("a.sqlite")).unwrap();
            // WAL with synchronous=FULL: every commit is fsynced, as with the others.
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", "FULL").unwrap();
            conn.execute(
                "CREATE TABLE events (product TEXT NOT NULL, id INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (product, id)) WITHOUT ROWID",
                [],
            )
            .unwrap();
            Box::new(Sqlite(conn))
        }
    }
}

/// Runs every candidate in a temp dir under `work`; returns the section.
pub fn run(work: &Path) -> String {
    let frames: Vec<(u64, Vec<u8>)> = (1..=FRAMES).map(|id| (id, frame(id))).collect();
    let frame_bytes = frames.iter().map(|(_, f)| f.len()).sum::<usize>() / frames.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{FRAMES} frames of ~{frame_bytes} bytes, group commits of {GROUP} with fsync, a \
         {WINDOW}-frame window (older frames deleted in the next commit); replay = the window \
         read in id order, {REPLAYS} times. Directory: {}.\n\n\
         | database | ingest frames/s | commits/s | replay frames/s | on disk after, MiB |\n\
         |---|---:|---:|---:|---:|",
        work.display()
    );
    for name in ["redb", "fjall", "rusqlite"] {
        eprintln!("embedded-dbs: {name}");
        let dir = work.join(format!("embedded-dbs-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut db = open(name, &dir);
        let started = Instant::now();
        for group in frames.chunks(GROUP as usize) {
            let newest = group.last().unwrap().0;
            db.append_group(group, newest.saturating_sub(WINDOW) + 1);
        }
        let ingest = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..REPLAYS {
            bytes += db.replay(FRAMES - WINDOW + 1);
        }
        let replay = started.elapsed().as_secs_f64();
        assert!(bytes > 0);
        drop(db);
        let size = dir_bytes(&dir);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.1} |",
            thousands(FRAMES as f64 / ingest),
            thousands((FRAMES / GROUP) as f64 / ingest),
            thousands((WINDOW * REPLAYS) as f64 / replay),
            size as f64 / (1024.0 * 1024.0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += if meta.is_dir() {
                dir_bytes(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}
