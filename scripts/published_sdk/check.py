"""The published Python `autoplay-sdk`, unchanged, against our connector.

Run by scripts/published_sdk/test.sh in a virtualenv holding one published version.
Starts `autoplay connector` on a free loopback port, subscribes with the published
ConnectorClient (blocking client in a background thread, as its README shows),
ingests actions through `POST /events/{product}` until a summary is due, and checks
that the typed payloads arrive intact.

Statuses are not checked: the published client never looks at them (on a 401 it
fails on the content type and retries forever, once a second; see DESIGN.md), so
there is nothing of ours to verify there.

usage: python check.py PATH_TO_AUTOPLAY_BINARY
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

import autoplay_sdk
from autoplay_sdk import ActionsPayload, ConnectorClient, SummaryPayload

KEY = "k_published_sdk_check"
WAIT_S = 20.0


def start_connector(binary: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            binary,
            "connector",
            "--listen",
            "127.0.0.1:0",
            "--product",
            f"acme:{KEY}",
            "--heartbeat-s",
            "0.2",
            "--summary-threshold",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit("the connector did not start")


def post_actions(base: str, session: str, titles: list[str]) -> None:
    body = json.dumps(
        {
            "session_id": session,
            "user_id": "user_456",
            "email": "alice@example.com",
            "actions": [
                {
                    "event_type": "click",
                    "title": title,
                    "description": f"Clicked '{title}'",
                    "canonical_url": "https://app.example.com/dashboard",
                }
                for title in titles
            ],
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/events/acme",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200, response.status


def wait_for(what: str, condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def check_stream(base: str) -> None:
    actions: list[ActionsPayload] = []
    summaries: list[SummaryPayload] = []
    client = (
        ConnectorClient(url=f"{base}/stream/acme", token=KEY)
        .on_actions(actions.append)
        .on_summary(summaries.append)
    )
    thread = client.run_in_background()
    time.sleep(0.5)  # let it subscribe: live events only reach subscribers
    post_actions(base, "ps_1", ["Export CSV", "Invite teammates"])
    wait_for("the first actions payload", lambda: len(actions) >= 1)
    post_actions(base, "ps_1", ["Billing"])
    wait_for("a summary", lambda: len(summaries) >= 1)
    client.stop()
    thread.join(timeout=5)

    first = actions[0]
    assert isinstance(first, ActionsPayload), type(first)
    assert first.session_id == "ps_1", first.session_id
    assert first.product_id == "acme", first.product_id
    assert first.email == "alice@example.com", first.email
    assert [a.title for a in first.actions] == ["Export CSV", "Invite teammates"], first.actions
    assert first.count == 2, first.count
    text = first.to_text()
    assert "Clicked 'Export CSV'" in text and "https://app.example.com/dashboard" in text, text
    summary = summaries[0]
    assert isinstance(summary, SummaryPayload), type(summary)
    assert summary.session_id == "ps_1"
    assert summary.summary, "the summary text is empty"
    assert summary.replaces == 3, summary.replaces


def main() -> None:
    proc, base = start_connector(sys.argv[1])
    try:
        check_stream(base)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    version = getattr(autoplay_sdk, "__version__", "?")
    print(f"published autoplay-sdk (__version__ {version}) works against the connector")


if __name__ == "__main__":
    main()
