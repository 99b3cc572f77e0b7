//! `autoplay demo --sessions N`: finite traffic that a second client (the RAG
//! example, `autoplay listen`) can replay in full, with the failing CSV export among
//! the other journeys. The real binary, its real embedded connector, on 127.0.0.1.

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");
/// Four users, one session each, take about 10 s on an idle machine; twice the
/// time, and then some, for a busy two-core CI box.
const WAIT: Duration = Duration::from_secs(45);
const DONE: &str = "the simulated users are done: 4 sessions";

struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    buf
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("AUTOPLAY_TOKEN")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn autoplay");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_for_stderr(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.stderr().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {needle:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn interrupt(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn finish(mut self) -> (ExitStatus, String, String) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("autoplay did not exit; stderr:\n{}", self.stderr()))
            .unwrap();
        // The readers end at EOF, which follows the exit.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, self.stdout(), self.stderr())
    }
}

/// The value after `label` on an indented line of the demo's banner.
fn banner_value(banner: &str, label: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {banner}"))
        .trim()
        .to_owned()
}

/// Action descriptions per session, from the demo's text output.
fn sessions_in_text(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut sessions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in stdout.split("\n\n").filter(|b| b.starts_with("[actions]")) {
        let mut lines = block.lines().skip(1);
        let heading = lines.next().expect("a Session line");
        let id = heading
            .strip_prefix("Session ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("not a session heading: {heading}"));
        let actions = sessions.entry(id.to_owned()).or_default();
        for line in lines {
            let (_, action) = line.split_once(". ").expect("a numbered action");
            let (description, _url) = action.rsplit_once(" \u{2014} ").expect("an action URL");
            actions.push(description.to_owned());
        }
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finite_traffic_holds_the_failed_csv_export_and_replays_in_full() {
    let demo = Proc::spawn(&["demo", "--users", "4", "--sessions", "1"], &[]);
    demo.wait_for_stderr(DONE).await;
    let banner = demo.stderr();
    let (stream, key) = (
        banner_value(&banner, "stream:"),
        banner_value(&banner, "key:"),
    );

    // Summaries are written in tasks of their own: give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let printed = demo.stdout();
    let sessions = sessions_in_text(&printed);
    assert_eq!(sessions.len(), 4, "one session per user:\n{printed}");
    let export: Vec<_> = sessions
        .iter()
        .filter(|(_, actions)| actions.iter().any(|a| a == "Clicked 'Export CSV'"))
        .collect();
    assert_eq!(export.len(), 1, "exactly one export session:\n{printed}");
    let (export_id, export_actions) = export[0];
    assert_eq!(
        export_actions,
        &[
            "Viewed Dashboard",
            "Clicked 'Reports'",
            "Viewed Reports",
            "Clicked 'Export CSV'",
            "Triggered export_failed",
            "Clicked 'Retry'",
            "Triggered export_failed",
            "Clicked 'Dismiss'",
            "Viewed Dashboard",
        ]
    );
    assert!(
        printed.contains(&format!("[summary] session {export_id}, ")),
        "the export session is summarised:\n{printed}"
    );
    for (id, actions) in &sessions {
        if id != export_id {
            assert!(
                !actions.iter().any(|a| a.contains("export")),
                "{id}: {actions:?}"
            );
        }
    }

    // The traffic has stopped: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(demo.stdout(), printed, "payloads after the traffic ended");

    // A client attaching now gets all of it from the replay buffer.
    let payloads = printed.matches("\n\n").count();
    let listen = Proc::spawn(
        &[
            "listen",
            &stream,
            "--format",
            "json",
            "--last-event-id",
            "0",
            "--max-events",
            &payloads.to_string(),
        ],
        &[("AUTOPLAY_TOKEN", &key)],
    );
    let (status, json_lines, stderr) = listen.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut replayed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut summarised = BTreeSet::new();
    for line in json_lines.lines() {
        let payload: Value = serde_json::from_str(line).unwrap();
        let id = payload["session_id"].as_str().unwrap().to_owned();
        assert!(payload["forwarded_at"].as_f64().unwrap() > 1.7e9, "{line}");
        match payload["type"].as_str().unwrap() {
            "actions" => replayed.entry(id).or_default().extend(
                payload["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["description"].as_str().unwrap().to_owned()),
            ),
            "summary" => {
                summarised.insert(id);
            }
            other => panic!("unexpected payload type {other}"),
        }
    }
    assert_eq!(replayed, sessions);
    assert!(summarised.contains(export_id));

    demo.interrupt();
    let (status, _, stderr) = demo.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_must_be_positive_and_are_documented() {
    let (status, _, stderr) = Proc::spawn(&["demo", "--sessions", "0"], &[])
        .finish()
        .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--sessions"), "{stderr}");
    let (status, stdout, _) = Proc::spawn(&["demo", "--help"], &[]).finish().await;
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains("--sessions <N>"), "{stdout}");
}
