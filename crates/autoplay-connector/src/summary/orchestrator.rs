//! When a summary is written and where it goes: spawned off the ingest path,
//! published on the product's stream in its session's order, resumed after a
//! restart, and idle sessions forgotten.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use autoplay_sdk::models::{
    ACTIONS_TYPE, ActionsPayload, CompactString, SUMMARY_TYPE, SummaryPayload,
};

use super::tracker::DueSummary;
use crate::extract::format_rfc3339;
use crate::frames;
use crate::ingest::unix_now;
use crate::metrics;
use crate::server::{AppState, Product};
use crate::store::Ticket;

/// `ingest::publish_actions` on a store that counts sessions itself (Redis, shared
/// by every replica): the payload's last frame carries its session's actions,
/// and the store says, atomically with the append, whether a summary fell due.
pub(crate) fn publish_counted(
    state: &Arc<AppState>,
    product: &Arc<Product>,
    payload: &ActionsPayload,
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
            ticket = product.log.append(ACTIONS_TYPE, &json).1;
            continue;
        };
        let (written, due) = product.log.append_counting(ACTIONS_TYPE, &json, delta);
        ticket = written;
        if let Some(due) = due {
            let (state, product) = (state.clone(), product.clone());
            let session_id: CompactString = payload.session_id.clone().unwrap_or_default();
            tokio::spawn(async move {
                if let Ok(Some(due)) = due.await {
                    let due = state.sessions.due_elsewhere(&product.id, session_id, due);
                    spawn_summary(state, product, due);
                }
            });
        }
    }
    ticket
}

/// Writes a due summary in its own task and publishes it in its session's order.
pub(crate) fn spawn_summary(state: Arc<AppState>, product: Arc<Product>, due: DueSummary) {
    tokio::spawn(async move {
        let summary = state.summariser.summarise(&due.session).await;
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
        let written = if state.store.is_durable() {
            state.sessions.published(&product.id, session_id, |record| {
                product.log.append_with_session(
                    SUMMARY_TYPE,
                    &json,
                    record.map(|r| (session_id, r)),
                )
            })
        } else {
            product.log.append(SUMMARY_TYPE, &json).1
        };
        // The next summary of the session goes once this one is in the log's
        // order; it need not wait for the disk.
        state.metrics.summaries.fetch_add(1, Ordering::Relaxed);
        let _ = due.published.send(());
        let _ = state.store.durable(written).await;
    });
}

/// Takes back what a durable store kept: learnt emails, pending sessions, and
/// writes the summaries that were due when the connector stopped.
pub(crate) fn resume_pending(state: &Arc<AppState>) {
    let restored = state.store.take_restored();
    for (product_id, user_id, email) in restored.emails {
        if let Some(product) = state.products.get(&product_id) {
            state.emails.restore(product.id.clone(), user_id, email);
        }
    }
    let mut resumed = 0;
    for (product_id, session_id, record) in restored.sessions {
        let Some(product) = state.products.get(&product_id) else {
            continue;
        };
        for due in state
            .sessions
            .restore(product.id.clone(), session_id.into(), record)
        {
            resumed += 1;
            spawn_summary(state.clone(), product.clone(), due);
        }
    }
    if resumed > 0 {
        tracing::info!(
            summaries = resumed,
            "writing the summaries that were due when the connector stopped"
        );
    }
}

/// Forgets idle sessions and emails, a few times per idle period.
pub(crate) async fn sweep_idle(state: Arc<AppState>) {
    let idle = state.session_idle_timeout;
    let every = (idle / 4).clamp(Duration::from_millis(5), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let evicted = state.sessions.evict_idle(idle);
        for (product_id, session_id) in &evicted {
            let _ = state.store.put_session(product_id, session_id, None);
        }
        for (product_id, user_id) in state.emails.evict_idle(idle) {
            let _ = state.store.put_email(&product_id, &user_id, None);
        }
        if !evicted.is_empty() {
            metrics::add(&state.metrics.sessions_evicted, evicted.len());
        }
    }
}
