//! The documented multi-replica setup as shipped: one `redis-server`, three
//! `autoplay connector --store redis://…` processes, and Debian's nginx running
//! docs/deploy/nginx.conf, terminating TLS with a certificate made here.
//!
//! 20,000 PostHog events are posted round-robin to the three replicas while the
//! SDK client streams over https through nginx; twice, the replica serving
//! that client is `kill -9`ed and started again. The client must get every
//! event once, in the store's order, and every session exactly one summary per
//! threshold. nginx missing is a failure, never a skip: `scripts/test.sh`
//! installs it.
//!
//! Before each `kill -9`, new webhooks are routed to the other replicas and the
//! ones in flight to the doomed replica are let finish: a webhook in flight at
//! a crash gets no 200, and its sender retries it: at least once, by design
//! (docs/deploy.md). What this test holds to exactly once is the stream
//! through nginx, across the crash. The summaries the doomed replica had made
//! due are not waited for: those it had not written when killed are taken over
//! by another replica once their lease (2 s here) is over, and must still come
//! once each, in their session's order.
#![cfg(target_os = "linux")]

#[path = "../../autoplay-connector/tests/store_redis_server/mod.rs"]
mod store_redis_server;

use std::collections::HashMap;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::{AsyncConnectorClient, OverflowPolicy};
use futures_util::StreamExt;
use store_redis_server::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");
const KEY: &str = "ak_replicas";
const SECRET: &str = "whsec_replicas";
const REPLICAS: usize = 3;
/// Concurrent senders; each owns its sessions and posts its events in order.
const POSTERS: usize = 4;
const SESSIONS_PER_POSTER: usize = 20;
/// Events per webhook, each of another session of its poster.
const BATCH: usize = 10;
const TOTAL: usize = 20_000;
const PER_POSTER: usize = TOTAL / POSTERS;
const THRESHOLD: usize = 25;
/// The connector's default body limit, which the nginx config must match.
const BODY_LIMIT: usize = 5 * 1024 * 1024;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One `autoplay connector` on a fixed port (nginx's upstream names it), so a
/// restart comes back where nginx looks for it.
struct Replica {
    port: u16,
    redis: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn start(port: u16, redis: &str, dir: &Path) -> Self {
        let mut replica = Replica {
            port,
            redis: redis.to_owned(),
            log: dir.join(format!("replica-{port}.log")),
            child: None,
        };
        replica.spawn();
        replica
    }

    /// Starts the process and waits for its banner (it is listening then).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "replica {} is running", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["connector", "--log-level", "warn"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--store", &self.redis])
            // Short, so the idle path is exercised through nginx in a short run.
            .args(["--heartbeat-s", "0.5"])
            .args(["--summary-threshold", &THRESHOLD.to_string()])
            .env("AUTOPLAY_PRODUCTS", format!("acme:{KEY}:{SECRET}"))
            // The embedded summariser, whatever the caller's environment says.
            .env_remove("AUTOPLAY_LLM_BASE_URL")
            .env_remove("AUTOPLAY_LLM_MODEL")
            .env_remove("AUTOPLAY_LLM_API_KEY")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start autoplay connector");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        stdout.read_line(&mut banner).unwrap();
        assert!(
            banner.starts_with("autoplay connector listening on"),
            "replica {} did not start: {:?}\n{}",
            self.port,
            banner,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        self.child = Some(child);
    }

    /// SIGKILL, by PID, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where nginx is: $NGINX, else the PATH, else Debian's /usr/sbin (not on a
/// user's PATH). Missing, the test fails and says how to install it.
fn nginx_binary() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("NGINX") {
        Some(path) => vec![path.into()],
        None => std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("nginx"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin/nginx")])
            .collect(),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed (looked for {candidates:?}): `apt-get install nginx` \
                 (Debian's package; scripts/test.sh installs it when missing), or set NGINX \
                 to its path"
            )
        })
}

/// docs/deploy/nginx.conf with only its ports and paths replaced, as the file's
/// header says; each literal must be there exactly as often as expected, so a
/// change to the file that this test would not run fails here.
fn deploy_config(replica_ports: &[u16], http: u16, https: u16, dir: &Path) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy/nginx.conf");
    let mut text = std::fs::read_to_string(path).expect("docs/deploy/nginx.conf");
    let dir = dir.display();
    let mut replace = |from: &str, to: &str, times: usize| {
        assert_eq!(
            text.matches(from).count(),
            times,
            "docs/deploy/nginx.conf must contain {from:?} {times} time(s)"
        );
        text = text.replace(from, to);
    };
    for (i, port) in replica_ports.iter().enumerate() {
        replace(
            &format!("server 127.0.0.1:{} ", 8081 + i),
            &format!("server 127.0.0.1:{port} "),
            1,
        );
    }
    replace("listen 80;", &format!("listen 127.0.0.1:{http};"), 1);
    replace(
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{https} ssl http2;"),
        1,
    );
    replace(
        "/etc/letsencrypt/live/autoplay.example.com/",
        &format!("{dir}/tls/"),
        2,
    );
    replace(
        "/var/log/nginx/autoplay.access.log",
        &format!("{dir}/access.log"),
        2,
    );
    text
}

