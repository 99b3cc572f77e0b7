//! Counts actions per (product, session) and says when a summary is due.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::models::{ActionsPayload, CompactString, SlimAction};
use tokio::sync::oneshot;

use crate::store::SessionRecord;

/// Actions of one session waiting to be summarised.
#[derive(Debug, Clone)]
pub struct SessionActions {
    /// The session.
    pub session_id: CompactString,
    /// Its user, when known.
    pub user_id: Option<CompactString>,
    /// Its user's email, when known.
    pub email: Option<CompactString>,
    /// The actions, oldest first.
    pub actions: Vec<SlimAction>,
}

struct SessionState {
    user_id: Option<CompactString>,
    email: Option<CompactString>,
    pending: Vec<SlimAction>,
    /// With a durable store only: the batches whose summary fell due and is
    /// not out yet, oldest first, so a restart can still write them.
    due: VecDeque<Vec<SlimAction>>,
    last_seen: Instant,
    /// Resolves once the session's latest summary is published.
    last_summary: Option<oneshot::Receiver<()>>,
}

impl SessionState {
    fn new() -> Self {
        Self {
            user_id: None,
            email: None,
            pending: Vec::new(),
            due: VecDeque::new(),
            last_seen: Instant::now(),
            last_summary: None,
        }
    }

    fn record(&self) -> SessionRecord {
        SessionRecord {
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            due: self.due.iter().cloned().collect(),
            pending: self.pending.clone(),
        }
    }

    /// The next summary of this session, on `actions`.
    fn fall_due(&mut self, session_id: CompactString, actions: Vec<SlimAction>) -> DueSummary {
        let (published, next) = oneshot::channel();
        DueSummary {
            session: SessionActions {
                session_id,
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                actions,
            },
            after: self.last_summary.replace(next),
            published,
        }
    }
}

/// A summary that fell due, with its place in the session's order.
///
/// Summaries are written in their own tasks, and an LLM may answer a later request
/// before an earlier one; a session's summaries are still published in the order
/// they fell due: each waits for the previous one (which its writer's timeout
/// bounds) before it goes out.
pub(crate) struct DueSummary {
    /// The actions to summarise.
    pub session: SessionActions,
    /// Resolves when the session's previous summary is out (or was given up).
    pub after: Option<oneshot::Receiver<()>>,
    /// Sent, or dropped, once this summary is out, to let the next one go.
    pub published: oneshot::Sender<()>,
}

/// (product, session).
pub(crate) type SessionKey = (Arc<str>, CompactString);

/// Counts actions per (product, session) and says when a summary is due.
#[derive(Default)]
pub(crate) struct SessionTracker {
    sessions: Mutex<HashMap<SessionKey, SessionState>>,
    /// Whether the store keeps session state: then the tracker also keeps the
    /// batches due but not yet summarised, for [`SessionTracker::write_state`].
    durable: bool,
}

