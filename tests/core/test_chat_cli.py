"""bubble-cli ask --kb/--web/--conversation and bubble-cli chats, in process with the tiny model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bubble_desktop.cli import main
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings, save_settings


def _ask(
    capsys: pytest.CaptureFixture[str], model: Path, *extra: str, question: str = "What is Bubble?"
) -> dict:
    capsys.readouterr()
    code = main(
        [
            "ask",
            question,
            "--model",
            str(model),
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--json",
            *extra,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_ask_saves_a_conversation_and_continues_it(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = _ask(capsys, tiny_model_dir)
    assert first["sources"] == [] and first["notices"] == [] and first["finish_reason"] in ("stop", "length")
    cid = first["conversation_id"]
    second = _ask(capsys, tiny_model_dir, "--conversation", str(cid))
    assert second["conversation_id"] == cid

    assert main(["chats", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["id"], c["message_count"], c["title"]) for c in listed] == [(cid, 4, "What is Bubble?")]

    assert main(["chats", "show", str(cid)]) == 0
    assert capsys.readouterr().out.count("**You:**") == 2

    out = tmp_path / "c.json"
    assert main(["chats", "export", str(cid), "--format", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["format"] == "bubble-conversation"
    assert main(["chats", "import", str(out)]) == 0
    new_id = int(capsys.readouterr().out.strip())
    assert new_id != cid
    assert main(["chats", "export", str(new_id), "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# What is Bubble?")

    assert main(["chats", "show", "999"]) == 2  # a user-facing error with a hint
    assert "no conversation 999" in capsys.readouterr().err
    assert main(["ask", "q", "--model", str(tiny_model_dir), "--conversation", "999"]) == 2


def test_web_failure_is_a_notice_and_exit_stays_zero(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = Settings()
    settings.web.proxy = f"http://127.0.0.1:{port}"
    settings.web.deadline_s = 5
    save_settings(settings, Paths.default().settings_file)
    result = _ask(capsys, tiny_model_dir, "--web")
    assert result["web_used"] is True and result["sources"] == []
    assert len(result["notices"]) == 1 and "without the web" in result["notices"][0]


def test_ask_with_kb_returns_sources(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "zorblat.md"
    doc.write_text(
        "# Zorblat\n\nThe Zorblat festival is held every May on Quennet island.\n", encoding="utf-8"
    )
    assert main(["kb", "create", "notes"]) == 0
    assert main(["kb", "add", "notes", str(doc), "--quiet"]) == 0
    # a question the document answers: unrelated chunks are no longer cited (issue 16.6)
    result = _ask(capsys, tiny_model_dir, "--kb", "notes", question="When is the Zorblat festival held?")
    assert result["sources"], result
    top = result["sources"][0]
    assert (top["index"], top["kind"], top["kb"]) == (1, "kb", "notes")
    assert top["path"].endswith("zorblat.md") and "Quennet" in top["text"]
    capsys.readouterr()
    assert main(["ask", "q", "--model", str(tiny_model_dir), "--kb", "missing"]) != 0