/// Debian's nginx in the foreground, its files in a temp dir; stopped by PID.
struct Nginx {
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: u16,
    https: u16,
}

impl Nginx {
    fn start(replica_ports: &[u16], cert_pem: &str, key_pem: &str) -> Self {
        let binary = nginx_binary();
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path();
        // Run as root, nginx's workers are `nobody`: they must reach the body
        // temp dirs nginx creates (and chowns) in here.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(root.join("tls")).unwrap();
        std::fs::write(root.join("tls/fullchain.pem"), cert_pem).unwrap();
        std::fs::write(root.join("tls/privkey.pem"), key_pem).unwrap();
        let (http, https) = (free_port(), free_port());
        std::fs::write(
            root.join("autoplay.conf"),
            deploy_config(replica_ports, http, https, root),
        )
        .unwrap();
        // What Debian's /etc/nginx/nginx.conf holds around sites-enabled/, with
        // every file nginx writes in the temp dir.
        let d = root.display();
        std::fs::write(
            root.join("nginx.conf"),
            format!(
                "worker_processes 1;\n\
                 error_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 client_body_temp_path {d}/client_body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 include {d}/autoplay.conf;\n\
                 }}\n"
            ),
        )
        .unwrap();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut nginx = Nginx {
            child: Some(child),
            dir,
            http,
            https,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", https)).is_err() {
            let exited = nginx.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nginx did not start ({exited:?}):\n{}",
                nginx.file("error.log")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM to the master, which stops its workers (a SIGKILL would
        // leave them running); SIGKILL only if it does not exit.
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One received frame of the stream.
#[derive(Debug)]
enum Got {
    /// The event `e<n>` of a session.
    Action { id: String, n: usize },
    Summary {
        id: String,
        session: String,
        replaces: u64,
    },
}

#[derive(Default)]
struct Received {
    frames: Vec<Got>,
    actions: usize,
    summaries: HashMap<String, usize>,
}

/// Event `j` of poster `p`: its global number and its session.
fn event(p: usize, j: usize) -> (usize, String) {
    (j * POSTERS + p, format!("p{p}s{}", j % SESSIONS_PER_POSTER))
}

fn webhook_body(p: usize, batch: usize) -> String {
    let events: Vec<serde_json::Value> = (batch * BATCH..(batch + 1) * BATCH)
        .map(|j| {
            let (n, session) = event(p, j);
            serde_json::json!({
                "event": "$autocapture",
                "distinct_id": format!("u-{session}"),
                "properties": {
                    "$event_type": "click",
                    "$current_url": "https://app.example.com/board",
                    "$session_id": session,
                    "$el_text": format!("e{n}"),
                },
            })
        })
        .collect();
    serde_json::json!({ "batch": events }).to_string()
}

/// Which replicas webhooks may go to, and how many are in flight to each, so a
/// replica can be taken out of the rotation before it is killed.
struct Rotation {
    up: [AtomicBool; REPLICAS],
    in_flight: [AtomicUsize; REPLICAS],
    /// Batches answered 200, per poster.
    done: [AtomicUsize; POSTERS],
    /// The first webhook not answered 200: the posters stop, the test fails with it.
    failed: Mutex<Option<String>>,
}

impl Rotation {
    /// Claims the first replica in service from `start` on.
    fn claim(&self, start: usize) -> usize {
        loop {
            for k in 0..REPLICAS {
                let r = (start + k) % REPLICAS;
                self.in_flight[r].fetch_add(1, SeqCst);
                if self.up[r].load(SeqCst) {
                    return r;
                }
                self.in_flight[r].fetch_sub(1, SeqCst);
            }
        }
    }

    /// Takes `r` out of service once nothing is in flight to it.
    fn drain(&self, r: usize) {
        self.up[r].store(false, SeqCst);
        wait_until("webhooks in flight", Duration::from_secs(10), || {
            self.in_flight[r].load(SeqCst) == 0
        });
    }

    /// Events answered 200 so far; fails the test (with the reason) as soon
    /// as a webhook was not.
    fn acked(&self) -> usize {
        if let Some(failure) = &*self.failed.lock().unwrap() {
            panic!("{failure}");
        }
        self.done.iter().map(|d| d.load(SeqCst)).sum::<usize>() * BATCH
    }
}

/// Poster `p`: its batches in order, round-robin over the replicas in service;
/// every one must be answered 200.
async fn post_all(p: usize, ports: Vec<u16>, rotation: Arc<Rotation>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for batch in 0..PER_POSTER / BATCH {
        let r = rotation.claim(p + batch);
        let response = client
            .post(format!("http://127.0.0.1:{}/webhook/acme", ports[r]))
            .header("x-posthog-secret", SECRET)
            .header("content-type", "application/json")
            .body(webhook_body(p, batch))
            .send()
            .await;
        rotation.in_flight[r].fetch_sub(1, SeqCst);
        let status = response.map(|r| r.status().as_u16());
        if !matches!(status, Ok(200)) {
            let mut failed = rotation.failed.lock().unwrap();
            failed.get_or_insert(format!("poster {p}, batch {batch}: {status:?}"));
            return;
        }
        rotation.done[p].fetch_add(1, SeqCst);
    }
}

async fn live_subscribers(replica: &Replica) -> f64 {
    let Ok(response) = reqwest::get(replica.url("/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("autoplay_live_subscribers ")?.parse().ok())
        .unwrap_or(0.0)
}

async fn metric(replica: &Replica, name: &str) -> f64 {
    let text = reqwest::get(replica.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `ms-seq` as a pair that orders like Redis ids.
fn key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("id {id}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Polls `f` on the runtime until it holds.
async fn until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An https client of nginx that trusts only the test's certificate.
fn https_client(cert_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
}

/// What the config promises besides streaming: the redirect to https, TLS 1.2
/// and 1.3, HTTP/2, the SSE headers, and a body limit equal to the connector's.
async fn check_the_edges(nginx: &Nginx, cert_pem: &str) {
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = plain
        .get(format!("http://127.0.0.1:{}/stream/acme", nginx.http))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        "https://127.0.0.1/stream/acme"
    );

    let base = format!("https://localhost:{}", nginx.https);
    for (version, client) in [
        (
            "TLS 1.2",
            https_client(cert_pem).max_tls_version(reqwest::tls::Version::TLS_1_2),
        ),
        (
            "TLS 1.3",
            https_client(cert_pem).min_tls_version(reqwest::tls::Version::TLS_1_3),
        ),
    ] {
        let health = client
            .build()
            .unwrap()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(health.status(), 200, "{version}");
    }

    let client = https_client(cert_pem).build().unwrap();
    let stream = client
        .get(format!("{base}/stream/acme"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    let headers = stream.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.contains_key("strict-transport-security"));
    drop(stream);
    let unauthorised = client
        .get(format!("{base}/stream/acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthorised.status(),
        401,
        "the key is what nginx passes on"
    );

    // A webhook of exactly the connector's limit passes nginx (whose default
    // is 1 MiB); one byte more is refused by nginx itself (its HTML page).
    let event = r#"{"batch":[{"event":"$autocapture","distinct_id":"u-limit","properties":{"$event_type":"click","$session_id":"limit","$el_text":"limit"}}]}"#;
    let padded = |len: usize| format!("{event}{}", " ".repeat(len - event.len()));
    let at_limit = client
        .post(format!("{base}/webhook/acme"))
        .header("x-posthog-secret", SECRET)
        .header("content-type", "application/json")
        .body(padded(BODY_LIMIT))
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), 200, "{:?}", at_limit.text().await);
    let over = client
        .post(format!("{base}/webhook/acme"))
        .header("x-posthog-secret", SECRET)
        .header("content-type", "application/json")
        .body(padded(BODY_LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    assert!(
        over.text()
            .await
            .unwrap()
            .contains("<center>nginx</center>"),
        "refused by nginx, not passed on"
    );
}

/// The replicas' store: a short lease, so the summaries a killed replica had
/// not written are taken over within the test's wait for them.
fn store_url(redis: &RedisServer) -> String {
    format!(
        "{}/0?summary_lease_s={LEASE_S}&claim_interval_s=1",
        redis.url()
    )
}

/// The lease of a due batch in this test, in seconds.
const LEASE_S: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_lose_and_repeat_nothing_across_kill_9() {
    let redis = RedisServer::start(false);
    let work = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut replicas: Vec<Replica> = ports
        .iter()
        .map(|&port| Replica::start(port, &store_url(&redis), work.path()))
        .collect();
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = tls.cert.pem();
    let nginx = Nginx::start(&ports, &cert_pem, &tls.signing_key.serialize_pem());

    check_the_edges(&nginx, &cert_pem).await;

    // The SDK client, over https through nginx, from now on (live).
    let connects = Arc::new(AtomicUsize::new(0));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let client = {
        let (connects, disconnects) = (connects.clone(), disconnects.clone());
        AsyncConnectorClient::builder(format!("https://localhost:{}/stream/acme", nginx.https))
            .token(KEY)
            .root_certificate_pem(cert_pem.clone())
            .initial_backoff(Duration::from_millis(50))
            .max_backoff(Duration::from_millis(500))
            .read_timeout(Duration::from_secs(5))
            // Nothing dropped on the client's side either.
            .overflow_policy(OverflowPolicy::Block)
            .on_connect(move |_| {
                connects.fetch_add(1, SeqCst);
            })
            .on_disconnect(move |_| {
                disconnects.fetch_add(1, SeqCst);
            })
            .build()
            .unwrap()
    };
    let received = Arc::new(Mutex::new(Received::default()));
    let collector = {
        let received = received.clone();
        let mut events = Box::pin(client.raw_events());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let event = event.expect("the client gave up");
                let value: serde_json::Value = match event.event.as_str() {
                    "heartbeat" => continue,
                    "actions" | "summary" => serde_json::from_str(&event.data).unwrap(),
                    other => panic!("unexpected event {other}: {}", event.data),
                };
                let id = event.id.expect("an id").as_str().to_owned();
                let mut received = received.lock().unwrap();
                if event.event == "summary" {
                    let session = value["session_id"].as_str().unwrap().to_owned();
                    *received.summaries.entry(session.clone()).or_default() += 1;
                    received.frames.push(Got::Summary {
                        id,
                        session,
                        replaces: value["replaces"].as_u64().unwrap(),
                    });
                    continue;
                }
                // One action per frame: each webhook has one event per session.
                let actions = value["actions"].as_array().unwrap();
                assert_eq!(actions.len(), 1, "{}", event.data);
                let title = actions[0]["title"].as_str().unwrap();
                let n = title.strip_prefix('e').and_then(|n| n.parse().ok());
                let n = n.unwrap_or_else(|| panic!("unexpected action {title}"));
                received.actions += 1;
                received.frames.push(Got::Action { id, n });
            }
        })
    };
    until(
        "the client to connect",
        Duration::from_secs(10),
        async || connects.load(SeqCst) == 1,
    )
    .await;

    let rotation = Arc::new(Rotation {
        up: std::array::from_fn(|_| AtomicBool::new(true)),
        in_flight: std::array::from_fn(|_| AtomicUsize::new(0)),
        done: std::array::from_fn(|_| AtomicUsize::new(0)),
        failed: Mutex::new(None),
    });
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| tokio::spawn(post_all(p, ports.clone(), rotation.clone())))
        .collect();

    let probe = https_client(&cert_pem).build().unwrap();
    let mut killed = Vec::new();
    for round in 1..=2 {
        until("posting to progress", Duration::from_secs(30), async || {
            rotation.acked() >= TOTAL * round / 3
        })
        .await;
        // The replica holding the client's stream.
        let mut serving = None;
        until(
            "the client's replica",
            Duration::from_secs(10),
            async || {
                let mut counts = Vec::new();
                for replica in &replicas {
                    counts.push(live_subscribers(replica).await);
                }
                serving = counts.iter().position(|&c| c == 1.0);
                counts.iter().sum::<f64>() == 1.0
            },
        )
        .await;
        let r = serving.unwrap();
        tokio::task::block_in_place(|| rotation.drain(r));
        let acked = rotation.acked();
        assert!(
            acked < TOTAL,
            "round {round}: posting ended before the kill"
        );
        let (before, seen) = (connects.load(SeqCst), received.lock().unwrap().frames.len());
        replicas[r].kill();
        // Passive health: requests nginx sends to the dead replica while it
        // still counts as up are passed on to another one, not failed.
        for _ in 0..2 * REPLICAS {
            let health = probe
                .get(format!("https://localhost:{}/healthz", nginx.https))
                .send()
                .await
                .unwrap();
            assert_eq!(
                health.status(),
                200,
                "round {round}: /healthz through nginx"
            );
        }
        // The client notices, reconnects through nginx to another replica
        // with its Last-Event-ID, and goes on.
        until(
            "the client to resume",
            Duration::from_secs(15),
            async || {
                rotation.acked();
                connects.load(SeqCst) > before && received.lock().unwrap().frames.len() > seen + 100
            },
        )
        .await;
        tokio::task::block_in_place(|| replicas[r].spawn());
        killed.push(ports[r]);
        rotation.up[r].store(true, SeqCst);
        eprintln!(
            "round {round}: replica {} killed at {acked} events acknowledged, {seen} frames received; restarted",
            ports[r]
        );
    }
    for poster in posters {
        poster.await.unwrap();
    }
    assert_eq!(rotation.acked(), TOTAL);

    let want_summaries =
        POSTERS * SESSIONS_PER_POSTER * (PER_POSTER / SESSIONS_PER_POSTER / THRESHOLD);
    until(
        "every event and summary",
        Duration::from_secs(30),
        async || {
            let received = received.lock().unwrap();
            received.actions >= TOTAL
                && received.summaries.values().sum::<usize>() >= want_summaries
        },
    )
    .await;
    // Anything extra (a duplicate) would come right behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.dropped_count(), 0);
    client.stop();
    collector.await.unwrap();
    assert!(
        disconnects.load(SeqCst) >= 2,
        "the client lost its replica twice"
    );

    let received = std::mem::take(&mut *received.lock().unwrap());
    // Zero lost, zero duplicated.
    let mut count = vec![0usize; TOTAL];
    for frame in &received.frames {
        if let Got::Action { n, .. } = frame {
            count[*n] += 1;
        }
    }
    let lost: Vec<usize> = (0..TOTAL).filter(|&n| count[n] == 0).collect();
    let twice: Vec<usize> = (0..TOTAL).filter(|&n| count[n] > 1).collect();
    assert!(
        lost.is_empty(),
        "{} events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{} events twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    // In order: the store's ids only increase, and each poster's events come
    // in the order it sent them (each was answered before the next was sent).
    let ids: Vec<(u64, u64)> = received
        .frames
        .iter()
        .map(|f| match f {
            Got::Action { id, .. } | Got::Summary { id, .. } => key(id),
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "the ids do not strictly increase"
    );
    let mut last_of_poster = [None::<usize>; POSTERS];
    for frame in &received.frames {
        if let Got::Action { n, .. } = frame {
            let p = n % POSTERS;
            assert!(
                last_of_poster[p].is_none_or(|last| last < *n),
                "event e{n} after e{:?} of the same poster",
                last_of_poster[p]
            );
            last_of_poster[p] = Some(*n);
        }
    }
    // Summaries: exactly one per threshold per session, each after its actions.
    let mut actions: HashMap<String, usize> = HashMap::new();
    let mut summaries: HashMap<String, usize> = HashMap::new();
    for frame in &received.frames {
        match frame {
            Got::Action { n, .. } => {
                *actions
                    .entry(event(n % POSTERS, n / POSTERS).1)
                    .or_default() += 1;
            }
            Got::Summary {
                session, replaces, ..
            } => {
                assert_eq!(*replaces, THRESHOLD as u64, "{session}");
                let k = summaries.entry(session.clone()).or_default();
                *k += 1;
                assert!(
                    actions.get(session).copied().unwrap_or(0) >= *k * THRESHOLD,
                    "summary {k} of {session} before its actions"
                );
            }
        }
    }
    assert_eq!(summaries.len(), POSTERS * SESSIONS_PER_POSTER);
    for (session, n) in &summaries {
        assert_eq!(
            *n,
            PER_POSTER / SESSIONS_PER_POSTER / THRESHOLD,
            "{session}"
        );
    }
    for replica in &replicas {
        assert_eq!(metric(replica, "autoplay_replay_gaps_total").await, 0.0);
    }
    // How many of those summaries a killed replica left and another took
    // over (often none: the kill may find nothing due and unwritten).
    let taken_over = replicas
        .iter()
        .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains("did not write them within the lease"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count();
    eprintln!("takeovers of summaries left by a killed replica: {taken_over}");
    // The access log has the stream's requests, with the replica that served them.
    let log = nginx.file("access.log");
    assert!(
        log.lines()
            .any(|l| l.contains("\"GET /stream/acme HTTP/2.0\" 200")
                && l.contains("upstream=127.0.0.1:")),
        "no stream request in the access log:\n{log}"
    );
    assert!(!log.contains(KEY), "the access log holds the key");
    // Each killed replica was tried once after its death and the request
    // passed on (nginx logs both upstreams), then left alone for fail_timeout.
    for port in killed {
        let passed_on = format!("upstream=127.0.0.1:{port}, 127.0.0.1:");
        assert!(
            log.lines().any(|l| l.contains(&passed_on)),
            "no request passed on from the killed replica {port}:\n{log}"
        );
    }
}
