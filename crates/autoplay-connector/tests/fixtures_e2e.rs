//! Every PostHog fixture through `POST /webhook` to a stream subscriber, checked
//! against `tests/fixtures/posthog/EXPECTED.md`.

mod common;

use autoplay_sdk::models::{ActionsPayload, Event};
use common::*;
use futures_util::StreamExt;

/// Posts a fixture and returns the payloads a subscriber of `acme` receives.
async fn through_the_connector(
    server: &Server,
    sse: &mut SseReader,
    name: &str,
    payloads: usize,
) -> Vec<ActionsPayload> {
    let response = server.post_webhook("acme", fixture(name)).await;
    assert_eq!(response.status(), 200, "{name}");
    let mut out = Vec::new();
    for _ in 0..payloads {
        let frame = sse
            .next_event(WAIT)
            .await
            .unwrap_or_else(|| panic!("{name}: no event"));
        assert_eq!(frame.event, "actions");
        assert!(!frame.data.contains('\n'));
        let Event::Actions(payload) = Event::decode(&frame.data, &frame.event).unwrap() else {
            panic!("{name}: not an actions payload");
        };
        // The JSON is the stream shape: re-serialising gives the same text.
        assert_eq!(payload.to_stream_json(), frame.data);
        // Both generations' fields on every action: 0.1.0's `event_type` and `ts`,
        // 0.13.0's `type`, `index`, `timestamp_start`/`timestamp_end`, `raw_url`.
        let value: serde_json::Value = serde_json::from_str(&frame.data).unwrap();
        let mut previous_end = None;
        for (i, a) in value["actions"].as_array().unwrap().iter().enumerate() {
            assert_eq!(a["type"], a["event_type"], "{name}: {a}");
            assert_eq!(a["index"], i, "{name}: {a}");
            let start = a["timestamp_start"].as_f64().unwrap();
            let end = a["timestamp_end"].as_f64().unwrap();
            assert!(end >= start, "{name}: {a}");
            if let Some(previous) = previous_end {
                assert_eq!(
                    previous, start,
                    "{name}: an action ends where the next starts"
                );
            }
            previous_end = Some(end);
            let ts = a["ts"].as_str().unwrap();
            assert_eq!(
                autoplay_connector::extract::parse_rfc3339(ts),
                Some(start),
                "{name}"
            );
            assert!(a.get("raw_url").is_some(), "{name}: {a}");
        }
        assert_eq!(payload.product_id.as_deref(), Some("acme"));
        assert!(payload.forwarded_at.is_some());
        assert_eq!(payload.ts, payload.actions.last().unwrap().ts);
        out.push(payload);
    }
    out
}

