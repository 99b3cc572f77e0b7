"""Mistakes the stubs must catch (mypy must report every line marked E)."""

from autoplay_sdk import ActionsPayload, ConnectorClient

client = ConnectorClient(url="http://x/stream/p", token=42)  # E: token is a str
n: str = client.dropped_count  # E: an int
ConnectorClient("http://x/stream/p", max_server_delay_s="10")  # E: a float
o: str = client.oversized_count  # E: an int
p = ActionsPayload()
t: int = p.to_text()  # E: a str
p.nonexistent  # E: no such attribute

from autoplay_sdk import AsyncConnectorClient

AsyncConnectorClient("http://x/stream/p", session_concurrency="4")  # E: an int
AsyncConnectorClient("http://x/stream/p", max_queue_bytes="1M")  # E: an int
