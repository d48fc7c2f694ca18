"""KnowledgeService end to end: real MiniLM, real Qdrant Edge shard in the temp BUBBLE_HOME."""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import pytest

from bubble_desktop.core.errors import EmbeddingMismatchError, KnowledgeBaseError
from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder
from bubble_desktop.core.kb.service import KnowledgeService, doc_id_for
from bubble_desktop.core.kb.types import IngestProgress
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings


@functools.cache
def shared_embedder() -> SentenceTransformerEmbedder:
    """One loaded MiniLM for the whole session (loading costs seconds on 2 cores)."""
    e = SentenceTransformerEmbedder("")
    _ = e.dim
    return e


def make_service(settings: KnowledgeSettings | None = None) -> KnowledgeService:
    return KnowledgeService(Paths.default(), settings or KnowledgeSettings(), embedder=shared_embedder())


def point_count(svc: KnowledgeService, name: str) -> int:
    def run() -> int:
        store = svc._store(svc._base(name))
        return 0 if store is None else store.count()

    return svc._call(run)


def write_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "france.txt").write_text("Paris is the capital of France. The Eiffel Tower stands in Paris.\n")
    (root / "python.md").write_text(
        "# Python\n\nPython is a programming language created by Guido van Rossum.\n"
    )
    (root / "zh.txt").write_bytes("长城是中国古代的军事防御工程。熊猫生活在四川的山区。\n".encode("gbk"))
    (root / "faq.txt").write_text(
        "怎么重置密码##在设置页面点击“重置密码”按钮，然后查收邮件。\n营业时间##每天上午九点到下午五点。\n"
    )
    (root / "empty.txt").write_bytes(b"")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / ".hidden.txt").write_text("never indexed")
    return root


@pytest.fixture
def svc():
    s = make_service()
    yield s
    s.close()


@pytest.fixture(params=["edge", "milvus-lite"])
def any_svc(request: pytest.FixtureRequest):
    """The same service over each embedded vector database (Qdrant Edge, Milvus Lite)."""
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite")
    s = make_service(KnowledgeSettings(vector_store=request.param))
    yield s
    try:  # every base the test made is in that database
        assert {b.backend for b in s.list_bases()} <= {request.param}
    finally:
        s.close()


def test_add_and_search_with_bad_files_reported(any_svc: KnowledgeService, tmp_path: Path) -> None:
    svc = any_svc
    corpus = write_corpus(tmp_path / "docs")
    svc.create_base("notes")
    events: list[IngestProgress] = []
    report = svc.add_paths("notes", [corpus], progress=events.append)
    assert sorted(Path(p).name for p in report.indexed) == ["faq.txt", "france.txt", "python.md", "zh.txt"]
    assert {Path(f.path).name: f.reason for f in report.failed} == {
        "empty.txt": "empty file (0 bytes)",
        "image.png": "not a readable image (broken file, or not the format its name says)",
    }
    assert not report.ok and report.chunks_added == 5
    assert events[-1].files_done == events[-1].files_total == 6 and events[-1].chunks_done == 5
    assert [e.files_done for e in events] == sorted(e.files_done for e in events)
    # no partial garbage: the store holds exactly the chunks the catalog counts
    assert point_count(svc, "notes") == sum(d.chunks for d in svc.documents("notes")) == 5

    hit = svc.search("notes", "Who created Python?", top_k=1)[0]
    assert (
        hit.path.endswith("python.md")
        and hit.position == "line 1"
        and hit.heading == "Python"
        and hit.kb == "notes"
    )
    # Chinese through BM25 with the English MiniLM (GBK file)
    assert svc.search("notes", "熊猫生活在哪里", top_k=1)[0].path.endswith("zh.txt")
    qa = svc.search("notes", "重置密码", top_k=1)[0]
    assert qa.title == "怎么重置密码" and "查收邮件" in qa.text and qa.position == "line 1"

    info = svc.list_bases()[0]
    assert (info.name, info.documents, info.chunks, info.dim, info.embedding_model) == (
        "notes",
        4,
        5,
        384,
        "all-MiniLM-L6-v2",
    )
    statuses = {Path(d.path).name: d.status for d in svc.documents("notes")}
    assert statuses == {
        "faq.txt": "indexed",
        "france.txt": "indexed",
        "python.md": "indexed",
        "zh.txt": "indexed",
        "empty.txt": "failed",
        "image.png": "failed",
    }


