//! The HTTP server: routes, shared state, startup and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ConfigError, ConnectorConfig, ProductConfig};
use crate::ingest::{self, EmailBook};
use crate::metrics::{self, Metrics};
use crate::products::Registry;
use crate::replay::ReplayWindow;
use crate::store::products::StoredProduct;
use crate::store::{ProductLog, Store, StoreError};
use crate::stream;
use crate::summary::{self, Summaries};
use crate::tickets::{self, TicketKey};
use crate::ui;
use crate::write_timeout::WriteTimeout;

/// Why the connector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or serving failed.
    #[error("connector I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One product at run time.
pub(crate) struct Product {
    pub id: Arc<str>,
    pub config: ProductConfig,
    pub summary_threshold: usize,
    pub log: Arc<ProductLog>,
    /// What the admin API registered; `None` for a product of the configuration.
    pub registered: Option<StoredProduct>,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub products: Registry,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub summaries: Summaries,
    pub emails: EmailBook,
    pub heartbeat: Duration,
    pub body_limit: usize,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_frame_bytes: usize,
    /// SHA-256 of the token `/metrics` needs, if any.
    pub metrics_token: Option<[u8; 32]>,
    /// SHA-256 of the admin token; the admin API is off when `None`.
    pub admin_token: Option<[u8; 32]>,
    /// Serialises the admin API's writes (rare), so a check and the write it
    /// decides are one step; holds the ids deleted within the session idle
    /// timeout, and when.
    pub admin_writes: tokio::sync::Mutex<HashMap<String, tokio::time::Instant>>,
    /// Actions per summary for products that do not set one.
    pub summary_threshold: usize,
    pub session_idle_timeout: Duration,
    pub tickets: TicketKey,
    pub shutdown: CancellationToken,
}

