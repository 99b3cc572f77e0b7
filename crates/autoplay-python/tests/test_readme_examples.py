"""Every example of the published autoplay-sdk 0.1.0 page, verbatim apart from the
URL and token, run in a subprocess against the real connector.

Each snippet below is copied from the page. What a snippet leaves to the reader
(`do_other_work()`, `your_vector_store`, the `openai` client, an `on_actions` defined
in an earlier example) is supplied by a small prelude; a snippet that blocks in
`run()` is ended with Ctrl-C (SIGINT), as a user would, and must then exit normally.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import List, Optional

from conftest import Connector, PYTHON

QUICKSTART = '''
from autoplay_sdk import ConnectorClient, ActionsPayload

STREAM_URL = "https://your-connector.onrender.com/stream/YOUR_PRODUCT_ID"
API_TOKEN  = "uk_live_..."

def on_actions(payload: ActionsPayload):
    print(payload.to_text())

ConnectorClient(url=STREAM_URL, token=API_TOKEN) \\
    .on_actions(on_actions) \\
    .run()
'''

TYPED_PAYLOADS = '''
from autoplay_sdk import ActionsPayload, SummaryPayload

def on_actions(payload: ActionsPayload):
    print(payload.session_id)       # str | None
    print(payload.email)            # str | None
    print(payload.count)            # int
    for action in payload.actions:
        print(action.title)         # str
        print(action.description)   # str
        print(action.canonical_url) # str

    # embedding-ready text — one call, no formatting logic needed
    text = payload.to_text()
    # "Session ps_abc123 — 3 actions\\n1. Viewed Dashboard — https://...\\n..."

def on_summary(payload: SummaryPayload):
    print(payload.session_id)
    print(payload.replaces)         # number of actions this summary replaces
    text = payload.to_text()        # the prose summary string directly
'''

BACKGROUND = '''
client = ConnectorClient(url=STREAM_URL, token=API_TOKEN)
client.on_actions(on_actions)
client.run_in_background()

# your application continues here
import time
time.sleep(60)

client.stop()
'''

CONTEXT_MANAGER = '''
with ConnectorClient(url=STREAM_URL, token=API_TOKEN) as client:
    client.on_actions(on_actions).run_in_background()
    do_other_work()
# stop() is called automatically on exit
'''

ASYNC_PIPELINE = '''
import asyncio
import openai
from autoplay_sdk import AsyncConnectorClient, ActionsPayload, SummaryPayload

openai_client = openai.AsyncOpenAI()

async def on_actions(payload: ActionsPayload):
    """Embed the batch and upsert into your vector store."""
    text = payload.to_text()  # embedding-ready string, no formatting needed
    response = await openai_client.embeddings.create(
        input=text, model="text-embedding-3-small"
    )
    embedding = response.data[0].embedding

    # upsert into Pinecone, Weaviate, Chroma, pgvector, etc.
    await your_vector_store.upsert(
        id=payload.session_id or "unknown",
        vector=embedding,
        metadata={
            "session_id": payload.session_id,
            "email":      payload.email,
            "count":      payload.count,
        },
    )

async def on_summary(payload: SummaryPayload):
    """Replace the raw action history with a compact prose summary."""
    text = payload.to_text()  # the prose summary string directly
    print(f"[summary] session={payload.session_id}: {text}")
    # store in your RAG context window / vector store as well

async def main():
    async with AsyncConnectorClient(url=STREAM_URL, token=API_TOKEN) as client:
        client.on_actions(on_actions).on_summary(on_summary)
        await client.run()

asyncio.run(main())
'''

NON_BLOCKING_IN_LOOP = '''
client = AsyncConnectorClient(url=STREAM_URL, token=API_TOKEN)
client.on_actions(on_actions)
task = client.run_in_background()  # asyncio.Task — returns immediately

await do_other_async_work()

client.stop()
await task
'''

SYNC_PIPELINE = '''
import openai
from autoplay_sdk import ConnectorClient, ActionsPayload

openai_client = openai.OpenAI()

def on_actions(payload: ActionsPayload):
    text = payload.to_text()
    embedding = openai_client.embeddings.create(
        input=text, model="text-embedding-3-small"
    ).data[0].embedding
    your_vector_store.upsert(id=payload.session_id or "unknown", vector=embedding)

ConnectorClient(url=STREAM_URL, token=API_TOKEN) \\
    .on_actions(on_actions) \\
    .run()
'''

DROP_HANDLING = '''
def on_drop(payload, total_dropped):
    print(f"WARNING: dropped event (type={payload['type']}, total={total_dropped})")
    # alert your on-call rotation, increment a metric, etc.

ConnectorClient(url=STREAM_URL, token=API_TOKEN, max_queue_size=1000) \\
    .on_actions(on_actions) \\
    .on_drop(on_drop) \\
    .run()

# Check the running drop count at any time:
print(client.dropped_count)   # events dropped so far
print(client.queue_size)      # events waiting in the queue right now
'''

# Fakes for what the page leaves to the reader.
FAKES = '''
import sys, types, os, signal, asyncio, threading
import time as _time
import autoplay_sdk
from autoplay_sdk import ConnectorClient, AsyncConnectorClient, ActionsPayload, SummaryPayload

SEEN = threading.Event()

def on_actions(payload):
    print("GOT", payload.to_text(), flush=True)
    SEEN.set()

def do_other_work():
    SEEN.wait(20)

async def do_other_async_work():
    for _ in range(400):
        if SEEN.is_set():
            return
        await asyncio.sleep(0.05)

_real_sleep = _time.sleep
def _sleep(seconds):
    # "time.sleep(60)": the application's work; here it lasts until an event came.
    if seconds >= 10:
        SEEN.wait(20)
    else:
        _real_sleep(seconds)
_time.sleep = _sleep

class _Embeddings:
    def create(self, input, model):
        return types.SimpleNamespace(data=[types.SimpleNamespace(embedding=[float(len(input)), 1.0])])

class _AsyncEmbeddings:
    async def create(self, input, model):
        await asyncio.sleep(0)
        return types.SimpleNamespace(data=[types.SimpleNamespace(embedding=[float(len(input)), 1.0])])

openai = types.ModuleType("openai")
openai.OpenAI = lambda: types.SimpleNamespace(embeddings=_Embeddings())
openai.AsyncOpenAI = lambda: types.SimpleNamespace(embeddings=_AsyncEmbeddings())
sys.modules["openai"] = openai

_clients = []
_orig_aenter = AsyncConnectorClient.__aenter__
async def _aenter(self):
    _clients.append(self)
    return await _orig_aenter(self)
AsyncConnectorClient.__aenter__ = _aenter

_state = {"upserts": 0}
class _SyncStore:
    def upsert(self, id, vector, metadata=None):
        print("UPSERT", id, vector, metadata, flush=True)
        os.kill(os.getpid(), signal.SIGINT)   # the user presses Ctrl-C

class _AsyncStore:
    async def upsert(self, id, vector, metadata=None):
        print("UPSERT", id, vector, metadata, flush=True)
        _clients[-1].stop()

client = None
'''


def page_code(snippet: str, connector: Connector) -> str:
    return (
        snippet.replace("https://your-connector.onrender.com/stream/YOUR_PRODUCT_ID", connector.url)
        .replace("uk_live_...", connector.key)
    )


def spawn(code: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [PYTHON, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Output:
    """Collects a subprocess's stdout lines on a thread."""

    def __init__(self, proc: "subprocess.Popen[str]") -> None:
        self.lines: List[str] = []
        self.proc = proc
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 20.0, poke: Optional[object] = None) -> bool:
        deadline = time.monotonic() + timeout
        next_poke = 0.0
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                self.thread.join(1)
                return any(text in line for line in self.lines)
            if poke is not None and time.monotonic() >= next_poke:
                poke()  # type: ignore[operator]
                next_poke = time.monotonic() + 0.3
            time.sleep(0.02)
        return False


