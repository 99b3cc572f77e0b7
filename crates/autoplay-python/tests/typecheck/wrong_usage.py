"""Mistakes the stubs must catch (mypy must report every line marked E)."""

from autoplay_sdk import ActionsPayload, ConnectorClient

client = ConnectorClient(url="http://x/stream/p", token=42)  # E: token is a str
n: str = client.dropped_count  # E: an int
ConnectorClient("http://x/stream/p", max_server_delay_s="10")  # E: a float
o: str = client.oversized_count  # E: an int
p = ActionsPayload()
t: int = p.to_text()  # E: a str
p.nonexistent  # E: no such attribute
p.actions = [1]  # E: actions or dicts
p.forwarded_at = "now"  # E: a float or None
a = p.actions[0]
a.raw_url = 5  # E: a str or None
unset: None = a.raw_url  # E: reads as a str

from autoplay_sdk import AsyncConnectorClient

AsyncConnectorClient("http://x/stream/p", session_concurrency="4")  # E: an int
AsyncConnectorClient("http://x/stream/p", max_queue_bytes="1M")  # E: an int
