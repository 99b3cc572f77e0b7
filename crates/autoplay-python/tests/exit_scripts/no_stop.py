"""A client still running when the script ends: nothing calls stop().

Arguments: stream URL, token. Prints "ready" once connected, waits for a line on
stdin, lets the callback work a little, then falls off the end of the script; the
package stops and joins the client at interpreter exit.
"""

import sys
import threading
import time

from autoplay_sdk import ActionsPayload, ConnectorClient

STREAM_URL, API_TOKEN = sys.argv[1], sys.argv[2]
connected = threading.Event()


def on_actions(payload: ActionsPayload) -> None:
    time.sleep(0.02)


client = ConnectorClient(url=STREAM_URL, token=API_TOKEN, on_connect=connected.set)
client.on_actions(on_actions).run_in_background()
connected.wait(10)
print("ready", flush=True)
sys.stdin.readline()
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0.5)
print("leaving", flush=True)
