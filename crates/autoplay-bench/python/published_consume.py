"""Consumer for the Python SDKs (the published autoplay-sdk from PyPI, or ours),
run by autoplay-bench; both have the same API.

usage: published_consume.py throughput|slow|latency URL N [TOKEN [OVERFLOW_POLICY]]

- throughput: a callback that only counts; done when delivered + dropped = N.
- slow: a callback that sleeps 5 ms; done at N or 3 s after the last event.
- latency: records, at callback start, time.time_ns() minus the connector's
  `forwarded_at` (its publish time, µs resolution) and minus t, the send time in the
  first action's title (`t:<ns>:<seq>`); done at N distinct or 3 s quiet.

Prints one JSON line: {"events", "secs", "cpu_secs", "hwm_kib", "rss_kib", "dropped", ...}.
"""

import json
import sys
import threading
import time

from autoplay_sdk import ConnectorClient


def memory_kib():
    out = {"VmHWM:": 0, "VmRSS:": 0}
    with open("/proc/self/status") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in out:
                out[parts[0]] = int(parts[1])
    return out["VmHWM:"], out["VmRSS:"]


def quantile(sorted_values, q):
    if not sorted_values:
        return 0
    rank = min(max(int(-(-q * len(sorted_values) // 1)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def main():
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    lock = threading.Lock()
    count = [0]
    last = [time.perf_counter()]
    latencies = []
    from_post = []
    seqs = set()

    if mode == "throughput":
        def on_event(_payload):
            count[0] += 1  # one worker thread calls back: no lock needed
    elif mode == "slow":
        def on_event(_payload):
            time.sleep(0.005)
            with lock:
                count[0] += 1
                last[0] = time.perf_counter()
    else:
        def on_event(payload):
            now = time.time_ns()
            try:
                _, sent, seq = payload.actions[0].title.split(":")
            except (AttributeError, IndexError, ValueError):
                return
            forwarded = int((payload.forwarded_at or 0.0) * 1e9)
            with lock:
                latencies.append(now - forwarded)
                from_post.append(now - int(sent))
                seqs.add(int(seq))
                count[0] = len(seqs)
                last[0] = time.perf_counter()

    options = {}
    if len(sys.argv) > 5:  # our package only: overflow_policy ("block", ...)
        options["overflow_policy"] = sys.argv[5]
    client = ConnectorClient(url=url, token=token, **options) \
        .on_actions(on_event).on_summary(on_event)
    started = time.perf_counter()
    cpu_started = time.process_time()
    client.run_in_background()
    deadline = started + 300
    idle_limit = 60.0 if mode == "throughput" else 3.0
    seen = 0
    while True:
        done = count[0] + (client.dropped_count if mode != "latency" else 0)
        now = time.perf_counter()
        if done >= n or now > deadline:
            break
        if done != seen:
            seen = done
            last[0] = now
        elif seen > 0 and now - last[0] > idle_limit:
            break
        time.sleep(0.002)
    secs = time.perf_counter() - started
    cpu_secs = time.process_time() - cpu_started
    hwm, rss = memory_kib()
    client.stop()
    result = {"events": count[0], "secs": secs, "cpu_secs": cpu_secs, "hwm_kib": hwm, "rss_kib": rss,
              "dropped": client.dropped_count, "duplicates": 0}
    if mode == "latency":
        with lock:
            lat = sorted(latencies[len(latencies) // 10:])
            post = sorted(from_post[len(from_post) // 10:])
        result.update({
            "p50_us": quantile(lat, 0.5) / 1000, "p99_us": quantile(lat, 0.99) / 1000,
            "p999_us": quantile(lat, 0.999) / 1000, "max_us": (lat[-1] if lat else 0) / 1000,
            "post_p99_us": quantile(post, 0.99) / 1000,
        })
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
