//! `/mcp` with the real `rmcp` client over streamable HTTP, against a
//! connector on 127.0.0.1:0: initialize, list the tools, call
//! `get_live_user_activity`, and the refusals.

mod common;

use common::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

fn click(user: &str, session: &str, n: usize) -> String {
    json!({
        "event": "$autocapture",
        "distinct_id": user,
        "timestamp": format!("2024-01-15T10:31:{:02}.000Z", n % 60),
        "properties": {
            "$event_type": "click",
            "$current_url": format!("https://app.example.com/q/{n}"),
            "$session_id": session,
            "$elements": [{"tag_name": "button", "$el_text": format!("Go {n}")}],
        }
    })
    .to_string()
}

async fn connect(
    server: &Server,
    key: Option<&str>,
) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    if let Some(key) = key {
        config = config.auth_header(key);
    }
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
}

async fn call(client: &RunningService<RoleClient, ClientConfig>, args: Value) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new("get_live_user_activity")
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .expect("the tool call gets an answer")
}

fn text(result: &CallToolResult) -> &str {
    &result.content[0].as_text().expect("text content").text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asks_what_a_user_is_doing() {
    let server = Server::start(config()).await;
    for n in 1..=4 {
        assert_eq!(
            server
                .post_webhook("acme", click("u7", "s7", n))
                .await
                .status(),
            200
        );
        assert_eq!(
            server
                .post_webhook("acme", click("u8", "s8", 50 + n))
                .await
                .status(),
            200
        );
    }

    let client = connect(&server, Some(ACME_KEY)).await.expect("initialize");
    let info = client.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "autoplay-connector"
    );
    assert!(info.capabilities.tools.is_some());

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    let tool = &tools[0];
    assert_eq!(tool.name, "get_live_user_activity");
    assert!(
        tool.description
            .as_deref()
            .unwrap()
            .contains("recent UI actions")
    );
    let properties = tool.input_schema["properties"].as_object().unwrap();
    for arg in ["product_id", "user_id", "limit"] {
        assert!(properties.contains_key(arg), "{arg} in {properties:?}");
    }
    let required: Vec<&str> = tool.input_schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["product_id", "user_id"]);

    let result = call(
        &client,
        json!({"product_id": "acme", "user_id": "u7", "limit": 3}),
    )
    .await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    let activity: Value = serde_json::from_str(text(&result)).unwrap();
    let urls: Vec<&str> = activity["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["raw_url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "https://app.example.com/q/2",
            "https://app.example.com/q/3",
            "https://app.example.com/q/4"
        ]
    );
    // The same data as the HTTP pull read.
    let http: Value = reqwest::Client::new()
        .get(server.url("/users/acme/u7/live-activity?limit=3"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(activity, http);

    // Another product's data is not this key's.
    let result = call(&client, json!({"product_id": "beta", "user_id": "u7"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("not a key of product \"beta\""),
        "{}",
        text(&result)
    );
    let result = call(&client, json!({"product_id": "nope", "user_id": "u7"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("unknown product"));
    let result = call(
        &client,
        json!({"product_id": "acme", "user_id": "u7", "limit": 0}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("limit must be"));

    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_calls_are_refused() {
    let server = Server::start(config()).await;
    assert!(
        connect(&server, None).await.is_err(),
        "initialize without a key"
    );
    assert!(
        connect(&server, Some("ak_wrong")).await.is_err(),
        "initialize with a wrong key"
    );

    // What the refusal is on the wire, before any MCP handling.
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "curl", "version": "0"}}
    });
    for key in [None, Some("ak_wrong")] {
        let mut request = reqwest::Client::new()
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    // With a key, the same request initializes.
    let response = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(BETA_KEY)
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "autoplay-connector");
}
