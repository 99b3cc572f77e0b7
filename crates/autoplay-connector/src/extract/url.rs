//! URLs as visited and as canonical routes, id-like path segments collapsed.

/// The path of a URL (everything from the first `/` after the host), without
/// query or fragment.
pub(super) fn path_of(url: &str) -> &str {
    let without_query = strip_query(url);
    match without_query.find("://") {
        Some(i) => {
            let after = &without_query[i + 3..];
            match after.find('/') {
                Some(j) => &after[j..],
                None => "/",
            }
        }
        None => without_query,
    }
}

fn strip_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The URL without query or fragment, with id-like path segments collapsed to
/// `:id` (see the crate docs for which segments count as ids).
pub fn canonical_url(url: &str) -> String {
    let base = strip_query(url.trim());
    let (origin, path) = match base.find("://") {
        Some(i) => match base[i + 3..].find('/') {
            Some(j) => base.split_at(i + 3 + j),
            None => (base, ""),
        },
        None => ("", base),
    };
    let mut out = String::with_capacity(base.len());
    out.push_str(origin);
    let mut first = true;
    for segment in path.split('/') {
        if !first {
            out.push('/');
        }
        first = false;
        if is_id_segment(segment) {
            out.push_str(":id");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Whether a path segment is an identifier rather than a route name.
pub fn is_id_segment(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(segment) {
        return true;
    }
    if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Mixed alphanumeric ids (Stripe-, Nano- or hash-style): long, one token, with
    // both letters and several digits, which route names rarely have.
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    bytes.len() >= 10
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && digits >= 2
        && letters >= 1
        && !segment.contains("--")
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths() {
        for id in [
            "8812",
            "4f9c2a7e-8b1d-4c3e-9a2f-1b2c3d4e5f60",
            "507f1f77bcf86cd799439011",
            "ch_3MmlLrLkdIwHu7ix0snN0B4F",
            "cus_9s6XKzkNRiz8i3",
        ] {
            assert!(is_id_segment(id), "{id}");
        }
        for word in [
            "settings",
            "billing",
            "v2",
            "oauth2",
            "user-profile-v2",
            "i18n",
            "2fa-setup",
            "",
        ] {
            assert!(!is_id_segment(word), "{word}");
        }
        assert_eq!(
            canonical_url("https://a.b/x/12/y/?q=1#f"),
            "https://a.b/x/:id/y/"
        );
        assert_eq!(canonical_url("https://a.b"), "https://a.b");
        assert_eq!(canonical_url("/p/99"), "/p/:id");
    }
}
