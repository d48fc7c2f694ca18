"""O.Bubble desktop: a private, local knowledge chatbot."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bubble-desktop")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

APP_NAME = "O.Bubble"
APP_ID = "bubble"
