"""`bubble --smoke-test` from the source tree: the same check CI runs on the frozen bundle.

Running it here first means a failure in the frozen build's smoke test points at packaging (a module
or file PyInstaller missed), not at the smoke test itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_test_passes_from_source(tiny_model_dir: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    from tests.fixtures.chatglm_like.build import build_chatglm_like

    chatglm = build_chatglm_like(tmp_path / "tiny-chatglm", "roles")
    report = tmp_path / "smoke.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.app",
            "--smoke-test",
            "--model",
            str(tiny_model_dir),
            "--remote-code-model",
            str(chatglm),
            "--gguf",
            str(tiny_gguf),
            "--home",
            str(tmp_path / "home"),
            "--report",
            str(report),
            "--timeout",
            "240",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["ok"] is True
    assert json.loads(proc.stdout) == result  # the same report on stdout
    stages = result["stages"]
    assert all(stage["ok"] for stage in stages.values())
    assert {
        "window",
        "model",
        "knowledge",
        "answer",
        "remote_code",
        "remote_code_model",
        "gguf_model",
    } <= set(stages)
    assert stages["remote_code_model"]["remote_code"] is True
    assert stages["gguf_model"]["chunks"] >= 1 and "CPU · " in stages["gguf_model"]["runs_on"]
    assert stages["answer"]["sources"] >= 1  # the answer used the knowledge base
    assert stages["answer"]["chunks"] >= 1
    assert stages["knowledge"]["hits"] >= 1


def test_smoke_test_fails_clearly_on_a_missing_model(tmp_path: Path) -> None:
    report = tmp_path / "smoke.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.app",
            "--smoke-test",
            "--model",
            str(tmp_path / "nope"),
            "--home",
            str(tmp_path / "home"),
            "--report",
            str(report),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "smoke test failed at model" in proc.stderr
    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["ok"] is False and result["failed_stage"] == "model"
