//! EventBuffer, the session summarizers and the RAG pipelines.

use std::sync::{Arc, Mutex};

use autoplay_sdk::buffer::EventBuffer;
use autoplay_sdk::rag::{AsyncRagPipeline, RagMetadata, RagPipeline};
use autoplay_sdk::summarizer::{AsyncSessionSummarizer, SessionSummarizer};
use autoplay_sdk::{ActionsPayload, Error, Event, SlimAction, SummaryPayload};

fn batch(session: &str, titles: &[&str]) -> ActionsPayload {
    ActionsPayload {
        product_id: Some("acme".into()),
        session_id: Some(session.into()),
        actions: titles
            .iter()
            .map(|t| SlimAction {
                title: (*t).into(),
                canonical_url: format!("/{t}").into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn summary(session: &str, text: &str) -> SummaryPayload {
    SummaryPayload {
        session_id: Some(session.into()),
        summary: text.into(),
        ..Default::default()
    }
}

fn title(event: &Event) -> String {
    match event {
        Event::Actions(p) => p.actions[0].title.to_string(),
        Event::Summary(p) => p.summary.to_string(),
    }
}

#[test]
fn buffer_drops_the_oldest_when_full_and_drains_in_order() {
    let buffer: EventBuffer = EventBuffer::new(3);
    for t in ["a", "b", "c", "d"] {
        buffer.add(batch("s", &[t]));
    }
    assert_eq!(buffer.len(), 3);
    assert_eq!(buffer.size(), 3);
    assert_eq!(buffer.evicted_count(), 1);
    assert_eq!(
        buffer.peek(Some(2)).iter().map(title).collect::<Vec<_>>(),
        ["c", "d"]
    );
    assert_eq!(buffer.peek(None).len(), 3, "peek keeps everything");
    assert_eq!(
        buffer.drain().iter().map(title).collect::<Vec<_>>(),
        ["b", "c", "d"]
    );
    assert!(buffer.is_empty());
}

#[test]
fn buffer_drains_by_type_and_keeps_the_rest_in_order() {
    let buffer: EventBuffer = EventBuffer::default();
    assert_eq!(buffer.max_size(), 1000);
    buffer.add(batch("s", &["a1"]));
    buffer.add(summary("s", "s1"));
    buffer.add(batch("s", &["a2"]));
    buffer.add(summary("s", "s2"));
    let summaries = buffer.drain_by_type(false, true);
    assert_eq!(
        summaries.iter().map(title).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert_eq!(
        buffer.peek(None).iter().map(title).collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert!(buffer.drain_by_type(false, false).is_empty());
    buffer.clear();
    assert!(buffer.is_empty());
}

#[test]
fn unbounded_buffer_and_many_threads() {
    let buffer: Arc<EventBuffer> = Arc::new(EventBuffer::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let buffer = buffer.clone();
            std::thread::spawn(move || {
                for _ in 0..2500 {
                    buffer.add(batch("s", &["x"]));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(buffer.len(), 10_000);
    assert_eq!(buffer.evicted_count(), 0);
}

#[test]
fn summarizer_calls_the_llm_at_the_threshold_with_a_numbered_prompt() {
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let (p, d) = (prompts.clone(), delivered.clone());
    let summarizer = SessionSummarizer::builder(move |prompt: &str| {
        p.lock().unwrap().push(prompt.to_owned());
        Ok::<_, String>("  The user looked around.\n".to_owned())
    })
    .threshold(3)
    .prompt("Summarise:\n{actions}\nEnd.")
    .on_summary(move |session, text| {
        d.lock()
            .unwrap()
            .push((session.to_owned(), text.to_owned()))
    })
    .build()
    .unwrap();

    assert!(summarizer.add(&batch("s1", &["a", "b"])).is_none());
    assert!(summarizer.add(&batch("s2", &["z"])).is_none());
    assert_eq!(summarizer.pending("s1"), 2);
    let out = summarizer
        .add(&batch("s1", &["c", "d"]))
        .expect("threshold reached");
    assert_eq!(out.replaces, 4);
    assert_eq!(out.summary, "The user looked around.");
    assert_eq!(out.session_id.as_deref(), Some("s1"));
    assert_eq!(out.product_id.as_deref(), Some("acme"));
    assert_eq!(
        prompts.lock().unwrap()[0],
        "Summarise:\n1. a \u{2014} /a\n2. b \u{2014} /b\n3. c \u{2014} /c\n4. d \u{2014} /d\nEnd."
    );
    assert_eq!(
        delivered.lock().unwrap().clone(),
        vec![("s1".to_owned(), "The user looked around.".to_owned())]
    );
    assert_eq!(summarizer.pending("s1"), 0, "the session resets");
    assert_eq!(summarizer.pending("s2"), 1, "other sessions are untouched");
    let flushed = summarizer.flush("s2").unwrap();
    assert_eq!(flushed.replaces, 1);
    assert_eq!(summarizer.session_count(), 0);
}

#[test]
fn summarizer_keeps_the_actions_when_the_llm_fails() {
    let fail = Arc::new(Mutex::new(true));
    let f = fail.clone();
    let summarizer = SessionSummarizer::builder(move |_: &str| {
        if *f.lock().unwrap() {
            Err("provider down".to_owned())
        } else {
            Ok("ok".to_owned())
        }
    })
    .threshold(2)
    .build()
    .unwrap();
    assert!(summarizer.add(&batch("s", &["a", "b"])).is_none());
    assert_eq!(summarizer.pending("s"), 2);
    *fail.lock().unwrap() = false;
    assert_eq!(summarizer.add(&batch("s", &["c"])).unwrap().replaces, 3);
}

#[test]
fn summarizer_configuration_is_checked() {
    let llm = |_: &str| Ok::<_, String>(String::new());
    let err = SessionSummarizer::builder(llm)
        .threshold(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ref m) if m.contains("threshold")),
        "{err}"
    );
    let err = SessionSummarizer::builder(llm)
        .prompt("no placeholder")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("{actions}"), "{err}");
}

#[tokio::test]
async fn async_summarizer_and_pipeline_embed_summaries_instead_of_actions() {
    let upserts = Arc::new(Mutex::new(Vec::<(String, usize, RagMetadata)>::new()));
    let u = upserts.clone();
    let summarizer = AsyncSessionSummarizer::builder(|prompt: String| async move {
        Ok::<_, String>(format!(
            "{} actions",
            prompt
                .lines()
                .filter(|l| l.starts_with(char::is_numeric))
                .count()
        ))
    })
    .threshold(2)
    .build()
    .unwrap();
    let pipeline = AsyncRagPipeline::new(
        |text: String| async move { Ok::<_, String>(vec![text.len() as f32; 4]) },
        move |id: String, vector: Vec<f32>, meta: RagMetadata| {
            let u = u.clone();
            async move {
                u.lock().unwrap().push((id, vector.len(), meta));
                Ok::<_, String>(())
            }
        },
    )
    .with_summarizer(summarizer);

    pipeline.on_actions(&batch("s", &["a"])).await;
    assert!(
        upserts.lock().unwrap().is_empty(),
        "below the threshold nothing is embedded"
    );
    pipeline.on_actions(&batch("s", &["b"])).await;
    pipeline.on_summary(&summary("t", "server summary")).await;
    let upserts = upserts.lock().unwrap().clone();
    assert_eq!(upserts.len(), 2);
    // 0.13.0's ids: the summarizer's summary is the session's rolling client summary
    assert_eq!(upserts[0].0, "s:client-summary");
    assert_eq!(
        upserts[0].2,
        RagMetadata {
            session_id: "s".into(),
            kind: "ClientSummary",
            forwarded_at: None,
        }
    );
    assert_eq!(upserts[1].0, "t:summary:0.0");
    assert_eq!(pipeline.upserted_count(), 2);
}

#[test]
fn pipeline_upserts_actions_and_logs_errors_without_raising() {
    let upserts = Arc::new(Mutex::new(Vec::new()));
    let u = upserts.clone();
    let pipeline = RagPipeline::new(
        |text: &str| {
            if text.contains("boom") {
                Err("embedding failed")
            } else {
                Ok(vec![1.0, 2.0])
            }
        },
        move |id: &str, _vector: Vec<f32>, meta: RagMetadata| {
            u.lock().unwrap().push((id.to_owned(), meta));
            Ok::<_, String>(())
        },
    );
    pipeline.on_actions(&batch("s", &["a"]));
    pipeline.on_actions(&ActionsPayload {
        session_id: None,
        ..batch("x", &["boom"])
    });
    pipeline.on_event(&Event::Summary(summary("s", "sum")));
    let mut anon = batch("x", &["fine"]);
    anon.session_id = None;
    pipeline.on_actions(&anon);
    let upserts = upserts.lock().unwrap().clone();
    assert_eq!(
        upserts,
        vec![
            (
                "s:actions:0.0".to_owned(),
                RagMetadata {
                    session_id: "s".into(),
                    kind: "ActionsPayload",
                    forwarded_at: Some(0.0),
                }
            ),
            (
                "s:summary:0.0".to_owned(),
                RagMetadata {
                    session_id: "s".into(),
                    kind: "SummaryPayload",
                    forwarded_at: Some(0.0),
                }
            ),
            (
                "unknown:actions:0.0".to_owned(),
                RagMetadata {
                    session_id: "unknown".into(),
                    kind: "ActionsPayload",
                    forwarded_at: Some(0.0),
                }
            ),
        ]
    );
    assert_eq!(pipeline.failed_count(), 1);
    assert_eq!(pipeline.upserted_count(), 3);
}
