"""The streaming examples of the published 0.13.0's READMEs, verbatim apart from the
URL and token, run in a subprocess against the real connector: the distribution's
README (its PyPI description: the quickstart with `AUTOPLAY_APP_UNKEY_TOKEN`) and
the package's own `autoplay_sdk/README.md` (sync and async quickstarts, metrics).

As in `test_readme_examples.py` (the 0.1.0 page, whose other examples 0.13.0's README
repeats word for word), what a snippet leaves to the reader (`embed_and_upsert`,
`vector_store`, `counter`, `gauge`) is supplied by a small prelude, and a snippet
blocking in `run()` is ended with Ctrl-C, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

from conftest import Connector, PYTHON
from test_readme_examples import FAKES, Output, finish, sigint_and_wait, spawn

# The distribution's README, "Quickstart".
DIST_QUICKSTART = '''
from autoplay_sdk import ConnectorClient, ActionsPayload

STREAM_URL = "https://your-connector.onrender.com/stream/YOUR_PRODUCT_ID"
API_TOKEN  = "uk_live_..."
# Or set AUTOPLAY_APP_UNKEY_TOKEN and leave token="".

def on_actions(payload: ActionsPayload):
    print(payload.to_text())

ConnectorClient(url=STREAM_URL, token=API_TOKEN) \\
    .on_actions(on_actions) \\
    .run()
'''

# autoplay_sdk/README.md, "Quickstart / Sync (scripts, CLI tools)".
SYNC_QUICKSTART = '''
from autoplay_sdk import ConnectorClient, ActionsPayload

def on_actions(payload: ActionsPayload) -> None:
    text = payload.to_text()          # embedding-ready string
    embed_and_upsert(text, payload.session_id)

ConnectorClient(url="https://host/stream/my_product", token="uk_live_...") \\
    .on_actions(on_actions) \\
    .run()
'''

# autoplay_sdk/README.md, "Quickstart / Async (FastAPI, LangChain, LlamaIndex)".
ASYNC_QUICKSTART = '''
import asyncio
from autoplay_sdk import AsyncConnectorClient, ActionsPayload

async def on_actions(payload: ActionsPayload) -> None:
    vector = await embed(payload.to_text())
    await vector_store.upsert(payload.session_id, vector)

async def main():
    async with AsyncConnectorClient(url="...", token="...") as client:
        client.on_actions(on_actions)
        await client.run()

asyncio.run(main())
'''

# autoplay_sdk/README.md, "Metrics".
METRICS = '''
from autoplay_sdk import ConnectorClient
from autoplay_sdk.metrics import SdkMetricsHook

class MyMetrics:
    def record_event_dropped(self, *, reason, event_type, session_id, product_id):
        counter.inc()

    def record_queue_depth(self, *, depth):
        gauge.set(depth)

client = ConnectorClient(url=URL, token=TOKEN, metrics=MyMetrics())
'''


def test_dist_quickstart_with_the_0_13_token_variable(connector: Connector) -> None:
    # "Or set AUTOPLAY_APP_UNKEY_TOKEN and leave token=''": the README's alternative.
    code = DIST_QUICKSTART.replace("https://your-connector.onrender.com/stream/YOUR_PRODUCT_ID", connector.url)
    code = code.replace('"uk_live_..."', '""')
    env = {k: v for k, v in os.environ.items() if k not in ("AUTOPLAY_TOKEN", "AUTOPLAY_APP_UNKEY_TOKEN")}
    env["AUTOPLAY_APP_UNKEY_TOKEN"] = connector.key
    proc = subprocess.Popen([PYTHON, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = Output(proc)
    assert out.wait_for("Session ps_dist — 1 actions", poke=lambda: connector.post_actions("ps_dist")), out.lines
    assert "1. Clicked Dashboard 0 — https://app.example.com/dashboard" in out.lines
    sigint_and_wait(proc, out)


def test_sync_quickstart(connector: Connector) -> None:
    prelude = FAKES + textwrap.dedent('''
        def embed_and_upsert(text, session_id):
            print("UPSERT", session_id, text.splitlines()[0], flush=True)
            os.kill(os.getpid(), signal.SIGINT)   # the user presses Ctrl-C
    ''')
    code = prelude + SYNC_QUICKSTART.replace("https://host/stream/my_product", connector.url).replace(
        "uk_live_...", connector.key)
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("UPSERT ps_sync", poke=lambda: connector.post_actions("ps_sync")), out.lines
    err = finish(proc, out)  # Ctrl-C: run() returned, the script ended normally
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "UPSERT ps_sync Session ps_sync — 1 actions" in out.lines


def test_async_quickstart(connector: Connector) -> None:
    prelude = FAKES + textwrap.dedent('''
        async def embed(text):
            await asyncio.sleep(0)
            return [float(len(text))]

        class _Store:
            async def upsert(self, session_id, vector):
                print("UPSERT", session_id, vector, flush=True)
                _clients[-1].stop()
        vector_store = _Store()
    ''')
    code = prelude + ASYNC_QUICKSTART.replace('url="..."', f"url={connector.url!r}").replace(
        'token="..."', f"token={connector.key!r}")
    proc = spawn(code)
    out = Output(proc)
    assert out.wait_for("UPSERT ps_async", poke=lambda: connector.post_actions("ps_async")), out.lines
    err = finish(proc, out)  # stop(): run() returned, `async with` exited, asyncio.run ended
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


def test_metrics(connector: Connector) -> None:
    prelude = FAKES + textwrap.dedent(f'''
        URL = {connector.url!r}
        TOKEN = {connector.key!r}

        class _Counter:
            value = 0
            def inc(self):
                self.value += 1
        class _Gauge:
            values = []
            def set(self, value):
                self.values.append(value)
        counter, gauge = _Counter(), _Gauge()
    ''')
    driver = textwrap.dedent('''
        def _slow(payload):
            _real_sleep(0.002)
        client.on_actions(_slow)
        thread = client.run_in_background()
        _real_sleep(0.5)
        print("READY", flush=True)
        sys.stdin.readline()            # the test posted a burst
        for _ in range(2000):           # until every event was handled or dropped
            if counter.value + len(gauge.values) >= 1000:
                break
            _real_sleep(0.01)
        client.stop()
        print("DROPPED", counter.value, client.dropped_count, flush=True)
        print("DEPTHS", len(gauge.values), max(gauge.values), flush=True)
    ''')
    proc = subprocess.Popen([PYTHON, "-u", "-c", prelude + METRICS + driver],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Output(proc)
    assert out.wait_for("READY"), out.lines
    connector.post_batches(1000)
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    err = finish(proc, out, timeout=20)
    assert proc.returncode == 0, err
    dropped = next(line for line in out.lines if line.startswith("DROPPED")).split()
    assert int(dropped[1]) == int(dropped[2]) > 0, out.lines  # every drop counted by the hook
    depths = next(line for line in out.lines if line.startswith("DEPTHS")).split()
    # once per payload handed to the callback; the burst queued up (the core's
    # queue_size counts the batch being handed out whole, so it can pass 500 a little)
    assert int(depths[1]) == 1000 - int(dropped[1]), out.lines
    assert 0 < int(depths[2]) < 1000, out.lines
