"""Remembered consent to run a model folder's own Python code (``trust_remote_code``).

A model folder such as ChatGLM ships ``*.py`` files that transformers executes. The user agrees once
per folder; the agreement is stored with a hash of every ``.py`` file in the folder, so a folder
whose code changed (an update, or a tampered file) asks again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from bubble_desktop.core.paths import Paths


def code_hash(folder: str | os.PathLike[str]) -> str:
    """SHA-256 over the names and contents of every ``.py`` file under ``folder`` (sorted, recursive)."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _key(folder: str | os.PathLike[str]) -> str:
    return str(Path(folder).expanduser().resolve())


class ConsentStore:
    """Which model folders the user allowed to run their own code, as JSON ``{folder: code hash}``.

    Safe to share between threads; every call reads the file afresh so the GUI and the CLI agree.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else Paths.default().consent_file
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        folders = data.get("folders", {}) if isinstance(data, dict) else {}
        return {str(k): str(v) for k, v in folders.items()} if isinstance(folders, dict) else {}

    def _write(self, folders: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": 1, "folders": folders}, indent=2, sort_keys=True)
        # write-then-rename: a crash never leaves a half-written file that would forget every consent
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".consent-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def is_trusted(self, folder: str | os.PathLike[str]) -> bool:
        """True when the user allowed this folder and its ``.py`` files are unchanged since."""
        with self._lock:
            stored = self._read().get(_key(folder))
        return stored is not None and Path(folder).is_dir() and stored == code_hash(folder)

    def trust(self, folder: str | os.PathLike[str]) -> None:
        """Remember that the user allowed this folder's code as it is now."""
        digest = code_hash(folder)
        with self._lock:
            folders = self._read()
            folders[_key(folder)] = digest
            self._write(folders)

    def revoke(self, folder: str | os.PathLike[str]) -> None:
        """Forget the consent for this folder (the next load asks again)."""
        with self._lock:
            folders = self._read()
            if folders.pop(_key(folder), None) is not None:
                self._write(folders)
