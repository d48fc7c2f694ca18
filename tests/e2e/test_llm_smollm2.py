"""End to end with a real model: import the SmolLM2 GGUF, then ask it about France."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bubble_desktop.cli import main

pytestmark = pytest.mark.slow


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, home: Path) -> Result:
    """Run bubble-cli in this process (a subprocess would pay torch's import again each time)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("BUBBLE_HOME")
    os.environ["BUBBLE_HOME"] = str(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        if old is None:
            os.environ.pop("BUBBLE_HOME", None)
        else:
            os.environ["BUBBLE_HOME"] = old
    return Result(rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> tuple[Path, Path]:
    """(BUBBLE_HOME, model folder) of the session's SmolLM2, imported by `bubble-cli models import-gguf`."""
    return smollm2_dir.parent.parent, smollm2_dir


def test_import_gguf_makes_a_safetensors_folder_with_chat_template(smollm2: tuple[Path, Path]) -> None:
    home, folder = smollm2
    assert folder == home / "models" / "smollm2"
    assert (folder / "config.json").is_file()
    assert list(folder.glob("*.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    # stored as float16 (half of float32 on disk); 135M parameters -> ~270 MB, not ~540 MB
    assert config.get("dtype", config.get("torch_dtype")) == "float16"
    assert sum(f.stat().st_size for f in folder.glob("*.safetensors")) < 300_000_000
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


def test_ask_smollm2_capital_of_france(smollm2: tuple[Path, Path]) -> None:
    home, folder = smollm2
    out = cli(
        "ask",
        "What is the capital of France?",
        "--model",
        str(folder),
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        home=home,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_ask_by_imported_name_json(smollm2: tuple[Path, Path]) -> None:
    home, _ = smollm2
    out = cli(
        "ask",
        "What is the capital of France?",
        "--model",
        "smollm2",
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        "--json",
        home=home,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "Paris" in data["answer"] and data["finish_reason"] == "stop"


def test_importing_twice_needs_overwrite(smollm2: tuple[Path, Path], smollm2_gguf: Path) -> None:
    home, _ = smollm2
    out = cli("models", "import-gguf", str(smollm2_gguf), "--name", "smollm2", home=home)
    assert out.returncode != 0 and "already exists" in out.stderr and "Traceback" not in out.stderr
