"""The RAG example end to end, on 127.0.0.1: `autoplay demo` (its own process, finite
traffic) -> autoplay_sdk -> all-MiniLM-L6-v2 -> sqlite-vec -> questions whose right
answers are known from the traffic itself.

Run with `bash examples/rag/test.sh`. The figures (embeddings/s, the lag from the
connector forwarding a payload to it being searchable) are printed and written to
target/rag-figures.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from autoplay_sdk import ActionsPayload, ConnectorClient, EventBuffer, SummaryPayload

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = os.environ.get("AUTOPLAY_BIN", str(TARGET / "debug" / "autoplay"))
sys.path.insert(0, str(HERE))

import rag  # noqa: E402

QUESTION = "who tried to export a CSV and failed?"
# Five users, one session each: journeys 0-3 of the demo's traffic, then 0 again,
# so the export, the invoice and the trial happen once each, the task board twice.
DEMO_ARGS = ["demo", "--users", "5", "--sessions", "1"]
DONE = "the simulated users are done"
# Bounds for a loaded two-core machine; an idle one needs a fraction of each.
START_S = 30.0
TRAFFIC_S = 90.0
CATCH_UP_S = 180.0
# torch's CPU threads for the embedder; 1 is the example's default (see rag.py).
THREADS = int(os.environ.get("AUTOPLAY_RAG_THREADS", "1"))


class Demo:
    """`autoplay demo` in its own process, its stderr read line by line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [BIN, *DEMO_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k not in ("AUTOPLAY_TOKEN", "RUST_LOG")},
        )
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._banner("stream:")
        self.key = self._banner("key:")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} from the demo; stderr:\n" + "\n".join(self.lines))

    def _banner(self, label: str) -> str:
        line = self.wait_for(f"  {label}", START_S)
        return line.split(label, 1)[1].strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise
        return self.proc.returncode


@pytest.fixture(scope="module")
def embedder() -> rag.Embedder:
    # Loaded before the demo starts, so that the index is connected while the
    # traffic is live and the lag is the pipeline's, not the model's loading.
    return rag.Embedder(threads=THREADS)


@pytest.fixture(scope="module")
def demo(embedder: rag.Embedder) -> Iterator[Demo]:
    demo = Demo()
    yield demo
    assert demo.stop() == 0, "\n".join(demo.lines)


@pytest.fixture(scope="module")
def live_index(embedder: rag.Embedder, demo: Demo) -> Iterator[rag.SessionIndex]:
    index = rag.SessionIndex(embedder, rag.VectorStore(":memory:", embedder.dim))
    client = ConnectorClient(
        demo.url,
        demo.key,
        last_event_id="0",
        overflow_policy="block",
        on_connect=index.on_connect,
    )
    client.on_actions(index.on_actions).on_summary(index.on_summary)
    thread = client.run_in_background()
    yield index
    client.stop()
    thread.join(timeout=10)


class Truth:
    """What the demo's users did, from the stream itself: a second client's copy of
    every payload, read without any of the example's code."""

    def __init__(self, payloads: List[object]) -> None:
        self.payloads = payloads
        self.actions: Dict[str, List[tuple]] = {}
        self.summaries: Dict[str, List[str]] = {}
        self.who: Dict[str, Optional[str]] = {}
        for p in payloads:
            if isinstance(p, ActionsPayload):
                sid = p.session_id or "unknown"
                self.actions.setdefault(sid, []).extend(
                    (a.event_type, a.title) for a in p.actions
                )
                self.who[sid] = p.email or p.user_id or self.who.get(sid)
            elif isinstance(p, SummaryPayload):
                self.summaries.setdefault(p.session_id or "unknown", []).append(p.summary)

    def session_with(self, *steps: tuple) -> str:
        found = [s for s, acts in self.actions.items() if all(step in acts for step in steps)]
        assert len(found) == 1, f"{steps} in {found} of {self.actions}"
        return found[0]


