"""`bubble-cli kb ...` end to end, in process (real MiniLM, real Edge shard); --json is a stable contract."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bubble_desktop.cli import main
from tests.e2e.test_kb_service import shared_embedder, write_corpus


@pytest.fixture(autouse=True)
def _one_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI call builds its own service; let them share the loaded MiniLM to keep the test fast."""
    import bubble_desktop.core.kb.service as service

    monkeypatch.setattr(service, "SentenceTransformerEmbedder", lambda *a, **k: shared_embedder())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_kb_cli_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "docs")
    code, out, _ = run(capsys, "kb", "create", "notes", "--json")
    assert code == 0 and json.loads(out)["name"] == "notes"

    code, out, err = run(capsys, "kb", "add", "notes", str(corpus), "--json")
    assert code == 1  # two bad files; the good ones stay indexed
    report = json.loads(out)
    assert len(report["indexed"]) == 4 and report["chunks_added"] == 5 and report["cancelled"] is False
    assert {Path(f["path"]).name: f["reason"] for f in report["failed"]} == {
        "empty.txt": "empty file (0 bytes)",
        "image.png": "not a readable image (broken file, or not the format its name says)",
    }
    assert f"failed: {corpus / 'empty.txt'}: empty file (0 bytes)" in err and "6/6 files" in err

    code, out, err = run(capsys, "kb", "add", "notes", str(corpus / "france.txt"))
    assert code == 0 and "unchanged 1" in err

    code, out, _ = run(capsys, "kb", "list", "--json")
    assert code == 0
    [base] = json.loads(out)
    assert {k: base[k] for k in ("name", "documents", "chunks", "dim")} == {
        "name": "notes",
        "documents": 4,
        "chunks": 5,
        "dim": 384,
    }

    code, out, _ = run(
        capsys, "kb", "search", "notes", "Who created Python?", "-k", "2", "--min-relevance", "0", "--json"
    )
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2
    assert {"score", "path", "text", "position"} <= set(hits[0]) and hits[0]["path"].endswith("python.md")

    monkeypatch.setattr("sys.stdin", io.StringIO("熊猫生活在哪里\nEiffel Tower\n\n"))
    code, out, _ = run(capsys, "kb", "search", "notes", "-", "-k", "1", "--json")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert json.loads(lines[0])[0]["path"].endswith("zh.txt")
    assert json.loads(lines[1])[0]["path"].endswith("france.txt")
    assert json.loads(lines[2]) == []

    code, out, _ = run(capsys, "kb", "search", "notes", "Eiffel Tower", "-k", "1")
    assert code == 0 and "france.txt (line 1)" in out

    code, out, _ = run(capsys, "kb", "docs", "notes", "--json")
    docs = json.loads(out)
    assert {"path", "type", "chunks", "size", "added", "status"} <= set(docs[0])

    assert run(capsys, "kb", "remove", "notes", str(corpus / "france.txt"))[0] == 0
    code, out, _ = run(capsys, "kb", "docs", "notes", "--json")
    assert "france.txt" not in out

    assert run(capsys, "kb", "rename", "notes", "笔记")[0] == 0
    assert run(capsys, "kb", "delete", "笔记")[0] == 0
    code, out, err = run(capsys, "kb", "search", "笔记", "x")
    assert code == 2 and "no knowledge base called" in err
    code, out, _ = run(capsys, "kb", "list", "--json")
    assert json.loads(out) == []