fn only_action(payloads: &[ActionsPayload]) -> (&ActionsPayload, (&str, &str, &str, &str)) {
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].actions.len(), 1);
    let a = &payloads[0].actions[0];
    (
        &payloads[0],
        (
            a.event_type.as_str(),
            a.title.as_str(),
            a.canonical_url.as_str(),
            a.description.as_str(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_reaches_the_stream() {
    let server = Server::start(config()).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let session = "018d0b6a-1f2e-7c3a-9b1d-5e6f7a8b9c0d";

    let got = through_the_connector(&server, &mut sse, "capture-pageview", 1).await;
    let (payload, action) = only_action(&got);
    assert_eq!(
        action,
        (
            "pageview",
            "Project board",
            "https://app.example.com/projects/:id/board",
            "Viewed Project board"
        )
    );
    assert_eq!(payload.session_id.as_deref(), Some(session));
    assert_eq!(payload.user_id.as_deref(), Some("user_456"));
    assert_eq!(payload.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        payload.actions[0].raw_url.as_deref(),
        Some("https://app.example.com/projects/8812/board?view=kanban#top")
    );

    let got = through_the_connector(&server, &mut sse, "capture-autocapture-click", 1).await;
    let (payload, action) = only_action(&got);
    assert_eq!(
        action,
        (
            "click",
            "Export CSV",
            "https://app.example.com/dashboard",
            "Clicked 'Export CSV'"
        )
    );
    // Learnt from the pageview's email property a request earlier.
    assert_eq!(payload.email.as_deref(), Some("alice@example.com"));

    let got = through_the_connector(&server, &mut sse, "capture-autocapture-change", 1).await;
    assert_eq!(
        only_action(&got).1,
        (
            "input",
            "company_vat_id",
            "https://app.example.com/settings/:id/billing",
            "Changed 'company_vat_id'"
        )
    );

    let got = through_the_connector(&server, &mut sse, "capture-autocapture-submit", 1).await;
    assert_eq!(
        only_action(&got).1,
        (
            "submit",
            "Billing details",
            "https://app.example.com/settings/:id/billing",
            "Submitted 'Billing details'"
        )
    );

    let got = through_the_connector(&server, &mut sse, "hog-webhook-envelope", 1).await;
    let (payload, action) = only_action(&got);
    assert_eq!(
        action,
        (
            "click",
            "Download PDF",
            "https://app.example.com/invoices/:id",
            "Clicked 'Download PDF'"
        )
    );
    assert_eq!(
        payload.session_id.as_deref(),
        Some("018d0b6b-aaaa-7bbb-8ccc-ddddeeeeffff")
    );
    assert_eq!(payload.user_id.as_deref(), Some("user_789"));
    assert_eq!(payload.email.as_deref(), Some("bob@example.com"));

    let got = through_the_connector(&server, &mut sse, "batch-mixed", 2).await;
    let a = &got[0];
    assert_eq!(a.session_id.as_deref(), Some("sess-A"));
    assert_eq!(a.user_id.as_deref(), Some("user_456"));
    assert_eq!(a.email.as_deref(), Some("alice@example.com"));
    let rows: Vec<_> = a
        .actions
        .iter()
        .map(|x| {
            (
                x.event_type.as_str(),
                x.title.as_str(),
                x.canonical_url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "pageview",
                "Project board",
                "https://app.example.com/projects/:id/board"
            ),
            ("click", "Pay now", "https://app.example.com/invoices/:id"),
            (
                "invoice_paid",
                "invoice_paid",
                "https://app.example.com/invoices/:id/pay"
            ),
        ]
    );
    let b = &got[1];
    assert_eq!(b.session_id.as_deref(), Some("sess-B"));
    assert_eq!(b.user_id.as_deref(), Some("user_999"));
    assert_eq!(b.actions.len(), 1);
    assert_eq!(
        (
            b.actions[0].event_type.as_str(),
            b.actions[0].title.as_str(),
            b.actions[0].canonical_url.as_str()
        ),
        (
            "click",
            "Start free trial",
            "https://app.example.com/pricing"
        )
    );

    // Ids are strictly increasing across all of it.
    let mut replay = server.stream("acme", ACME_KEY, Some(0)).await;
    let mut ids = Vec::new();
    while let Some(frame) = replay
        .next_event(std::time::Duration::from_millis(300))
        .await
    {
        ids.push(frame.id.unwrap());
    }
    assert_eq!(ids, (1..=7).collect::<Vec<u64>>());
}

/// The flat bodies of the Hog destination `autoplay-setup` 0.2.0 creates, posted
/// as it posts them (`x-posthog-secret`, `Content-Type: application/json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hog_destination_flat_bodies_reach_the_stream() {
    let server = Server::start(config()).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let session = "018d0b6c-1f2e-7c3a-9b1d-5e6f7a8b9c0d";
    let rows = [
        (
            "hog-flat-pageview",
            (
                "pageview",
                "/projects/8812/board",
                "https://app.example.com/projects/:id/board",
                "Viewed /projects/8812/board",
            ),
        ),
        (
            "hog-flat-click",
            (
                "click",
                "Export CSV",
                "https://app.example.com/dashboard",
                "Clicked 'Export CSV'",
            ),
        ),
        (
            "hog-flat-change",
            (
                "input",
                "company_vat_id",
                "https://app.example.com/settings/:id/billing",
                "Changed 'company_vat_id'",
            ),
        ),
        (
            "hog-flat-submit",
            (
                "submit",
                "Billing details",
                "https://app.example.com/settings/:id/billing",
                "Submitted 'Billing details'",
            ),
        ),
    ];
    for (name, expected) in rows {
        let got = through_the_connector(&server, &mut sse, name, 1).await;
        let (payload, action) = only_action(&got);
        assert_eq!(action, expected, "{name}");
        assert_eq!(payload.session_id.as_deref(), Some(session), "{name}");
        assert_eq!(payload.user_id.as_deref(), Some("user_456"), "{name}");
        assert_eq!(payload.email.as_deref(), Some("alice@example.com"));
    }

    let response = server
        .post_webhook("acme", fixture("hog-flat-pageleave"))
        .await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"accepted": 1, "actions": 0})
    );
    let got = through_the_connector(&server, &mut sse, "hog-flat-link-anonymous", 1).await;
    let (payload, action) = only_action(&got);
    assert_eq!(
        action,
        (
            "click",
            "Download PDF",
            "https://app.example.com/invoices/:id",
            "Clicked 'Download PDF'"
        )
    );
    let visitor = "018d0b6b-anon-7bbb-8ccc-ddddeeeeffff";
    assert_eq!(payload.session_id.as_deref(), Some(visitor));
    assert_eq!(payload.email, None);
}

/// The SDK's async client reads the connector's stream end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_client_receives_typed_payloads() {
    let server = Server::start(config()).await;
    let client = autoplay_sdk::AsyncConnectorClient::builder(server.url("/stream/acme"))
        .token(ACME_KEY)
        .build()
        .unwrap();
    let mut events = Box::pin(client.events());
    // Wait for the subscription before publishing (the client connects in the background).
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric("autoplay_live_subscribers").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline);
        // Polling drives nothing here; the engine task connects on its own.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.post_webhook("acme", fixture("batch-mixed")).await;
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.session_id(), Some("sess-A"));
    assert_eq!(second.session_id(), Some("sess-B"));
    let Event::Actions(payload) = first else {
        panic!()
    };
    assert_eq!(
        payload.to_text(),
        "Session sess-A \u{2014} 3 actions\n\
         1. Viewed Project board \u{2014} https://app.example.com/projects/:id/board\n\
         2. Clicked 'Pay now' \u{2014} https://app.example.com/invoices/:id\n\
         3. Triggered invoice_paid \u{2014} https://app.example.com/invoices/:id/pay"
    );
    client.stop();
}

/// A wrong key is fatal for the SDK: the connector's 401 is what it acts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_client_sees_fatal_statuses() {
    let server = Server::start(config()).await;
    for (key, status) in [("wrong", 401), (BETA_KEY, 403)] {
        let client = autoplay_sdk::AsyncConnectorClient::builder(server.url("/stream/acme"))
            .token(key)
            .build()
            .unwrap();
        let result = tokio::time::timeout(WAIT, client.run()).await.unwrap();
        assert_eq!(result.unwrap_err().status_code(), Some(status));
    }
}
