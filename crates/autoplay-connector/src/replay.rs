//! The replay window: the newest frames of a product, by id, for clients that
//! resume with `Last-Event-ID`.
//!
//! Bounded by a count and by bytes ([`ReplayWindow`]), whichever is reached
//! first; the newest frame always stays, whatever its size, so a client resuming
//! just before it still gets it. Ids in the window are consecutive (every
//! backend appends them in order), so finding a resume point is arithmetic.

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
            Ok(text) => text.parse().map_or(Self::Foreign, Self::After),
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
            Resume::Foreign => return self.whole(Gap::Foreign),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_values() {
        assert_eq!(Resume::from_header(None), Resume::Live);
        assert_eq!(Resume::from_header(Some(b" ")), Resume::Live);
        assert_eq!(Resume::from_header(Some(b" 42 ")), Resume::After(42));
        assert_eq!(
            Resume::from_header(Some(b"1700000000000-0")),
            Resume::Foreign
        );
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
