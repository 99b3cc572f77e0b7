//! The admin API: products registered, listed, rotated and deleted at run time.
//!
//! | Request | Answer |
//! |---|---|
//! | `POST /admin/products` `{"id": "acme", "name": "Acme"}` (`name` optional) | `201` with the product, its `api_key` and `webhook_secret` (shown this once), `409` if the id is taken |
//! | `GET /admin/products` | `200` `{"products": [...]}`, by id, no secrets |
//! | `GET /admin/products/{id}` | `200` the product, no secrets; `404` |
//! | `POST /admin/products/{id}/rotate` `{"api_key": true, "webhook_secret": true}` (both default to `true`) | `200` with the new credentials; the old ones stop working at once |
//! | `DELETE /admin/products/{id}` | `204`; its replay window and stored events go too. The id cannot be registered again (`409`) for `session_idle_s` (until this process restarts at most): the deleted product's open sessions are forgotten only when idle, and a new product must not get summaries of them |
//!
//! A product is `{"id", "name", "source": "admin" | "config", "created_at",
//! "rotated_at"}` (unix seconds; `null` for a product of the configuration).
//! Products of the configuration file are listed but cannot be rotated or
//! deleted here (`409`): the file is their source and would bring them back,
//! with the old keys, at the next start.
//!
//! # Access
//!
//! Every `/admin` request needs `Authorization: Bearer <admin_token>` (401
//! otherwise). Without an admin token configured the whole API answers `404`:
//! it does not exist on that server, and a 403 would suggest that some
//! credential could open it.
//!
//! # Credentials
//!
//! Keys and secrets are 128 bits from the OS generator (`getrandom`). The API
//! key is stored only as its SHA-256, which is what every check compares
//! (constant time, 32 bytes against 32 bytes, as for keys of the file); it
//! cannot be shown again, only rotated. The webhook secret is stored as it is:
//! checking a `sha256=` HMAC signature needs the secret itself.
//!
//! # Persistence
//!
//! A registration, rotation or deletion is written to the store, and is durable
//! there, before it is answered: with the embedded store it survives a restart;
//! with the memory store it lasts as long as the process. The registry in
//! memory changes at the same time, so streams, webhooks, pull reads and MCP
//! see it from the next request on. With the Redis store the other replicas
//! are told through Redis (`follow_store`) and apply it within milliseconds
//! (after a Redis outage, when they subscribe again). Streams already open stay open after a
//! rotation (they were authorised when they started).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::clock::unix_secs;
use crate::config::{ApiKey, ConfigError, ProductConfig, Secret, random_key, sha256};
use crate::metrics;
use crate::server::{AppState, Product, json_error};
use crate::store::Store;
use crate::store::products::StoredProduct;

/// The largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The longest product name accepted.
pub const MAX_NAME_CHARS: usize = 256;

/// The `/admin` routes, behind the admin token.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/products", post(register).get(list))
        .route("/admin/products/{id}", get(show).delete(delete))
        .route("/admin/products/{id}/rotate", post(rotate))
        // Admin bodies are a few fields; the limit keeps an admin typo (or a
        // leaked token) from buffering megabytes.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// 404 when the admin API is off, 401 without the admin token; checked before
/// any body is read.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.admin_token else {
        return json_error(StatusCode::NOT_FOUND, "not found");
    };
    let presented = crate::auth::bearer(request.headers()).map(|t| sha256(t.as_bytes()));
    if !presented.is_some_and(|digest| bool::from(digest.ct_eq(expected))) {
        metrics::inc(&state.metrics.auth_failures);
        let mut response = json_error(StatusCode::UNAUTHORIZED, "missing or invalid admin token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// The product a registration describes, with its log from `store`.
pub(crate) fn runtime_product(
    store: &Store,
    stored: StoredProduct,
    summary_threshold: usize,
) -> Result<Product, ConfigError> {
    let log = store.log(&stored.id);
    product_with_log(stored, summary_threshold, log)
}

fn product_with_log(
    stored: StoredProduct,
    summary_threshold: usize,
    log: Arc<crate::store::ProductLog>,
) -> Result<Product, ConfigError> {
    crate::config::validate_product_id(&stored.id)?;
    let mut config = ProductConfig::new(stored.id.clone());
    config.api_keys = vec![ApiKey::from_sha256_hex(&stored.api_key_sha256)?];
    config.webhook_secret = Some(Secret::new(stored.webhook_secret.clone()));
    Ok(Product {
        id: Arc::from(stored.id.as_str()),
        config,
        summary_threshold,
        log,
        registered: Some(stored),
    })
}

/// Applies what the store says other replicas changed (the Redis store):
/// products registered, rotated or deleted there, and emails learnt there, are
/// served here from the next request on. Ends with the store's subscription.
pub(crate) fn follow_store(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    use crate::store::redis::Change;
    let mut changes = state.store.follow()?;
    Some(tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            match change {
                Change::All { products, emails } => {
                    let known: std::collections::HashSet<String> =
                        products.iter().map(|p| p.id.clone()).collect();
                    for stored in products {
                        apply_product(&state, &stored.id.clone(), Some(stored)).await;
                    }
                    // Registered products the store no longer has were
                    // deleted while this replica was not listening.
                    for product in state.products.all() {
                        if product.registered.is_some() && !known.contains(&*product.id) {
                            apply_product(&state, &product.id, None).await;
                        }
                    }
                    for (product_id, user_id, email) in emails {
                        learn_email(&state, &product_id, user_id, email);
                    }
                }
                Change::Product { id, record } => apply_product(&state, &id, record).await,
                // A forgotten email is forgotten here when it is idle here.
                Change::Email {
                    product_id,
                    user_id,
                    email: Some(email),
                } => learn_email(&state, &product_id, user_id, email),
                Change::Email { email: None, .. } => {}
            }
        }
    }))
}

