"""Where Bubble keeps its files.

By default the platform's user folders (platformdirs). ``BUBBLE_HOME`` (or ``--home`` on the CLI)
puts everything under one folder, for portable installs and tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bubble_desktop import APP_ID

HOME_ENV = "BUBBLE_HOME"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    models_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def consent_file(self) -> Path:
        return self.config_dir / "trusted_models.json"

    @property
    def knowledge_dir(self) -> Path:
        return self.data_dir / "knowledge"

    @property
    def chats_db(self) -> Path:
        return self.data_dir / "chats.sqlite3"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "bubble.lock"

    def ensure(self) -> Paths:
        for d in (self.config_dir, self.data_dir, self.models_dir, self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def under(cls, home: str | os.PathLike[str]) -> Paths:
        root = Path(home).expanduser().resolve()
        return cls(root / "config", root / "data", root / "models", root / "cache", root / "logs")

    @classmethod
    def default(cls, home: str | os.PathLike[str] | None = None) -> Paths:
        """``home`` argument, else ``$BUBBLE_HOME``, else the platform's user folders."""
        home = home or os.environ.get(HOME_ENV) or None
        if home:
            return cls.under(home)
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_ID, appauthor=False)
        data = Path(dirs.user_data_dir)
        return cls(
            Path(dirs.user_config_dir),
            data,
            data / "models",
            Path(dirs.user_cache_dir),
            Path(dirs.user_log_dir),
        )
