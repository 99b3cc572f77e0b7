"""Consumer for the Python SDKs' AsyncConnectorClient (the published autoplay-sdk
0.13.0 from PyPI, or ours), run by autoplay-bench; both have the same API.

usage: async_consume.py throughput URL N [TOKEN]

- throughput: an `async def` callback that only counts; done when delivered +
  dropped = N (0.13.0 has no drop counter: it reads the socket only between
  callbacks), or 60 s after the last event.

Prints one JSON line: {"events", "secs", "cpu_secs", "hwm_kib", "rss_kib", "dropped", ...}.
"""

import asyncio
import json
import sys
import time

from autoplay_sdk import AsyncConnectorClient


def memory_kib():
    out = {"VmHWM:": 0, "VmRSS:": 0}
    with open("/proc/self/status") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in out:
                out[parts[0]] = int(parts[1])
    return out["VmHWM:"], out["VmRSS:"]


async def main():
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    if mode != "throughput":
        raise SystemExit(f"unknown mode {mode}")
    count = [0]
    done = asyncio.Event()

    async def on_event(_payload):
        count[0] += 1
        if count[0] >= n:
            done.set()

    client = AsyncConnectorClient(url=url, token=token)
    client.on_actions(on_event).on_summary(on_event)

    def dropped():
        return getattr(client, "dropped_count", 0)

    started = time.perf_counter()
    cpu_started = time.process_time()
    task = client.run_in_background()
    deadline = started + 300
    seen, last = 0, started
    # The watchdog only covers drops and stalls; the common end is `done`, set by
    # the callback itself, so the clock stops with the last event.
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
        now = time.perf_counter()
        total = count[0] + dropped()
        if total >= n or now > deadline:
            break
        if total != seen:
            seen, last = total, now
        elif now - last > 60:
            break
    secs = time.perf_counter() - started
    cpu_secs = time.process_time() - cpu_started
    hwm, rss = memory_kib()
    client.stop()
    task.cancel()
    try:
        await asyncio.wait_for(task, 5)
    except (asyncio.CancelledError, asyncio.TimeoutError):
        pass
    result = {"events": count[0], "secs": secs, "cpu_secs": cpu_secs, "hwm_kib": hwm, "rss_kib": rss,
              "dropped": dropped(), "duplicates": 0}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
