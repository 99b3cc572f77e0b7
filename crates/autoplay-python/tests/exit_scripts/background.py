"""The seed page's "Background usage" shape, with a callback slower than the stream.

Arguments: stream URL, token. Prints "ready" once connected, waits for a line on
stdin (the test posts the events first), lets the client work for a while, stops it
and prints how many payloads the callback handled.
"""

import sys
import threading
import time

from autoplay_sdk import ActionsPayload, ConnectorClient

STREAM_URL, API_TOKEN = sys.argv[1], sys.argv[2]
handled = 0


def on_actions(payload: ActionsPayload) -> None:
    global handled
    time.sleep(0.02)
    handled += 1


connected = threading.Event()
client = ConnectorClient(url=STREAM_URL, token=API_TOKEN, on_connect=connected.set)
client.on_actions(on_actions)
client.run_in_background()

# your application continues here
connected.wait(10)
print("ready", flush=True)
sys.stdin.readline()
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 1.5)

client.stop()
print("handled", handled, flush=True)