@pytest.fixture(scope="module")
def truth(demo: Demo, live_index: rag.SessionIndex) -> Truth:
    buffer = EventBuffer(max_size=0)
    client = ConnectorClient(demo.url, demo.key, last_event_id="0")
    client.on_actions(buffer.add).on_summary(buffer.add)
    thread = client.run_in_background()
    demo.wait_for(DONE, TRAFFIC_S)
    # Summaries are written in tasks of their own after the last webhook; wait
    # until the copy stops growing.
    seen, deadline = -1, time.monotonic() + 10
    while len(buffer) != seen and time.monotonic() < deadline:
        seen = len(buffer)
        time.sleep(1.0)
    client.stop()
    thread.join(timeout=10)
    payloads = buffer.peek()
    assert payloads, "the demo sent nothing"
    # The index reads the same stream; let it catch up with every payload.
    deadline = time.monotonic() + CATCH_UP_S
    while live_index.received < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_index.received == len(payloads), live_index.figures()
    return Truth(payloads)


def test_the_failed_csv_export_is_found_first_with_its_summary(
    embedder: rag.Embedder, live_index: rag.SessionIndex, truth: Truth
) -> None:
    export = truth.session_with(
        ("click", "Export CSV"), ("export_failed", "export_failed"), ("click", "Retry")
    )
    assert sorted(live_index.store.sessions()) == sorted(truth.actions)
    assert len(truth.actions) == 5

    hits = live_index.ask(QUESTION, top=5)
    rag.print_answers(QUESTION, hits)
    assert [h.session_id for h in hits][0] == export, [h.session_id for h in hits]
    best = hits[0]
    assert best.who == truth.who[export] == "dana@example.com"
    assert best.summary == " ".join(truth.summaries[export])
    assert "'Export CSV'" in best.summary and "export_failed" in best.summary
    assert best.actions is not None and "Clicked 'Retry'" in best.actions
    # Every session is a candidate: the answer won against all the others.
    assert len(hits) == 5
    assert best.similarity > hits[1].similarity


@pytest.mark.parametrize(
    "question, step",
    [
        ("who downloaded an invoice as a PDF?", ("click", "Download PDF")),
        ("who started a free trial?", ("trial_started", "trial_started")),
    ],
)
def test_other_questions_find_other_sessions(
    live_index: rag.SessionIndex, truth: Truth, question: str, step: tuple
) -> None:
    hits = live_index.ask(question)
    rag.print_answers(question, hits)
    assert hits[0].session_id == truth.session_with(step)


def test_figures(embedder: rag.Embedder, live_index: rag.SessionIndex, truth: Truth) -> None:
    figures = live_index.figures()
    assert figures["failed"] == 0
    # One document per payload handled: every payload was embedded and upserted.
    assert figures["upserted"] == figures["payloads"] == len(truth.payloads)
    assert figures["lag_samples"] > 0, figures
    assert figures["lag_median_s"] < 10.0, figures

    # Batched throughput, beside the pipeline's one-text-at-a-time rate.
    hits = live_index.ask(QUESTION, top=5)
    texts = [t for h in hits for t in (h.summary, h.actions) if t] * 20
    started = time.perf_counter()
    embedder.many(texts, batch_size=32)
    figures["batched_embeddings_per_s"] = len(texts) / (time.perf_counter() - started)
    figures["load_average_1m"] = os.getloadavg()[0]
    figures["cpus"] = os.cpu_count()
    figures["torch_threads"] = THREADS
    print("figures:", json.dumps(figures, indent=2))
    TARGET.mkdir(exist_ok=True)
    (TARGET / "rag-figures.json").write_text(json.dumps(figures, indent=2) + "\n")


def test_the_command_answers_the_question(demo: Demo, truth: Truth) -> None:
    """`rag.py` as the README runs it, against the same demo (by now all replay)."""
    export = truth.session_with(("click", "Export CSV"), ("export_failed", "export_failed"))
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "rag.py"),
            "--url",
            demo.url,
            "--ask",
            QUESTION,
            "--idle",
            "3",
        ],
        env={**os.environ, "AUTOPLAY_TOKEN": demo.key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    print(out.stdout, out.stderr)
    first = next(line for line in out.stdout.splitlines() if line.startswith("1. "))
    assert first.startswith(f"1. session {export} (dana@example.com)"), out.stdout
    assert f"indexed {len(truth.payloads)} payloads of 5 sessions" in out.stderr, out.stderr
