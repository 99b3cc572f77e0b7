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

/// [`check_stream_key`] against the products of now: `product`'s keys, and the
/// others' to tell 403 from 401.
pub(crate) fn check_product_key(
    products: &crate::products::Registry,
    product: &crate::server::Product,
    headers: &HeaderMap,
) -> Result<(), StreamDenied> {
    products.with_configs(|all| check_stream_key(&product.config, all, headers))
}

/// Why an ingest request was refused (always 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IngestDenied {
    /// A signature header was present and did not verify.
    pub bad_signature: bool,
}

/// What an ingest request's headers prove, decided before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IngestCheck {
    /// A secret (or, for a product without one, an API key) matched.
    Accepted,
    /// Only `sha256=` signatures were offered: they hold if one of these HMACs
    /// is the body's.
    Signed(Vec<[u8; 32]>),
}

/// Checks an ingest request's headers. A request proves the product's secret by
/// any one of: the secret in `X-PostHog-Secret` or `Authorization: Bearer`, or a
/// `sha256=<hex HMAC of the raw body>` in `X-PostHog-Signature`,
/// `X-Hub-Signature-256` or `X-PostHog-Secret` (PostHog's legacy webhooks). A
/// product without a webhook secret accepts nothing, unless its config says
/// `ingest_with_api_keys`: then its API keys in the first two places, and no
/// signature.
///
/// Only the signature form needs the body, so everything else is refused or
/// accepted here, before a byte of the body is read.
pub(crate) fn check_ingest_headers(
    product: &ProductConfig,
    headers: &HeaderMap,
) -> Result<IngestCheck, IngestDenied> {
    let secret_header = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    for candidate in [secret_header, bearer(headers)].into_iter().flatten() {
        let digest = sha256(candidate.as_bytes());
        let ok = match &product.webhook_secret {
            Some(secret) => bool::from(sha256(secret.expose().as_bytes()).ct_eq(&digest)),
            None if product.ingest_with_api_keys => product
                .api_keys
                .iter()
                .fold(false, |found, key| found | key.matches_digest(&digest)),
            None => false,
        };
        if ok {
            return Ok(IngestCheck::Accepted);
        }
    }
    if product.webhook_secret.is_none() {
        return Err(IngestDenied {
            bad_signature: false,
        });
    }
    let offered = SIGNATURE_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name).map(|v| v.to_str().ok()))
        .chain(secret_header.filter(|v| v.starts_with("sha256=")).map(Some));
    let mut signatures = Vec::new();
    let mut bad_signature = false;
    for value in offered {
        match value.and_then(parse_signature) {
            Some(mac) => signatures.push(mac),
            None => bad_signature = true,
        }
    }
    if signatures.is_empty() {
        Err(IngestDenied { bad_signature })
    } else {
        Ok(IngestCheck::Signed(signatures))
    }
}

/// `sha256=<64 hex>` (the prefix optional) as the 32 bytes of the MAC.
fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let value = value.trim();
    let hex_sig = value.strip_prefix("sha256=").unwrap_or(value);
    let mut mac = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut mac).ok()?;
    Some(mac)
}

/// Whether one of `signatures` is the HMAC of `body` under the product's secret.
pub(crate) fn verify_signatures(
    product: &ProductConfig,
    signatures: &[[u8; 32]],
    body: &[u8],
) -> Result<(), IngestDenied> {
    let denied = IngestDenied {
        bad_signature: true,
    };
    let secret = product.webhook_secret.as_ref().ok_or(denied)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let ok = signatures
        .iter()
        .fold(false, |found, sig| found | bool::from(expected.ct_eq(sig)));
    if ok { Ok(()) } else { Err(denied) }
}

/// Both steps at once, as the handlers run them.
#[cfg(test)]
fn verify_ingest(
    product: &ProductConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), IngestDenied> {
    match check_ingest_headers(product, headers)? {
        IngestCheck::Accepted => Ok(()),
        IngestCheck::Signed(signatures) => verify_signatures(product, &signatures, body),
    }
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
        // PostHog's legacy webhooks sign in the secret's own header.
        assert!(verify_ingest(&p, &headers(&[("x-posthog-secret", &sig)]), body).is_ok());
        assert_eq!(
            verify_ingest(&p, &headers(&[("x-posthog-secret", &sig)]), b"tampered"),
            Err(IngestDenied {
                bad_signature: true
            })
        );
        assert_eq!(
            check_ingest_headers(&p, &headers(&[("x-posthog-secret", "sha256=zz")])),
            Err(IngestDenied {
                bad_signature: true
            })
        );
        // A plain credential is decided from the headers; a signature needs the body.
        assert_eq!(
            check_ingest_headers(&p, &headers(&[("x-posthog-secret", "whsec")])),
            Ok(IngestCheck::Accepted)
        );
        assert!(matches!(
            check_ingest_headers(&p, &headers(&[("x-posthog-signature", &sig)])),
            Ok(IngestCheck::Signed(_))
        ));
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

        // Without a secret, the stream key is no ingest credential unless asked for.
        let closed = ProductConfig::new("demo").with_api_key("kd").unwrap();
        assert!(verify_ingest(&closed, &headers(&[("authorization", "Bearer kd")]), body).is_err());
        assert!(verify_ingest(&closed, &headers(&[("x-posthog-secret", "kd")]), body).is_err());
        let open = closed.with_ingest_by_api_keys();
        assert!(verify_ingest(&open, &headers(&[("authorization", "Bearer kd")]), body).is_ok());
        assert!(verify_ingest(&open, &headers(&[("x-posthog-secret", "kd")]), body).is_ok());
        assert!(verify_ingest(&open, &headers(&[]), body).is_err());
    }
}
