//! ContextStore: context text, enrich, lookback against an injected clock, action
//! caps, product buckets, session bounds, reset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use autoplay_sdk::context_store::{ContextQuery, ContextStore, bucket_id};
use autoplay_sdk::{ActionsPayload, SlimAction};

fn action(what: &str) -> SlimAction {
    SlimAction {
        description: what.into(),
        canonical_url: format!("/{what}").into(),
        ..Default::default()
    }
}

fn payload(
    session: &str,
    product: Option<&str>,
    at: Option<f64>,
    actions: &[&str],
) -> ActionsPayload {
    ActionsPayload {
        session_id: Some(session.into()),
        product_id: product.map(Into::into),
        forwarded_at: at,
        actions: actions.iter().map(|a| action(a)).collect(),
        ..Default::default()
    }
}

/// A clock the test moves by hand (whole seconds).
fn clock(start: u64) -> (Arc<AtomicU64>, impl Fn() -> f64 + Send + Sync + 'static) {
    let now = Arc::new(AtomicU64::new(start));
    let reader = now.clone();
    (now, move || reader.load(Ordering::SeqCst) as f64)
}

const ALL: ContextQuery<'static> = ContextQuery {
    product_id: None,
    include_summary: None,
    include_actions: None,
    lookback: None,
    max_actions: None,
};

#[test]
fn context_has_the_summary_then_the_numbered_recent_actions() {
    let store = ContextStore::builder().build().unwrap();
    assert_eq!(store.get("s", &ALL), "");
    assert_eq!(store.enrich("s", "q?", &ALL), "q?");
    store.add(&payload("s", None, None, &["a", "b"]));
    store.add(&payload("s", None, None, &["c"]));
    store.set_summary("s", "did things");
    assert_eq!(
        store.get("s", &ALL),
        "Summary: did things\n\nRecent activity:\n1. a \u{2014} /a\n2. b \u{2014} /b\n3. c \u{2014} /c"
    );
    assert_eq!(
        store.enrich("s", "q?", &ALL),
        format!("[Session context]\n{}\n\n[Query]\nq?", store.get("s", &ALL))
    );
    let summary_only = ContextQuery {
        include_actions: Some(false),
        ..ALL
    };
    assert_eq!(store.get("s", &summary_only), "Summary: did things");
    let actions_only = ContextQuery {
        include_summary: Some(false),
        max_actions: Some(Some(2)),
        ..ALL
    };
    assert_eq!(
        store.get("s", &actions_only),
        "Recent activity:\n1. b \u{2014} /b\n2. c \u{2014} /c"
    );
    // other sessions are not mixed in
    assert_eq!(store.get("t", &ALL), "");
}

#[test]
fn defaults_from_the_builder_and_per_call_overrides() {
    let store = ContextStore::builder()
        .include_summary(false)
        .max_actions(1)
        .build()
        .unwrap();
    store.add(&payload("s", None, None, &["a", "b"]));
    store.set_summary("s", "sum");
    assert_eq!(store.get("s", &ALL), "Recent activity:\n1. b \u{2014} /b");
    let more = ContextQuery {
        include_summary: Some(true),
        max_actions: Some(None),
        ..ALL
    };
    assert_eq!(
        store.get("s", &more),
        "Summary: sum\n\nRecent activity:\n1. a \u{2014} /a\n2. b \u{2014} /b"
    );
}

