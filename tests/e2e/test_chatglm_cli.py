"""bubble-cli ask on a ChatGLM-style remote-code folder: consent flag, streaming, --json, stop at length."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from bubble_desktop.cli import main
from bubble_desktop.core.llm.consent import ConsentStore
from tests.fixtures.chatglm_like.build import build_chatglm_like


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def roles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chatglm_like(tmp_path_factory.mktemp("glm-cli") / "roles", "roles")


def test_ask_needs_consent_then_streams_and_remembers(roles_dir: Path) -> None:
    rc, out, err = _cli(
        "ask", "你好", "--model", str(roles_dir), "--temperature", "0", "--max-new-tokens", "6"
    )
    assert rc != 0 and "own Python code" in err and "--trust-remote-code" in err
    assert not ConsentStore().is_trusted(roles_dir)

    rc, out, err = _cli(
        "ask",
        "你好",
        "--model",
        str(roles_dir),
        "--trust-remote-code",
        "--temperature",
        "0",
        "--max-new-tokens",
        "6",
        "--json",
    )
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["answer"] and payload["completion_tokens"] >= 1
    assert ConsentStore().is_trusted(roles_dir)  # --trust-remote-code was recorded

    rc, streamed, err = _cli(
        "ask", "你好", "--model", str(roles_dir), "--temperature", "0", "--max-new-tokens", "6"
    )
    assert rc == 0, err
    assert streamed.strip() == payload["answer"].strip()  # same greedy answer, streamed, no flag needed now


def test_changed_code_asks_again(tmp_path: Path) -> None:
    d = build_chatglm_like(tmp_path / "tuples", "tuples")
    ConsentStore().trust(d)
    with (d / "modeling_chatglm.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# changed\n")
    rc, _, err = _cli("ask", "hi", "--model", str(d), "--temperature", "0", "--max-new-tokens", "3")
    assert rc != 0 and "own Python code" in err
