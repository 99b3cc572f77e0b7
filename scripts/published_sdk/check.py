"""The published Python `autoplay-sdk`, unchanged, against our connector.

Run by scripts/published_sdk/test.sh in a virtualenv holding one published version.
Starts `autoplay connector` on a free loopback port, subscribes with the published
ConnectorClient (blocking client in a background thread, as its README shows),
ingests actions through `POST /events/{product}` and the flat body of the PostHog
Hog destination through `POST /webhook/{product}` until a summary is due, and
checks that the typed payloads arrive intact and that the client's own `to_text()`
prints them as that generation's format says: 0.1.0's `1. <description> — <url>`,
0.13.0's `[0] <type>: <description> — <url>` (with its dwell-time timestamps).

Statuses are not checked: the published client never looks at them (on a 401 it
fails on the content type and retries forever, once a second; see DESIGN.md), so
there is nothing of ours to verify there.

usage: python check.py PATH_TO_AUTOPLAY_BINARY
"""

from __future__ import annotations

import importlib.metadata
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
SECRET = "whsec_published_sdk_check"
WAIT_S = 20.0
# 0.13.0 is the first generation whose SlimAction reads `type`, `index` and
# `timestamp_start`/`timestamp_end`.
VERSION = tuple(int(p) for p in importlib.metadata.version("autoplay-sdk").split(".")[:2])
LATER = VERSION >= (0, 13)


def start_connector(binary: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            binary,
            "connector",
            "--listen",
            "127.0.0.1:0",
            "--product",
            f"acme:{KEY}:{SECRET}",
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


def post(base: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"{base}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "x-posthog-secret": SECRET},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200, response.status


def post_actions(base: str, session: str, titles: list[str], first_s: int) -> None:
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
                    "ts": f"2024-01-15T10:30:{first_s + i:02d}Z",
                }
                for i, title in enumerate(titles)
            ],
        }
    ).encode()
    post(base, "/events/acme", body)


def post_hog_submit(base: str, session: str) -> None:
    """The flat body the Hog destination of `autoplay-setup` 0.2.0 posts."""
    body = {
        "event": "$autocapture",
        "referrer": "",
        "email": "alice@example.com",
        "timestamp": "2024-01-15T10:30:09.500Z",
        "element_id": "billing-form",
        "event_type": "submit",
        "session_id": session,
        "current_url": "https://app.example.com/settings/8812/billing",
        "distinct_id": "user_456",
        "elements_chain": 'form:attr__aria-label="Billing details"attr__id="billing-form"',
        "input_field_name": "",
        "link_destination": "",
        "button_or_link_text": "",
    }
    post(base, "/webhook/acme", json.dumps(body, separators=(",", ":")).encode())


def live_subscribers(base: str) -> int:
    """The connector's own count of open streams, from /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^autoplay_live_subscribers (\d+)$", text, re.MULTILINE)
    assert match, "no autoplay_live_subscribers in /metrics"
    return int(match.group(1))


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
    # Live events only reach subscribers: wait until the connector counts this one
    # (a fixed sleep lost the race on a loaded machine).
    wait_for("the client to subscribe", lambda: live_subscribers(base) >= 1)
    post_actions(base, "ps_1", ["Export CSV", "Invite teammates"], 0)
    wait_for("the first actions payload", lambda: len(actions) >= 1)
    post_hog_submit(base, "ps_1")
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
    url = "https://app.example.com/dashboard"
    if LATER:
        expected = (
            "Session ps_1 — 2 actions\n"
            f"[0] click: Clicked 'Export CSV' — {url}\n"
            f"[1] click: Clicked 'Invite teammates' — {url}"
        )
        a, b = first.actions
        assert (a.timestamp_start, a.timestamp_end) == (1705314600.0, 1705314601.0), a
        assert (b.timestamp_start, b.timestamp_end) == (1705314601.0, 1705314601.0), b
    else:
        expected = (
            "Session ps_1 — 2 actions\n"
            f"1. Clicked 'Export CSV' — {url}\n"
            f"2. Clicked 'Invite teammates' — {url}"
        )
    assert first.to_text() == expected, first.to_text()

    hog = actions[1]
    assert hog.session_id == "ps_1" and hog.email == "alice@example.com", hog
    billing = "https://app.example.com/settings/:id/billing"
    if LATER:
        line = f"[0] submit: Submitted 'Billing details' — {billing}"
        assert hog.actions[0].raw_url == "https://app.example.com/settings/8812/billing"
        assert hog.actions[0].timestamp_start == 1705314609.5, hog.actions[0]
    else:
        line = f"1. Submitted 'Billing details' — {billing}"
    assert hog.to_text() == f"Session ps_1 — 1 actions\n{line}", hog.to_text()
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
    generation = "0.13.0 format" if LATER else "0.1.0 format"
    print(
        f"published autoplay-sdk {importlib.metadata.version('autoplay-sdk')} "
        f"(__version__ {version}, to_text in the {generation}) works against the connector"
    )


if __name__ == "__main__":
    main()
