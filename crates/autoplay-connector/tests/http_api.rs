//! Statuses, credentials and counters over real HTTP.

mod common;

use autoplay_connector::sign_webhook;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_statuses() {
    let server = Server::start(config()).await;
    let client = reqwest::Client::new();
    let get = |product: &str, auth: Option<&str>| {
        let mut request = client.get(server.url(&format!("/stream/{product}")));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let ok = get("acme", Some("Bearer ak_acme")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    assert_eq!(ok.headers()["cache-control"], "no-cache");
    drop(ok);

    let missing = get("acme", None).await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert!(missing.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(
        get("acme", Some("Bearer wrong")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get("acme", Some("Basic ak_acme")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get("acme", Some("Bearer ak_beta")).await.unwrap().status(),
        403
    );
    assert_eq!(
        get("nope", Some("Bearer ak_acme")).await.unwrap().status(),
        404
    );
    assert_eq!(get("nope", None).await.unwrap().status(), 404);
    assert_eq!(server.metric("autoplay_auth_failures_total").await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_statuses() {
    let server = Server::start(config()).await;
    let client = reqwest::Client::new();
    let body = fixture("capture-pageview");
    let post = |product: &str, headers: Vec<(&'static str, String)>, body: String| {
        let mut request = client
            .post(server.url(&format!("/webhook/{product}")))
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    let ok = post(
        "acme",
        vec![("x-posthog-secret", ACME_SECRET.into())],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "actions": 1})
    );

    let bearer = post(
        "acme",
        vec![("authorization", format!("Bearer {ACME_SECRET}"))],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(bearer.status(), 200);

    let unknown = post(
        "nope",
        vec![("x-posthog-secret", ACME_SECRET.into())],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        post("acme", vec![], body.clone()).await.unwrap().status(),
        401
    );
    assert_eq!(
        post(
            "acme",
            vec![("x-posthog-secret", "wrong".into())],
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        401
    );
    // The stream key is not a webhook credential once a secret is configured.
    assert_eq!(
        post(
            "acme",
            vec![("authorization", format!("Bearer {ACME_KEY}"))],
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        401
    );

    let secret = || vec![("x-posthog-secret", ACME_SECRET.to_owned())];
    let bad_json = post("acme", secret(), "{not json".into()).await.unwrap();
    assert_eq!(bad_json.status(), 400);
    assert!(
        bad_json.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    assert_eq!(
        post("acme", secret(), r#"{"hello": 1}"#.into())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("acme", secret(), "[1, 2]".into())
            .await
            .unwrap()
            .status(),
        400
    );

    let batch = post("acme", secret(), fixture("batch-mixed"))
        .await
        .unwrap();
    assert_eq!(
        batch.json::<Value>().await.unwrap(),
        json!({"accepted": 6, "actions": 4})
    );

    // A product without a webhook secret takes its API key.
    let beta = post(
        "beta",
        vec![("authorization", format!("Bearer {BETA_KEY}"))],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(beta.status(), 200);
    assert_eq!(post("beta", vec![], body).await.unwrap().status(), 401);

    assert_eq!(server.metric("autoplay_auth_failures_total").await, 4.0);
    assert_eq!(
        server.metric("autoplay_events_ingested_total").await,
        1.0 + 1.0 + 6.0 + 1.0
    );
    assert_eq!(
        server.metric("autoplay_actions_extracted_total").await,
        1.0 + 1.0 + 4.0 + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_hmac_signatures() {
    let server = Server::start(config()).await;
    let client = reqwest::Client::new();
    let body = fixture("capture-autocapture-click");
    let signed = |header: &'static str, signature: String, body: String| {
        client
            .post(server.url("/webhook/acme"))
            .header(header, signature)
            .body(body)
            .send()
    };
    for header in ["x-posthog-signature", "x-hub-signature-256"] {
        let ok = signed(
            header,
            sign_webhook(ACME_SECRET, body.as_bytes()),
            body.clone(),
        )
        .await
        .unwrap();
        assert_eq!(ok.status(), 200, "{header}");
    }
    // PostHog's legacy webhooks put the signature in the secret's own header.
    let legacy = signed(
        "x-posthog-secret",
        sign_webhook(ACME_SECRET, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(legacy.status(), 200);
    let wrong_key = signed(
        "x-posthog-signature",
        sign_webhook("other", body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(wrong_key.status(), 401);
    let tampered = signed(
        "x-hub-signature-256",
        sign_webhook(ACME_SECRET, body.as_bytes()),
        body.replace("Export", "Import"),
    )
    .await
    .unwrap();
    assert_eq!(tampered.status(), 401);
    let garbage = signed("x-posthog-signature", "sha256=zz".into(), body.clone())
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);
    assert_eq!(
        server
            .metric("autoplay_webhook_signature_failures_total")
            .await,
        3.0
    );
    assert_eq!(server.metric("autoplay_auth_failures_total").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_gives_413() {
    let mut config = config();
    config.body_limit = 1024;
    let server = Server::start(config).await;
    let big = format!(
        r#"{{"event":"x","distinct_id":"u","properties":{{"pad":"{}"}}}}"#,
        "a".repeat(2000)
    );
    let response = server.post_webhook("acme", big.clone()).await;
    assert_eq!(response.status(), 413);
    // Without a Content-Length, the limit stops the read itself.
    let chunked = raw_exchange(
        server.addr,
        &format!(
            "POST /webhook/acme HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
             x-posthog-secret: {ACME_SECRET}\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    let response = reqwest::Client::new()
        .post(server.url("/events/acme"))
        .header("x-posthog-secret", ACME_SECRET)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        server
            .post_webhook("acme", fixture("capture-pageview"))
            .await
            .status(),
        200
    );
}

/// A signed request, the one form whose body is read before it is known to be
/// the product's, is refused from a Content-Length over the limit before a byte of
/// its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_is_refused_unread() {
    let server = Server::start(config()).await;
    let signature = sign_webhook(ACME_SECRET, b"whatever");
    let head = raw_exchange(
        server.addr,
        &format!(
            "POST /webhook/acme HTTP/1.1\r\nHost: t\r\nContent-Length: 104857600\r\n\
             x-posthog-signature: {signature}\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_body_limit_is_5_mib() {
    let server = Server::start(config()).await;
    let pad = |n: usize| {
        format!(
            r#"{{"event":"x","distinct_id":"u","properties":{{"pad":"{}"}}}}"#,
            "a".repeat(n)
        )
    };
    assert_eq!(
        server
            .post_webhook("acme", pad(5 * 1024 * 1024 - 100))
            .await
            .status(),
        200
    );
    // Over it, the Content-Length alone gets the 413: nothing of the body is read
    // (a client still writing it may see the connection close instead).
    let head = raw_exchange(
        server.addr,
        &format!(
            "POST /webhook/acme HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
             x-posthog-secret: {ACME_SECRET}\r\n\r\n",
            5 * 1024 * 1024 + 1
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

/// Writes `bytes` on a fresh connection and returns what comes back first.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(bytes.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        socket.read(&mut response),
    )
    .await
    .expect("no answer")
    .unwrap();
    String::from_utf8_lossy(&response[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_events_endpoint() {
    let server = Server::start(config()).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let one = json!({"session_id": "s1", "user_id": "u1", "email": "u1@example.com",
        "actions": [{"event_type": "click", "title": "Go", "description": "Clicked 'Go'", "canonical_url": "/go"}]});
    let response = server.post_events("acme", &one).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "actions": 1})
    );
    let many = json!([
        {"session_id": "s2", "actions": [
            {"type": "pageview", "title": "A", "properties": {"referrer": "/home", "n": [1, 2]}},
            {"type": "click", "title": "B", "properties": {}}]},
        {"session_id": "s3", "actions": []}
    ]);
    let response = server.post_events("acme", &many).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "actions": 2})
    );

    let first = sse.next_event(WAIT).await.unwrap().json();
    assert_eq!(first["session_id"], "s1");
    assert_eq!(first["email"], "u1@example.com");
    assert_eq!(first["product_id"], "acme");
    assert_eq!(first["count"], 1);
    let second = sse.next_event(WAIT).await.unwrap().json();
    assert_eq!(second["session_id"], "s2");
    assert_eq!(second["actions"][0]["event_type"], "pageview");
    assert_eq!(
        second["actions"][0]["properties"],
        json!({"referrer": "/home", "n": [1, 2]}),
        "properties pass through unchanged"
    );

    assert_eq!(
        server
            .post_events("acme", &json!({"actions": "no"}))
            .await
            .status(),
        400
    );
    assert_eq!(server.post_events("acme", &json!(42)).await.status(), 400);
    assert_eq!(server.post_events("nope", &one).await.status(), 404);
    let unauthenticated = reqwest::Client::new()
        .post(server.url("/events/acme"))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

/// Request heads are read into an 8 KiB buffer (what keeps an idle subscriber
/// small): a larger head is refused with 431, and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_8_kib_gets_431() {
    let server = Server::start(config()).await;
    let client = reqwest::Client::new();
    let health_with_padding = |bytes: usize| {
        client
            .get(server.url("/healthz"))
            .header("x-padding", "x".repeat(bytes))
            .send()
    };
    let big = health_with_padding(10_000).await.unwrap();
    assert_eq!(big.status(), 431);
    let fits = health_with_padding(6_000).await.unwrap();
    assert_eq!(fits.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let server = Server::start(config()).await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    let metrics = reqwest::get(server.url("/metrics")).await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for name in [
        "autoplay_events_ingested_total",
        "autoplay_actions_extracted_total",
        "autoplay_summaries_total",
        "autoplay_live_subscribers",
        "autoplay_events_sent_total",
        "autoplay_slow_subscriber_disconnects_total",
        "autoplay_auth_failures_total",
        "autoplay_webhook_signature_failures_total",
        "autoplay_replay_gaps_total",
    ] {
        assert!(
            text.contains(&format!("\n{name} 0\n")),
            "{name} missing from\n{text}"
        );
    }

    let mut sse = server.stream("acme", ACME_KEY, None).await;
    assert_eq!(server.metric("autoplay_live_subscribers").await, 1.0);
    server.post_webhook("acme", fixture("batch-mixed")).await;
    sse.next_event(WAIT).await.unwrap();
    sse.next_event(WAIT).await.unwrap();
    assert_eq!(server.metric("autoplay_events_sent_total").await, 2.0);
    assert_eq!(server.metric("autoplay_events_published_total").await, 2.0);
    drop(sse);
    // The server notices the closed connection on its next write (a heartbeat or
    // an event); publish one to make it write.
    server
        .post_webhook("acme", fixture("capture-pageview"))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric("autoplay_live_subscribers").await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_open_streams() {
    let server = Server::start(config()).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    server.shutdown.shutdown();
    assert!(sse.next_frame(WAIT).await.is_none());
    assert!(sse.ended);
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toml_config_with_hashed_keys_and_product_specs() {
    let hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
    let mut config = autoplay_connector::ConnectorConfig::from_toml_str(&format!(
        "listen = \"127.0.0.1:0\"\nheartbeat_s = 0.02\n\n[[products]]\nid = \"acme\"\napi_keys = [\"{hash}\"]\nwebhook_secret = \"s3cret\"\n"
    ))
    .unwrap();
    config
        .products
        .push(autoplay_connector::parse_product_spec("gamma:gk:gsecret").unwrap());
    let server = Server::start(config).await;
    let client = reqwest::Client::new();
    let status = |product: &str, key: &str| {
        client
            .get(server.url(&format!("/stream/{product}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(status("acme", "test").await.unwrap().status(), 200);
    assert_eq!(status("acme", hash).await.unwrap().status(), 401);
    assert_eq!(status("acme", "gk").await.unwrap().status(), 403);
    assert_eq!(status("gamma", "gk").await.unwrap().status(), 200);
    let posted = client
        .post(server.url("/webhook/gamma"))
        .header("x-posthog-secret", "gsecret")
        .body(fixture("capture-pageview"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_demo_product() {
    let mut config = autoplay_connector::ConnectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..autoplay_connector::ConnectorConfig::default()
    };
    let demo = config.ensure_default_product().unwrap();
    let connector = autoplay_connector::Connector::bind(config).await.unwrap();
    let url = connector.stream_url("demo");
    let webhook = connector.webhook_url("demo");
    let shutdown = connector.shutdown_handle();
    let task = tokio::spawn(connector.serve());
    let client = reqwest::Client::new();
    let ok = client
        .get(&url)
        .bearer_auth(demo.api_key.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let posted = client
        .post(&webhook)
        .bearer_auth(demo.api_key.expose())
        .body(fixture("capture-pageview"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    shutdown.shutdown();
    assert!(shutdown.is_shutdown());
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_token() {
    let mut config = config();
    config.metrics_token = Some("mt_secret".into());
    let server = Server::start(config).await;
    let client = reqwest::Client::new();
    let open = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(open.status(), 401);
    assert_eq!(open.headers()["www-authenticate"], "Bearer");
    let wrong = client
        .get(server.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client
        .get(server.url("/metrics"))
        .bearer_auth("mt_secret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(
        text.contains("\nautoplay_auth_failures_total 2\n"),
        "{text}"
    );
    // Health stays open for load balancers.
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A product without a webhook secret takes no webhook, not even with its stream
/// key, unless its config says `ingest_with_api_keys = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_key_is_no_ingest_credential_unless_configured() {
    let config = autoplay_connector::ConnectorConfig::from_toml_str(
        "listen = \"127.0.0.1:0\"\n\
         [[products]]\nid = \"closed\"\napi_keys = [\"k_closed\"]\n\
         [[products]]\nid = \"open\"\napi_keys = [\"k_open\"]\ningest_with_api_keys = true\n",
    )
    .unwrap();
    let server = Server::start(config).await;
    let client = reqwest::Client::new();
    let post = |product: &str, key: &str| {
        client
            .post(server.url(&format!("/webhook/{product}")))
            .bearer_auth(key)
            .body(fixture("capture-pageview"))
            .send()
    };
    assert_eq!(post("closed", "k_closed").await.unwrap().status(), 401);
    assert_eq!(post("open", "k_open").await.unwrap().status(), 200);
    // The stream key still reads the stream.
    let stream = client
        .get(server.url("/stream/closed"))
        .bearer_auth("k_closed")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let both = autoplay_connector::ConnectorConfig::from_toml_str(
        "[[products]]\nid = \"x\"\nwebhook_secret = \"s\"\ningest_with_api_keys = true\n",
    )
    .unwrap_err()
    .to_string();
    assert!(both.contains("remove one of them"), "{both}");
}