#[test]
fn lookback_filters_reads_and_evicts_on_add() {
    let (now, read) = clock(1000);
    let store = ContextStore::builder()
        .lookback(Duration::from_secs(60))
        .clock(read)
        .build()
        .unwrap();
    store.add(&payload("s", None, Some(950.0), &["old"]));
    // no forwarded_at: counts from when it was added
    store.add(&payload("s", None, None, &["new"]));
    assert_eq!(
        store.get("s", &ALL),
        "Recent activity:\n1. old \u{2014} /old\n2. new \u{2014} /new"
    );
    now.store(1015, Ordering::SeqCst);
    assert_eq!(
        store.get("s", &ALL),
        "Recent activity:\n1. new \u{2014} /new"
    );
    // a wider window per call sees what is still stored ("old" is, until the next add)
    let wide = ContextQuery {
        lookback: Some(Some(Duration::from_secs(600))),
        ..ALL
    };
    assert!(store.get("s", &wide).contains("old"));
    store.add(&payload("s", None, Some(1015.0), &["newer"]));
    assert!(!store.get("s", &wide).contains("old"), "evicted on add");
    let none = ContextQuery {
        lookback: Some(None),
        ..ALL
    };
    assert_eq!(store.get("s", &none).lines().count(), 3);
    // a payload already outside the window is not stored at all
    store.add(&payload("late", None, Some(10.0), &["replayed"]));
    assert_eq!(store.get("late", &none), "");
}

#[test]
fn stored_actions_are_bounded_per_session() {
    let store = ContextStore::builder()
        .max_stored_actions(3)
        .build()
        .unwrap();
    for i in 0..10 {
        store.add(&payload("s", None, None, &[&format!("a{i}")]));
    }
    let text = store.get("s", &ALL);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.ends_with("3. a9 \u{2014} /a9"), "{text}");
}

#[test]
fn sessions_are_bounded_least_recently_used_first() {
    let store = ContextStore::builder().max_sessions(2).build().unwrap();
    store.add(&payload("a", None, None, &["x"]));
    store.add(&payload("b", None, None, &["x"]));
    store.add(&payload("a", None, None, &["y"])); // a is now the most recent
    store.add(&payload("c", None, None, &["x"])); // evicts b
    assert_eq!(store.active_sessions(), vec!["a", "c"]);
    assert_eq!(store.get("b", &ALL), "");
    assert!(store.get("a", &ALL).contains("2. y"));
}

#[test]
fn products_keep_their_sessions_apart() {
    let store = ContextStore::builder().build().unwrap();
    assert_eq!(bucket_id(Some("p1"), Some("s")), "p1\u{1f}s");
    assert_eq!(bucket_id(Some(" "), Some("s")), "s");
    assert_eq!(bucket_id(None, None), "unknown");
    store.add(&payload("s", Some("p1"), None, &["one"]));
    let p1 = ContextQuery {
        product_id: Some("p1"),
        ..ALL
    };
    let p2 = ContextQuery {
        product_id: Some("p2"),
        ..ALL
    };
    assert!(store.get("s", &p1).contains("one"));
    assert_eq!(store.get("s", &p2), "");
    // without a product, the only product's bucket is found
    assert!(store.get("s", &ALL).contains("one"));
    // with two products, a product-less read is ambiguous: nothing
    store.add(&payload("s", Some("p2"), None, &["two"]));
    assert_eq!(store.get("s", &ALL), "");
    assert!(store.get("s", &p2).contains("two"));
    assert_eq!(store.active_sessions(), vec!["s"]);
    store.reset("s", Some("p1"));
    assert_eq!(store.get("s", &p1), "");
    assert!(store.get("s", &p2).contains("two"));
}

#[test]
fn reset_forgets_summary_and_actions() {
    let store = ContextStore::builder().build().unwrap();
    store.add(&payload("s", None, None, &["a"]));
    store.set_summary("s", "sum");
    store.add(&payload("t", None, None, &["b"]));
    store.reset("s", None);
    assert_eq!(store.get("s", &ALL), "");
    assert_eq!(store.active_sessions(), vec!["t"]);
}

#[test]
fn bad_settings_are_refused() {
    assert!(
        ContextStore::builder()
            .lookback(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(ContextStore::builder().max_actions(0).build().is_err());
    assert!(ContextStore::builder().max_sessions(0).build().is_err());
    assert!(
        ContextStore::builder()
            .max_stored_actions(0)
            .build()
            .is_err()
    );
}
