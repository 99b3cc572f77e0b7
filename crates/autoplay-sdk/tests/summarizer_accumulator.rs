//! SessionAccumulator and the summarizers on it: due batches, prompts, failures kept
//! for the next try, max_sessions, context, reset, active sessions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use autoplay_sdk::summarizer::{
    AsyncSessionSummarizer, SessionAccumulator, SessionSummarizer, format_actions,
};
use autoplay_sdk::{ActionsPayload, SlimAction};

fn payload(session: &str, actions: &[&str]) -> ActionsPayload {
    ActionsPayload {
        session_id: Some(session.into()),
        product_id: Some("prod".into()),
        actions: actions
            .iter()
            .map(|a| SlimAction {
                description: (*a).into(),
                canonical_url: "/u".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn push_returns_the_due_batch_and_conclude_makes_the_summary() {
    let acc = SessionAccumulator::new(3, "A:\n{actions}", None).unwrap();
    assert!(acc.push(&payload("s", &["a", "b"])).is_none());
    assert_eq!(acc.pending("s"), 2);
    assert_eq!(acc.context("s"), "1. a \u{2014} /u\n2. b \u{2014} /u");
    let batch = acc.push(&payload("s", &["c", "d"])).expect("due at 4 >= 3");
    assert_eq!(
        (
            batch.session_id(),
            batch.action_count(),
            batch.payloads().len()
        ),
        ("s", 4, 2)
    );
    assert_eq!(acc.pending("s"), 0);
    assert_eq!(
        acc.prompt(&batch),
        "A:\n1. a \u{2014} /u\n2. b \u{2014} /u\n3. c \u{2014} /u\n4. d \u{2014} /u"
    );
    assert_eq!(acc.prompt_with("X"), "A:\nX");
    let summary = acc.conclude(batch, Ok("  sum \n".into())).unwrap();
    assert_eq!(summary.summary, "sum");
    assert_eq!(summary.replaces, 4);
    assert_eq!(summary.session_id.as_deref(), Some("s"));
    assert_eq!(summary.product_id.as_deref(), Some("prod"));
}

#[test]
fn a_failed_llm_keeps_the_batch_in_front_of_newer_actions() {
    let acc = SessionAccumulator::new(2, "{actions}", None).unwrap();
    let batch = acc.push(&payload("s", &["a", "b"])).unwrap();
    // more arrives while the LLM call is under way
    assert!(acc.push(&payload("s", &["c"])).is_none());
    assert!(acc.conclude(batch, Err("503".into())).is_none());
    assert_eq!(acc.pending("s"), 3);
    assert_eq!(
        format_actions(&acc.pending_payloads("s")),
        "1. a \u{2014} /u\n2. b \u{2014} /u\n3. c \u{2014} /u"
    );
    // the next push retries with everything
    let batch = acc.push(&payload("s", &["d"])).unwrap();
    assert_eq!(batch.action_count(), 4);
}

#[test]
fn a_failing_llm_cannot_grow_memory() {
    let acc = SessionAccumulator::new(2, "{actions}", None).unwrap();
    for _ in 0..50 {
        if let Some(batch) = acc.push(&payload("s", &["a"])) {
            acc.conclude(batch, Err("down".into()));
        }
    }
    assert!(acc.pending("s") <= 8, "{}", acc.pending("s"));
}

#[test]
fn max_sessions_forgets_the_least_recently_used() {
    let acc = SessionAccumulator::new(10, "{actions}", Some(2)).unwrap();
    acc.push(&payload("a", &["x"]));
    acc.push(&payload("b", &["x"]));
    acc.push(&payload("a", &["x"]));
    acc.push(&payload("c", &["x"]));
    assert_eq!(acc.active_sessions(), vec!["a", "c"]);
    assert_eq!(acc.pending("a"), 2);
    assert_eq!(acc.pending("b"), 0);
    assert!(SessionAccumulator::new(10, "{actions}", Some(0)).is_err());
    assert!(SessionAccumulator::new(0, "{actions}", None).is_err());
    assert!(SessionAccumulator::new(1, "no placeholder", None).is_err());
}

#[test]
fn reset_take_and_take_all() {
    let acc = SessionAccumulator::new(10, "{actions}", None).unwrap();
    acc.push(&payload("a", &["x"]));
    acc.push(&payload("b", &["y", "z"]));
    acc.reset("a");
    assert_eq!(acc.active_sessions(), vec!["b"]);
    assert!(acc.take("a").is_none());
    acc.push(&payload("c", &["w"]));
    let all = acc.take_all();
    let ids: Vec<&str> = all.iter().map(|b| b.session_id()).collect();
    assert_eq!(ids, vec!["b", "c"]);
    assert_eq!(acc.session_count(), 0);
}

#[test]
fn the_sync_summarizer_retries_after_a_failure() {
    let fail = std::sync::Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let got = std::sync::Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let g = got.clone();
    let summarizer = SessionSummarizer::builder(move |prompt: &str| {
        if f.load(Ordering::SeqCst) {
            Err("down")
        } else {
            Ok(format!("{} lines", prompt.lines().count()))
        }
    })
    .threshold(2)
    .prompt("{actions}")
    .max_sessions(100)
    .on_summary(move |s, t| g.lock().unwrap().push((s.to_owned(), t.to_owned())))
    .build()
    .unwrap();
    assert!(summarizer.add(&payload("s", &["a", "b"])).is_none());
    assert_eq!(summarizer.pending("s"), 2);
    fail.store(false, Ordering::SeqCst);
    let summary = summarizer.add(&payload("s", &["c"])).unwrap();
    assert_eq!(summary.replaces, 3);
    assert_eq!(
        *got.lock().unwrap(),
        vec![("s".to_owned(), "3 lines".to_owned())]
    );
    assert_eq!(
        summarizer.accumulator().active_sessions(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_async_summarizer_retries_after_a_failure() {
    let fail = std::sync::Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let summarizer = AsyncSessionSummarizer::builder(move |prompt: String| {
        let fail = f.load(Ordering::SeqCst);
        async move {
            if fail {
                Err("down".to_owned())
            } else {
                Ok(prompt)
            }
        }
    })
    .threshold(1)
    .prompt("{actions}")
    .build()
    .unwrap();
    assert!(summarizer.add(&payload("s", &["a"])).await.is_none());
    fail.store(false, Ordering::SeqCst);
    let summary = summarizer.add(&payload("s", &["b"])).await.unwrap();
    assert_eq!(summary.summary, "1. a \u{2014} /u\n2. b \u{2014} /u");
}

#[test]
fn rag_ids_and_metadata_are_the_published_packages() {
    use autoplay_sdk::SummaryPayload;
    use autoplay_sdk::rag::{RagMetadata, RagPipeline};
    let upserts = std::sync::Arc::new(Mutex::new(Vec::<(String, RagMetadata)>::new()));
    let u = upserts.clone();
    let pipeline = RagPipeline::new(
        |_: &str| Ok::<_, String>(vec![0.0]),
        move |id: &str, _v: Vec<f32>, meta: RagMetadata| {
            u.lock().unwrap().push((id.to_owned(), meta));
            Ok::<_, String>(())
        },
    );
    let mut p = payload("s", &["a"]);
    p.forwarded_at = Some(1700000000.0);
    pipeline.on_actions(&p);
    p.forwarded_at = Some(1700000000.25);
    pipeline.on_actions(&p);
    pipeline.on_summary(&SummaryPayload {
        session_id: None,
        summary: "x".into(),
        forwarded_at: Some(1.5),
        ..Default::default()
    });
    pipeline.on_client_summary(&SummaryPayload {
        session_id: Some("s".into()),
        summary: "rolling".into(),
        ..Default::default()
    });
    let ids: Vec<String> = upserts
        .lock()
        .unwrap()
        .iter()
        .map(|(i, _)| i.clone())
        .collect();
    // Python prints floats with their `.0`: the ids match 0.13.0's f-strings.
    assert_eq!(
        ids,
        vec![
            "s:actions:1700000000.0",
            "s:actions:1700000000.25",
            "unknown:summary:1.5",
            "s:client-summary"
        ]
    );
    let metas: Vec<RagMetadata> = upserts
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(metas[0].forwarded_at, Some(1700000000.0));
    assert_eq!(metas[2].session_id, "unknown");
    assert_eq!(metas[3].kind, "ClientSummary");
}
