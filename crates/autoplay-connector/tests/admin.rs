//! The admin API over real HTTP against a connector on 127.0.0.1:0: products
//! registered, used by every endpoint at once, rotated, deleted, and kept
//! across a restart of the embedded store.

mod common;

use autoplay_connector::{ConnectorConfig, StoreConfig, sign_webhook};
use common::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const ADMIN: &str = "admin_token_for_tests_0123456789";

fn admin_config() -> ConnectorConfig {
    let mut config = config();
    config.admin_token = Some(ADMIN.into());
    config
}

fn click(user: &str, n: usize) -> String {
    json!({
        "event": "$autocapture",
        "distinct_id": user,
        "timestamp": format!("2024-01-15T10:32:{:02}.000Z", n % 60),
        "properties": {
            "$event_type": "click",
            "$current_url": format!("https://app.example.com/r/{n}"),
            "$session_id": format!("sess-{user}"),
            "$elements": [{"tag_name": "button", "$el_text": "Go"}],
        }
    })
    .to_string()
}

async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn register(server: &Server, id: &str) -> (String, String) {
    let response = admin(
        server,
        reqwest::Method::POST,
        "/admin/products",
        Some(ADMIN),
        Some(json!({"id": id, "name": "Gamma Inc."})),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["name"], "Gamma Inc.");
    assert_eq!(body["source"], "admin");
    let key = body["api_key"].as_str().unwrap().to_owned();
    let secret = body["webhook_secret"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ak_") && key.len() == 35, "{key}");
    assert!(secret.starts_with("whsec_") && secret.len() == 38);
    (key, secret)
}

async fn post_with_secret(server: &Server, product: &str, secret: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(server.url(&format!("/webhook/{product}")))
        .header("x-posthog-secret", secret)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn stream_status(server: &Server, product: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(server.url(&format!("/stream/{product}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn live(server: &Server, product: &str, user: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(server.url(&format!("/users/{product}/{user}/live-activity")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn stop(server: Server) {
    server.shutdown.shutdown();
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_api_does_not_exist() {
    let server = Server::start(config()).await;
    for (method, path) in [
        (reqwest::Method::POST, "/admin/products"),
        (reqwest::Method::GET, "/admin/products"),
        (reqwest::Method::DELETE, "/admin/products/acme"),
    ] {
        let response = admin(&server, method, path, Some(ADMIN), Some(json!({"id": "x"}))).await;
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_use_rotate_delete() {
    let server = Server::start(admin_config()).await;
    use reqwest::Method;

    // The admin token, checked before anything else.
    for token in [None, Some("wrong"), Some(ACME_KEY)] {
        let response = admin(
            &server,
            Method::POST,
            "/admin/products",
            token,
            Some(json!({"id": "gamma"})),
        )
        .await;
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    for (body, status) in [
        (json!({"id": "no spaces"}), 400),
        (json!({"name": "no id"}), 400),
        (json!({"id": "gamma", "colour": "red"}), 400),
        (json!({"id": "acme"}), 409),
    ] {
        let response = admin(
            &server,
            Method::POST,
            "/admin/products",
            Some(ADMIN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(response.status(), status, "{body}");
    }

    let huge = json!({"id": "gamma", "name": "x".repeat(20 * 1024)});
    let response = admin(
        &server,
        Method::POST,
        "/admin/products",
        Some(ADMIN),
        Some(huge),
    )
    .await;
    assert_eq!(response.status(), 413);

    let (key, secret) = register(&server, "gamma").await;
    let response = admin(
        &server,
        Method::POST,
        "/admin/products",
        Some(ADMIN),
        Some(json!({"id": "gamma"})),
    )
    .await;
    assert_eq!(response.status(), 409);

    // Listed with the file's products; no secret anywhere.
    let response = admin(&server, Method::GET, "/admin/products", Some(ADMIN), None).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(&key) && !text.contains(&secret) && !text.contains("api_key"),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<(&str, &str)> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [("acme", "config"), ("beta", "config"), ("gamma", "admin")]
    );
    let one: Value = admin(
        &server,
        Method::GET,
        "/admin/products/gamma",
        Some(ADMIN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["name"], "Gamma Inc.");
    assert!(one["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        admin(
            &server,
            Method::GET,
            "/admin/products/nope",
            Some(ADMIN),
            None
        )
        .await
        .status(),
        404
    );

    // Stream, webhook (plain secret and HMAC), pull read and MCP, at once.
    let mut sse = server.stream("gamma", &key, None).await;
    assert_eq!(
        post_with_secret(&server, "gamma", &secret, click("u1", 1)).await,
        200
    );
    let body = click("u1", 2);
    let signed = reqwest::Client::new()
        .post(server.url("/webhook/gamma"))
        .header(
            "x-posthog-signature",
            sign_webhook(&secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    for n in 1..=2 {
        let frame = sse
            .next_event(WAIT)
            .await
            .expect("the registered product streams");
        assert_eq!(
            frame.json()["actions"][0]["raw_url"],
            format!("https://app.example.com/r/{n}")
        );
    }
    let (status, activity) = live(&server, "gamma", "u1", &key).await;
    assert_eq!(status, 200);
    assert_eq!(activity["actions"].as_array().unwrap().len(), 2);
    // A config product's key is another product's for gamma, and vice versa.
    assert_eq!(live(&server, "gamma", "u1", ACME_KEY).await.0, 403);
    assert_eq!(live(&server, "acme", "u1", &key).await.0, 403);
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"))
                .auth_header(key.clone()),
        ))
        .await
        .expect("MCP initialize with the registered key");
    let result = client
        .call_tool(
            CallToolRequestParams::new("get_live_user_activity").with_arguments(
                json!({"product_id": "gamma", "user_id": "u1"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    client.cancel().await.unwrap();

    // Rotation: the old key and secret stop at once, the new ones work.
    let response = admin(
        &server,
        Method::POST,
        "/admin/products/gamma/rotate",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let key2 = rotated["api_key"].as_str().unwrap().to_owned();
    let secret2 = rotated["webhook_secret"].as_str().unwrap().to_owned();
    assert!(key2 != key && secret2 != secret);
    assert_eq!(stream_status(&server, "gamma", &key).await, 401);
    assert_eq!(live(&server, "gamma", "u1", &key).await.0, 401);
    assert_eq!(
        post_with_secret(&server, "gamma", &secret, click("u1", 3)).await,
        401
    );
    assert_eq!(
        post_with_secret(&server, "gamma", &secret2, click("u1", 3)).await,
        200
    );
    // Same log: the window and the open stream carry on.
    let (status, activity) = live(&server, "gamma", "u1", &key2).await;
    assert_eq!(status, 200);
    assert_eq!(activity["actions"].as_array().unwrap().len(), 3);
    assert_eq!(
        sse.next_event(WAIT).await.unwrap().json()["actions"][0]["raw_url"],
        "https://app.example.com/r/3"
    );
    // Only the webhook secret: the API key stays.
    let rotated: Value = admin(
        &server,
        Method::POST,
        "/admin/products/gamma/rotate",
        Some(ADMIN),
        Some(json!({"api_key": false})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(rotated.get("api_key").is_none());
    let secret3 = rotated["webhook_secret"].as_str().unwrap();
    assert_eq!(
        post_with_secret(&server, "gamma", &secret2, click("u1", 4)).await,
        401
    );
    assert_eq!(
        post_with_secret(&server, "gamma", secret3, click("u1", 4)).await,
        200
    );
    assert_eq!(live(&server, "gamma", "u1", &key2).await.0, 200);
    let response = admin(
        &server,
        Method::POST,
        "/admin/products/gamma/rotate",
        Some(ADMIN),
        Some(json!({"api_key": false, "webhook_secret": false})),
    )
    .await;
    assert_eq!(response.status(), 400);

    // The file's products are not the admin API's to change.
    for (method, path) in [
        (Method::DELETE, "/admin/products/acme"),
        (Method::POST, "/admin/products/acme/rotate"),
    ] {
        assert_eq!(
            admin(&server, method, path, Some(ADMIN), None)
                .await
                .status(),
            409,
            "{path}"
        );
    }
    assert_eq!(stream_status(&server, "acme", ACME_KEY).await, 200);

    // Deleted: unknown everywhere at once.
    let response = admin(
        &server,
        Method::DELETE,
        "/admin/products/gamma",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(stream_status(&server, "gamma", &key2).await, 404);
    assert_eq!(live(&server, "gamma", "u1", &key2).await.0, 404);
    assert_eq!(
        post_with_secret(&server, "gamma", secret3, click("u1", 5)).await,
        404
    );
    assert_eq!(
        admin(
            &server,
            Method::GET,
            "/admin/products/gamma",
            Some(ADMIN),
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/admin/products/gamma",
            Some(ADMIN),
            None
        )
        .await
        .status(),
        404
    );
    // Not again under the same id while its sessions may still be summarised.
    let response = admin(
        &server,
        Method::POST,
        "/admin/products",
        Some(ADMIN),
        Some(json!({"id": "gamma"})),
    )
    .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("was deleted less than session_idle_s ago"),
        "{body}"
    );
    // The MCP endpoint no longer knows the key.
    let refused = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"))
                .auth_header(key2.clone()),
        ))
        .await;
    assert!(refused.is_err());
}

/// Registrations, rotations and deletions are kept where the store keeps
/// things: the embedded store brings them back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_products_across_a_restart() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let embedded = || {
        let mut config = admin_config();
        config.store = StoreConfig::Embedded(dir.path().to_owned());
        config
    };

    let server = Server::start(embedded()).await;
    let (key, secret) = register(&server, "gamma").await;
    let (_, secret_d) = register(&server, "delta").await;
    assert_eq!(
        post_with_secret(&server, "gamma", &secret, click("u1", 1)).await,
        200
    );
    assert_eq!(
        post_with_secret(&server, "delta", &secret_d, click("u9", 1)).await,
        200
    );
    stop(server).await;

    let server = Server::start(embedded()).await;
    let list: Value = admin(&server, Method::GET, "/admin/products", Some(ADMIN), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["products"].as_array().unwrap().len(), 4, "{list}");
    // Its key, secret and window came back with it.
    let (status, activity) = live(&server, "gamma", "u1", &key).await;
    assert_eq!(status, 200);
    assert_eq!(activity["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        post_with_secret(&server, "gamma", &secret, click("u1", 2)).await,
        200
    );
    let mut sse = server.stream("gamma", &key, Some(0)).await;
    assert!(sse.next_event(WAIT).await.is_some());

    let rotated: Value = admin(
        &server,
        Method::POST,
        "/admin/products/gamma/rotate",
        Some(ADMIN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let key2 = rotated["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/admin/products/delta",
            Some(ADMIN),
            None
        )
        .await
        .status(),
        204
    );
    drop(sse);
    stop(server).await;

    let server = Server::start(embedded()).await;
    assert_eq!(stream_status(&server, "gamma", &key).await, 401);
    let (status, activity) = live(&server, "gamma", "u1", &key2).await;
    assert_eq!(status, 200);
    assert_eq!(activity["actions"].as_array().unwrap().len(), 2);
    let one: Value = admin(
        &server,
        Method::GET,
        "/admin/products/gamma",
        Some(ADMIN),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(one["rotated_at"].is_u64());
    assert_eq!(
        admin(
            &server,
            Method::GET,
            "/admin/products/delta",
            Some(ADMIN),
            None
        )
        .await
        .status(),
        404
    );
    // Registered again, delta starts empty: the old one's events went with it.
    let (key_d, _) = register(&server, "delta").await;
    let (status, activity) = live(&server, "delta", "u9", &key_d).await;
    assert_eq!(status, 200);
    assert_eq!(activity["window_events"], 0);
    stop(server).await;
}

#[test]
fn the_admin_token_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin");
    std::fs::write(&path, "from_a_file_0123456789\n").unwrap();
    let config = ConnectorConfig::from_toml_str(&format!(
        "admin_token = {{ file = {:?} }}",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        config.admin_token.unwrap().expose(),
        "from_a_file_0123456789"
    );

    let short = ConnectorConfig::from_toml_str("admin_token = \"short\"").unwrap_err();
    assert!(
        short
            .to_string()
            .contains("admin_token must be at least 16 characters"),
        "{short}"
    );

    // SAFETY: a variable no other test of this binary reads or writes.
    unsafe {
        std::env::set_var(
            autoplay_connector::config::ADMIN_TOKEN_ENV,
            "from_the_environment_42",
        )
    };
    let mut config = ConnectorConfig::default();
    config.apply_secrets_env().unwrap();
    unsafe { std::env::remove_var(autoplay_connector::config::ADMIN_TOKEN_ENV) };
    assert_eq!(
        config.admin_token.unwrap().expose(),
        "from_the_environment_42"
    );
}
