//! `GET /users/{product_id}/{user_id}/live-activity` over real HTTP against a
//! connector on 127.0.0.1:0.

mod common;

use common::*;
use serde_json::{Value, json};

/// One `$autocapture` click of `user` in `session`, on page `/p/{n}`.
fn click(user: &str, session: &str, n: usize) -> String {
    json!({
        "event": "$autocapture",
        "distinct_id": user,
        "timestamp": format!("2024-01-15T10:30:{:02}.000Z", n % 60),
        "properties": {
            "$event_type": "click",
            "$current_url": format!("https://app.example.com/p/{n}"),
            "$session_id": session,
            "email": format!("{user}@example.com"),
            "$elements": [{"tag_name": "button", "$el_text": format!("Button {n}")}],
        }
    })
    .to_string()
}

async fn live(
    server: &Server,
    product: &str,
    user: &str,
    query: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(server.url(&format!("/users/{product}/{user}/live-activity{query}")));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn urls(body: &Value) -> Vec<String> {
    body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["raw_url"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_actions_oldest_first_and_their_latest_summary() {
    let mut config = config();
    config.products[0].summary_threshold = Some(3);
    let server = Server::start(config).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;

    for n in 1..=5 {
        assert_eq!(
            server
                .post_webhook("acme", click("u1", "s1", n))
                .await
                .status(),
            200
        );
        // Another user between each of u1's actions: none of theirs may show.
        assert_eq!(
            server
                .post_webhook("acme", click("u2", "s2", 100 + n))
                .await
                .status(),
            200
        );
    }
    // s1's summary of its first three actions (and s2's) are written after.
    let mut summaries = 0;
    while summaries < 2 {
        let frame = sse.next_event(WAIT).await.expect("summaries arrive");
        if frame.event == "summary" {
            summaries += 1;
        }
    }

    let response = live(&server, "acme", "u1", "", Some(ACME_KEY)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["product_id"], "acme");
    assert_eq!(body["user_id"], "u1");
    assert_eq!(body["email"], "u1@example.com");
    let expected: Vec<String> = (1..=5)
        .map(|n| format!("https://app.example.com/p/{n}"))
        .collect();
    assert_eq!(urls(&body), expected, "{body:#}");
    for action in body["actions"].as_array().unwrap() {
        assert_eq!(action["session_id"], "s1");
        // As streamed: both generations' names of the kind.
        assert_eq!(action["type"], "click");
        assert_eq!(action["event_type"], "click");
    }
    assert_eq!(body["summary"]["session_id"], "s1");
    assert_eq!(body["summary"]["replaces"], 3);
    assert!(
        body["summary"]["summary"]
            .as_str()
            .unwrap()
            .contains("u1@example.com"),
        "{body:#}"
    );
    // 10 actions frames and 2 summaries.
    assert_eq!(body["window_events"], 12);

    // `limit` keeps the newest, still oldest first.
    let body: Value = live(&server, "acme", "u1", "?limit=2", Some(ACME_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(urls(&body), expected[3..].to_vec());

    // An id that JSON escapes, and one that is a prefix of another's.
    let odd = "ü \"q\" \\";
    server.post_webhook("acme", click(odd, "s3", 7)).await;
    server.post_webhook("acme", click("u", "s4", 8)).await;
    let body: Value = live(
        &server,
        "acme",
        &odd.replace('"', "%22").replace('\\', "%5C"),
        "",
        Some(ACME_KEY),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["user_id"], odd);
    assert_eq!(urls(&body), ["https://app.example.com/p/7"]);
    let body: Value = live(&server, "acme", "u", "", Some(ACME_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(urls(&body), ["https://app.example.com/p/8"]);

    // A user with nothing in the window: empty, not an error.
    let body: Value = live(&server, "acme", "nobody", "", Some(ACME_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["actions"], json!([]));
    assert_eq!(body["summary"], Value::Null);
    assert_eq!(body["email"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_bad_limits() {
    let server = Server::start(config()).await;
    server.post_webhook("acme", click("u1", "s1", 1)).await;

    let response = live(&server, "acme", "u1", "", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        live(&server, "acme", "u1", "", Some("ak_wrong"))
            .await
            .status(),
        401
    );
    // beta's key reads beta, not acme.
    let response = live(&server, "acme", "u1", "", Some(BETA_KEY)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        live(&server, "nope", "u1", "", Some(ACME_KEY))
            .await
            .status(),
        404
    );

    for bad in [
        "?limit=0",
        "?limit=501",
        "?limit=ten",
        "?limit=",
        "?limit=-3",
    ] {
        let response = live(&server, "acme", "u1", bad, Some(ACME_KEY)).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("limit must be an integer from 1 to 500"),
            "{body}"
        );
    }
    assert_eq!(
        live(&server, "acme", "u1", "?limit=500", Some(ACME_KEY))
            .await
            .status(),
        200
    );
    assert!(server.metric("autoplay_auth_failures_total").await >= 3.0);
}

/// The answer is the replay window: what the window lets go of, the pull read
/// no longer has either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_replay_window_and_nothing_older() {
    let mut config = config();
    config.replay_capacity = 3;
    let server = Server::start(config).await;
    for n in 1..=5 {
        server.post_webhook("acme", click("u1", "s1", n)).await;
    }
    let body: Value = live(&server, "acme", "u1", "", Some(ACME_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["window_events"], 3);
    assert_eq!(
        urls(&body),
        (3..=5)
            .map(|n| format!("https://app.example.com/p/{n}"))
            .collect::<Vec<_>>()
    );
    // A subscriber resuming from the start replays exactly those frames.
    let mut sse = server.stream("acme", ACME_KEY, Some(0)).await;
    for n in 3..=5 {
        let frame = sse.next_event(WAIT).await.unwrap();
        assert_eq!(
            frame.json()["actions"][0]["raw_url"],
            format!("https://app.example.com/p/{n}")
        );
    }
}
