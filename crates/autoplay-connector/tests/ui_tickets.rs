//! Stream tickets (`POST /tickets/{product}`, `GET /stream/{product}?ticket=`)
//! and the live view's pages, against a real connector on 127.0.0.1.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, at TRACE (one subscriber per process).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

async fn ticket(server: &Server, product: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(server.url(&format!("/tickets/{product}")));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn issued(server: &Server) -> String {
    let response = ticket(server, "acme", Some(ACME_KEY)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    assert_eq!(
        body["stream"],
        format!("/stream/acme?ticket={ticket}"),
        "{body}"
    );
    assert_eq!(body["expires_in_s"], 60.0);
    ticket
}

/// `GET /stream/acme?<query>` with no Authorization header.
async fn stream_with(server: &Server, product: &str, query: &str) -> reqwest::Response {
    reqwest::get(server.url(&format!("/stream/{product}?{query}")))
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

fn one_action(session: &str) -> Value {
    json!({
        "session_id": session,
        "actions": [{"event_type": "click", "title": "Export", "canonical_url": "https://app.example.com/x"}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_its_products_stream_more_than_once() {
    let server = Server::start(config()).await;
    let ticket = issued(&server).await;
    // Twice: the browser's own reconnects reuse the URL, ticket and all.
    for session in ["s1", "s2"] {
        let response = stream_with(&server, "acme", &format!("ticket={ticket}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut sse = SseReader::new(response.bytes_stream());
        assert_eq!(
            server
                .post_events("acme", &one_action(session))
                .await
                .status(),
            200
        );
        let frame = loop {
            let frame = sse.next_event(WAIT).await.expect("an event");
            if frame.json()["session_id"] == session {
                break frame;
            }
        };
        assert_eq!(frame.event, "actions");
    }
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_requests_need_the_products_key() {
    let server = Server::start(config()).await;
    assert_eq!(ticket(&server, "acme", None).await.status(), 401);
    assert_eq!(ticket(&server, "acme", Some("nope")).await.status(), 401);
    let (status, error) = error_of(ticket(&server, "acme", Some(BETA_KEY)).await).await;
    assert_eq!(
        (status, error.as_str()),
        (403, "this API key belongs to another product")
    );
    assert_eq!(ticket(&server, "nope", Some(ACME_KEY)).await.status(), 404);
    // A ticket is no key for getting more tickets.
    let ticket_text = issued(&server).await;
    assert_eq!(
        ticket(&server, "acme", Some(&ticket_text)).await.status(),
        401
    );
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_of_another_product_is_refused() {
    let server = Server::start(config()).await;
    let ticket = issued(&server).await;
    let (status, error) =
        error_of(stream_with(&server, "beta", &format!("ticket={ticket}")).await).await;
    assert_eq!(
        (status, error.as_str()),
        (403, "this ticket is for another product")
    );
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused() {
    let mut config = config();
    config.ticket_ttl = Duration::from_millis(100);
    let server = Server::start(config).await;
    let response = ticket(&server, "acme", Some(ACME_KEY)).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in_s"], 0.1);
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    // A sleep only ever lasts at least this long: past it, the ticket is dead.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = stream_with(&server, "acme", &format!("ticket={ticket}")).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 401);
    assert!(error.starts_with("expired ticket"), "{error}");
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_do_not_survive_a_restart_nor_forgery() {
    let server = Server::start(config()).await;
    let ticket = issued(&server).await;
    let addr = server.addr;
    server.shutdown.shutdown();
    server.task.await.unwrap().unwrap();
    let mut config = config();
    config.listen = addr;
    let server = Server::start(config).await;
    let (status, error) =
        error_of(stream_with(&server, "acme", &format!("ticket={ticket}")).await).await;
    assert_eq!(status, 401);
    assert!(error.starts_with("invalid ticket"), "{error}");
    for forged in ["", "00", &"ab".repeat(56)] {
        let (status, _) =
            error_of(stream_with(&server, "acme", &format!("ticket={forged}")).await).await;
        assert_eq!(status, 401, "{forged:?}");
    }
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_in_the_url_is_refused() {
    let server = Server::start(config()).await;
    for query in [
        format!("api_key={ACME_KEY}"),
        format!("token={ACME_KEY}"),
        format!("access_token={ACME_KEY}"),
    ] {
        let (status, error) = error_of(stream_with(&server, "acme", &query).await).await;
        assert_eq!(status, 401, "{query}");
        assert!(
            error.starts_with("an API key never goes in a URL"),
            "{error}"
        );
    }
    // Even beside a valid header: the key has leaked into the URL already.
    let response = reqwest::Client::new()
        .get(server.url(&format!("/stream/acme?api_key={ACME_KEY}")))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The key passed off as a ticket.
    let (status, error) =
        error_of(stream_with(&server, "acme", &format!("ticket={ACME_KEY}")).await).await;
    assert_eq!(status, 401);
    assert!(
        error.starts_with("that is an API key, not a ticket"),
        "{error}"
    );
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_in_the_query_resumes_and_the_header_wins() {
    let server = Server::start(config()).await;
    // Subscribed first, so all three are published before anything else reads.
    let mut bearer = server.stream("acme", ACME_KEY, None).await;
    for session in ["r1", "r2", "r3"] {
        server.post_events("acme", &one_action(session)).await;
    }
    for _ in 0..3 {
        bearer.next_event(WAIT).await.expect("published");
    }
    let ticket = issued(&server).await;
    let ids = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        let mut sse = SseReader::new(response.bytes_stream());
        let mut ids = Vec::new();
        while let Some(frame) = sse.next_event(Duration::from_millis(300)).await {
            ids.push(frame.id.unwrap());
        }
        ids
    };
    let query = format!("ticket={ticket}&lastEventId=1");
    assert_eq!(
        ids(stream_with(&server, "acme", &query).await).await,
        [2, 3]
    );
    let with_header = reqwest::Client::new()
        .get(server.url(&format!("/stream/acme?{query}")))
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(ids(with_header).await, [3]);
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ticket_and_no_key_in_the_logs() {
    let logs = logs();
    let server = Server::start(config()).await;
    let ticket = issued(&server).await;
    let response = stream_with(&server, "acme", &format!("ticket={ticket}&lastEventId=0")).await;
    assert_eq!(response.status(), 200);
    drop(response);
    assert_eq!(
        stream_with(&server, "beta", &format!("ticket={ticket}"))
            .await
            .status(),
        403
    );
    assert_eq!(
        stream_with(&server, "acme", &format!("api_key={ACME_KEY}"))
            .await
            .status(),
        401
    );
    assert_eq!(
        stream_with(&server, "acme", &format!("ticket={ACME_KEY}"))
            .await
            .status(),
        401
    );
    assert_eq!(
        stream_with(&server, "acme", &format!("ticket={}", &ticket[..100]))
            .await
            .status(),
        401
    );
    server.shutdown.shutdown();
    server.task.await.unwrap().unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for line in [
        "stream ticket issued",
        "subscriber connected",
        "a ticket of another product",
        "a credential in the URL",
        "an API key given as a ticket",
        "invalid ticket",
    ] {
        assert!(text.contains(line), "no log line says {line:?}:\n{text}");
    }
    assert!(
        !text.contains(&ticket[..32]),
        "a ticket in the logs:\n{text}"
    );
    assert!(!text.contains(ACME_KEY), "an API key in the logs:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages() {
    let server = Server::start(config()).await;
    let get = |path: &'static str| {
        let url = server.url(path);
        async move { reqwest::get(url).await.unwrap() }
    };
    let index = get("/").await;
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    assert!(index.text().await.unwrap().contains("<a href=\"/ui\">"));
    let page = get("/ui").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("/ui/live.js") && html.contains("/ui/live.css"));
    // Nothing from elsewhere: the page works offline.
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );
    let script = get("/ui/live.js").await;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let script = script.text().await.unwrap();
    assert!(script.contains("new EventSource("));
    assert!(
        !script.contains("innerHTML"),
        "event text must never be HTML"
    );
    let style = get("/ui/live.css").await;
    assert_eq!(style.headers()["content-type"], "text/css; charset=utf-8");
    server.shutdown.shutdown();
}
