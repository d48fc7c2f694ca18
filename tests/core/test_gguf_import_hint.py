"""GGUF import errors as the GUI shows them."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_gguf_import_existing_target_hint_names_no_cli_flag(tmp_path: Path) -> None:
    """The hint is shown in the GUI too: it must not tell the user to pass a command-line flag."""
    from bubble_desktop.core.errors import ModelError
    from bubble_desktop.core.llm.gguf_import import import_gguf

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelError) as info:
        import_gguf(gguf, models_dir=tmp_path / "models")
    assert "already exists" in info.value.message and "--" not in info.value.hint
