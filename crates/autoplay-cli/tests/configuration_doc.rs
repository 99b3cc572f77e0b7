//! `docs/configuration.md` cannot drift from the binary and the code: every flag of
//! `autoplay <sub> --help` is in the doc's section for that subcommand and every
//! flag the doc names exists; the `AUTOPLAY_*` variables the doc names are exactly
//! those the crates' sources read. (The TOML keys are checked by the connector's
//! `config::doc_reference` test.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/configuration.md"))
        .expect("docs/configuration.md is readable")
}

/// The `--long-flag` names in `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let mut end = start + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'-')
        {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('-');
        if before_ok && name.len() > 2 && bytes[start + 2].is_ascii_lowercase() {
            found.insert(name.to_owned());
        }
        i = end.max(start + 2);
    }
    found
}

/// The doc's text under `heading` (a `### ` line), up to the next heading.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}` heading"))
        + heading.len()
        + 2;
    let rest = &doc[start..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

fn help(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("the autoplay binary runs");
    assert!(output.status.success(), "autoplay {args:?} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_flag_is_documented_and_every_documented_flag_exists() {
    let doc = doc();
    let global = flags(section(&doc, "### Global flags"));
    let top = flags(&help(&[]));
    assert_eq!(
        top, global,
        "`autoplay --help` and the doc's \"Global flags\" disagree"
    );
    let mut all = top.clone();
    for sub in ["listen", "connector", "demo"] {
        let in_help = flags(&help(&[sub]));
        let in_doc = flags(section(&doc, &format!("### `autoplay {sub}`")));
        let undocumented: Vec<_> = in_help
            .difference(&in_doc)
            .filter(|f| !global.contains(*f))
            .collect();
        assert!(
            undocumented.is_empty(),
            "`autoplay {sub} --help` has flags the doc's `autoplay {sub}` section leaves out: {undocumented:?}"
        );
        let unknown: Vec<_> = in_doc.difference(&in_help).collect();
        assert!(
            unknown.is_empty(),
            "the doc's `autoplay {sub}` section names flags `autoplay {sub} --help` does not have: {unknown:?}"
        );
        all.extend(in_help);
    }
    let unknown: Vec<_> = flags(&doc)
        .into_iter()
        .filter(|f| !all.contains(f))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names flags no command has: {unknown:?}"
    );
}

/// The `AUTOPLAY_*` names in `text`; a name ending in `_` (`AUTOPLAY_LLM_*`) is a
/// family, not a variable.
fn variables(text: &str, quoted: bool) -> BTreeSet<String> {
    let needle = if quoted { "\"AUTOPLAY_" } else { "AUTOPLAY_" };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(needle) {
        let start = at + needle.len() - "AUTOPLAY_".len();
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let closed = text[start + name.len()..].starts_with('"');
        if !name.ends_with('_') && (!quoted || closed) {
            found.insert(name);
        }
    }
    found
}

/// Every `"AUTOPLAY_..."` string literal in the crates' shipped sources (`src/`,
/// and the Python package's modules), test fixtures (`AUTOPLAY_TEST_*`) aside.
fn variables_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.extend(variables(&text, true));
            }
        }
    }
    let mut found = BTreeSet::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        for shipped in ["src", "python"] {
            if krate.join(shipped).is_dir() {
                walk(&krate.join(shipped), &mut found);
            }
        }
    }
    found.retain(|name| !name.starts_with("AUTOPLAY_TEST_"));
    found
}

#[test]
fn the_documented_variables_are_the_ones_the_code_reads() {
    let in_code = variables_in_code();
    assert!(
        in_code.contains("AUTOPLAY_TOKEN") && in_code.contains("AUTOPLAY_LLM_BASE_URL"),
        "the source scan found too little: {in_code:?}"
    );
    let doc = doc();
    let table = section(&doc, "## Environment variables");
    let in_doc = variables(&doc, false);
    let in_table = variables(table, false);
    let missing: Vec<_> = in_code.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "the code reads variables docs/configuration.md's \"Environment variables\" leaves out: {missing:?}"
    );
    let unknown: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names variables no code reads: {unknown:?}"
    );
}

#[test]
fn connector_help_names_its_variables_and_the_reference() {
    let text = help(&["connector"]);
    for needle in [
        "AUTOPLAY_PRODUCTS",
        "AUTOPLAY_METRICS_TOKEN",
        "AUTOPLAY_LLM_BASE_URL",
        "AUTOPLAY_LLM_MODEL",
        "AUTOPLAY_LLM_API_KEY",
        "RUST_LOG",
        "docs/configuration.md",
    ] {
        assert!(
            text.contains(needle),
            "`autoplay connector --help` does not name {needle}"
        );
    }
    let text = help(&["demo"]);
    assert!(
        text.contains("AUTOPLAY_LLM_BASE_URL"),
        "`autoplay demo --help` does not name AUTOPLAY_LLM_BASE_URL"
    );
}
