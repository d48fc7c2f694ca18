"""Milvus as the second vector engine: Milvus Lite (a local folder) or a Milvus server/cluster URL.

The same layout as the Qdrant collections (see store.py): a ``dense`` cosine vector, the chunk
``text`` with a BM25 function writing the sparse field ``bm25`` (analyzer ``chinese``/jieba for
Chinese text, ``standard`` otherwise), ``doc_id`` and ``hash`` as fields (they are filtered on) and
the rest of the payload in a JSON field. Hybrid search runs the dense and the BM25 search and fuses
them by RRF here, with the same k and weights as Qdrant (Milvus' own ``RRFRanker`` has no weights,
and the dense weight is what keeps Chinese queries right with an English embedding model).

Milvus Lite 3.x is pure Python: ``MilvusClient("x.db")`` would start a gRPC server in this process
that never stops its thread pool and swallows the reason it could not open the folder. So
:class:`MilvusStore` starts that server itself (one per store, stopped on close) and connects to it.
Not thread-safe: one owner thread, like every store.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import KnowledgeBaseError, StoreLockedError
from bubble_desktop.core.kb.store import (
    DENSE,
    PREFETCH_FACTOR,
    RRF_K,
    SPARSE,
    StoredHit,
    StoredPoint,
    sparse_query,
)

log = logging.getLogger(__name__)

COLLECTION = "bubble"  # the one collection in a base's Lite folder
LITE_DIR = "milvus.db"
CONNECT_TIMEOUT_S = 2.5  # an unreachable server is reported within 3 s
CALL_TIMEOUT_S = 60.0
MAX_TEXT = 65535  # bytes of a VARCHAR
_FIELDS = ("doc_id", "hash", "text")
CHINESE = "chinese"
STANDARD = "standard"


def lite_available() -> bool:
    """True when Milvus Lite can run here (pymilvus and milvus-lite installed)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pymilvus", "milvus_lite"))


def server_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pymilvus") is not None


def _missing(what: str) -> KnowledgeBaseError:
    return KnowledgeBaseError(
        f"{what} is not installed in this copy of Bubble.",
        "Install the Milvus extra (pip install 'bubble-desktop[milvus]'), or use a knowledge base "
        "stored in Qdrant.",
    )


def guess_analyzer(texts: Sequence[str]) -> str:
    """``chinese`` when at least a tenth of the letters are CJK ideographs, else ``standard``."""
    cjk = letters = 0
    for text in texts:
        for ch in text:
            if ch.isalpha():
                letters += 1
                if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff":
                    cjk += 1
    return CHINESE if letters and cjk * 10 >= letters else STANDARD


def _analyzer_choices(analyzer: str, lite: bool) -> list[dict[str, Any]]:
    """Analyzer parameters to try, best first: Milvus' built-in ``chinese`` analyzer is jieba plus a
    filter; Milvus Lite (embedded or serving) knows only the ``jieba`` tokenizer."""
    if analyzer == CHINESE:
        return [{"tokenizer": "jieba"}] if lite else [{"type": "chinese"}, {"tokenizer": "jieba"}]
    return [{"tokenizer": "standard"}] if lite else [{"type": "standard"}]


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class _LiteServer:
    """Milvus Lite's gRPC adapter on 127.0.0.1 for one folder, with a thread pool we can stop."""

    def __init__(self, folder: Path) -> None:
        from concurrent import futures

        import grpc
        from milvus_lite import MilvusLite
        from milvus_lite.adapter.grpc.servicer import MilvusServicer
        from milvus_lite.exceptions import DataDirLockedError
        from pymilvus.grpc_gen import milvus_pb2_grpc

        try:
            self.db = MilvusLite(str(folder))
        except DataDirLockedError:
            raise StoreLockedError(
                f"Another Bubble is using this knowledge base ({folder.parent.name})."
            ) from None
        self._pool = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="bubble-milvus-lite")
        size = 256 * 1024 * 1024
        self.server = grpc.server(
            self._pool,
            options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)],
        )
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(self.db), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        try:
            self.server.stop(grace=1).wait(5)
        finally:
            self._pool.shutdown(wait=True)
            self.db.close()


