//! Keeps every SSE frame under [`ConnectorConfig::max_frame_bytes`].
//!
//! A frame bigger than a client's event limit can never be read: the client
//! drops the connection, reconnects, gets it replayed, and is stuck on it for as
//! long as it stays in the replay window. So a batch too big for one frame goes
//! out as several payloads of the same session, in order, each under the limit.
//! An action too big on its own loses its `properties`; one still too big is
//! dropped and counted (only `POST /events` can send such, with megabyte titles).
//!
//! [`ConnectorConfig::max_frame_bytes`]: crate::ConnectorConfig::max_frame_bytes

use autoplay_sdk::models::{ActionsPayload, Properties, SlimAction, SummaryPayload};
use tracing::warn;

use crate::metrics::{self, Metrics};

/// What a frame adds around its JSON (see [`autoplay_sdk::wire::encode_frame`]).
pub(crate) const FRAME_OVERHEAD: usize = autoplay_sdk::wire::MAX_FRAME_OVERHEAD;

/// Room left for a payload's `ts` and `count` to differ between the whole batch
/// and a part of it.
const ENVELOPE_SLACK: usize = 96;

/// The stream JSON of `payload`, as one frame or as several (each a payload of the
/// same session with a run of its actions, in order) so that every frame fits in
/// `max_frame_bytes`.
pub(crate) fn actions_frames(
    payload: &ActionsPayload,
    max_frame_bytes: usize,
    metrics: &Metrics,
) -> Vec<String> {
    let json = payload.to_stream_json();
    if json.len() + FRAME_OVERHEAD <= max_frame_bytes {
        return vec![json];
    }
    drop(json);
    let envelope = ActionsPayload {
        actions: Vec::new(),
        ..payload.clone()
    };
    let budget = max_frame_bytes
        .saturating_sub(FRAME_OVERHEAD + ENVELOPE_SLACK + envelope.to_stream_json().len());

    let mut frames = Vec::new();
    let mut part: Vec<SlimAction> = Vec::new();
    let mut used = 0;
    let flush = |part: &mut Vec<SlimAction>, frames: &mut Vec<String>| {
        if part.is_empty() {
            return;
        }
        let actions = std::mem::take(part);
        let chunk = ActionsPayload {
            ts: actions
                .last()
                .and_then(|a| a.ts.clone())
                .or_else(|| envelope.ts.clone()),
            actions,
            ..envelope.clone()
        };
        frames.push(chunk.to_stream_json());
    };
    for action in &payload.actions {
        let mut action = action.clone();
        // The separating comma counts too.
        let mut size = action.to_stream_json().len() + 1;
        if size > budget && !action.properties.is_empty() {
            action.properties = Properties::default();
            size = action.to_stream_json().len() + 1;
        }
        if size > budget {
            metrics::inc(&metrics.oversized_actions);
            warn!(
                session_id = payload.session_id.as_deref(),
                bytes = size,
                max_frame_bytes,
                "an action is larger than a frame may be, even without its properties; dropping it"
            );
            continue;
        }
        if used + size > budget {
            flush(&mut part, &mut frames);
            used = 0;
        }
        used += size;
        part.push(action);
    }
    flush(&mut part, &mut frames);
    if frames.len() > 1 {
        metrics::inc(&metrics.split_payloads);
    }
    frames
}

