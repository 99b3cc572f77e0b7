//! PostHog's `elements_chain`: the element acted on and its ancestors, as one string.

use std::collections::HashMap;

/// Parses PostHog's `elements_chain`: elements separated by `;`, each
/// `tag.class1.class2:key="value"key2="value2"`, target first. Quotes inside values
/// are escaped with a backslash.
pub fn parse_elements_chain(chain: &str) -> Vec<HashMap<String, String>> {
    let mut elements = Vec::new();
    for part in split_outside_quotes(chain, ';') {
        let mut element = HashMap::new();
        let (head, attrs) = match find_outside_quotes(part, ':') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, ""),
        };
        let tag = head.split('.').next().unwrap_or("").trim();
        if !tag.is_empty() {
            element.insert("tag_name".to_owned(), tag.to_owned());
        }
        let mut rest = attrs;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim();
            let value_start = eq + 2;
            let mut value = String::new();
            let mut end = None;
            let mut chars = rest[value_start..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(value_start + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let name = if key == "text" { "$el_text" } else { key };
            if !name.is_empty() {
                element.insert(name.to_owned(), value);
            }
            match end {
                Some(end) => rest = &rest[end..],
                None => break,
            }
        }
        if !element.is_empty() {
            elements.push(element);
        }
    }
    elements
}

fn find_outside_quotes(s: &str, needle: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == needle && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_outside_quotes(rest, sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    parts.push(rest);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_chain_parsing() {
        let chain = r#"button.btn.primary:text="Say \"hi\"; now"attr__aria-label="Greet"nth-child="1";div.row:nth-child="2""#;
        let els = parse_elements_chain(chain);
        assert_eq!(els.len(), 2);
        assert_eq!(els[0]["tag_name"], "button");
        assert_eq!(els[0]["$el_text"], "Say \"hi\"; now");
        assert_eq!(els[0]["attr__aria-label"], "Greet");
        assert_eq!(els[1]["tag_name"], "div");
    }
}
