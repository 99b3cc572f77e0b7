//! HTTPS through rustls, with HTTP/2 when the server offers it by ALPN and HTTP/1.1
//! when it does not: a hyper server with a self-signed certificate on 127.0.0.1.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoplay_sdk::ConnectorClient;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const FRAMES: &str = "id: 1\nevent: actions\ndata: {\"type\":\"actions\",\"session_id\":\"tls\",\"actions\":[{\"title\":\"Secure\",\"canonical_url\":\"/s\"}]}\n\n";

/// Starts an HTTPS server offering `alpn`; returns its port, its certificate (PEM)
/// and the HTTP versions of the requests it served.
fn start_tls_server(alpn: Vec<Vec<u8>>) -> (u16, String, Arc<Mutex<Vec<Version>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut tls = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    tls.alpn_protocols = alpn;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            seen.lock().unwrap().push(req.version());
                            async move {
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .header("content-type", "text/event-stream")
                                        .body(Full::new(Bytes::from_static(FRAMES.as_bytes())))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    (port_rx.recv().unwrap(), cert_pem, versions)
}

fn first_payload_over(alpn: Vec<Vec<u8>>) -> (String, Version) {
    let (port, cert_pem, versions) = start_tls_server(alpn);
    let (tx, rx) = std::sync::mpsc::channel();
    let client = ConnectorClient::builder(format!("https://localhost:{port}/stream/acme"))
        .root_certificate_pem(cert_pem)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
        .on_actions(move |p| {
            let _ = tx.send(p.session_id.unwrap_or_default());
        })
        .run_in_background()
        .unwrap();
    let session = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a payload over TLS");
    drop(client);
    let version = versions.lock().unwrap()[0];
    (session.to_string(), version)
}

#[test]
fn https_uses_http2_when_the_server_offers_it() {
    let (session, version) = first_payload_over(vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(session, "tls");
    assert_eq!(version, Version::HTTP_2);
}

#[test]
fn https_falls_back_to_http1() {
    let (session, version) = first_payload_over(vec![b"http/1.1".to_vec()]);
    assert_eq!(session, "tls");
    assert_eq!(version, Version::HTTP_11);
}

#[test]
fn an_untrusted_certificate_is_retried_not_accepted() {
    let (port, _cert_pem, versions) = start_tls_server(vec![b"http/1.1".to_vec()]);
    let err = ConnectorClient::builder(format!("https://localhost:{port}/stream/acme"))
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(10))
        .max_retries(1)
        .run()
        .unwrap_err();
    assert!(
        matches!(err, autoplay_sdk::Error::RetriesExhausted { .. }),
        "{err:?}"
    );
    assert!(
        versions.lock().unwrap().is_empty(),
        "no request may pass an untrusted handshake"
    );
}