/// A JSON error body: `{"error": "<message>"}`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Stops a running [`Connector`] from anywhere; clone it freely.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts a graceful shutdown: open streams end, in-flight requests finish,
    /// then [`Connector::serve`] returns.
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// A bound, not yet serving, connector.
///
/// ```no_run
/// use autoplay_connector::{Connector, ConnectorConfig};
///
/// # async fn run() -> Result<(), autoplay_connector::Error> {
/// let mut config = ConnectorConfig::default();
/// if let Some(demo) = config.ensure_default_product() {
///     println!("stream key for {}: {}", demo.id, demo.api_key.expose());
/// }
/// let connector = Connector::bind(config).await?;
/// println!("stream: {}", connector.stream_url("demo"));
/// connector.serve_with_shutdown(autoplay_connector::shutdown_signal()).await
/// # }
/// ```
pub struct Connector {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AppState>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Validates `config` and binds its listen address (port 0 picks a free one).
    pub async fn bind(config: ConnectorConfig) -> Result<Self, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(
            &config.store,
            ReplayWindow {
                events: config.replay_capacity,
                bytes: config.replay_bytes,
            },
            config.subscriber_buffer,
            metrics.clone(),
        )?;
        let products = config
            .products
            .iter()
            .map(|p| {
                if p.api_keys.is_empty() {
                    warn!(
                        product_id = p.id,
                        "product has no API key: nobody can read its stream"
                    );
                }
                match (&p.webhook_secret, p.ingest_with_api_keys) {
                    (Some(_), _) => {}
                    (None, true) => info!(
                        product_id = p.id,
                        "product has no webhook secret: ingest accepts its API keys instead"
                    ),
                    (None, false) => warn!(
                        product_id = p.id,
                        "product has no webhook secret and ingest_with_api_keys is off: \
                         every webhook to it gets 401; set webhook_secret"
                    ),
                }
                let product = Product {
                    id: Arc::from(p.id.as_str()),
                    config: p.clone(),
                    summary_threshold: p.summary_threshold.unwrap_or(config.summary_threshold),
                    log: store.log(&p.id),
                    registered: None,
                };
                (p.id.clone(), Arc::new(product))
            })
            .collect::<HashMap<_, _>>();
        let mut products = products;
        for stored in store.take_products() {
            if products.contains_key(&stored.id) {
                // The file is what the operator controls; a registration it
                // now shadows stays in the store, unused.
                warn!(
                    product_id = stored.id,
                    "a product registered through the admin API is also in the configuration; \
                     the configuration's keys are used"
                );
                continue;
            }
            match crate::admin::runtime_product(&store, stored, config.summary_threshold) {
                Ok(product) => {
                    products.insert(product.id.to_string(), Arc::new(product));
                }
                Err(error) => {
                    warn!(%error, "a registered product in the store is unusable; skipped")
                }
            }
        }
        let backend = if config.llm.is_some() {
            "llm"
        } else {
            "embedded"
        };
        info!(
            %local_addr,
            products = ?products.keys().map(String::as_str).collect::<Vec<_>>(),
            summaries = backend,
            store = %config.store,
            "connector bound"
        );
        let state = AppState {
            products: Registry::new(products),
            admin_token: config
                .admin_token
                .as_ref()
                .map(|t| crate::config::sha256(t.expose().as_bytes())),
            admin_writes: tokio::sync::Mutex::new(HashMap::new()),
            summary_threshold: config.summary_threshold,
            summaries: Summaries::new(config.llm.clone(), metrics.clone(), store.is_durable()),
            metrics,
            emails: EmailBook::default(),
            heartbeat: config.heartbeat_interval,
            body_limit: config.body_limit,
            body_read_timeout: config.body_read_timeout,
            write_timeout: config.write_timeout,
            metrics_token: config
                .metrics_token
                .as_ref()
                .map(|t| crate::config::sha256(t.expose().as_bytes())),
            max_frame_bytes: config.max_frame_bytes,
            session_idle_timeout: config.session_idle_timeout,
            tickets: TicketKey::new(config.ticket_ttl),
            shutdown: CancellationToken::new(),
            store,
        };
        Ok(Self {
            listener,
            local_addr,
            state: Arc::new(state),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>/stream/<product_id>`.
    pub fn stream_url(&self, product_id: &str) -> String {
        format!("http://{}/stream/{product_id}", self.local_addr)
    }

    /// `http://<local_addr>/webhook/<product_id>`.
    pub fn webhook_url(&self, product_id: &str) -> String {
        format!("http://{}/webhook/{product_id}", self.local_addr)
    }

    /// `http://<local_addr>/ui`: the live view in a browser.
    pub fn ui_url(&self) -> String {
        format!("http://{}/ui", self.local_addr)
    }

    /// A handle that stops [`serve`](Self::serve).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.state.shutdown.clone())
    }

    /// The live counters (what `GET /metrics` renders).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Serves until a [`ShutdownHandle`] asks it to stop.
    pub async fn serve(self) -> Result<(), Error> {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Serves until `signal` completes or a [`ShutdownHandle`] asks it to stop
    /// (pass [`shutdown_signal`] for SIGINT/SIGTERM). Open streams are ended so the
    /// shutdown does not wait on them.
    pub async fn serve_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let state = self.state;
        let restored = state.store.take_restored();
        state.emails.restore(&state.products, restored.emails);
        summary::resume_pending(&state, restored.sessions);
        let follower = crate::admin::follow_store(state.clone());
        let token = state.shutdown.clone();
        let sweeper = tokio::spawn(sweep_idle(state.clone()));
        let app = router(state.clone());
        let trigger = token.clone();
        let stopped = async move {
            tokio::select! {
                _ = signal => trigger.cancel(),
                _ = trigger.cancelled() => {}
            }
            info!("connector shutting down");
        };
        let limits = ConnectionLimits {
            write_timeout: state.write_timeout,
            metrics: state.metrics.clone(),
        };
        serve_connections(self.listener, app, limits, stopped).await;
        token.cancel();
        sweeper.abort();
        if let Some(follower) = follower {
            follower.abort();
        }
        state.store.close();
        info!("connector stopped");
        Ok(())
    }
}

/// Accepts connections and serves HTTP/1.1 on each until `stopped`, then lets the
/// open ones finish.
///
/// Written out rather than `axum::serve` for memory: a subscriber holds its
/// connection for hours, so what one connection keeps decides how many fit. Capping
/// hyper's read buffer at its 8 KiB minimum (request heads and body reads above it
/// are read in several steps; a head over 8 KiB gets 431) and serving one shared
/// `Router` instead of re-deriving it per connection cut an idle subscriber from
/// ~25 KiB to ~13.5 KiB (glibc; `docs/benchmarks.md`, part 4).
///
/// Each socket is wrapped in a write timeout: a peer that takes no byte for
/// [`ConnectorConfig::write_timeout`] (a subscriber that stopped reading, its
/// socket buffers full) has its connection closed, so it holds no descriptor and
/// no queue. Without it, hyper waits on that write for ever.
async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stopped: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_READ_BUFFER)
        .timer(hyper_util::rt::TokioTimer::new());
    let service = TowerToHyperService::new(app);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stopped);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        // Without TCP_NODELAY, Nagle's algorithm holds a frame written while an
        // earlier one is unacknowledged, and the client's delayed ACK turns that
        // into milliseconds of latency per event on a live stream.
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY on an accepted connection");
        }
        let io = WriteTimeout::new(tcp, limits.write_timeout);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service.clone()));
        let metrics = limits.metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                if is_write_timeout(&error) {
                    metrics::inc(&metrics.write_timeouts);
                    info!("closed a connection that took nothing for the write timeout");
                } else {
                    debug!(%error, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What every connection is held to.
struct ConnectionLimits {
    write_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Whether hyper gave up on a connection because [`WriteTimeout`] timed out.
fn is_write_timeout(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// hyper's smallest allowed read buffer.
const MAX_READ_BUFFER: usize = 8 * 1024;

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/webhook/{product_id}", post(ingest::webhook))
        .route("/events/{product_id}", post(ingest::events))
        .route("/stream/{product_id}", get(stream::stream))
        .route("/tickets/{product_id}", post(tickets::issue))
        .route("/", get(ui::index))
        .route("/ui", get(ui::page))
        .route("/ui/live.js", get(ui::script))
        .route("/ui/live.css", get(ui::style))
        .route(
            "/users/{product_id}/{user_id}/live-activity",
            get(crate::live_activity::handler),
        )
        .merge(crate::mcp::router(state.clone()))
        .merge(crate::admin::router(state.clone()))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// `ok`, or `degraded` while the store (Redis) is unreachable: streams stay
/// open, webhooks get 503. Still 200: every replica shares the store, so
/// taking this one out of a load balancer would not help.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.store.is_degraded() {
        return axum::Json(json!({
            "status": "degraded",
            "store": "unreachable",
            "detail": "the store is unreachable: open streams stay open, webhooks get 503 until it is back"
        }))
        .into_response();
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let presented = crate::auth::bearer(&headers).map(|t| crate::config::sha256(t.as_bytes()));
        if !presented.is_some_and(|digest| bool::from(digest.ct_eq(expected))) {
            metrics::inc(&state.metrics.auth_failures);
            let mut response =
                json_error(StatusCode::UNAUTHORIZED, "missing or invalid metrics token");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Forgets idle sessions and emails, a few times per idle period.
async fn sweep_idle(state: Arc<AppState>) {
    let idle = state.session_idle_timeout;
    let every = (idle / 4).clamp(Duration::from_millis(5), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        summary::forget_idle(&state, idle);
        state.emails.forget_idle(&state.store, idle);
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
