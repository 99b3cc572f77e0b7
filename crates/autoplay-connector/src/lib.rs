//! The Autoplay connector: PostHog webhooks in, typed UI actions and session
//! summaries out, over Server-Sent Events.
//!
//! ```text
//! browser (PostHog)  ──POST /webhook/{product}──▶  extract ─▶ group by session ─▶ summarise every N
//!                                                     │
//! client SDK  ◀──GET /stream/{product} (SSE)──  fan-out + replay window
//! ```
//!
//! This crate is the server as a library; the `autoplay connector` command is a
//! thin shell over it:
//!
//! ```no_run
//! use autoplay_connector::{Connector, ConnectorConfig, parse_product_spec};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ConnectorConfig::from_toml_file("autoplay.toml")?;
//! config.products.push(parse_product_spec("acme:ak_live_123:whsec_456")?);
//! config.apply_llm_env();
//! let connector = Connector::bind(config).await?;
//! println!("listening on {}", connector.local_addr());
//! connector.serve_with_shutdown(autoplay_connector::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # HTTP API
//!
//! | route | auth | replies |
//! |---|---|---|
//! | `POST /webhook/{product_id}` | webhook secret (below) | 200 `{"accepted": <events>, "actions": <actions>}`, 400 bad JSON or shape, 401, 404 unknown product, 408 body not in within the body timeout (15 s), 413 over the body limit (5 MiB; a Content-Length over it is refused before the body is read) |
//! | `POST /events/{product_id}` | same | same, `accepted` counting batches; body `{"session_id", "user_id"?, "email"?, "actions": [SlimAction...]}` or an array of those |
//! | `GET /stream/{product_id}` | `Authorization: Bearer <API key>`, or `?ticket=<stream ticket>` | 200 SSE, 401 missing or invalid key or ticket (also: an API key in the URL), 403 a key or ticket of another product, 404 unknown product; `?lastEventId=<n>` stands in for a missing `Last-Event-ID` header |
//! | `POST /tickets/{product_id}` | `Authorization: Bearer <API key>` | 200 `{"ticket", "expires_in_s", "stream"}`: a stream ticket for a browser's `EventSource`, valid for [`ConnectorConfig::ticket_ttl`] (60 s) and that product only; 401, 403, 404 as the stream |
//! | `GET /ui` | none (the page asks for the API key) | the live view: a product's sessions, actions and summaries as they arrive |
//! | `GET /` | none | a page naming these routes, linking to `/ui` |
//! | `GET /users/{product_id}/{user_id}/live-activity?limit=N` | `Authorization: Bearer <API key>` | 200 [`LiveActivity`](live_activity::LiveActivity) JSON (the user's newest actions oldest first, the latest summary), 400 bad `limit`, 401, 403, 404 as for the stream; see [`live_activity`] |
//! | `POST`/`GET`/`DELETE /mcp` | `Authorization: Bearer <API key>` of a product (401 otherwise) | MCP over streamable HTTP, tool `get_live_user_activity`; see [`mcp`] |
//! | `/admin/products[/{id}[/rotate]]` | `Authorization: Bearer <admin token>` ([`ConnectorConfig::admin_token`]); 404 when none is configured | register, list, show, rotate, delete products at run time; see [`admin`] |
//! | `GET /healthz` | none | 200 `{"status":"ok"}` |
//! | `GET /metrics` | none, or `Authorization: Bearer <metrics token>` when [`ConnectorConfig::metrics_token`] is set | Prometheus text; 401 without the token |
//!
//! **Webhook credentials.** Any one of: `X-PostHog-Secret: <secret>`;
//! `X-PostHog-Signature`, `X-Hub-Signature-256` or (PostHog's legacy webhooks)
//! `X-PostHog-Secret` set to `sha256=<hex HMAC-SHA256(secret, raw body)>` (see
//! [`sign_webhook`]); `Authorization: Bearer <secret>`. A product configured without
//! a webhook secret takes no webhook unless its config says `ingest_with_api_keys =
//! true` ([`ProductConfig::ingest_with_api_keys`]; the `ID:API_KEY` form of
//! [`parse_product_spec`] and the generated demo product say so): then its API keys
//! in the header or bearer forms. All comparisons are constant-time. Credentials are checked from the headers before
//! the body is read: only a signature needs the body, and it is read only up to
//! the limit and within the body timeout (408 after it).
//!
//! **Stream.** Each event is `id: <n>`, `event: actions|summary`, `data: <one-line
//! JSON with "type">`: the canonical JSON, each action carrying both generations'
//! fields, `event_type` and `ts` (read by the published 0.1.0 client) and `type`,
//! `index` (position in the payload), `timestamp_start`/`timestamp_end` (unix
//! seconds; an action ends where the next begins, the last where it began) and
//! `raw_url` (read by 0.13.0); see [`Event::to_stream_json`]. Ids are per product,
//! start at 1 and strictly increase. No frame is larger than
//! [`ConnectorConfig::max_frame_bytes`] (1 MiB): a bigger batch goes out as
//! several payloads of its session, in order. With `Last-Event-ID: n` a client
//! first gets every event after `n` still in the replay buffer (default the newest
//! 10,000 per product, fewer if they take more than 64 MiB), then live events, with
//! no gap and no duplicate. An `n` older than the buffer (or unknown to this
//! store) gets the whole buffer; the gap is logged and counted. A
//! heartbeat (`event: heartbeat`, empty `data:`) is sent every 30 s (configurable).
//! A subscriber whose send buffer fills up is disconnected, never skipped ahead:
//! it reconnects and resumes by id. Any connection that takes no byte for
//! [`ConnectorConfig::write_timeout`] (30 s; a subscriber that stopped reading) is
//! closed and counted (`autoplay_write_timeouts_total`).
//!
//! # Extraction
//!
//! A webhook body is one PostHog event (raw capture form, `"event": "<name>"` with
//! `properties`), the flat form of the Hog destination `autoplay-setup` creates
//! (`event`, `session_id`, `current_url`, `event_type`, `distinct_id`, `email`,
//! `referrer`, `timestamp`, `elements_chain` and the element fields
//! `button_or_link_text`, `input_field_name`, `element_id`, `link_destination`, all
//! top-level, `""` for absent), the CDP envelope (`{"event": {...}, "person":
//! {...}}`), an array of any of them, or `{"batch": [...]}`. The flat form's fields
//! stand for the capture form's `$session_id`, `$current_url`, `$event_type`,
//! `$referrer` and `email`; its element fields name the element only where
//! `elements_chain` does not, and `link_destination` is kept in `properties`. Each
//! event becomes at most one [`SlimAction`]:
//!
//! - **Dropped**: `$pageleave`, `$identify`, `$set`, `$groupidentify`,
//!   `$feature_flag_called`, `$web_vitals` and every other `$`-prefixed PostHog
//!   event not listed below (see [`extract::DROPPED_EVENTS`]). They still count as
//!   accepted, and any email they carry is learnt.
//! - **`$pageview`** (and `$screen`) → `pageview`; title from the `title`
//!   property (the document title), else `$title`/`$screen_name`, else the URL
//!   path; description `Viewed <title>`.
//! - **`$autocapture`** → by `$event_type`: `click` → `click`, `change` → `input`,
//!   `submit` → `submit` (others keep their name); `$rageclick` → `click`. The title
//!   is what the user saw: `$el_text`, else the target element's text, `aria-label`,
//!   `name`, `placeholder`, `title`, `alt` or `id` (from `$elements`, or parsed from
//!   `elements_chain`), else the nearest labelled ancestor, else the tag name.
//!   Descriptions: `Clicked '<title>'`, `Changed '<title>'`, `Submitted '<title>'`.
//! - **Custom events** (no `$`) → their name as `event_type` and title;
//!   description `Triggered <name>`.
//!
//! URLs come from `$current_url` (else `$host` + `$pathname`). `raw_url` keeps it
//! as visited; `canonical_url` drops the query and fragment and replaces id-like
//! path segments with `:id`: all digits, UUIDs, hex of 16+ characters, and mixed
//! alphanumeric tokens of 10+ characters with at least one letter and two digits
//! (`ch_3MmlLrLkdIwHu7ix0snN0B4F`; not `v2`, `oauth2` or `user-profile-v2`).
//! `ts` is the event's `timestamp`. `properties` keeps the event's own
//! (non-`$`) properties except `title`, `email`, `token` and `distinct_id`, plus
//! `referrer` from `$referrer`.
//!
//! The session is `$session_id` (else `distinct_id`), the user `distinct_id`, the
//! email the first of: the properties' `email`, `$set.email`, `$set_once.email`,
//! the envelope person's `email`, any other event of the request for that user,
//! and what earlier requests taught for that user. One [`ActionsPayload`] is
//! published per session per request, its actions in timestamp order, payloads
//! ordered by their first action; `ts` is the last action's time and
//! `forwarded_at` the time the connector published it.
//!
//! # Summaries
//!
//! After every N actions of a session (default 10 per product; 0 turns it off) a
//! [`SummaryPayload`] is published whose `replaces` is the number of actions it
//! covers. It is written by an OpenAI-compatible chat-completions endpoint when
//! configured ([`LlmConfig`], or the `AUTOPLAY_LLM_BASE_URL`, `AUTOPLAY_LLM_MODEL`
//! and `AUTOPLAY_LLM_API_KEY` variables through
//! [`ConnectorConfig::apply_llm_env`]), with a timeout; on any failure, and when no
//! LLM is configured, the embedded summariser writes one to three sentences
//! ([`summary::embedded_summary`]). Summaries are written off the ingest path and
//! never delay it; a session's summaries still go out in the order they fell due,
//! even when the LLM answers a later request first. Sessions idle longer than
//! [`ConnectorConfig::session_idle_timeout`] are forgotten.
//!
//! # Stores
//!
//! [`ConnectorConfig::store`] (`store` in the TOML file, `--store` on the
//! command line) says where the event logs, ids, replay windows and session
//! state live:
//!
//! - `memory` ([`StoreConfig::Memory`], the default, and `autoplay demo`): in
//!   this process. Fastest; a restart starts again at id 1 with an empty window
//!   and no pending summaries. For demos, tests, and deployments where a client
//!   may miss what happened across a restart.
//! - `file://<dir>` or a directory path ([`StoreConfig::Embedded`]): a redb
//!   database, `<dir>/autoplay.redb`, for a single-node deployment. Every event,
//!   session state and learnt email is on disk (fsync, group commit) before the
//!   webhook that produced it is answered 200; after a restart, `kill -9` or
//!   power loss included, ids go on from the newest one (never reused), clients
//!   resume with `Last-Event-ID` and get exactly what they missed, sessions keep
//!   their pending actions, summaries that were due are written, and learnt
//!   emails are known. A failed write answers 503 (PostHog retries). One
//!   connector per directory: a second one on it fails to start.
//! - `redis://host:port[/db]` ([`StoreConfig::Redis`]): Redis Streams, shared
//!   by any number of replicas. Each product's log is a stream; ids are Redis's
//!   (`ms-seq`); every replica tails the stream for its own subscribers, so a
//!   client moving between replicas resumes exactly; sessions are counted in
//!   Redis, so a summary is due once per threshold whichever replica gets the
//!   webhooks. While Redis is unreachable streams stay open, webhooks get 503
//!   and `/healthz` says `degraded`.
//!
//! A value that is none of these fails at start with the forms expected.
//! `docs/deploy.md` says how to run each and what is durable when.
//!
//! # Secrets
//!
//! API keys are kept only as SHA-256 digests; webhook and LLM secrets are
//! [`Secret`]s whose `Debug` prints `<redacted>`. Nothing logs a key or secret.
//!
//! [`SlimAction`]: autoplay_sdk::models::SlimAction
//! [`ActionsPayload`]: autoplay_sdk::models::ActionsPayload
//! [`SummaryPayload`]: autoplay_sdk::models::SummaryPayload
//! [`Event::to_stream_json`]: autoplay_sdk::models::Event::to_stream_json
#![warn(missing_docs)]

pub mod admin;
mod auth;
mod clock;
pub mod config;
pub mod extract;
mod fanout;
mod frames;
mod ingest;
pub mod live_activity;
pub mod mcp;
pub mod metrics;
mod products;
mod replay;
mod server;
mod store;
mod stream;
pub mod summary;
mod tickets;
mod ui;
mod write_timeout;

pub use auth::{SECRET_HEADER, SIGNATURE_HEADERS, sign_webhook};
pub use config::{
    ApiKey, ConfigError, ConnectorConfig, GeneratedProduct, LlmConfig, METRICS_TOKEN_ENV,
    PRODUCTS_ENV, ProductConfig, Secret, StoreConfig, parse_product_spec,
};
pub use metrics::Metrics;
pub use server::{Connector, Error, ShutdownHandle, shutdown_signal};
pub use store::StoreError;
pub use stream::LAST_EVENT_ID;
