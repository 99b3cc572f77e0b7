//! A scripted HTTP/1.1 server on 127.0.0.1 for the client tests: each connection
//! gets a response from a script (status, headers, body steps with pauses, stalls
//! and disconnects), and every request is recorded.
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

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server whose `script(n, request)` answers the n-th connection (from 0).
    pub fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let script: Arc<Script> = Arc::new(script);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let recorded = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
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
            });
        });
        TestServer {
            addr: addr_rx.recv().unwrap(),
            requests,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
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
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
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
    recorded: Arc<Mutex<Vec<Request>>>,
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
        at: Instant::now(),
    };
    let reply = script(index, &request);
    recorded.lock().unwrap().push(request);

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

/// Polls `cond` until true or panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
