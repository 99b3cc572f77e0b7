//! The in-memory blaster: serves one pre-generated SSE body to every connection
//! over raw HTTP/1.1 on 127.0.0.1, then holds the connection open so no client
//! reconnects during a measurement. A request for a path ending in `/idle` gets the
//! headers and one heartbeat only (for the idle-RSS measurement).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// Starts the blaster on a background thread; returns the stream URL.
pub fn start(body: Arc<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the blaster");
    let addr = listener.local_addr().expect("blaster address");
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = socket.set_nodelay(true);
                let mut head = [0u8; 4096];
                let n = socket.read(&mut head).unwrap_or(0);
                let request_line = head[..n].split(|&b| b == b'\n').next().unwrap_or(b"");
                let idle = request_line.windows(5).any(|w| w == b"/idle");
                let _ = socket.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
                );
                if idle {
                    let _ = socket.write_all(autoplay_sdk::wire::HEARTBEAT_FRAME);
                } else {
                    let _ = socket.write_all(&body);
                }
                // Hold the connection until the client hangs up.
                while socket.read(&mut head).is_ok_and(|n| n > 0) {}
            });
        }
    });
    format!("http://{addr}/stream/acme")
}
