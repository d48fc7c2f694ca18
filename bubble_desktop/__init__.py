"""O.Bubble desktop: a private, local knowledge chatbot."""

from typing import Any

APP_NAME = "O.Bubble"
APP_ID = "bubble"


def __getattr__(name: str) -> Any:
    """``__version__`` on first use: importing importlib.metadata costs ~40 ms of start-up."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("bubble-desktop")
        except PackageNotFoundError:  # running from a source tree that was not installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