impl SessionTracker {
    /// Adds a payload's actions; returns the batch to summarise once `threshold`
    /// actions are pending (all pending ones, so `replaces` can exceed the
    /// threshold when a payload crosses it).
    pub fn record(
        &self,
        product_id: &Arc<str>,
        threshold: usize,
        payload: &ActionsPayload,
    ) -> Option<DueSummary> {
        if threshold == 0 || payload.actions.is_empty() {
            return None;
        }
        let session_id = payload.session_id.clone()?;
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id.clone(), session_id.clone()))
            .or_insert_with(SessionState::new);
        state.last_seen = Instant::now();
        if payload.user_id.is_some() {
            state.user_id = payload.user_id.clone();
        }
        if payload.email.is_some() {
            state.email = payload.email.clone();
        }
        state.pending.extend(payload.actions.iter().cloned());
        if state.pending.len() < threshold {
            return None;
        }
        let actions = std::mem::take(&mut state.pending);
        if self.durable {
            state.due.push_back(actions.clone());
        }
        Some(state.fall_due(session_id, actions))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, SessionState>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tracker that keeps what a durable store needs ([`Self::write_state`]).
    pub fn durable() -> Self {
        Self {
            durable: true,
            ..Self::default()
        }
    }

    /// Hands the session's state, as a durable store keeps it, to `write`,
    /// under the tracker's lock: the writes of one session reach the store in
    /// the order of its changes, so an older state never overwrites a newer one.
    pub fn write_state<T>(
        &self,
        product_id: &Arc<str>,
        session_id: &str,
        write: impl FnOnce(SessionRecord) -> T,
    ) -> Option<T> {
        let sessions = self.lock();
        let state = sessions.get(&(product_id.clone(), session_id.into()))?;
        Some(write(state.record()))
    }

    /// The session's oldest due summary is out: `write` gets its state now
    /// (`None` when it was forgotten meanwhile), under the lock as in
    /// [`Self::write_state`].
    pub fn published<T>(
        &self,
        product_id: &Arc<str>,
        session_id: &str,
        write: impl FnOnce(Option<SessionRecord>) -> T,
    ) -> T {
        let mut sessions = self.lock();
        let record = sessions
            .get_mut(&(product_id.clone(), session_id.into()))
            .map(|state| {
                state.due.pop_front();
                state.record()
            });
        write(record)
    }

    /// Takes back a session a durable store kept; returns the summaries that
    /// were due and not yet out, in order, to write now.
    pub fn restore(
        &self,
        product_id: Arc<str>,
        session_id: CompactString,
        record: SessionRecord,
    ) -> Vec<DueSummary> {
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id, session_id.clone()))
            .or_insert_with(SessionState::new);
        state.user_id = record.user_id;
        state.email = record.email;
        state.pending = record.pending;
        let mut due = Vec::new();
        for actions in record.due {
            if self.durable {
                state.due.push_back(actions.clone());
            }
            due.push(state.fall_due(session_id.clone(), actions));
        }
        due
    }

    /// A batch the store counted and found due (Redis, whose sessions every
    /// replica shares), put in this replica's order of the session's summaries.
    pub fn due_elsewhere(
        &self,
        product_id: &Arc<str>,
        session_id: CompactString,
        due: crate::store::redis::SharedDue,
    ) -> DueSummary {
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id.clone(), session_id.clone()))
            .or_insert_with(SessionState::new);
        state.last_seen = Instant::now();
        state.user_id = due.user_id.map(Into::into);
        state.email = due.email.map(Into::into);
        state.fall_due(session_id, due.actions)
    }

    /// Forgets sessions idle for longer than `idle`; returns which.
    pub fn evict_idle(&self, idle: Duration) -> Vec<SessionKey> {
        let mut sessions = self.lock();
        let mut evicted = Vec::new();
        sessions.retain(|key, state| {
            let keep = state.last_seen.elapsed() < idle;
            if !keep {
                evicted.push(key.clone());
            }
            keep
        });
        evicted
    }

    /// Sessions tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::action;

    #[test]
    fn threshold_and_eviction() {
        let tracker = SessionTracker::default();
        let product: Arc<str> = Arc::from("p");
        let payload = |n: usize| ActionsPayload {
            session_id: Some("s1".into()),
            actions: (0..n).map(|_| action("click", "x")).collect(),
            ..ActionsPayload::default()
        };
        assert!(tracker.record(&product, 3, &payload(2)).is_none());
        let due = tracker.record(&product, 3, &payload(2)).unwrap();
        assert_eq!(due.session.actions.len(), 4);
        assert!(
            due.after.is_none(),
            "the session's first summary waits for none"
        );
        assert!(tracker.record(&product, 3, &payload(1)).is_none());
        let mut next = tracker.record(&product, 3, &payload(2)).unwrap();
        let mut after = next.after.take().expect("the second waits for the first");
        assert!(after.try_recv().is_err(), "the first is not out yet");
        due.published.send(()).unwrap();
        assert!(after.try_recv().is_ok());
        assert!(tracker.record(&product, 0, &payload(10)).is_none());
        assert_eq!(tracker.len(), 1);
        assert!(tracker.evict_idle(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tracker.evict_idle(Duration::from_millis(1)).len(), 1);
        assert_eq!(tracker.len(), 0);
    }
}