/// The JSON of a summary, its text cut (at a character, with `…`) when the whole
/// would not fit in a frame.
pub(crate) fn summary_frame(mut payload: SummaryPayload, max_frame_bytes: usize) -> String {
    let json = payload.to_json();
    let over = (json.len() + FRAME_OVERHEAD).saturating_sub(max_frame_bytes);
    if over == 0 {
        return json;
    }
    // JSON escaping can make the text longer on the wire than in memory (up to
    // 6 bytes for 1), so cut until it fits rather than by arithmetic once.
    let mut keep = payload.summary.len().saturating_sub(over);
    loop {
        while !payload.summary.is_char_boundary(keep) {
            keep -= 1;
        }
        let mut cut = payload.summary[..keep].to_owned();
        cut.push('\u{2026}');
        let candidate = SummaryPayload {
            summary: cut.into(),
            ..payload.clone()
        };
        let json = candidate.to_json();
        if json.len() + FRAME_OVERHEAD <= max_frame_bytes || keep == 0 {
            payload = candidate;
            break payload.to_json();
        }
        keep = keep.saturating_sub((json.len() + FRAME_OVERHEAD - max_frame_bytes).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoplay_sdk::models::Event;

    fn batch(n: usize, title_len: usize) -> ActionsPayload {
        ActionsPayload {
            product_id: Some("acme".into()),
            session_id: Some("s".into()),
            user_id: Some("u".into()),
            actions: (0..n)
                .map(|i| SlimAction {
                    event_type: "click".into(),
                    title: "t".repeat(title_len).into(),
                    index: Some(i as u64),
                    ts: Some(format!("2024-01-15T10:30:{:02}.000Z", i % 60).into()),
                    ..SlimAction::default()
                })
                .collect(),
            ..ActionsPayload::default()
        }
    }

    fn decode(json: &str) -> ActionsPayload {
        match Event::from_json(json).unwrap() {
            Event::Actions(p) => p,
            Event::Summary(_) => panic!("a summary"),
        }
    }

    #[test]
    fn a_small_batch_is_one_frame() {
        let metrics = Metrics::default();
        let payload = batch(3, 10);
        let frames = actions_frames(&payload, 4096, &metrics);
        assert_eq!(frames, vec![payload.to_stream_json()]);
    }

    #[test]
    fn a_big_batch_is_split_in_order_under_the_limit() {
        let metrics = Metrics::default();
        let payload = batch(500, 100);
        let max = 8192;
        let frames = actions_frames(&payload, max, &metrics);
        assert!(frames.len() > 5, "{}", frames.len());
        let mut indices = Vec::new();
        for frame in &frames {
            assert!(frame.len() + FRAME_OVERHEAD <= max, "{}", frame.len());
            let part = decode(frame);
            assert_eq!(part.session_id.as_deref(), Some("s"));
            assert_eq!(part.user_id.as_deref(), Some("u"));
            assert_eq!(part.ts, part.actions.last().unwrap().ts);
            indices.extend(part.actions.iter().map(|a| a.index.unwrap()));
        }
        assert_eq!(indices, (0..500).collect::<Vec<u64>>());
        assert_eq!(
            metrics
                .split_payloads
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn oversized_actions_lose_properties_then_go() {
        let metrics = Metrics::default();
        let mut payload = batch(3, 10);
        payload.actions[0].properties =
            Properties::from_json(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(10_000))).unwrap();
        payload.actions[2].title = "y".repeat(10_000).into();
        let frames = actions_frames(&payload, 4096, &metrics);
        assert_eq!(frames.len(), 1);
        let part = decode(&frames[0]);
        assert_eq!(part.actions.len(), 2);
        assert!(part.actions[0].properties.is_empty());
        assert_eq!(part.actions[1].index, Some(1));
        assert_eq!(
            metrics
                .oversized_actions
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn long_summaries_are_cut_to_fit() {
        let payload = SummaryPayload {
            summary: "é\"".repeat(5_000).into(),
            ..SummaryPayload::default()
        };
        let json = summary_frame(payload.clone(), 4096);
        assert!(json.len() + FRAME_OVERHEAD <= 4096, "{}", json.len());
        let Event::Summary(cut) = Event::from_json(&json).unwrap() else {
            panic!()
        };
        assert!(cut.summary.ends_with('\u{2026}'));
        assert!(
            payload
                .summary
                .starts_with(cut.summary.trim_end_matches('\u{2026}'))
        );
        let short = SummaryPayload {
            summary: "fine".into(),
            ..SummaryPayload::default()
        };
        assert_eq!(summary_frame(short.clone(), 4096), short.to_json());
    }
}
