//! When a summary is written and where it goes. The ingest path hands each
//! payload over ([`append_actions`]): its actions go on the product's stream and
//! are counted toward the session's next summary, by this process's tracker or,
//! on Redis, by the store atomically with the append. A summary that falls due is
//! written in its own task, off the ingest path, and published on the stream in
//! its session's order. After a restart the summaries a durable store kept due
//! are written ([`resume_pending`]); on Redis, each replica also takes over,
//! at start and then periodically, the due batches another replica did not
//! write within their lease (it stopped), and writes them. Idle sessions are
//! forgotten ([`forget_idle`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use autoplay_sdk::models::{
    ACTIONS_TYPE, ActionsPayload, CompactString, SUMMARY_TYPE, SummaryPayload,
};

use super::tracker::DueSummary;
use crate::clock::unix_now;
use crate::extract::format_rfc3339;
use crate::frames;
use crate::metrics;
use crate::server::{AppState, Product};
use crate::store::{SessionRecord, Ticket};

/// Appends a payload the ingest path has stamped to its product's stream, and
/// counts its actions toward its session's next summary; a summary that falls
/// due is written in its own task. The ticket covers the actions and the
/// session state written with them ([`Store::durable`](crate::store::Store::durable)).
pub(crate) fn append_actions(
    state: &Arc<AppState>,
    product: &Arc<Product>,
    payload: &ActionsPayload,
    once: Option<&crate::store::redis::Once>,
) -> Ticket {
    if state.store.counts_sessions() {
        return append_counted(state, product, payload, once);
    }
    let mut ticket = Ticket::default();
    for json in frames::actions_frames(payload, state.max_frame_bytes, &state.metrics) {
        let (_, written) = product.log.append(ACTIONS_TYPE, &json);
        ticket = written;
    }

    let sessions = &state.summaries.sessions;
    let due = sessions.record(&product.id, product.summary_threshold, payload);
    // After the actions, so a restart never has a session's state ahead of
    // its stream.
    if state.store.is_durable()
        && product.summary_threshold > 0
        && let Some(session_id) = payload.session_id.as_deref()
        && let Some(written) = sessions.write_state(&product.id, session_id, |record| {
            state
                .store
                .put_session(&product.id, session_id, Some(record))
        })
    {
        ticket = written;
    }
    if let Some(due) = due {
        spawn_summary(state.clone(), product.clone(), due, None);
    }
    ticket
}

/// [`append_actions`] on a store that counts sessions itself (Redis, shared
/// by every replica): the payload's last frame carries its session's actions,
/// and the store says, atomically with the append, whether a summary fell due.
fn append_counted(
    state: &Arc<AppState>,
    product: &Arc<Product>,
    payload: &ActionsPayload,
    once: Option<&crate::store::redis::Once>,
) -> Ticket {
    let frames = frames::actions_frames(payload, state.max_frame_bytes, &state.metrics);
    let mut ticket = Ticket::default();
    let last = frames.len().saturating_sub(1);
    for (i, json) in frames.into_iter().enumerate() {
        let delta = (i == last && product.summary_threshold > 0)
            .then_some(payload.session_id.as_deref())
            .flatten()
            .map(|session_id| crate::store::redis::SessionDelta {
                session_id: session_id.to_owned(),
                user_id: payload.user_id.as_deref().map(str::to_owned),
                email: payload.email.as_deref().map(str::to_owned),
                actions: payload
                    .actions
                    .iter()
                    .filter_map(|a| serde_json::to_string(a).ok())
                    .collect(),
                threshold: product.summary_threshold,
                idle: state.session_idle_timeout,
            });
        let Some(delta) = delta else {
            ticket = product.log.append_once(ACTIONS_TYPE, &json, once);
            continue;
        };
        let (written, due) = product
            .log
            .append_counting(ACTIONS_TYPE, &json, delta, once);
        ticket = written;
        if let Some(due) = due {
            let (state, product) = (state.clone(), product.clone());
            let session_id: CompactString = payload.session_id.clone().unwrap_or_default();
            tokio::spawn(async move {
                if let Ok(Some(due)) = due.await {
                    let claim = due.claim();
                    let due = state
                        .summaries
                        .sessions
                        .due_elsewhere(&product.id, session_id, due);
                    spawn_summary(state, product, due, Some(claim));
                }
            });
        }
    }
    ticket
}