def test_search_options(any_svc: KnowledgeService, tmp_path: Path) -> None:
    svc = any_svc
    corpus = write_corpus(tmp_path / "docs")
    svc.create_base("kb")
    svc.add_paths("kb", [corpus])
    dense = svc.search("kb", "capital city of France", hybrid=False, top_k=3)
    assert dense[0].path.endswith("france.txt") and 0.3 < dense[0].score <= 1.0
    assert all(
        h.score >= 0.3 for h in svc.search("kb", "capital city of France", hybrid=False, score_threshold=0.3)
    )
    # the filters, whatever the relevance (min_relevance=0: an unrelated document is all there is)
    only = svc.search(
        "kb", "capital city of France", doc_filter=[str(corpus / "python.md")], min_relevance=0.0
    )
    assert {Path(h.path).name for h in only} == {"python.md"}
    by_id = svc.search("kb", "capital", doc_filter=[doc_id_for(corpus / "zh.txt")], min_relevance=0.0)
    assert {Path(h.path).name for h in by_id} == {"zh.txt"}
    # with the default minimum relevance the unrelated document is not returned at all
    assert svc.search("kb", "capital city of France", doc_filter=[str(corpus / "python.md")]) == []
    assert svc.search("kb", "   ") == []
    assert svc.last_search_stats is not None


def test_incremental_changed_and_removed(any_svc: KnowledgeService, tmp_path: Path) -> None:
    svc = any_svc
    corpus = write_corpus(tmp_path / "docs")
    svc.create_base("kb")
    svc.add_paths("kb", [corpus])
    again = svc.add_paths("kb", [corpus])
    assert again.indexed == () and len(again.unchanged) == 4 and again.chunks_added == 0

    (corpus / "france.txt").write_text("Lyon is a city in France known for its food.\n" * 3)
    changed = svc.add_paths("kb", [corpus])
    assert [Path(p).name for p in changed.indexed] == ["france.txt"]
    # every chunk, related or not (min_relevance=0): the old version is gone, the new one is there
    texts = [h.text for h in svc.search("kb", "Eiffel Tower Paris", top_k=10, min_relevance=0.0)]
    assert not any("Eiffel" in t for t in texts) and any("Lyon" in t for t in texts)
    assert point_count(svc, "kb") == 5

    svc.remove_document("kb", corpus / "france.txt")
    assert point_count(svc, "kb") == 4
    assert "france.txt" not in {Path(d.path).name for d in svc.documents("kb")}
    with pytest.raises(KnowledgeBaseError):
        svc.remove_document("kb", corpus / "france.txt")


def test_manage_bases_rename_delete_reindex(any_svc: KnowledgeService, tmp_path: Path) -> None:
    svc = any_svc
    corpus = write_corpus(tmp_path / "docs")
    svc.create_base("a")
    with pytest.raises(KnowledgeBaseError, match="already exists"):
        svc.create_base("a")
    # exist_ok: the existing base comes back untouched (the knowledge tab's "New" then a drop of files)
    assert svc.create_base("a", exist_ok=True).name == "a" and len(svc.list_bases()) == 1
    svc.add_paths("a", [corpus / "france.txt"])
    svc.rename_base("a", "项目资料")
    assert [(b.name, b.backend) for b in svc.list_bases()] == [("项目资料", svc.settings.vector_store)]
    assert svc.search("项目资料", "Eiffel", top_k=1)[0].path.endswith("france.txt")
    report = svc.reindex("项目资料")
    assert [Path(p).name for p in report.indexed] == ["france.txt"] and point_count(svc, "项目资料") == 1
    svc.delete_base("项目资料")
    assert svc.list_bases() == []
    with pytest.raises(KnowledgeBaseError, match="no knowledge base"):
        svc.search("项目资料", "x")