fn learn_email(state: &AppState, product_id: &str, user_id: String, email: String) {
    state.emails.restore(
        &state.products,
        vec![(product_id.to_owned(), user_id, email)],
    );
}

/// Makes the registry hold `record` for `id` (`None`: not hold it), as the
/// store has it. Under the admin lock, so that a change this replica is making
/// is finished before its own message is applied (and then changes nothing).
async fn apply_product(state: &AppState, id: &str, record: Option<StoredProduct>) {
    let mut deleted = state.admin_writes.lock().await;
    let current = state.products.get(id);
    if current.as_ref().is_some_and(|c| c.registered.is_none()) {
        // A product of the configuration file: the file wins (see bind).
        return;
    }
    match (current, record) {
        (Some(current), Some(stored)) if current.registered.as_ref() == Some(&stored) => {}
        (Some(current), Some(stored)) => {
            // The same registration rotated keeps its log; a new one (deleted
            // and registered again) gets a new one.
            let same = current
                .registered
                .as_ref()
                .is_some_and(|r| r.created_at == stored.created_at);
            let log = if same {
                current.log.clone()
            } else {
                state.store.fresh_log(id)
            };
            match product_with_log(stored, current.summary_threshold, log) {
                Ok(product) => {
                    state.products.replace(&current, Arc::new(product));
                    info!(product_id = id, "product changed on another replica");
                }
                Err(error) => {
                    warn!(%error, "a registered product in the store is unusable; skipped")
                }
            }
        }
        (None, Some(stored)) => {
            match runtime_product(&state.store, stored, state.summary_threshold) {
                Ok(product) => {
                    let _ = state.products.insert_new(Arc::new(product));
                    info!(product_id = id, "product registered on another replica");
                }
                Err(error) => {
                    warn!(%error, "a registered product in the store is unusable; skipped")
                }
            }
        }
        (Some(current), None) => {
            state.products.remove(&current);
            deleted.insert(id.to_owned(), tokio::time::Instant::now());
            info!(product_id = id, "product deleted on another replica");
        }
        (None, None) => {}
    }
}

/// What the admin API shows of a product: never a secret.
fn describe(product: &Product) -> Value {
    match &product.registered {
        Some(stored) => json!({
            "id": stored.id,
            "name": stored.name,
            "source": "admin",
            "created_at": stored.created_at,
            "rotated_at": stored.rotated_at,
        }),
        None => json!({
            "id": &*product.id,
            "name": null,
            "source": "config",
            "created_at": null,
            "rotated_at": null,
        }),
    }
}

/// A refusal: status and message, rendered as `{"error": …}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        json_error(self.0, &self.1)
    }
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object: {e}"),
        )
    })
}