/// Writes a due summary in its own task and publishes it in its session's
/// order; `claim`: the Redis store's batch it summarises, held by this replica.
fn spawn_summary(
    state: Arc<AppState>,
    product: Arc<Product>,
    due: DueSummary,
    claim: Option<crate::store::redis::Claim>,
) {
    tokio::spawn(async move {
        let summary = state.summaries.summariser.summarise(&due.session).await;
        if let Some(previous) = due.after {
            // An error only means the previous summary's task ended without
            // publishing; either way this one may go now.
            let _ = previous.await;
        }
        let now = unix_now();
        let payload = SummaryPayload {
            product_id: Some(product.config.id.as_str().into()),
            session_id: Some(due.session.session_id.clone()),
            summary: summary.into(),
            replaces: due.session.actions.len() as u64,
            ts: Some(format_rfc3339(now).into()),
            forwarded_at: Some(now),
        };
        let json = frames::summary_frame(payload, state.max_frame_bytes);
        let session_id = due.session.session_id.as_str();
        // Not when another replica publishes it (or did).
        let mut published = true;
        let written = if state.store.is_durable() {
            state
                .summaries
                .sessions
                .published(&product.id, session_id, |record| {
                    product.log.append_with_session(
                        SUMMARY_TYPE,
                        &json,
                        record.map(|r| (session_id, r)),
                    )
                })
        } else if let Some(claim) = &claim {
            // Counted in Redis: after the session's previous summary,
            // whichever replica writes it, and only if the batch is still ours.
            match product
                .log
                .append_summary(SUMMARY_TYPE, &json, session_id, claim)
                .await
            {
                Ok(appended) => published = appended,
                Err(error) => {
                    // Still pending in Redis: taken over once its lease expires.
                    tracing::warn!(session_id, %error, "a summary could not be published");
                    published = false;
                }
            }
            Ticket::default()
        } else {
            product.log.append(SUMMARY_TYPE, &json).1
        };
        // The next summary of the session goes once this one is in the log's
        // order; it need not wait for the disk.
        if published {
            state.metrics.summaries.fetch_add(1, Ordering::Relaxed);
        }
        let _ = due.published.send(());
        let _ = state.store.durable(written).await;
    });
}

/// Takes back the sessions a durable store kept (`(product, session, state)`),
/// and writes the summaries that were due when the connector stopped.
pub(crate) fn resume_pending(state: &Arc<AppState>, kept: Vec<(String, String, SessionRecord)>) {
    let mut resumed = 0;
    for (product_id, session_id, record) in kept {
        let Some(product) = state.products.get(&product_id) else {
            continue;
        };
        for due in state
            .summaries
            .sessions
            .restore(product.id.clone(), session_id.into(), record)
        {
            resumed += 1;
            spawn_summary(state.clone(), product.clone(), due, None);
        }
    }
    if resumed > 0 {
        tracing::info!(
            summaries = resumed,
            "writing the summaries that were due when the connector stopped"
        );
    }
    if let Some((every, lease)) = state.store.claim_schedule() {
        tokio::spawn(claim_expired(state.clone(), every, lease));
    }
}

/// On Redis: every `every` (the first time at once, so a replica starting
/// takes over what a stopped one left), takes over the due batches of each
/// product that their replica did not write within `lease`, and writes them.
/// Stops with the connector.
async fn claim_expired(state: Arc<AppState>, every: Duration, lease: Duration) {
    // Where each product's scan of its due batches goes on from.
    let mut cursors: std::collections::HashMap<Arc<str>, String> = Default::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Also while Redis is slow to answer, the connector stopping ends it.
        let claim = async {
            let products = state.products.all();
            cursors.retain(|id, _| products.iter().any(|p| p.id == *id));
            for product in products {
                let cursor = cursors
                    .entry(product.id.clone())
                    .or_insert_with(|| "0-0".to_owned());
                let claimed = product.log.claim_expired(cursor).await;
                if !claimed.is_empty() {
                    // A replica stopped (or is too slow) with these in hand.
                    tracing::warn!(
                        product_id = &*product.id,
                        summaries = claimed.len(),
                        ?lease,
                        "writing summaries whose replica did not write them within the lease"
                    );
                }
                for batch in claimed {
                    let claim = batch.claim();
                    spawn_summary(
                        state.clone(),
                        product.clone(),
                        taken_over(batch),
                        Some(claim),
                    );
                }
            }
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = claim => {}
        }
    }
}

/// A batch taken over from another replica, to write now: Redis orders it
/// among its session's summaries (by its place), so it waits for none of
/// this replica's (which may be waiting for it).
fn taken_over(batch: crate::store::redis::SharedDue) -> DueSummary {
    DueSummary {
        session: crate::summary::SessionActions {
            session_id: batch.session_id.as_str().into(),
            user_id: batch.user_id.map(Into::into),
            email: batch.email.map(Into::into),
            actions: batch.actions,
        },
        after: None,
        published: tokio::sync::oneshot::channel().0,
    }
}

/// Forgets the sessions idle for longer than `idle`, with their pending
/// actions, here and in the store.
pub(crate) fn forget_idle(state: &AppState, idle: Duration) {
    let evicted = state.summaries.sessions.evict_idle(idle);
    for (product_id, session_id) in &evicted {
        let _ = state.store.put_session(product_id, session_id, None);
    }
    if !evicted.is_empty() {
        metrics::add(&state.metrics.sessions_evicted, evicted.len());
    }
}
