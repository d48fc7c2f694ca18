"""bubble-cli ask / models on the tiny model: streaming, --json, errors without tracebacks, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bubble_desktop.cli import main


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from bubble_desktop.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    try:\n"
        "        main(['ask', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', "
        "'sentence_transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_ask_json(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "ask",
            "What is the capital of France?",
            "--model",
            str(tiny_model_dir),
            "--temperature",
            "0",
            "--max-new-tokens",
            "6",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert {"answer", "prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s", "finish_reason"} <= set(
        data
    )
    assert 1 <= data["completion_tokens"] <= 6 and data["prompt_tokens"] > 0
    assert data["finish_reason"] in ("stop", "length")


def test_ask_streams_same_text_as_json(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "ask",
        "hello",
        "--model",
        str(tiny_model_dir),
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
        "--system",
        "Be brief.",
    ]
    assert main(args + ["--json"]) == 0
    answer = json.loads(capsys.readouterr().out)["answer"]
    assert main(args) == 0
    assert capsys.readouterr().out == answer + "\n"


def test_ask_defaults_come_from_saved_settings(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings, save_settings

    s = Settings()
    s.model.path = str(tiny_model_dir)
    s.sampling.max_new_tokens = 3
    s.sampling.temperature = 0.0
    save_settings(s, Paths.default().settings_file)
    assert main(["ask", "hi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["completion_tokens"] <= 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "/no/such/folder"], "does not exist"),
        (["--model", "Qwen/Qwen2.5-0.5B-Instruct"], "not downloaded"),
        (["--temperature", "9"], "--temperature"),
        (["--top-k", "-1"], "--top-k"),
        (["--threads", "-1"], "--threads"),
        (["--context-window", "-5"], "--context-window"),
    ],
)
def test_ask_errors_are_one_clear_line(
    extra: list[str], message: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ask", "hi"] + (extra if "--model" in extra else ["--model", str(tiny_model_dir)] + extra)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_ask_without_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "hi"]) != 0
    assert "No model" in capsys.readouterr().err


def test_ask_error_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(tmp_path),
            "ask",
            "hi",
            "--model",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "does not exist" in out.stderr


def test_models_list_and_recommended(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from bubble_desktop.core.paths import Paths

    shutil.copytree(tiny_model_dir, Paths.default().models_dir / "tiny")
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["tiny"]
    assert main(["models", "recommended", "--json"]) == 0
    assert any(m["name"] == "Qwen2.5-0.5B-Instruct" for m in json.loads(capsys.readouterr().out))


def test_import_gguf_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "import-gguf", str(tmp_path / "none.gguf")]) != 0
    assert "does not exist" in capsys.readouterr().err
    txt = tmp_path / "a.txt"
    txt.write_text("x")
    assert main(["models", "import-gguf", str(txt)]) != 0
    assert ".gguf" in capsys.readouterr().err