async fn persist(
    state: &AppState,
    product_id: &str,
    record: Option<&StoredProduct>,
) -> Result<(), Refusal> {
    let ticket = state.store.put_product(product_id, record);
    state.store.durable(ticket).await.map_err(|e| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store could not write the change: {e}"),
        )
    })
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn register(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: RegisterBody = match parse_body(&body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(id) = body.id else {
        return json_error(StatusCode::BAD_REQUEST, "the body needs an \"id\"");
    };
    if let Err(ConfigError::Invalid(message)) = crate::config::validate_product_id(&id) {
        return json_error(StatusCode::BAD_REQUEST, &message);
    }
    if body
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("name must be at most {MAX_NAME_CHARS} characters"),
        );
    }
    let mut deleted = state.admin_writes.lock().await;
    if state.products.get(&id).is_some() {
        return json_error(StatusCode::CONFLICT, "a product with this id exists");
    }
    // The sessions of a deleted product are forgotten only when they go idle;
    // until then a new product under its id would get summaries of them.
    let idle = state.session_idle_timeout;
    deleted.retain(|_, at| at.elapsed() < idle);
    if let Some(at) = deleted.get(&id) {
        let wait = idle.saturating_sub(at.elapsed()).as_secs() + 1;
        return json_error(
            StatusCode::CONFLICT,
            &format!(
                "a product with this id was deleted less than session_idle_s ago; its sessions \
                 are still being forgotten: register it again in {wait} s, or under another id"
            ),
        );
    }
    let api_key = random_key("ak_");
    let webhook_secret = random_key("whsec_");
    let stored = StoredProduct {
        id: id.clone(),
        name: body.name,
        api_key_sha256: hex::encode(sha256(api_key.expose().as_bytes())),
        webhook_secret: webhook_secret.expose().to_owned(),
        created_at: unix_secs(),
        rotated_at: None,
    };
    // Forgetting the id first drops whatever a durable store still holds of a
    // product deleted under it (its events), in the same queue, in order.
    let _ = state.store.put_product(&id, None);
    if let Err(response) = persist(&state, &id, Some(&stored)).await {
        return response.into_response();
    }
    let log = state.store.fresh_log(&id);
    let product = match product_with_log(stored, state.summary_threshold, log) {
        Ok(product) => Arc::new(product),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut answer = describe(&product);
    if state.products.insert_new(product).is_err() {
        // Cannot happen while admin writes are serialised and the file's
        // products are fixed; refuse rather than overwrite.
        return json_error(StatusCode::CONFLICT, "a product with this id exists");
    }
    info!(product_id = id, "product registered through the admin API");
    answer["api_key"] = json!(api_key.expose());
    answer["webhook_secret"] = json!(webhook_secret.expose());
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn list(State(state): State<Arc<AppState>>) -> Response {
    let mut products = state.products.all();
    products.sort_by(|a, b| a.id.cmp(&b.id));
    let products: Vec<Value> = products.iter().map(|p| describe(p)).collect();
    axum::Json(json!({ "products": products })).into_response()
}

async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.products.get(&id) {
        Some(product) => axum::Json(describe(&product)).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "unknown product"),
    }
}

fn config_product_conflict(action: &str) -> Response {
    json_error(
        StatusCode::CONFLICT,
        &format!(
            "this product comes from the configuration file; {action} it there (the file would bring it back at the next start)"
        ),
    )
}

async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let mut deleted = state.admin_writes.lock().await;
    let Some(product) = state.products.get(&id) else {
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    if product.registered.is_none() {
        return config_product_conflict("remove");
    }
    if let Err(response) = persist(&state, &id, None).await {
        return response.into_response();
    }
    state.products.remove(&product);
    deleted.insert(id.clone(), tokio::time::Instant::now());
    info!(product_id = id, "product deleted through the admin API");
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default = "yes")]
    api_key: bool,
    #[serde(default = "yes")]
    webhook_secret: bool,
}

fn yes() -> bool {
    true
}

impl Default for RotateBody {
    fn default() -> Self {
        Self {
            api_key: true,
            webhook_secret: true,
        }
    }
}

async fn rotate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: RotateBody = match parse_body(&body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if !body.api_key && !body.webhook_secret {
        return json_error(
            StatusCode::BAD_REQUEST,
            "nothing to rotate: api_key and webhook_secret are both false",
        );
    }
    let _writing = state.admin_writes.lock().await;
    let Some(current) = state.products.get(&id) else {
        return json_error(StatusCode::NOT_FOUND, "unknown product");
    };
    let Some(mut stored) = current.registered.clone() else {
        return config_product_conflict("change its keys");
    };
    let mut answer = json!({ "id": id });
    if body.api_key {
        let key = random_key("ak_");
        stored.api_key_sha256 = hex::encode(sha256(key.expose().as_bytes()));
        answer["api_key"] = json!(key.expose());
    }
    if body.webhook_secret {
        let secret = random_key("whsec_");
        stored.webhook_secret = secret.expose().to_owned();
        answer["webhook_secret"] = json!(secret.expose());
    }
    stored.rotated_at = Some(unix_secs());
    if let Err(response) = persist(&state, &id, Some(&stored)).await {
        return response.into_response();
    }
    // The same log: subscribers, ids and the window carry on.
    let product = match product_with_log(stored, current.summary_threshold, current.log.clone()) {
        Ok(product) => Arc::new(product),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    state.products.replace(&current, product);
    info!(
        product_id = id,
        api_key = body.api_key,
        webhook_secret = body.webhook_secret,
        "product credentials rotated through the admin API"
    );
    axum::Json(answer).into_response()
}
