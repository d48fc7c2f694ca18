"""Web search: a small protocol, a ddgs-backed searcher with a hard deadline, cleaned results."""

from bubble_desktop.core.web.search import (
    DdgsProvider,
    DdgsSearcher,
    SearchProvider,
    WebResult,
    WebSearcher,
    clean_text,
)

__all__ = ["DdgsProvider", "DdgsSearcher", "SearchProvider", "WebResult", "WebSearcher", "clean_text"]
