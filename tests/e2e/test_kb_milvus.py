"""Milvus as the vector database, end to end: real Milvus Lite in the temp BUBBLE_HOME, and a real
Milvus Lite server process (the gRPC protocol a Milvus standalone speaks) for the server-URL path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bubble_desktop.core.errors import BackendMismatchError, KnowledgeBaseError, StoreLockedError
from bubble_desktop.core.settings import KnowledgeSettings
from tests.e2e.test_kb_service import make_service, point_count, write_corpus

pytest.importorskip("milvus_lite")
pytest.importorskip("jieba")

REPO = Path(__file__).resolve().parents[2]
ZH_DOCS = {
    "tea.txt": "龙井茶产自杭州西湖，是中国十大名茶之一。泡茶的水温以八十度为宜。",
    "train.txt": "高铁从北京到上海大约需要四个半小时，二等座票价五百多元。",
    "bank.txt": "办理银行卡需要携带本人身份证，到柜台填写开户申请表。",
    "weather.txt": "台风季节一般在七月到九月，沿海地区要注意防范暴雨和大风。",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_chinese_keyword_search_with_the_chinese_analyzer(tmp_path: Path) -> None:
    root = tmp_path / "zh"
    root.mkdir()
    for name, text in ZH_DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    with make_service(KnowledgeSettings(vector_store="milvus-lite")) as svc:
        svc.create_base("中文")
        assert svc.add_paths("中文", [root]).ok
        info = svc.info("中文")
        assert info.backend == "milvus-lite" and info.notice == ""
        assert svc._call(lambda: svc._base("中文").catalog.get("analyzer")) == "chinese"
        # MiniLM sees these as [UNK]: only jieba-segmented BM25 can find them
        for query, expected in [
            ("身份证", "bank.txt"),
            ("高铁票价", "train.txt"),
            ("西湖龙井", "tea.txt"),
            ("台风暴雨", "weather.txt"),
        ]:
            assert svc.search("中文", query, top_k=1)[0].path.endswith(expected), query
        assert (tmp_path / "bubble-home").exists()
        folder = svc._call(lambda: svc._base("中文").folder)
        assert (folder / "milvus.db").is_dir() and not (folder / "shard").exists()


def test_second_process_on_the_same_lite_base_is_refused(tmp_path: Path, bubble_home: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    child = textwrap.dedent(
        """
        from bubble_desktop.core.errors import UserFacingError
        from bubble_desktop.core.kb.service import KnowledgeService
        from bubble_desktop.core.paths import Paths
        from bubble_desktop.core.settings import KnowledgeSettings
        svc = KnowledgeService(Paths.default(), KnowledgeSettings(vector_store="milvus-lite"))
        try:  # what every search and write does first: open the base's store (no model needed)
            svc._call(lambda: svc._store(svc._base("kb")))
            print("OPENED")
        except UserFacingError as exc:
            print(type(exc).__name__, "|", exc.message, "|", exc.hint)
        svc.close()
        """
    )
    with make_service(KnowledgeSettings(vector_store="milvus-lite")) as svc:
        svc.create_base("kb")
        svc.add_paths("kb", [corpus / "france.txt"])  # the Lite folder is open (and locked) now
        env = {**os.environ, "BUBBLE_HOME": str(bubble_home), "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
        ).stdout
        assert out.startswith(StoreLockedError.__name__), out
        assert "Another Bubble is using this knowledge base" in out
        assert svc.search("kb", "Eiffel", top_k=1)[0].path.endswith("france.txt")  # ours still works


def test_unreachable_milvus_server_fails_fast_and_other_bases_still_work(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    silent = socket.socket()  # accepts connections and never answers (a hung server)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = free_port()  # nothing listens there (a stopped server)
    try:
        for n, url in enumerate(
            (f"http://127.0.0.1:{closed}", f"http://127.0.0.1:{silent.getsockname()[1]}")
        ):
            local, remote = f"local{n}", f"remote{n}"
            settings = KnowledgeSettings(vector_store="milvus", milvus_url=url)
            with make_service(settings) as svc:
                svc.create_base(local, backend="edge")
                svc.add_paths(local, [corpus / "france.txt"])
                svc.create_base(remote)
                t0 = time.monotonic()
                with pytest.raises(KnowledgeBaseError) as info:
                    svc.add_paths(remote, [corpus / "python.md"])
                took = time.monotonic() - t0
                assert took <= 3.0, f"{url}: {took:.2f} s"
                assert "Milvus server" in info.value.message and url in info.value.message
                assert "Milvus URL" in info.value.hint
                assert svc.search(local, "Eiffel", top_k=1)[0].path.endswith("france.txt")
                backends = {b.name: b.backend for b in svc.list_bases()}
                assert (backends[local], backends[remote]) == ("edge", "milvus")
    finally:
        silent.close()


def test_a_base_on_another_server_than_the_configured_one_is_refused(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    with make_service(KnowledgeSettings(vector_store="milvus", milvus_url="http://127.0.0.1:1")) as svc:
        svc.create_base("remote")
        svc.update_settings(KnowledgeSettings(vector_store="milvus", milvus_url="http://127.0.0.1:2"))
        with pytest.raises(BackendMismatchError) as info:
            svc.add_paths("remote", [corpus / "france.txt"])
        assert "http://127.0.0.1:1" in info.value.message and "http://127.0.0.1:2" in info.value.message
        assert "Milvus server URL back" in info.value.hint
        # a base keeps its own backend: switching the default to Edge leaves it refused only for the URL
        svc.update_settings(KnowledgeSettings(vector_store="edge", milvus_url="http://127.0.0.1:2"))
        with pytest.raises(BackendMismatchError):
            svc.add_paths("remote", [corpus / "france.txt"])


def test_vector_store_setting_and_its_checks() -> None:
    assert KnowledgeSettings().vector_store == "edge"
    # settings files from before the choice existed: a Qdrant URL meant the Qdrant server
    assert KnowledgeSettings.model_validate({"qdrant_url": "http://q:6333"}).vector_store == "qdrant"
    assert KnowledgeSettings.model_validate(
        {"qdrant_url": "http://q", "vector_store": "edge"}
    ).vector_store == ("edge")
    with pytest.raises(ValidationError, match="milvus URL"):
        KnowledgeSettings(vector_store="milvus")
    with pytest.raises(ValidationError, match="qdrant URL"):
        KnowledgeSettings(vector_store="qdrant")


def test_cli_kb_create_with_a_backend(capsys: pytest.CaptureFixture[str]) -> None:
    from bubble_desktop.cli import main

    assert main(["kb", "create", "lite", "--backend", "milvus-lite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "milvus-lite"
    assert main(["kb", "create", "srv", "--backend", "milvus"]) != 0  # no Milvus URL configured
    assert "no Milvus server URL" in capsys.readouterr().err
    assert main(["kb", "list", "--json"]) == 0
    assert [b["name"] for b in json.loads(capsys.readouterr().out)] == ["lite"]


@pytest.fixture
def milvus_server(tmp_path: Path):
    """A Milvus Lite server process on 127.0.0.1 (Milvus' gRPC protocol, as a standalone serves it)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(tmp_path / "server-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the Milvus Lite server did not start"
            threading.Event().wait(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


def test_milvus_server_url_ingest_search_reindex_delete(milvus_server: str, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    corpus = write_corpus(tmp_path / "docs")
    settings = KnowledgeSettings(vector_store="milvus", milvus_url=milvus_server)
    with make_service(settings) as svc:
        info = svc.create_base("remote")
        assert (info.backend, info.location) == ("milvus", milvus_server)
        svc.add_paths("remote", [corpus])
        assert point_count(svc, "remote") == 5
        assert svc.search("remote", "熊猫生活在哪里", top_k=1)[0].path.endswith("zh.txt")
        assert svc.search("remote", "Who created Python?", top_k=1, hybrid=False)[0].path.endswith(
            "python.md"
        )
        again = svc.add_paths("remote", [corpus])
        assert again.indexed == () and len(again.unchanged) == 4
        svc.reindex("remote")  # built in a new collection, swapped in, the old one dropped
        assert point_count(svc, "remote") == 5
        client = MilvusClient(uri=milvus_server)
        try:
            collections = client.list_collections()
            assert len(collections) == 1 and collections[0].startswith("bubble_")
            svc.delete_base("remote")
            assert client.list_collections() == []
        finally:
            client.close()


def test_a_milvus_without_the_analyzer_or_bm25_falls_back_with_a_notice(tmp_path: Path, monkeypatch) -> None:
    """Real Milvus Lite refusing the analyzers (forced: an analyzer it does not know), as a Milvus
    without jieba or without BM25 functions would: the store says so and searches what it can."""
    from bubble_desktop.core.kb import milvus_store
    from bubble_desktop.core.kb.store import StoredPoint, point_id

    def points() -> list[StoredPoint]:
        texts = ["北京是中国的首都", "the cat sat on the mat"]
        return [
            StoredPoint(
                point_id("d", i), [1.0 - i, float(i)], ([], []), {"doc_id": "d", "hash": "h", "text": t}
            )
            for i, t in enumerate(texts)
        ]

    real = milvus_store._analyzer_choices
    monkeypatch.setattr(
        milvus_store,
        "_analyzer_choices",
        lambda analyzer, lite: [{"tokenizer": "no-such"}] if analyzer == "chinese" else real(analyzer, lite),
    )
    store = milvus_store.MilvusStore.open_lite(tmp_path / "a" / "milvus.db", 2, "chinese")
    try:
        assert store.analyzer == "standard" and "no Chinese analyzer" in store.notice
        store.upsert(points())
        assert (
            store.search([0.0, 1.0], ([], []), 1, None, None, text="cat")[0].payload["text"].startswith("the")
        )
    finally:
        store.close()

    monkeypatch.setattr(milvus_store, "_analyzer_choices", lambda analyzer, lite: [{"tokenizer": "no-such"}])
    store = milvus_store.MilvusStore.open_lite(tmp_path / "b" / "milvus.db", 2, "chinese")
    try:
        assert store.analyzer == "" and "searched by meaning only" in store.notice
        store.upsert(points())
        hits = store.search([1.0, 0.0], ([], []), 2, None, None, text="cat")  # hybrid asked: dense only
        assert [h.payload["text"] for h in hits] == ["北京是中国的首都", "the cat sat on the mat"]
    finally:
        store.close()
    monkeypatch.undo()
    reopened = milvus_store.MilvusStore.open_lite(tmp_path / "b" / "milvus.db", 2)
    try:  # the collection remembers it has no BM25 field
        assert reopened.analyzer == "" and "meaning only" in reopened.notice and reopened.count() == 2
    finally:
        reopened.close()