class MilvusStore:
    """A collection on Milvus (Lite or server) with the Qdrant layout; see the module docstring.

    ``notice`` is set when a feature is missing and search falls back (shown to the user)."""

    def __init__(
        self,
        client: Any,
        collection: str,
        dim: int,
        analyzer: str = STANDARD,
        lite: _LiteServer | None = None,
        folder: Path | None = None,
    ) -> None:
        self._client = client
        self._lite = lite
        self.folder = folder
        self.collection = collection
        self.dim = dim
        self.analyzer = analyzer or STANDARD
        self.notice = ""
        try:
            if client.has_collection(collection, timeout=CALL_TIMEOUT_S):
                self._read_layout()
            else:
                self._create()
            client.load_collection(collection, timeout=CALL_TIMEOUT_S)
        except Exception as exc:
            self.close()
            if isinstance(exc, KnowledgeBaseError):
                raise
            raise _server_error(exc) from None

    # ------------------------------------------------------------------------- opening
    @classmethod
    def open_lite(cls, folder: Path, dim: int, analyzer: str = STANDARD) -> MilvusStore:
        """Open (or create) the Milvus Lite data folder ``folder``; a second process is refused."""
        if not lite_available():
            raise _missing("Milvus Lite")
        try:
            from pymilvus import MilvusClient
        except ImportError:  # installed but broken (e.g. a bundle without pandas)
            raise _missing("Milvus Lite") from None

        folder.mkdir(parents=True, exist_ok=True)
        _quiet_jieba()
        try:
            server = _LiteServer(folder)
        except ImportError:
            raise _missing("Milvus Lite") from None
        try:
            client = MilvusClient(uri=f"http://127.0.0.1:{server.port}", timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - our own server did not answer
            server.stop()
            raise _server_error(exc) from None
        return cls(client, COLLECTION, dim, analyzer, lite=server, folder=folder)

    @classmethod
    def connect(
        cls, url: str, token: str, collection: str, dim: int, analyzer: str = STANDARD
    ) -> MilvusStore:
        """A collection on a Milvus standalone/cluster or Zilliz Cloud at ``url``."""
        if not server_available():
            raise _missing("The Milvus client (pymilvus)")
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise _missing("The Milvus client (pymilvus)") from None

        try:
            client = MilvusClient(uri=url, token=token or "", timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, bad token, bad URL
            raise _server_error(exc, url) from None
        return cls(client, collection, dim, analyzer)

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        client = self._client
        lite = self._lite is not None

        def schema(params: dict[str, Any] | None) -> Any:
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            s.add_field(DENSE, DataType.FLOAT_VECTOR, dim=self.dim)
            if params is None:
                s.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
            else:
                s.add_field(
                    "text",
                    DataType.VARCHAR,
                    max_length=MAX_TEXT,
                    enable_analyzer=True,
                    analyzer_params=params,
                )
                s.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
                s.add_function(
                    Function(
                        name="bm25_of_text",
                        function_type=FunctionType.BM25,
                        input_field_names=["text"],
                        output_field_names=[SPARSE],
                    )
                )
            s.add_field("doc_id", DataType.VARCHAR, max_length=64)
            s.add_field("hash", DataType.VARCHAR, max_length=128)
            s.add_field("payload", DataType.JSON)
            index = client.prepare_index_params()
            index.add_index(field_name=DENSE, index_type="AUTOINDEX", metric_type="COSINE")
            if params is not None:
                index.add_index(field_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            index.add_index(field_name="doc_id", index_type="INVERTED")
            return s, index

        tries: list[tuple[str | None, dict[str, Any] | None, str]] = [
            (self.analyzer, p, "") for p in _analyzer_choices(self.analyzer, lite)
        ]
        if self.analyzer == CHINESE:
            tries += [
                (
                    STANDARD,
                    p,
                    "This Milvus has no Chinese analyzer (jieba): keyword search splits Chinese text "
                    "poorly in this knowledge base.",
                )
                for p in _analyzer_choices(STANDARD, lite)
            ]
        tries.append(
            (
                None,
                None,
                "This Milvus has no BM25 full-text function: this knowledge base is searched by "
                "meaning only (no keyword search).",
            )
        )
        last: Exception | None = None
        for analyzer, params, notice in tries:
            s, index = schema(params)
            try:
                client.create_collection(
                    self.collection, schema=s, index_params=index, timeout=CALL_TIMEOUT_S
                )
            except Exception as exc:  # noqa: BLE001 - an unsupported analyzer/function: try the next
                if _is_connection_error(exc):
                    raise
                log.info("Milvus refused the layout with analyzer %s: %s", params, exc)
                last = exc
                continue
            self.analyzer = analyzer or ""
            self.notice = notice
            if notice:
                log.warning("%s (collection %s)", notice, self.collection)
            return
        assert last is not None
        raise last

    def _read_layout(self) -> None:
        """What an existing collection was made with: its analyzer (none = dense only)."""
        desc = self._client.describe_collection(self.collection, timeout=CALL_TIMEOUT_S)
        fields = {f.get("name"): f for f in desc.get("fields", [])}
        if SPARSE not in fields:
            self.analyzer = ""
            self.notice = (
                "This knowledge base was created on a Milvus without BM25 full-text search: it is "
                "searched by meaning only (no keyword search)."
            )
            return
        params = fields.get("text", {}).get("params", {}).get("analyzer_params")
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                params = {}
        text = json.dumps(params or {})
        self.analyzer = CHINESE if ("jieba" in text or "chinese" in text) else STANDARD

    # -------------------------------------------------------------------------- writing
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        if not points:
            return
        rows = []
        for p in points:
            payload = dict(p.payload)
            text = str(payload.pop("text", ""))
            if len(text.encode("utf-8")) > MAX_TEXT:
                text = text.encode("utf-8")[:MAX_TEXT].decode("utf-8", "ignore")
            rows.append(
                {
                    "id": p.id,
                    DENSE: [float(x) for x in p.dense],
                    "text": text,
                    "doc_id": str(payload.pop("doc_id", "")),
                    "hash": str(payload.pop("hash", "") or ""),
                    "payload": payload,
                }
            )
        self._client.upsert(self.collection, rows, timeout=CALL_TIMEOUT_S)

    def delete_document(
        self, doc_id: str, keep_hash: str | None = None, only_hash: str | None = None
    ) -> None:
        expr = f"doc_id == {_quote(doc_id)}"
        if only_hash is not None:
            expr += f" and hash == {_quote(only_hash)}"
        if keep_hash is not None:
            expr += f" and hash != {_quote(keep_hash)}"
        self._client.delete(self.collection, filter=expr, timeout=CALL_TIMEOUT_S)

    def export_document(self, doc_id: str) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        it = self._client.query_iterator(
            self.collection,
            batch_size=256,
            filter=f"doc_id == {_quote(doc_id)}",
            output_fields=["id", DENSE, *_FIELDS, "payload"],
            timeout=CALL_TIMEOUT_S,
        )
        try:
            while True:
                rows = it.next()
                if not rows:
                    return out
                # the sparse field is made by the BM25 function from the text on upsert
                out.extend(StoredPoint(str(r["id"]), list(r[DENSE]), ([], []), _payload(r)) for r in rows)
        finally:
            it.close()

    # ---------------------------------------------------------------------------- search
    def search(
        self,
        dense: Sequence[float],
        sparse: tuple[Sequence[int], Sequence[float]] | None,
        limit: int,
        score_threshold: float | None,
        doc_ids: Sequence[str] | None,
        dense_weight: float = 1.0,
        text: str | None = None,
    ) -> list[StoredHit]:
        """Dense (cosine) hits, or with ``sparse`` given (the hybrid request) dense and BM25 hits of
        ``text`` fused by RRF as Qdrant does. Without a BM25 field it is dense only (see ``notice``)."""
        flt = ""
        if doc_ids:
            flt = "doc_id in [" + ", ".join(_quote(d) for d in doc_ids) + "]"
        hybrid = sparse is not None and bool(text and text.strip()) and bool(self.analyzer)
        n = max(limit * PREFETCH_FACTOR, 20) if hybrid else limit
        res = self._search([float(x) for x in dense], DENSE, "COSINE", n, flt)
        dense_hits = [
            (str(h["id"]), float(h["distance"]), h["entity"])
            for h in res
            if score_threshold is None or float(h["distance"]) >= score_threshold
        ]
        if not hybrid:
            return [_hit(score, e) for _, score, e in dense_hits[:limit]]
        res = self._search(text, SPARSE, "BM25", n, flt)
        sparse_hits = [(str(h["id"]), h["entity"]) for h in res]
        scores: dict[str, float] = {}
        entities: dict[str, Any] = {}
        for rank, (id_, _, entity) in enumerate(dense_hits):
            scores[id_] = scores.get(id_, 0.0) + dense_weight / (RRF_K + rank + 1)
            entities[id_] = entity
        for rank, (id_, entity) in enumerate(sparse_hits):
            scores[id_] = scores.get(id_, 0.0) + 1.0 / (RRF_K + rank + 1)
            entities.setdefault(id_, entity)
        best = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
        return [_hit(scores[i], entities[i]) for i in best]

    def _search(self, query: Any, field: str, metric: str, limit: int, flt: str) -> list[Any]:
        """One search of ``field`` (dense vector or BM25 text) with the fields a hit is built from."""
        res = self._client.search(
            self.collection,
            data=[query],
            anns_field=field,
            limit=limit,
            filter=flt,
            # the vectors too: the service judges relevance by them
            output_fields=[*_FIELDS, "payload", DENSE],
            search_params={"metric_type": metric},
            timeout=CALL_TIMEOUT_S,
        )
        return list(res[0])

    # --------------------------------------------------------------------------- the rest
    def count(self) -> int:
        rows = self._client.query(
            self.collection, filter="", output_fields=["count(*)"], timeout=CALL_TIMEOUT_S
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def flush(self) -> None:
        self._client.flush(self.collection, timeout=CALL_TIMEOUT_S)

    def optimize(self) -> None:
        pass

    def close(self) -> None:
        client, self._client = self._client, None
        lite, self._lite = self._lite, None
        try:
            if client is not None:
                client.close()
        finally:
            if lite is not None:
                lite.stop()

    def drop(self) -> None:
        try:
            if self._client is not None:
                self._client.drop_collection(self.collection, timeout=CALL_TIMEOUT_S)
        finally:
            self.close()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)


def _quiet_jieba() -> None:
    """jieba (Lite's Chinese tokenizer) prints its dictionary loading to stderr; log it as debug."""
    try:
        import jieba
    except ImportError:
        return
    jieba.setLogLevel(logging.WARNING)


def _hit(score: float, entity: Any) -> StoredHit:
    """A StoredHit with what the service's relevance rule reads: the dense vector, and the chunk's BM25
    term ids from our own tokenizer (Milvus keeps its BM25 terms to itself; ours are what the
    question's keywords are matched with, as on the Qdrant stores)."""
    payload = _payload(entity)
    vector = entity.get(DENSE)
    text = str(payload.get("text", ""))
    terms = frozenset(int(i) for i in sparse_query(text)[0]) if text.strip() else frozenset()
    return StoredHit(score, payload, [float(x) for x in vector] if vector is not None else None, terms)


def _payload(entity: Any) -> dict[str, Any]:
    """A Milvus row back into the payload shape the Qdrant stores keep."""
    payload = dict(entity.get("payload") or {})
    for key in _FIELDS:
        if key in entity:
            payload[key] = entity[key]
    return payload


def _is_connection_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connect", "unavailable", "deadline", "timeout", "timed out"))


def _server_error(exc: BaseException, url: str = "") -> KnowledgeBaseError:
    text = str(getattr(exc, "message", "") or exc).strip().splitlines()
    detail = text[0] if text and text[0] else type(exc).__name__
    where = f" at {url}" if url else ""
    return KnowledgeBaseError(
        f"The Milvus server{where} could not be used: {detail}",
        "Check the Milvus URL and token in Settings → Knowledge (is the server running?), "
        "or keep knowledge bases on this computer.",
    )


__all__ = ["LITE_DIR", "MilvusStore", "guess_analyzer", "lite_available", "server_available"]
