//! The replay window: the newest frames of a product, by id, for clients that
//! resume with `Last-Event-ID`.
//!
//! Bounded by a count and by bytes ([`ReplayWindow`]), whichever is reached
//! first; the newest frame always stays, whatever its size, so a client resuming
//! just before it still gets it. Ids in the window are consecutive (every
//! backend appends them in order), so finding a resume point is arithmetic.
//! Redis Streams ids (`ms-seq`) are not: their window is a [`StreamRing`].

use std::collections::VecDeque;

use bytes::Bytes;

/// How much of a product's stream is kept for replay: the newest `events`
/// frames, fewer when they would take more than `bytes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayWindow {
    pub events: usize,
    pub bytes: usize,
}

/// Where a client asks to resume, from its `Last-Event-ID` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// No header (or an empty one): live events only.
    Live,
    /// Everything after this id.
    After(u64),
    /// Everything after this Redis Streams id (`ms-seq`, as [`stream_key`]
    /// packs it); only the Redis store has these.
    AfterStream(u128),
    /// An id that is not one of this store's (another server's scheme, not
    /// text): the whole window, counted as a gap.
    Foreign,
}

impl Resume {
    /// Reads a `Last-Event-ID` value; ids are opaque strings on the wire, and
    /// these stores write them as decimal integers.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return Self::Live;
        };
        match std::str::from_utf8(value).map(str::trim) {
            Ok("") => Self::Live,
            Ok(text) => match text.parse() {
                Ok(id) => Self::After(id),
                Err(_) => stream_key(text).map_or(Self::Foreign, Self::AfterStream),
            },
            Err(_) => Self::Foreign,
        }
    }
}

/// Why a resuming client gets the whole window instead of what follows its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The id is newer than anything this store has (a client of another store).
    Ahead { last: u64, newest: u64 },
    /// The id was trimmed: `missed` events between it and the window are gone.
    Trimmed { last: u64, oldest: u64, missed: u64 },
    /// Not an id of this store at all.
    Foreign,
    /// A Redis Streams id older than the window, and events after it are gone.
    StreamTrimmed { last: u128, oldest: u128 },
    /// A Redis Streams id far newer than anything this stream has.
    StreamAhead { last: u128, newest: u128 },
}

/// The frames a subscriber replays, and the gap if it could not resume exactly.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub frames: Vec<Bytes>,
    pub gap: Option<Gap>,
}

/// The newest frames of one product.
pub(crate) struct Ring {
    frames: VecDeque<(u64, Bytes)>,
    bytes: usize,
    window: ReplayWindow,
}

impl Ring {
    pub fn new(window: ReplayWindow) -> Self {
        Self {
            frames: VecDeque::with_capacity(window.events.min(1024)),
            bytes: 0,
            window,
        }
    }

    /// Appends the frame with id `id` (one more than the newest) and trims the
    /// window.
    pub fn push(&mut self, id: u64, frame: Bytes) {
        debug_assert!(self.newest().is_none_or(|newest| id == newest + 1));
        while let Some((_, oldest)) = self.frames.front()
            && (self.frames.len() >= self.window.events
                || self.bytes + frame.len() > self.window.bytes)
        {
            self.bytes -= oldest.len();
            self.frames.pop_front();
        }
        self.bytes += frame.len();
        self.frames.push_back((id, frame));
    }

    /// The oldest id kept.
    pub fn oldest(&self) -> Option<u64> {
        self.frames.front().map(|(id, _)| *id)
    }

    /// The newest id kept.
    pub fn newest(&self) -> Option<u64> {
        self.frames.back().map(|(id, _)| *id)
    }

    /// What a client resuming at `resume` replays; `newest_id` is the newest id
    /// the store ever gave (0 for none), so an id past it is recognised as not
    /// ours even when the window is empty.
    pub fn after(&self, resume: Resume, newest_id: u64) -> Replay {
        let last = match resume {
            Resume::Live => return Replay::default(),
            Resume::Foreign | Resume::AfterStream(_) => return self.whole(Gap::Foreign),
            Resume::After(last) => last,
        };
        if last > newest_id {
            return self.whole(Gap::Ahead {
                last,
                newest: newest_id,
            });
        }
        let oldest = self.oldest().unwrap_or(newest_id + 1);
        if last.saturating_add(1) < oldest {
            return self.whole(Gap::Trimmed {
                last,
                oldest,
                missed: oldest - last - 1,
            });
        }
        let skip = (last + 1 - oldest) as usize;
        Replay {
            frames: self
                .frames
                .iter()
                .skip(skip)
                .map(|(_, f)| f.clone())
                .collect(),
            gap: None,
        }
    }

