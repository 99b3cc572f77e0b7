//! Products registered at run time (the admin API), as a store keeps them.
//!
//! The memory store keeps none (the registry in memory is all there is); the
//! embedded store writes each one to its `products` table before the admin
//! request that made it is answered, and reads them back on open; the Redis
//! store keeps them in the hash `autoplay:products` (id → this, as JSON), read
//! by every replica when it starts and again when another one tells it changed
//! one (`autoplay:changes`).

use serde::{Deserialize, Serialize};

/// A product registered through `POST /admin/products`.
///
/// The API key is kept only as its SHA-256 (what stream and pull reads compare
/// against, as for configured keys); the webhook secret is kept as given, since
/// verifying a `sha256=` HMAC signature needs the secret itself.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StoredProduct {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Hex SHA-256 of the API key.
    pub api_key_sha256: String,
    pub webhook_secret: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last rotation, if any.
    #[serde(default)]
    pub rotated_at: Option<u64>,
}

// By hand, so that a debug print (or a log of one) never shows the secret.
impl std::fmt::Debug for StoredProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredProduct")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("webhook_secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("rotated_at", &self.rotated_at)
            .finish_non_exhaustive()
    }
}
