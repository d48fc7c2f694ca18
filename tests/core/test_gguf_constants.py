"""Opening a GGUF reads gguf's constants without importing numpy (a GUI stall at every load)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bubble_desktop.core.llm import gguf_constants as module


def test_opening_a_gguf_imports_neither_gguf_nor_numpy(tmp_path: Path) -> None:
    """``import gguf.constants`` ran gguf's __init__ and numpy's C initialisation on the model worker
    thread, holding the GIL: the GUI heartbeat stalled 21–36 ms at every load (3–15 ms with them
    imported already). The header is read, validated and planned for as before."""
    from tests.fixtures.tiny_models import build_tiny_gguf

    gguf = build_tiny_gguf(tmp_path / "tiny.gguf")
    code = (
        "import sys\n"
        "from bubble_desktop.core.llm.llamacpp_backend import inspect_gguf\n"
        f"facts = inspect_gguf({str(gguf)!r})\n"
        "assert facts.arch == 'llama' and facts.has_chat_template, facts\n"
        "print(','.join(m for m in ('numpy', 'gguf') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_the_constants_are_gguf_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file loaded apart is the installed package's: the same type sizes and architectures; and
    where it is not a file (a zipped or frozen package), the normal import serves."""
    import gguf.constants

    monkeypatch.delitem(sys.modules, "gguf.constants")  # as in an app that has not imported gguf
    module.gguf_constants.cache_clear()
    try:
        apart = module.gguf_constants()
        assert apart is not gguf.constants and apart.__name__ == "bubble_desktop._gguf_constants"
        sizes = {int(k): v for k, v in apart.GGML_QUANT_SIZES.items()}
        assert sizes == {int(k): v for k, v in gguf.constants.GGML_QUANT_SIZES.items()}
        assert sizes[3] == (32, 20)  # Q4_1, SmolLM2's
        assert apart.MODEL_ARCH_NAMES.values() and set(apart.MODEL_ARCH_NAMES.values()) == set(
            gguf.constants.MODEL_ARCH_NAMES.values()
        )
        module.gguf_constants.cache_clear()
        monkeypatch.setattr(module, "constants_file", lambda: None)
        imported = module.gguf_constants()
        assert imported.__name__ == "gguf.constants" and imported is sys.modules["gguf.constants"]
        assert imported.GGML_QUANT_SIZES[imported.GGMLQuantizationType(3)] == (32, 20)
    finally:
        module.gguf_constants.cache_clear()
