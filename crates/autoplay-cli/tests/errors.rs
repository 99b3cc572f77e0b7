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

/// A connector with product `acme` (key `ak_acme_errors`) on a free port, as a
/// child process; killed on drop.
struct Connector {
    child: std::process::Child,
    base: String,
}

impl Connector {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["connector", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("AUTOPLAY_PRODUCTS", "acme:ak_acme_errors")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the connector");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut banner).unwrap();
        let base = banner
            .trim()
            .rsplit(' ')
            .next()
            .expect("listening on http://ADDR")
            .to_owned();
        assert!(base.starts_with("http://"), "{banner}");
        // Keep reading so the connector never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Connector { child, base }
    }

    /// Stops it (SIGTERM, so it logs its way out) and returns its stderr.
    fn stop(mut self) -> String {
        // SAFETY: kill only sends a signal to the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let _ = self.child.wait();
        stderr
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_missing_token_and_a_refused_one_say_different_things() {
    let connector = Connector::start(&[]);
    let url = format!("{}/stream/acme", connector.base);
    let (code, missing) = run(&["listen", &url]);
    assert_eq!(code, Some(2), "{missing}");
    assert_says(
        &missing,
        &["no token: pass --token or set AUTOPLAY_TOKEN", "401", &url],
        &["refused"],
    );
    let (code, wrong) = run(&["listen", &url, "--token", "ak_wrong"]);
    assert_eq!(code, Some(2), "{wrong}");
    assert_says(
        &wrong,
        &[
            "the connector refused the API key, check the token",
            "401",
            &url,
        ],
        &["no token", "ak_wrong"],
    );
    // A key in a header is a key too: refused, not missing.
    let (code, header) = run(&["listen", &url, "-H", "Authorization: Bearer ak_wrong"]);
    assert_eq!(code, Some(2), "{header}");
    assert_says(&header, &["refused the API key"], &["no token"]);
    // So are a user and password in the URL (sent as Basic auth).
    let with_user = url.replacen("http://", "http://alice:hunter2@", 1);
    let (code, user) = run(&["listen", &with_user]);
    assert_eq!(code, Some(2), "{user}");
    assert_says(&user, &["refused the API key"], &["no token", "hunter2"]);
    drop(connector);
}

#[test]
fn a_url_that_is_not_a_stream_says_what_was_expected_and_keeps_retrying() {
    let connector = Connector::start(&[]);
    let url = format!("{}/metrics", connector.base);
    let (code, stderr) = run(&[
        "listen",
        &url,
        "--token",
        "ak_acme_errors",
        "--max-retries",
        "2",
        "--initial-backoff-ms",
        "10",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let hint = "is not text/event-stream: check that the URL is a stream, \
                http://HOST/stream/PRODUCT_ID";
    // The first retry line already has it, so nobody waits for the last.
    assert_says(
        &stderr,
        &[
            "attempt 1 failed (content type \"text/plain",
            hint,
            "retrying in",
        ],
        &[],
    );
    // Two retry lines (attempts 1 and 2), then the final error.
    assert_eq!(stderr.matches(hint).count(), 3, "{stderr}");
    drop(connector);
}

#[test]
fn the_open_files_limit_is_logged_only_once_the_connector_runs() {
    let (code, stderr) = connector_with_config("limit", "heartbeat_s = 0\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert_says(&stderr, &["invalid config"], &["open-files"]);

    let stderr = Connector::start(&[]).stop();
    assert_says(
        &stderr,
        &["open-files limit", "connector bound", "connector stopped"],
        &["ak_acme_errors"],
    );
    let bound = stderr.find("connector bound").unwrap();
    assert!(stderr.find("open-files limit").unwrap() > bound, "{stderr}");
}