    fn whole(&self, gap: Gap) -> Replay {
        Replay {
            frames: self.frames.iter().map(|(_, f)| f.clone()).collect(),
            gap: Some(gap),
        }
    }
}

/// A Redis Streams id (`<ms>-<seq>`, both decimal `u64`) packed so that the
/// order of the numbers is the order of the ids.
pub(crate) fn stream_key(id: &str) -> Option<u128> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some((u128::from(ms) << 64) | u128::from(seq))
}

/// The Redis Streams id a [`stream_key`] packs.
pub(crate) fn stream_id(key: u128) -> String {
    format!("{}-{}", key >> 64, key as u64)
}

/// How much newer than this replica's newest frame a Redis id may be and still
/// be taken for an event this replica's tail has not read yet (another
/// replica's client moving here): it then gets live events after its id, no
/// replay and no gap. Past this it is another stream's id.
const STREAM_AHEAD_SLACK_MS: u128 = 60_000;

/// The window of a Redis stream: ids increase but are not consecutive
/// (`ms-seq`), so resume points are found by search, and what was trimmed is
/// known by the newest id that left the window (`floor`), not by arithmetic.
pub(crate) struct StreamRing {
    frames: VecDeque<(u128, Bytes)>,
    bytes: usize,
    window: ReplayWindow,
    /// The newest id known to be gone from the window (trimmed here, or older
    /// than what was loaded): a client whose id is below it missed events.
    floor: Option<u128>,
    /// The newest id this replica has read, also when the window is empty.
    newest: Option<u128>,
}

impl StreamRing {
    /// An empty window; `floor` is the newest id known to exist before what
    /// will be pushed (what a load from Redis left out).
    pub fn new(window: ReplayWindow, floor: Option<u128>) -> Self {
        Self {
            frames: VecDeque::with_capacity(window.events.min(1024)),
            bytes: 0,
            window,
            floor,
            newest: floor,
        }
    }

    /// Appends frame `key` (newer than any pushed before) and trims.
    pub fn push(&mut self, key: u128, frame: Bytes) {
        debug_assert!(self.newest.is_none_or(|newest| key > newest));
        while let Some((gone, oldest)) = self.frames.front()
            && (self.frames.len() >= self.window.events
                || self.bytes + frame.len() > self.window.bytes)
        {
            self.floor = Some(*gone);
            self.bytes -= oldest.len();
            self.frames.pop_front();
        }
        self.bytes += frame.len();
        self.frames.push_back((key, frame));
        self.newest = Some(key);
    }

    /// The newest id read.
    pub fn newest(&self) -> Option<u128> {
        self.newest
    }

    /// What a client resuming at `resume` replays, and the id after which its
    /// live events start (`None`: all of them).
    pub fn after(&self, resume: Resume) -> (Replay, Option<u128>) {
        let last = match resume {
            Resume::Live => return (Replay::default(), None),
            Resume::Foreign | Resume::After(_) => return (self.whole(Gap::Foreign), None),
            Resume::AfterStream(last) => last,
        };
        let newest = self.newest.unwrap_or(0);
        if last > newest {
            if self.newest.is_some() && (last >> 64) <= (newest >> 64) + STREAM_AHEAD_SLACK_MS {
                return (Replay::default(), Some(last));
            }
            return (self.whole(Gap::StreamAhead { last, newest }), None);
        }
        if let Some(oldest) = self.frames.front().map(|(id, _)| *id)
            && last < oldest
        {
            if self.floor.is_some_and(|floor| last < floor) {
                return (self.whole(Gap::StreamTrimmed { last, oldest }), None);
            }
            // Nothing existed between `last` and the window.
            return (self.whole_without_gap(), None);
        }
        if self.frames.is_empty() && self.floor.is_some_and(|floor| last < floor) {
            return (
                self.whole(Gap::StreamTrimmed {
                    last,
                    oldest: newest,
                }),
                None,
            );
        }
        let skip = self.frames.partition_point(|(id, _)| *id <= last);
        let frames = self
            .frames
            .iter()
            .skip(skip)
            .map(|(_, f)| f.clone())
            .collect();
        (Replay { frames, gap: None }, None)
    }

    /// Every frame in the window, oldest first.
    pub fn window(&self) -> Vec<Bytes> {
        self.whole_without_gap().frames
    }

    fn whole_without_gap(&self) -> Replay {
        Replay {
            frames: self.frames.iter().map(|(_, f)| f.clone()).collect(),
            gap: None,
        }
    }