def test_embedding_model_mismatch_is_refused(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    with make_service() as svc:
        svc.create_base("kb")
        svc.add_paths("kb", [corpus / "france.txt"])
        svc.update_settings(KnowledgeSettings(embedding_model=str(tmp_path / "other-model")))
        with pytest.raises(EmbeddingMismatchError) as info:
            svc.search("kb", "Paris")
        assert "re-index" in info.value.hint.lower()
        with pytest.raises(EmbeddingMismatchError):
            svc.add_paths("kb", [corpus / "python.md"])


def test_cancel_between_batches_leaves_only_whole_documents(
    any_svc: KnowledgeService, tmp_path: Path
) -> None:
    svc = any_svc
    root = tmp_path / "many"
    root.mkdir()
    for i in range(6):
        (root / f"doc{i}.txt").write_text(" ".join(f"Fact {i}.{j} about topic {i}." for j in range(60)))
    svc.create_base("kb")
    svc.batch_chunks = 4
    cancel = threading.Event()

    def on_progress(p: IngestProgress) -> None:
        if p.chunks_done > 0:
            cancel.set()

    report = svc.add_paths("kb", [root], progress=on_progress, cancel=cancel)
    assert report.cancelled
    docs = svc.documents("kb")
    assert point_count(svc, "kb") == sum(d.chunks for d in docs if d.status == "indexed")
    finished = svc.add_paths("kb", [root])
    assert len(finished.indexed) + len(finished.unchanged) == 6 and finished.ok
    assert point_count(svc, "kb") == sum(d.chunks for d in svc.documents("kb"))


def test_search_during_ingestion_does_not_wait_for_it(svc: KnowledgeService, tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    for i in range(6):
        (root / f"doc{i}.txt").write_text(
            " ".join(f"Sentence {j} of document {i} about apples." for j in range(60))
        )
    (tmp_path / "first.txt").write_text("Bananas are yellow and grow in bunches.")
    svc.create_base("kb")
    svc.add_paths("kb", [tmp_path / "first.txt"])
    svc.batch_chunks = 4
    started = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            svc.add_paths("kb", [root], progress=lambda p: started.set() if p.chunks_done else None)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    worker = threading.Thread(target=ingest, name="test-ingest")
    worker.start()
    try:
        assert started.wait(120)
        t0 = time.monotonic()
        hits = svc.search("kb", "yellow bananas", top_k=1)
        took = time.monotonic() - t0
        still_running = worker.is_alive()
    finally:
        worker.join(300)
    assert not errors
    assert hits[0].path.endswith("first.txt")
    assert still_running, f"search returned only after the ingestion ({took:.2f} s)"


def test_qdrant_server_layout_through_local_mode(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    settings = KnowledgeSettings(qdrant_url=str(tmp_path / "qdrant-server-stand-in"))
    with make_service(settings) as svc:
        info = svc.create_base("remote")
        assert info.backend == "qdrant"
        svc.add_paths("remote", [corpus])
        assert svc.search("remote", "熊猫生活在哪里", top_k=1)[0].path.endswith("zh.txt")
        assert svc.search("remote", "Who created Python?", top_k=1, hybrid=False)[0].path.endswith(
            "python.md"
        )
        assert point_count(svc, "remote") == 5


def test_index_build_runs_in_a_child_process_and_is_swapped_in(svc: KnowledgeService, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    svc.create_base("kb")
    svc.add_paths("kb", [corpus])
    svc.optimize("kb", wait=False)  # builds the HNSW index on a copy in a child process, then swaps it in
    assert svc.wait_for_index_builds(timeout=300) and not svc.index_builds_running()
    assert svc._call(lambda: svc._base("kb").store.unindexed()) == 0
    assert not (svc._call(lambda: svc._base("kb").folder) / "shard.optimizing").exists()
    assert point_count(svc, "kb") == 5
    assert svc.search("kb", "Who created Python?", top_k=1)[0].path.endswith("python.md")
    svc.add_paths("kb", [corpus / "france.txt"])  # still writable after the swap
    (corpus / "france.txt").write_text("Marseille is a port city in France.")
    assert len(svc.add_paths("kb", [corpus / "france.txt"]).indexed) == 1
    assert point_count(svc, "kb") == 5


def test_long_ingestion_rotates_the_writable_segment_and_the_index_build_restores_the_graph(
    svc: KnowledgeService, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "docs")
    svc.batch_chunks = 1
    svc.rotate_points = 2  # rotate (seal the writable segment, memory-mapped, no graph) every 2 points
    svc.create_base("kb")
    svc.add_paths("kb", [corpus])
    assert point_count(svc, "kb") == 5
    assert svc._call(lambda: svc._base("kb").store.unindexed()) == 5  # rotated segments have no graph
    assert svc.search("kb", "熊猫生活在哪里", top_k=1)[0].path.endswith("zh.txt")
    assert svc.search("kb", "Who created Python?", top_k=1, hybrid=False)[0].path.endswith("python.md")
    svc.optimize("kb")  # the child process builds the graph again
    assert svc._call(lambda: svc._base("kb").store.unindexed()) == 0
    assert point_count(svc, "kb") == 5
    assert svc.search("kb", "Who created Python?", top_k=1)[0].path.endswith("python.md")
    assert len(svc.add_paths("kb", [corpus / "france.txt"]).unchanged) == 1


def test_warm_up_loads_the_embedding_model_in_the_background(tmp_path: Path) -> None:
    """A chat that chooses a knowledge base warms the model, so its first question does not wait for
    it; a loaded model, or a load already running, is not started again."""
    svc = KnowledgeService(Paths.default(), KnowledgeSettings())  # its own, unloaded MiniLM
    try:
        embedder = svc.embedder
        assert isinstance(embedder, SentenceTransformerEmbedder) and not embedder.loaded
        assert svc.warm_up() is True
        assert svc.warm_up() is False  # already loading
        deadline = time.monotonic() + 120
        while not embedder.loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert embedder.loaded and embedder.dim == 384
        assert svc.warm_up() is False  # loaded
        svc.create_base("notes")
        (tmp_path / "a.txt").write_text("The lighthouse keeper feeds the gulls at dawn.\n", encoding="utf-8")
        svc.add_paths("notes", [tmp_path / "a.txt"])
        assert svc.search("notes", "who feeds the gulls")[0].text.startswith("The lighthouse keeper")
    finally:
        svc.close()
