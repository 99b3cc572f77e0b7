//! Errors say what to fix and show the expected form: the real `autoplay`
//! binary, run as a user would, with its stderr checked.

#![cfg(unix)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");

/// Runs `autoplay ARGS` with no token in the environment; returns (status, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let Output { status, stderr, .. } = Command::new(BIN)
        .args(args)
        .env_remove("AUTOPLAY_TOKEN")
        .env_remove("AUTOPLAY_PRODUCTS")
        .env_remove("RUST_LOG")
        .output()
        .expect("run autoplay");
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

fn assert_says(stderr: &str, wanted: &[&str], unwanted: &[&str]) {
    for text in wanted {
        assert!(stderr.contains(text), "missing {text:?} in:\n{stderr}");
    }
    for text in unwanted {
        assert!(!stderr.contains(text), "unexpected {text:?} in:\n{stderr}");
    }
}

#[test]
fn a_port_alone_is_not_a_listen_address() {
    for command in ["connector", "demo"] {
        let (code, stderr) = run(&[command, "--listen", "8080"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert_says(
            &stderr,
            &["expected IP:PORT, e.g. 127.0.0.1:8080"],
            &["invalid socket address syntax"],
        );
    }
}

#[test]
fn a_url_without_a_scheme_shows_the_expected_form() {
    let (code, stderr) = run(&["listen", "127.0.0.1:8080/stream/acme", "--token", "t"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "expected http://HOST/stream/PRODUCT_ID",
            "http://127.0.0.1:8080/stream/acme",
        ],
        &["relative URL without a base"],
    );
}

/// Runs `autoplay connector --config FILE` on a file holding `toml`.
fn connector_with_config(name: &str, toml: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("autoplay-errors-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("autoplay.toml");
    std::fs::write(&path, toml).unwrap();
    let result = run(&["connector", "--config", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

#[test]
fn a_zero_interval_is_reported_once() {
    let (code, stderr) = connector_with_config("heartbeat", "heartbeat_s = 0\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert_says(
        &stderr,
        &["heartbeat_s = 0", "0 is not a positive number of seconds"],
        &[],
    );
    assert_eq!(stderr.matches("invalid config").count(), 1, "{stderr}");
}

#[test]
fn a_single_products_table_says_to_write_two_brackets() {
    let (code, stderr) = connector_with_config(
        "products",
        "[products]\nid = \"acme\"\napi_keys = [\"ak_1\"]\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "write [[products]] (two brackets), one table per product",
            "id = \"acme\"",
        ],
        &["invalid type: map, expected a sequence"],
    );
}

#[test]
fn a_port_alone_in_the_config_file_shows_the_form() {
    let (code, stderr) = connector_with_config("listen", "listen = \"8080\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert_says(
        &stderr,
        &["expected \"IP:PORT\", e.g. listen = \"127.0.0.1:8080\""],
        &["invalid socket address syntax"],
    );
}