    fn whole(&self, gap: Gap) -> Replay {
        Replay {
            gap: Some(gap),
            ..self.whole_without_gap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_values() {
        assert_eq!(Resume::from_header(None), Resume::Live);
        assert_eq!(Resume::from_header(Some(b" ")), Resume::Live);
        assert_eq!(Resume::from_header(Some(b" 42 ")), Resume::After(42));
        assert_eq!(
            Resume::from_header(Some(b"1700000000000-3")),
            Resume::AfterStream((1_700_000_000_000 << 64) | 3)
        );
        assert_eq!(stream_id((1_700_000_000_000 << 64) | 3), "1700000000000-3");
        assert_eq!(Resume::from_header(Some(b"1-2-3")), Resume::Foreign);
        assert_eq!(Resume::from_header(Some(b"\xff")), Resume::Foreign);
    }

    #[test]
    fn an_empty_window_knows_its_newest_id() {
        let ring = Ring::new(ReplayWindow {
            events: 4,
            bytes: usize::MAX,
        });
        assert_eq!(ring.after(Resume::After(0), 0).gap, None);
        assert_eq!(
            ring.after(Resume::After(3), 0).gap,
            Some(Gap::Ahead { last: 3, newest: 0 })
        );
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn key(ms: u64, seq: u64) -> u128 {
        (u128::from(ms) << 64) | u128::from(seq)
    }

    fn ring(floor: Option<u128>) -> StreamRing {
        let mut ring = StreamRing::new(
            ReplayWindow {
                events: 3,
                bytes: usize::MAX,
            },
            floor,
        );
        for (ms, seq) in [(10, 0), (10, 1), (12, 0), (15, 4)] {
            ring.push(key(ms, seq), Bytes::from(stream_id(key(ms, seq))));
        }
        ring
    }

    fn texts(replay: &Replay) -> Vec<&str> {
        replay
            .frames
            .iter()
            .map(|f| std::str::from_utf8(f).unwrap())
            .collect()
    }

    #[test]
    fn resume_points_are_searched_and_trims_are_known() {
        let ring = ring(None);
        let (replay, live_after) = ring.after(Resume::AfterStream(key(12, 0)));
        assert_eq!(
            (texts(&replay), replay.gap, live_after),
            (vec!["15-4"], None, None)
        );
        // Between two ids: what follows.
        let (replay, _) = ring.after(Resume::AfterStream(key(11, 7)));
        assert_eq!(texts(&replay), ["12-0", "15-4"]);
        // 10-0 was trimmed here: a client at it missed nothing, one before it
        // missed 10-0.
        let (replay, _) = ring.after(Resume::AfterStream(key(10, 0)));
        assert_eq!(
            (texts(&replay), replay.gap),
            (vec!["10-1", "12-0", "15-4"], None)
        );
        let (replay, _) = ring.after(Resume::AfterStream(key(9, 5)));
        assert_eq!(texts(&replay), ["10-1", "12-0", "15-4"]);
        assert_eq!(
            replay.gap,
            Some(Gap::StreamTrimmed {
                last: key(9, 5),
                oldest: key(10, 1)
            })
        );
        // The newest trimmed one itself misses nothing.
        let mut ring4 = ring;
        ring4.push(key(16, 0), Bytes::from("16-0"));
        let (replay, _) = ring4.after(Resume::AfterStream(key(10, 1)));
        assert_eq!(
            (texts(&replay), replay.gap),
            (vec!["12-0", "15-4", "16-0"], None)
        );
    }

    #[test]
    fn ahead_ids_wait_for_the_tail_unless_far_ahead() {
        let ring = ring(None);
        let (replay, live_after) = ring.after(Resume::AfterStream(key(20, 0)));
        assert_eq!(
            (replay.frames.len(), replay.gap, live_after),
            (0, None, Some(key(20, 0)))
        );
        let far = key(15 + 1_000_000, 0);
        let (replay, live_after) = ring.after(Resume::AfterStream(far));
        assert_eq!(replay.frames.len(), 3);
        assert_eq!(live_after, None);
        assert!(matches!(replay.gap, Some(Gap::StreamAhead { .. })));
        let (replay, _) = ring.after(Resume::After(3));
        assert_eq!(replay.gap, Some(Gap::Foreign));
    }

    #[test]
    fn a_loaded_window_knows_what_came_before_it() {
        let mut ring = StreamRing::new(
            ReplayWindow {
                events: 10,
                bytes: usize::MAX,
            },
            Some(key(5, 0)),
        );
        ring.push(key(7, 0), Bytes::from("7-0"));
        let (replay, _) = ring.after(Resume::AfterStream(key(4, 0)));
        assert!(matches!(replay.gap, Some(Gap::StreamTrimmed { .. })));
        let (replay, _) = ring.after(Resume::AfterStream(key(5, 0)));
        assert_eq!((texts(&replay), replay.gap), (vec!["7-0"], None));
    }
}
