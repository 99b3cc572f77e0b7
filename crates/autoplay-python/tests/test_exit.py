"""Exit and shutdown: the seed page's background and context-manager shapes, run as
subprocesses against the real connector with a callback slower than the stream.

Every run must exit 0 with nothing on stderr: no SIGABRT, no Rust panic from a thread
that called into an interpreter already finalising.
"""

from __future__ import annotations

import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from conftest import PYTHON, Connector

SCRIPTS = Path(__file__).resolve().parent / "exit_scripts"

EVENTS = 200
"""Payloads posted per group: 4 s of work for a 20 ms callback, of which the scripts
leave about 2.5 s queued when they stop (within the default 5 s drain timeout)."""

GROUP = 20
"""Scripts run at once; they mostly sleep in the callback, so twenty share two cores."""


def run_group(connector: Connector, script: str, count: int, *extra: str) -> List[Tuple[int, str, str]]:
    """Starts `count` copies of `script`, posts the events once all are connected,
    lets them go on, and returns each run's (exit code, stdout, stderr)."""
    procs = [
        subprocess.Popen(
            [PYTHON, str(SCRIPTS / script), connector.url, connector.key, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        deadline = time.monotonic() + 30
        for p in procs:
            assert p.stdout is not None
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(left, 0))
            assert ready, "a script never connected"
            assert p.stdout.readline().strip() == "ready"
        connector.post_batches(EVENTS)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1) + 15)
            results.append((p.returncode, "ready\n" + out, err))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def check(results: List[Tuple[int, str, str]], handled: bool) -> None:
    failures = [r for r in results if r[0] != 0 or r[2]]
    assert not failures, (
        f"{len(failures)} of {len(results)} runs failed; first: exit {failures[0][0]}, "
        f"stderr:\n{failures[0][2][-3000:]}"
    )
    if handled:
        # stop() returned only after the queue was drained: every event was handled.
        counts = [r[1].split()[-1] for r in results]
        assert counts == [str(EVENTS)] * len(results), counts


@pytest.mark.parametrize("script", ["background.py", "context_manager.py"])
def test_the_page_shapes_exit_cleanly_20_times(connector: Connector, script: str) -> None:
    for _ in range(20 // GROUP):
        check(run_group(connector, script, GROUP), handled=True)


def test_a_client_never_stopped_is_stopped_and_joined_at_exit(connector: Connector) -> None:
    started = time.monotonic()
    check(run_group(connector, "no_stop.py", 5), handled=False)
    # Bounded by the drain timeout (5 s) plus start-up, not by the queued work.
    assert time.monotonic() - started < 20


def test_exit_is_bounded_when_a_callback_never_returns(connector: Connector) -> None:
    """A callback stuck at exit delays it by the drain timeout plus a bounded grace,
    says so on stderr, and the process still exits 0 (the stuck thread is never let
    back into the interpreter)."""
    proc = subprocess.Popen(
        [PYTHON, "-c", (
            "import sys, threading, time\n"
            "from autoplay_sdk import ConnectorClient\n"
            "entered = threading.Event()\n"
            "def stuck(payload):\n"
            "    entered.set()\n"
            "    time.sleep(60)\n"
            "client = ConnectorClient(url=sys.argv[1], token=sys.argv[2], drain_timeout_s=0.3,\n"
            "                         on_connect=lambda: print('ready', flush=True))\n"
            "client.on_actions(stuck).run_in_background()\n"
            "assert entered.wait(20)\n"
            "print('leaving', flush=True)\n"
        ), connector.url, connector.key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline() == "ready\n"
        connector.post_batches(3)
        assert proc.stdout.readline() == "leaving\n"
        left = time.monotonic()
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    # 0.3 s drain + 1 s grace for the run, then at most 1 s for calls inside to leave.
    assert took < 4, took
    assert "still running at interpreter exit" in err, err


def test_ctrl_c_with_a_backlog_discards_it_through_the_core_stop_now(connector: Connector) -> None:
    """Ctrl-C on a blocking run() with seconds of queued work: after the 0.7 s grace the
    rest is discarded (the core's stop-now, one warning), run() returns, exit 0."""
    proc = subprocess.Popen(
        [PYTHON, "-c", (
            "import sys, time\n"
            "from autoplay_sdk import ConnectorClient\n"
            "handled = 0\n"
            "def slow(payload):\n"
            "    global handled\n"
            "    time.sleep(0.02)\n"
            "    handled += 1\n"
            "    if handled == 1:\n"
            "        print('busy', flush=True)\n"
            "ConnectorClient(url=sys.argv[1], token=sys.argv[2],\n"
            "                on_connect=lambda: print('ready', flush=True)).on_actions(slow).run()\n"
            "print('returned', handled, flush=True)\n"
        ), connector.url, connector.key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline() == "ready\n"
        connector.post_batches(EVENTS)  # 4 s of work
        assert proc.stdout.readline() == "busy\n"
        time.sleep(0.3)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert took < 2.0, took
    handled = int(out.split()[-1])
    assert handled < EVENTS, out
    found = re.search(r"stopped without draining; events still queued were discarded discarded=(\d+)", err)
    assert found, err
    # Every event is either handled or counted as discarded (all were read by then).
    assert 0 < int(found.group(1)) <= EVENTS - handled, err
    assert "Traceback" not in err, err
