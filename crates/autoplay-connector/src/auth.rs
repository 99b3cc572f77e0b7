//! Who may read a stream and who may post events.
//!
//! Every comparison is constant-time: API keys as SHA-256 digests (see
//! [`ApiKey`](crate::config::ApiKey)), webhook secrets likewise, HMAC signatures
//! through `hmac`'s own `verify_slice`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ProductConfig, sha256};

/// Header PostHog sends the webhook secret in.
pub const SECRET_HEADER: &str = "x-posthog-secret";
/// Signature headers accepted, each `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADERS: [&str; 2] = ["x-posthog-signature", "x-hub-signature-256"];

/// `sha256=<hex>`: the signature header value for `body` under `secret`, as a
/// sender computes it.
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Why a stream request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamDenied {
    /// No key, or a key of no product: 401.
    Unauthorized,
    /// A key of another product: 403.
    Forbidden,
}

/// Checks a stream request's bearer key against `product`, and against the others
/// to tell 403 from 401.
pub(crate) fn check_stream_key<'a>(
    product: &ProductConfig,
    all: impl Iterator<Item = &'a ProductConfig>,
    headers: &HeaderMap,
) -> Result<(), StreamDenied> {
    let Some(token) = bearer(headers) else {
        return Err(StreamDenied::Unauthorized);
    };
    let digest = sha256(token.as_bytes());
    // Every key is compared, not just up to the first match, so timing does not
    // tell which product a key belongs to.
    let ours = product
        .api_keys
        .iter()
        .fold(false, |found, key| found | key.matches_digest(&digest));
    if ours {
        return Ok(());
    }
    let theirs = all
        .filter(|other| other.id != product.id)
        .flat_map(|other| other.api_keys.iter())
        .fold(false, |found, key| found | key.matches_digest(&digest));
    Err(if theirs {
        StreamDenied::Forbidden
    } else {
        StreamDenied::Unauthorized
    })
}

/// Why an ingest request was refused (always 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IngestDenied {
    /// A signature header was present and did not verify.
    pub bad_signature: bool,
}

/// Accepts a webhook that proves the product's secret by any one of: a
/// `sha256=` HMAC of the raw body in `X-PostHog-Signature` or
/// `X-Hub-Signature-256`, the secret in `X-PostHog-Secret`, or
/// `Authorization: Bearer <secret>`. A product without a webhook secret accepts
/// its API keys in the latter two places instead.
pub(crate) fn verify_ingest(
    product: &ProductConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), IngestDenied> {
    let mut bad_signature = false;
    if let Some(secret) = &product.webhook_secret {
        for name in SIGNATURE_HEADERS {
            let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if verify_signature(secret.expose(), value, body) {
                return Ok(());
            }
            bad_signature = true;
        }
    }
    let presented = [
        headers
            .get(SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim),
        bearer(headers),
    ];
    for candidate in presented.into_iter().flatten() {
        let digest = sha256(candidate.as_bytes());
        let ok = match &product.webhook_secret {
            Some(secret) => bool::from(sha256(secret.expose().as_bytes()).ct_eq(&digest)),
            None => product
                .api_keys
                .iter()
                .fold(false, |found, key| found | key.matches_digest(&digest)),
        };
        if ok {
            return Ok(());
        }
    }
    Err(IngestDenied { bad_signature })
}

fn verify_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let header = header.trim();
    let hex_sig = header.strip_prefix("sha256=").unwrap_or(header);
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn stream_keys() {
        let acme = ProductConfig::new("acme").with_api_key("ka").unwrap();
        let beta = ProductConfig::new("beta").with_api_key("kb").unwrap();
        let all = [acme.clone(), beta.clone()];
        let check = |h: &[(&'static str, &str)]| check_stream_key(&acme, all.iter(), &headers(h));
        assert_eq!(check(&[("authorization", "Bearer ka")]), Ok(()));
        assert_eq!(check(&[("authorization", "bearer  ka ")]), Ok(()));
        assert_eq!(
            check(&[("authorization", "Bearer kb")]),
            Err(StreamDenied::Forbidden)
        );
        assert_eq!(
            check(&[("authorization", "Bearer nope")]),
            Err(StreamDenied::Unauthorized)
        );
        assert_eq!(
            check(&[("authorization", "Basic ka")]),
            Err(StreamDenied::Unauthorized)
        );
        assert_eq!(check(&[]), Err(StreamDenied::Unauthorized));
    }

    #[test]
    fn webhook_secrets() {
        let p = ProductConfig::new("acme")
            .with_api_key("ka")
            .unwrap()
            .with_webhook_secret("whsec");
        let body = br#"{"event":"x"}"#;
        let sig = sign_webhook("whsec", body);
        assert!(verify_ingest(&p, &headers(&[("x-posthog-signature", &sig)]), body).is_ok());
        assert!(verify_ingest(&p, &headers(&[("x-hub-signature-256", &sig)]), body).is_ok());
        assert!(verify_ingest(&p, &headers(&[("x-posthog-secret", "whsec")]), body).is_ok());
        assert!(verify_ingest(&p, &headers(&[("authorization", "Bearer whsec")]), body).is_ok());
        assert_eq!(
            verify_ingest(
                &p,
                &headers(&[("x-posthog-signature", &sign_webhook("other", body))]),
                body
            ),
            Err(IngestDenied {
                bad_signature: true
            })
        );
        assert_eq!(
            verify_ingest(&p, &headers(&[("x-posthog-signature", &sig)]), b"tampered"),
            Err(IngestDenied {
                bad_signature: true
            })
        );
        assert_eq!(
            verify_ingest(&p, &headers(&[("x-posthog-secret", "wrong")]), body),
            Err(IngestDenied {
                bad_signature: false
            })
        );
        // With a secret configured, the API key is not a webhook credential.
        assert!(verify_ingest(&p, &headers(&[("authorization", "Bearer ka")]), body).is_err());
        assert!(verify_ingest(&p, &headers(&[]), body).is_err());

        let open = ProductConfig::new("demo").with_api_key("kd").unwrap();
        assert!(verify_ingest(&open, &headers(&[("authorization", "Bearer kd")]), body).is_ok());
        assert!(verify_ingest(&open, &headers(&[("x-posthog-secret", "kd")]), body).is_ok());
        assert!(verify_ingest(&open, &headers(&[]), body).is_err());
    }
}
