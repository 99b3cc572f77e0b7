"""The seed page's "Context manager" shape, with a callback slower than the stream.

Arguments: stream URL, token. As background.py, with `stop()` left to `__exit__`.
"""

import sys
import threading
import time

from autoplay_sdk import ActionsPayload, ConnectorClient

STREAM_URL, API_TOKEN = sys.argv[1], sys.argv[2]
handled = 0
connected = threading.Event()


def on_actions(payload: ActionsPayload) -> None:
    global handled
    time.sleep(0.02)
    handled += 1


def do_other_work() -> None:
    connected.wait(10)
    print("ready", flush=True)
    sys.stdin.readline()
    time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 1.5)


with ConnectorClient(url=STREAM_URL, token=API_TOKEN, on_connect=connected.set) as client:
    client.on_actions(on_actions).run_in_background()
    do_other_work()
# stop() is called automatically on exit
print("handled", handled, flush=True)
