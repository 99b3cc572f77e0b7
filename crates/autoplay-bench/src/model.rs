//! What a peer client decodes into: plain serde structs with owned strings, the
//! way an application using a generic SSE crate + serde_json would write them
//! (`properties` as a `serde_json::Map`). Used by consumers (e), (f) and the
//! read+decode limit (g).

use serde::Deserialize;

/// One UI action.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
pub struct Action {
    pub event_type: String,
    pub title: String,
    pub description: String,
    pub canonical_url: String,
    pub raw_url: Option<String>,
    pub ts: Option<String>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// An `actions` event.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
pub struct Actions {
    pub product_id: String,
    pub session_id: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub ts: Option<String>,
    pub forwarded_at: Option<f64>,
    pub count: Option<u64>,
    pub actions: Vec<Action>,
}

/// A `summary` event.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
pub struct Summary {
    pub product_id: String,
    pub session_id: String,
    pub summary: String,
    pub replaces: Option<u64>,
    pub forwarded_at: Option<f64>,
}

/// Decodes one event by its SSE event name; `true` when it was a typed payload.
pub fn decode(event: &str, data: &str) -> bool {
    match event {
        "actions" => serde_json::from_str::<Actions>(data)
            .map(std::hint::black_box)
            .is_ok(),
        "summary" => serde_json::from_str::<Summary>(data)
            .map(std::hint::black_box)
            .is_ok(),
        _ => false,
    }
}