def finish(proc: "subprocess.Popen[str]", out: Output, timeout: float = 10.0) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    out.thread.join(2)
    assert proc.stderr is not None
    return proc.stderr.read()


def sigint_and_wait(proc: "subprocess.Popen[str]", out: Output) -> float:
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    err = finish(proc, out, timeout=5)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return elapsed


def test_quickstart_and_ctrl_c(connector: Connector) -> None:
    proc = spawn(page_code(QUICKSTART, connector))
    out = Output(proc)
    assert out.wait_for("Session ps_quick — 1 actions", poke=lambda: connector.post_actions("ps_quick")), out.lines
    assert "1. Clicked Dashboard 0 — https://app.example.com/dashboard" in out.lines
    # Ctrl-C during the blocking run(): run() returns normally, promptly.
    elapsed = sigint_and_wait(proc, out)
    assert elapsed < 1.5, f"Ctrl-C took {elapsed:.2f}s"


def test_typed_payloads(summarising_connector: Connector) -> None:
    c = summarising_connector
    code = FAKES + page_code(TYPED_PAYLOADS, c) + (
        "\nConnectorClient(url=STREAM_URL, token=API_TOKEN, on_connect=lambda: print('CONNECTED', flush=True))"
        ".on_actions(on_actions).on_summary(on_summary).run()\n"
    ).replace("STREAM_URL", repr(c.url)).replace("API_TOKEN", repr(c.key))
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("CONNECTED")
    c.post({"session_id": "ps_typed", "email": "a@b.c", "actions": [{"title": "Billing", "description": "Viewed Billing", "canonical_url": "/billing"}] * 3})
    assert out.wait_for("ps_typed")
    assert out.wait_for("Viewed Billing")
    # the summary: session id, then `replaces`
    assert out.wait_for("3"), out.lines
    time.sleep(0.3)
    sigint_and_wait(proc, out)
    assert out.lines[:4] == ["CONNECTED", "ps_typed", "a@b.c", "3"]
    assert out.lines[4:7] == ["Billing", "Viewed Billing", "/billing"]
    assert out.lines[-2:] == ["ps_typed", "3"], out.lines


