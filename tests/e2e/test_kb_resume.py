"""Resumable ingestion: a run killed with SIGKILL mid-way, then re-run, indexes every file exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bubble_desktop.core.kb.chunking import chunk_segments
from bubble_desktop.core.kb.parsers import parse_file
from bubble_desktop.core.settings import KnowledgeSettings
from tests.e2e.test_kb_service import make_service, point_count

CHILD = textwrap.dedent(
    """
    import sys
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings

    settings = KnowledgeSettings(chunk_size=200, chunk_overlap=20, vector_store=sys.argv[2])
    svc = KnowledgeService(Paths.default(), settings)
    svc.batch_chunks = 8
    svc.create_base("kb")
    def progress(p):
        print("PROGRESS", p.files_done, p.chunks_done, flush=True)
    svc.add_paths("kb", [sys.argv[1]], progress=progress)
    print("DONE", flush=True)
    svc.close()
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("backend", ["edge", "milvus-lite"])
def test_sigkill_mid_ingestion_then_rerun(tmp_path: Path, bubble_home: Path, backend: str) -> None:
    if backend == "milvus-lite":
        pytest.importorskip("milvus_lite")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"doc{i}.txt").write_text(
            " ".join(f"Document {i} sentence {j} talks about subject {i * 7 + j}." for j in range(40))
        )
    env = {**os.environ, "BUBBLE_HOME": str(bubble_home)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    killed_at = None
    try:
        assert child.stdout is not None
        for line in child.stdout:
            parts = line.split()
            # at 40 chunks (batch 5 submitted) batches 1-4 are written: documents 0-2 are complete,
            # later ones are half-written or not started
            if parts and parts[0] == "PROGRESS" and int(parts[2]) >= 40:
                os.kill(child.pid, signal.SIGKILL)  # mid-way: some documents written, others not
                killed_at = (int(parts[1]), int(parts[2]))
                break
    finally:
        child.wait(timeout=120)
    assert killed_at is not None, "the child finished before it could be killed"
    assert child.returncode == -signal.SIGKILL

    settings = KnowledgeSettings(chunk_size=200, chunk_overlap=20, vector_store=backend)
    expected = {
        str(p): len(chunk_segments(parse_file(p).segments, settings.chunk_size, settings.chunk_overlap))
        for p in sorted(corpus.iterdir())
    }
    with make_service(settings) as svc:  # the shard opens cleanly after the kill
        assert svc.info("kb").backend == backend
        report = svc.add_paths("kb", [corpus])
        assert report.ok
        assert sorted(report.indexed + report.unchanged) == sorted(expected)
        assert len(report.unchanged) >= 1  # the work done before the kill was kept
        docs = {d.path: d.chunks for d in svc.documents("kb")}
        assert docs == expected
        assert point_count(svc, "kb") == sum(expected.values())  # nothing duplicated, nothing missing
        again = svc.add_paths("kb", [corpus])
        assert again.indexed == () and len(again.unchanged) == len(expected)
