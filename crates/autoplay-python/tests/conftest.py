"""Fixtures: the real connector on 127.0.0.1, started as a subprocess.

The connector is this crate's `test_connector` example (the `autoplay-connector`
library with a fixed product and key, so that a restart on the same port keeps the
URL and key valid). `test.sh` builds it; set AUTOPLAY_TEST_CONNECTOR to use another
binary with the same arguments and output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent
WORKSPACE = CRATE.parent.parent
WIRE_FIXTURES = WORKSPACE / "crates" / "autoplay-sdk" / "tests" / "fixtures" / "wire"


def connector_binary() -> Path:
    env = os.environ.get("AUTOPLAY_TEST_CONNECTOR")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", WORKSPACE / "target"))
    binary = target / "debug" / "examples" / "test_connector"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "-q", "-p", "autoplay-python", "--example", "test_connector"],
            cwd=WORKSPACE,
            check=True,
        )
    return binary


class Connector:
    """A running connector: `url` (stream), `events_url`, `key`, `post()`, `restart()`."""

    def __init__(self, product: str = "test", key: str = "ak_test", summary_threshold: int = 0,
                 heartbeat_s: float = 1.0) -> None:
        self.product = product
        self.key = key
        self.summary_threshold = summary_threshold
        self.heartbeat_s = heartbeat_s
        self.listen = "127.0.0.1:0"
        self.proc: Optional[subprocess.Popen[str]] = None
        self.url = ""
        self.events_url = ""
        self.webhook_url = ""
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(connector_binary()), self.listen, self.product, self.key,
             str(self.summary_threshold), str(self.heartbeat_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: Dict[str, str] = {}
        assert self.proc.stdout is not None
        while len(lines) < 4:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the connector exited before printing its URLs")
            name, _, value = line.partition(":")
            lines[name.strip()] = value.strip()
        self.url = lines["stream"]
        self.events_url = lines["events"]
        self.webhook_url = lines["webhook"]
        self.listen = self.url.split("/")[2]

    def stop(self, hard: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if hard:
                self.proc.kill()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Kills the connector and starts it again on the same address."""
        self.stop(hard=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def post(self, body: Any) -> Dict[str, Any]:
        """POST /events/{product}: one batch `{"session_id", "actions"}` or a list of them."""
        request = urllib.request.Request(
            self.events_url,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: Dict[str, Any] = json.loads(response.read())
            return answer

    def post_actions(self, session_id: str, n: int = 1, title: str = "Dashboard") -> None:
        self.post({"session_id": session_id, "actions": [action(i, title) for i in range(n)]})

    def post_batches(self, count: int, session_prefix: str = "ps_") -> None:
        """`count` one-action batches in one request: `count` payloads on the stream."""
        self.post([{"session_id": f"{session_prefix}{i}", "actions": [action(i)]} for i in range(count)])


def action(i: int = 0, title: str = "Dashboard") -> Dict[str, Any]:
    return {
        "event_type": "click",
        "title": f"{title} {i}",
        "description": f"Clicked {title} {i}",
        "canonical_url": "https://app.example.com/dashboard",
        "ts": "2024-01-15T10:30:00Z",
        # No "properties": the connector's /events rejects any (see README, known issues).
    }


@pytest.fixture
def connector() -> Iterator[Connector]:
    c = Connector()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def summarising_connector() -> Iterator[Connector]:
    c = Connector(summary_threshold=3)
    try:
        yield c
    finally:
        c.stop()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PYTHON = sys.executable


class SseServer:
    """A raw SSE server: connection i gets `scripts[i]` (the last one repeats), then
    is closed, or held open when the script ends with `HOLD`. Records each request's
    headers."""

    HOLD = b"<hold>"

    def __init__(self, scripts: List[bytes]) -> None:
        self.scripts = scripts
        self.requests: List[Dict[str, str]] = []
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                i = len(server.requests)
                server.requests.append({k.lower(): v for k, v in self.headers.items()})
                script = server.scripts[min(i, len(server.scripts) - 1)]
                hold = script.endswith(SseServer.HOLD)
                body = script[: -len(SseServer.HOLD)] if hold else script
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                    while hold and not server.closing.wait(0.05):
                        pass
                except OSError:
                    pass  # the client went away

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream/test"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sse() -> Iterator[Any]:
    servers: List[SseServer] = []

    def make(*scripts: bytes) -> SseServer:
        servers.append(SseServer(list(scripts)))
        return servers[-1]

    try:
        yield make
    finally:
        for s in servers:
            s.close()
