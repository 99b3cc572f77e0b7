//! The README's `autoplay` command block, run as written: a connector, a listener
//! tailing it, and the curl line that posts a PostHog event to it. Only the port is
//! changed (to a free one), so the README cannot drift from what the binary does.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");
const WAIT: Duration = Duration::from_secs(15);

/// The shell commands of the README's "The `autoplay` command" block, one per entry,
/// with `\` continuations and multi-line quoted arguments joined, comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let section = readme
        .split("## The `autoplay` command")
        .nth(1)
        .expect("a section on the `autoplay` command");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in that section");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines().map(str::trim_end) {
        let trimmed = line.trim_start();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                // A single-quoted argument may span lines (the curl body does).
                if current.matches('\'').count() % 2 == 0 {
                    commands.push(std::mem::take(&mut current));
                } else {
                    current.push('\n');
                }
            }
        }
    }
    commands
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `command` with `sh`, the freshly built `autoplay` first on PATH.
fn shell(command: &str) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .env("PATH", path)
        .env_remove("AUTOPLAY_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sh
}

/// Kills the child (by its PID, as a `Child`) when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the connector never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readme_connector_listen_and_curl_work_as_written() {
    let port = free_port();
    let commands: Vec<String> = readme_commands()
        .into_iter()
        .map(|c| c.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")))
        .collect();
    let find = |needle: &str| {
        commands
            .iter()
            .find(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no command with {needle:?} in the README: {commands:#?}"))
            .clone()
    };
    let connector = find("autoplay connector");
    let listen = find("autoplay listen");
    let curl = find("curl ");

    // `exec env` (the README sets variables inline) so that killing the child kills
    // the connector itself, not only its shell.
    let _connector = Running(shell(&format!("exec env {connector}")).spawn().unwrap());
    wait_for_port(port);
    let mut listener = Running(
        shell(&format!("exec env {listen} --max-events 1"))
            .spawn()
            .unwrap(),
    );
    // The listener must be subscribed before the event is posted: wait for its
    // "connected" line on stderr.
    let mut stderr = listener.0.stderr.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains("connected to") {
        assert!(Instant::now() < deadline, "listen never connected");
        let mut byte = [0u8; 1];
        if stderr.read(&mut byte).unwrap() == 0 {
            panic!("listen exited: {}", String::from_utf8_lossy(&seen));
        }
        seen.push(byte[0]);
    }

    let posted = shell(&curl)
        .output()
        .expect("curl (the README's example needs it)");
    assert!(
        posted.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&posted.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&posted.stdout).unwrap();
    assert_eq!(reply, serde_json::json!({"accepted": 1, "actions": 1}));

    let mut stdout = String::new();
    listener
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = listener.0.wait().unwrap();
    assert!(status.success(), "listen: {status}");
    let payload: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(payload["type"], "actions");
    assert_eq!(payload["session_id"], "s1");
    assert_eq!(payload["actions"][0]["title"], "Reports");
}
