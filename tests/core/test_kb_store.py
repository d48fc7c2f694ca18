"""Stores: the Qdrant Edge shard, the Qdrant-server layout (qdrant-client local mode), Milvus Lite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bubble_desktop.core.errors import StoreLockedError
from bubble_desktop.core.kb.store import (
    EdgeStore,
    ServerStore,
    StoredPoint,
    point_id,
    sparse_document,
    sparse_query,
)

DIM = 8
TEXTS = {
    "d1": ["苹果是一种很甜的水果。", "the cat sat on the mat"],
    "d2": ["北京是中国的首都，也是一座历史名城。", "dogs are loyal animals"],
}


def _vec(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i % DIM] = 1.0
    return v


def _points() -> list[StoredPoint]:
    out = []
    n = 0
    for doc, texts in TEXTS.items():
        for i, t in enumerate(texts):
            out.append(
                StoredPoint(
                    point_id(doc, i),
                    _vec(n),
                    sparse_document(t),
                    {"doc_id": doc, "text": t, "path": f"/{doc}", "position": f"line {i + 1}"},
                )
            )
            n += 1
    return out


@pytest.fixture(params=["edge", "edge-created-in-child", "server-local", "milvus-lite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite")
        from bubble_desktop.core.kb.milvus_store import MilvusStore

        s = MilvusStore.open_lite(tmp_path / "milvus.db", DIM, "chinese")
    elif request.param == "edge":
        s = EdgeStore(tmp_path / "shard", DIM)
    elif request.param == "edge-created-in-child":
        s = EdgeStore(tmp_path / "shard", DIM, create_in_child=True)
    else:
        s = ServerStore.connect(str(tmp_path / "qdrant-local"), "", "bubble_test", DIM)
    yield s
    s.close()


def test_point_ids_are_deterministic() -> None:
    assert point_id("doc", 3) == point_id("doc", 3) != point_id("doc", 4)


def test_upsert_twice_never_duplicates(store) -> None:
    store.upsert(_points())
    store.upsert(_points())
    assert store.count() == 4


def test_dense_search_threshold_and_filter(store) -> None:
    store.upsert(_points())
    hits = store.search(_vec(2), None, 4, None, None)
    assert hits[0].payload["text"].startswith("北京") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(store.search(_vec(2), None, 4, 0.5, None)) == 1
    only = store.search(_vec(2), None, 4, None, ["d1"])
    assert {h.payload["doc_id"] for h in only} == {"d1"}


def test_bm25_finds_chinese_through_hybrid(store) -> None:
    store.upsert(_points())
    # the dense vector points at "the cat" but the words are about Beijing: BM25 must bring it up
    query = "中国的首都在哪里"
    hits = store.search(_vec(1), sparse_query(query), 2, None, None, text=query)
    assert "北京是中国的首都，也是一座历史名城。" in [h.payload["text"] for h in hits]


def test_delete_document(store) -> None:
    store.upsert(_points())
    store.delete_document("d1")
    assert store.count() == 2
    assert {h.payload["doc_id"] for h in store.search(_vec(0), None, 10, None, None)} == {"d2"}


def test_delete_by_version_keeps_or_removes_one_hash(store) -> None:
    """What re-index safety relies on: a new version is written beside the old one, then
    ``keep_hash`` drops the old; a cancelled write is undone with ``only_hash``."""
    old = [
        StoredPoint(point_id("d", i, "h1"), _vec(i), ([], []), {"doc_id": "d", "hash": "h1", "text": "a"})
        for i in range(3)
    ]
    new = [
        StoredPoint(point_id("d", i, "h2"), _vec(i), ([], []), {"doc_id": "d", "hash": "h2", "text": "b"})
        for i in range(2)
    ]
    other = [
        StoredPoint(point_id("e", 0, "h1"), _vec(5), ([], []), {"doc_id": "e", "hash": "h1", "text": "c"})
    ]
    store.upsert(old + new + other)
    assert store.count() == 6
    store.delete_document("d", only_hash="h2")  # the unfinished new version goes, the old one stays
    assert store.count() == 4 and len(store.export_document("d")) == 3
    store.upsert(new)
    store.delete_document("d", keep_hash="h2")  # the new version is complete: the old one goes
    exported = store.export_document("d")
    assert sorted(p.id for p in exported) == sorted(p.id for p in new)
    assert {p.payload["hash"] for p in exported} == {"h2"} and len(exported[0].dense) == DIM
    assert store.count() == 3  # the other document was never touched


def test_shard_created_in_a_child_process(tmp_path: Path) -> None:
    """The child makes the shard (the GUI process only loads it: the binding holds the GIL to create)."""
    from bubble_desktop.core.kb.store import _create_in_child, _shard_exists

    (tmp_path / "shard").mkdir()
    _create_in_child(tmp_path / "shard", DIM)
    assert _shard_exists(tmp_path / "shard")


def test_edge_reopen_keeps_points(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "shard", DIM)
    s.upsert(_points())
    s.close()
    s = EdgeStore(tmp_path / "shard", DIM)
    try:
        assert s.count() == 4
    finally:
        s.close()


def test_second_process_gets_store_locked(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "shard", DIM)
    try:
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "from bubble_desktop.core.errors import StoreLockedError\n"
            "from bubble_desktop.core.kb.store import EdgeStore\n"
            "try:\n"
            f"    EdgeStore(Path({str(tmp_path / 'shard')!r}), {DIM})\n"
            "except StoreLockedError as e:\n"
            "    print('LOCKED', e.message, '|', e.hint)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("LOCKED Another Bubble is using this knowledge base")
    finally:
        s.close()
    assert issubclass(StoreLockedError, Exception)
