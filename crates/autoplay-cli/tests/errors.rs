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