def _prelude(connector: Connector) -> str:
    return FAKES + f"\nSTREAM_URL = {connector.url!r}\nAPI_TOKEN = {connector.key!r}\n"


def test_background_usage(connector: Connector) -> None:
    proc = spawn(_prelude(connector) + BACKGROUND)
    out = Output(proc)
    assert out.wait_for("GOT Session ps_bg", poke=lambda: connector.post_actions("ps_bg"))
    err = finish(proc, out)
    assert proc.returncode == 0, err


def test_context_manager(connector: Connector) -> None:
    proc = spawn(_prelude(connector) + CONTEXT_MANAGER)
    out = Output(proc)
    assert out.wait_for("GOT Session ps_ctx", poke=lambda: connector.post_actions("ps_ctx"))
    err = finish(proc, out)
    assert proc.returncode == 0, err


def test_async_rag_pipeline(summarising_connector: Connector) -> None:
    c = summarising_connector
    code = _prelude(c) + "your_vector_store = _AsyncStore()\n" + page_code(ASYNC_PIPELINE, c).replace(
        f'STREAM_URL = "{c.url}"', ""
    )
    proc = spawn(code)
    out = Output(proc)
    def poke() -> None:
        c.post_actions("ps_async", n=3)

    assert out.wait_for("UPSERT ps_async", poke=poke), out.lines
    err = finish(proc, out)
    assert proc.returncode == 0, err
    assert "'count': 3" in "\n".join(out.lines)


def test_async_summary_callback(summarising_connector: Connector) -> None:
    c = summarising_connector
    # the same page example; the store stops the client only after the summary came
    code = _prelude(c) + textwrap.dedent('''
        class _Store:
            async def upsert(self, id, vector, metadata=None):
                print("UPSERT", id, flush=True)
        your_vector_store = _Store()
        _orig_on = AsyncConnectorClient.on_summary
        def _on_summary(self, fn):
            async def wrapped(p):
                await fn(p)
                self.stop()
            return _orig_on(self, wrapped)
        AsyncConnectorClient.on_summary = _on_summary
    ''') + ASYNC_PIPELINE
    proc = spawn(code)
    out = Output(proc)
    def poke() -> None:
        c.post_actions("ps_sum", n=3)

    assert out.wait_for("[summary] session=ps_sum:", poke=poke), out.lines
    err = finish(proc, out)
    assert proc.returncode == 0, err


def test_non_blocking_inside_an_event_loop(connector: Connector) -> None:
    body = textwrap.indent(NON_BLOCKING_IN_LOOP, "    ")
    code = _prelude(connector) + textwrap.dedent('''
        _sync_on_actions = on_actions
        async def on_actions(payload):
            await asyncio.sleep(0)
            _sync_on_actions(payload)
        async def _main():
    ''') + body + "\n    print('TASK DONE', task.done(), flush=True)\nasyncio.run(_main())\n"
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("GOT Session ps_loop", poke=lambda: connector.post_actions("ps_loop")), out.lines
    err = finish(proc, out)
    assert proc.returncode == 0, err
    assert "TASK DONE True" in out.lines


def test_sync_rag_pipeline(connector: Connector) -> None:
    code = _prelude(connector) + "your_vector_store = _SyncStore()\n" + SYNC_PIPELINE
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("UPSERT ps_sync", poke=lambda: connector.post_actions("ps_sync")), out.lines
    err = finish(proc, out)  # the store pressed Ctrl-C: run() returned normally
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


def test_drop_handling(connector: Connector) -> None:
    code = _prelude(connector) + textwrap.dedent('''
        def on_actions(payload):
            _real_sleep(0.005)          # a slow callback
            print("GOT", payload.session_id, flush=True)
        client = ConnectorClient(url=STREAM_URL, token=API_TOKEN)   # the page's `client`
    ''') + DROP_HANDLING
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("GOT warmup", poke=lambda: connector.post_actions("warmup"))
    for _ in range(3):
        connector.post_batches(1000)
    assert out.wait_for("WARNING: dropped event (type=actions, total=1)"), out.lines[-5:]
    sigint_and_wait(proc, out)
    assert out.wait_for("GOT ps_0")
    assert out.lines[-2:] == ["0", "0"]
