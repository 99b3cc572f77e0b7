//! `/mcp`: a Model Context Protocol server (streamable HTTP, on the official
//! Rust SDK `rmcp`) so an LLM agent can ask what a user is doing now.
//!
//! One tool, `get_live_user_activity` (`product_id`, `user_id`, optional
//! `limit`), whose text content is the JSON of a
//! [`LiveActivity`](crate::live_activity::LiveActivity), the same as
//! `GET /users/{product_id}/{user_id}/live-activity` answers.
//!
//! # Authentication
//!
//! Every request to `/mcp` needs `Authorization: Bearer <API key>` of a
//! product; without one, or with a key of no product, it gets 401 before the
//! MCP layer sees it (so even `initialize` is refused). The tool then answers
//! only for the product the key belongs to: asking about another product, or
//! an unknown one, is a tool error, not data.
//!
//! # Resources
//!
//! The server is stateless (no MCP session kept between requests) and answers
//! with plain JSON rather than an SSE stream: a tool call is one request and
//! one response, so an agent that never closes its session holds nothing here.
//! Bodies are capped at the connector's `body_limit`. The `Host` allow-list
//! `rmcp` applies by default (loopback only, against DNS rebinding of a local
//! server) is off: the connector is a network service, and a rebinding page
//! cannot present a product's bearer key.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

use crate::auth::{self, StreamDenied};
use crate::live_activity;
use crate::metrics;
use crate::server::{AppState, json_error};

/// The tool's arguments.
#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct LiveActivityArgs {
    /// The product the user belongs to (the API key must be this product's).
    pub product_id: String,
    /// The user: PostHog's distinct id, as on the stream's payloads.
    pub user_id: String,
    /// How many of the newest actions to return (1 to 500, default 20).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// The MCP service of one request.
#[derive(Clone)]
pub(crate) struct McpServer {
    state: Arc<AppState>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl McpServer {
    /// What one user of a product is doing now: their newest actions, oldest
    /// first, and the latest summary of their session.
    #[tool(
        description = "What a user of the product is doing right now: their most recent UI \
                       actions (oldest first) and the latest summary of their session, as JSON. \
                       Use it to answer questions about where the user is and what they tried."
    )]
    async fn get_live_user_activity(
        &self,
        Parameters(args): Parameters<LiveActivityArgs>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let refuse = |message: String| CallToolResult::error(vec![ContentBlock::text(message)]);
        let Some(product) = self.state.products.get(&args.product_id) else {
            return refuse(format!("unknown product {:?}", args.product_id));
        };
        if let Err(denied) = auth::check_product_key(&self.state.products, &product, &parts.headers)
        {
            metrics::inc(&self.state.metrics.auth_failures);
            return refuse(match denied {
                StreamDenied::Forbidden => {
                    format!("this API key is not a key of product {:?}", args.product_id)
                }
                StreamDenied::Unauthorized => "missing or invalid API key".to_owned(),
            });
        }
        let limit = match args.limit {
            None => live_activity::DEFAULT_LIMIT,
            Some(n) => match live_activity::parse_limit(Some(&n.to_string())) {
                Ok(n) => n,
                Err(message) => return refuse(message),
            },
        };
        let activity = live_activity::read(&product, &args.user_id, limit);
        let json = serde_json::to_string(&activity).expect("activity always serialises");
        CallToolResult::success(vec![ContentBlock::text(json)])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "autoplay-connector",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Autoplay streams what users do in a product's UI. Call get_live_user_activity \
                 with the product id and the user's id to see their recent actions and a summary.",
            )
    }
}

/// `/mcp`, behind the bearer check.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let tool_router = McpServer::tool_router();
    let factory_state = state.clone();
    let service: StreamableHttpService<McpServer, LocalSessionManager> = StreamableHttpService::new(
        move || {
            Ok(McpServer {
                state: factory_state.clone(),
                tool_router: tool_router.clone(),
            })
        },
        Default::default(),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .with_max_request_body_bytes(state.body_limit)
            .with_cancellation_token(state.shutdown.child_token())
            .disable_allowed_hosts(),
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state, require_product_key))
}

/// Refuses a request to `/mcp` without the key of some product.
async fn require_product_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let known = auth::bearer(request.headers()).is_some_and(|token| {
        let digest = crate::config::sha256(token.as_bytes());
        state.products.with_configs(|all| {
            all.flat_map(|p| p.api_keys.iter())
                .fold(false, |found, key| found | key.matches_digest(&digest))
        })
    });
    if !known {
        metrics::inc(&state.metrics.auth_failures);
        let mut response = json_error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}
