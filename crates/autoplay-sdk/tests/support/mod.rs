//! A scripted HTTP/1.1 server on 127.0.0.1 for the client tests: each connection
//! gets a response from a script (status, headers, body steps with pauses, stalls
//! and disconnects), and every request is recorded.
//!
//! [`TestServer::start`] runs on a thread of its own; [`TestServer::spawn`] runs on
//! the caller's tokio runtime, so that a test with paused time (`start_paused`)
//! drives the server's pauses and the client's waits on one virtual clock.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One piece of a scripted response body.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes (flushed at once: one TCP segment per step, in practice).
    Write(Vec<u8>),
    /// Write these bytes, shared between steps and connections (for large bodies).
    Shared(Arc<[u8]>),
    /// Pause before the next step.
    Sleep(Duration),
    /// Keep the connection open, sending nothing, until the client goes away.
    Stall,
}

pub fn write(text: impl AsRef<[u8]>) -> Step {
    Step::Write(text.as_ref().to_vec())
}

pub fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}

/// A scripted response. The body ends (connection closed) after the last step.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<Step>,
}

impl Reply {
    /// 200 with `Content-Type: text/event-stream`.
    pub fn stream(body: Vec<Step>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            body,
        }
    }

    /// A bodiless status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: vec![],
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    /// When it arrived, on tokio's clock (virtual under paused time).
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// The requests seen so far, and a signal for each new one.
#[derive(Default)]
struct Recorded {
    requests: Mutex<Vec<Request>>,
    arrived: tokio::sync::Notify,
}

pub struct TestServer {
    pub addr: SocketAddr,
    recorded: Arc<Recorded>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn accept_loop(
    listener: TcpListener,
    script: Arc<Script>,
    recorded: Arc<Recorded>,
    mut shutdown_rx: tokio::sync::oneshot::Receiver<()>,
) {
    let mut n = 0;
    loop {
        tokio::select! {
            _ = &mut shutdown_rx => break,
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let (script, recorded) = (script.clone(), recorded.clone());
                let index = n;
                n += 1;
                tokio::spawn(async move {
                    let _ = serve(socket, index, script, recorded).await;
                });
            }
        }
    }
}

impl TestServer {
    /// Starts a server whose `script(n, request)` answers the n-th connection (from 0).
    pub fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let script: Arc<Script> = Arc::new(script);
        let recorded = Arc::new(Recorded::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let for_thread = recorded.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                accept_loop(listener, script, for_thread, shutdown_rx).await;
            });
        });
        TestServer {
            addr: addr_rx.recv().unwrap(),
            recorded,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// Like [`start`](Self::start), but the server runs as tasks of the current tokio
    /// runtime: with paused time, its pauses and the client's waits share one clock.
    pub async fn spawn(
        script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = Arc::new(Recorded::default());
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(accept_loop(
            listener,
            Arc::new(script),
            recorded.clone(),
            shutdown_rx,
        ));
        TestServer {
            addr,
            recorded,
            shutdown: Some(shutdown_tx),
            thread: None,
        }
    }

    /// Waits (asynchronously, without polling) until at least `n` requests arrived.
    pub async fn requests_after(&self, n: usize) -> Vec<Request> {
        loop {
            let arrived = self.recorded.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            arrived.await;
        }
    }

    /// A server that answers every connection with the same reply.
    pub fn always(reply: Reply) -> TestServer {
        TestServer::start(move |_, _| reply.clone())
    }

    pub fn url(&self) -> String {
        format!("http://{}/stream/acme", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.recorded.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.recorded.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived (or panics after `timeout`).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {timeout:?}, got {}",
                requests.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    mut socket: TcpStream,
    index: usize,
    script: Arc<Script>,
    recorded: Arc<Recorded>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = Request {
        path,
        headers,
        at: tokio::time::Instant::now().into_std(),
    };
    let reply = script(index, &request);
    recorded.requests.lock().unwrap().push(request);
    recorded.arrived.notify_waiters();

    let mut response = format!(
        "HTTP/1.1 {} Scripted\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    if reply.body.is_empty() {
        response.push_str("Content-Length: 0\r\n");
    }
    response.push_str("\r\n");
    socket.write_all(response.as_bytes()).await?;
    for step in reply.body {
        match step {
            Step::Write(bytes) => {
                socket.write_all(&bytes).await?;
                socket.flush().await?;
            }
            Step::Shared(bytes) => {
                socket.write_all(&bytes).await?;
                socket.flush().await?;
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Stall => {
                // Wait for the client to hang up; never send anything.
                while socket.read(&mut buf).await? > 0 {}
                return Ok(());
            }
        }
    }
    socket.shutdown().await
}

/// One `actions` SSE frame with an id, for session `session`, whose single action's
/// title is `title`.
pub fn actions_frame(id: u64, session: &str, title: &str) -> String {
    format!(
        "id: {id}\nevent: actions\ndata: {{\"type\":\"actions\",\"product_id\":\"acme\",\"session_id\":\"{session}\",\"count\":1,\"actions\":[{{\"event_type\":\"click\",\"title\":\"{title}\",\"description\":\"Clicked {title}\",\"canonical_url\":\"https://app.example.com/x\"}}]}}\n\n"
    )
}

/// One `summary` SSE frame.
pub fn summary_frame(id: u64, session: &str, text: &str) -> String {
    format!(
        "id: {id}\nevent: summary\ndata: {{\"type\":\"summary\",\"product_id\":\"acme\",\"session_id\":\"{session}\",\"summary\":\"{text}\",\"replaces\":3}}\n\n"
    )
}

pub const HEARTBEAT: &str = "event: heartbeat\ndata:\n\n";

/// One `actions` frame without an `id:` line.
pub fn actions_frame_without_id(session: &str, title: &str) -> String {
    let frame = actions_frame(0, session, title);
    frame["id: 0\n".len()..].to_owned()
}

/// One `actions` frame whose single action's title is `title_len` bytes of `x`: an
/// event of about that size.
pub fn big_actions_frame(id: u64, title_len: usize) -> Vec<u8> {
    let title = "x".repeat(title_len);
    format!(
        "id: {id}\nevent: actions\ndata: {{\"type\":\"actions\",\"session_id\":\"big\",\"count\":1,\"actions\":[{{\"event_type\":\"click\",\"title\":\"{title}\",\"description\":\"d\",\"canonical_url\":\"https://app.example.com/x\"}}]}}\n\n"
    )
    .into_bytes()
}

/// The peak resident set size (`VmHWM`) of process `pid` (`"self"` for this one), in KiB.
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// The current resident set size (`VmRSS`) of process `pid`, in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Polls `cond` until true or panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `bytes` cut at the given points (anywhere, inside a line or a UTF-8 character
/// too), for feeding a parser in random chunks.
pub fn cut_at<'a>(bytes: &'a [u8], cuts: &[proptest::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for p in points {
        chunks.push(&bytes[start..p]);
        start = p;
    }
    chunks.push(&bytes[start..]);
    chunks
}
