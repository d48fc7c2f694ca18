"""Web search: error paths through the real ddgs library, happy path through a recorded provider."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.errors import WebSearchError
from bubble_desktop.core.settings import WebSettings
from bubble_desktop.core.web import DdgsSearcher, WebResult, WebSearcher, clean_text
from bubble_desktop.core.web.search import SearchRequest

RECORDED = Path(__file__).parents[1] / "fixtures" / "web_news_recorded.json"


class RecordedProvider:
    """Replays a stored ddgs result set; counts calls so the cache can be checked."""

    def __init__(self, path: Path = RECORDED) -> None:
        self.results: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["results"]
        self.requests: list[SearchRequest] = []

    def search(self, request: SearchRequest) -> list[dict[str, Any]]:
        self.requests.append(request)
        return list(self.results)


@pytest.fixture
def refusing_proxy() -> str:
    """A 127.0.0.1 port nobody listens on: connections are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def stalling_proxy() -> Iterator[str]:
    """A local socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, name="stalling-proxy", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def test_refused_proxy_gives_a_notice_quickly(refusing_proxy: str) -> None:
    searcher = DdgsSearcher()
    started = time.monotonic()
    with pytest.raises(WebSearchError) as info:
        searcher.search("lighthouse festival", WebSettings(proxy=refusing_proxy, deadline_s=5))
    assert time.monotonic() - started < 5.5
    assert "without the web" in info.value.message
    assert info.value.hint


def test_stalling_proxy_hits_our_deadline(stalling_proxy: str) -> None:
    searcher = DdgsSearcher()
    started = time.monotonic()
    with pytest.raises(WebSearchError) as info:
        searcher.search("lighthouse festival", WebSettings(proxy=stalling_proxy, deadline_s=1.0, mode="text"))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0, elapsed
    assert "1 s" in info.value.message


def test_recorded_results_are_cleaned_and_deduplicated() -> None:
    provider = RecordedProvider()
    searcher = DdgsSearcher(provider)
    assert isinstance(searcher, WebSearcher)
    results = searcher.search("Zorblat lighthouse festival", WebSettings(enabled=True))
    assert [r.source for r in results] == ["Example News", "Quennet Herald", "Culture Daily"]
    first = results[0]
    assert isinstance(first, WebResult)
    assert first.title == "Zorblat lighthouse festival draws record crowds"
    assert "<b>" not in first.snippet and "& announced" in first.snippet
    assert results[1].snippet == "Extra ferries will run until 2 a.m. during the Zorblat festival."
    assert results[2].title == "Lighthouse keepers' choir to open Zorblat week"
    assert first.date.startswith("2026-11-20")
    request = provider.requests[0]
    assert (request.mode, request.timelimit, request.max_results) == ("news", "w", 5)


def test_settings_reach_the_provider_and_max_results_is_honoured() -> None:
    provider = RecordedProvider()
    settings = WebSettings(
        mode="text", timelimit="any", region="cn-zh", safesearch="off", max_results=2, proxy=" "
    )
    results = DdgsSearcher(provider).search("  Zorblat   festival ", settings)
    assert len(results) == 2
    request = provider.requests[0]
    assert request == SearchRequest(
        query="Zorblat festival",
        mode="text",
        timelimit=None,
        region="cn-zh",
        safesearch="off",
        max_results=2,
        proxy=None,
        timeout_s=4,
    )


def test_results_are_cached_per_query_for_a_few_minutes() -> None:
    now = [1000.0]
    provider = RecordedProvider()
    searcher = DdgsSearcher(provider, cache_ttl_s=300, clock=lambda: now[0])
    settings = WebSettings()
    first = searcher.search("Zorblat", settings)
    assert searcher.search("Zorblat", settings) == first
    assert len(provider.requests) == 1
    searcher.search("something else", settings)
    assert len(provider.requests) == 2
    now[0] += 301
    searcher.search("Zorblat", settings)
    assert len(provider.requests) == 3


def test_provider_errors_become_notices() -> None:
    from ddgs.exceptions import RatelimitException, TimeoutException

    class Failing:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def search(self, request: SearchRequest) -> list[dict[str, Any]]:
            raise self.exc

    with pytest.raises(WebSearchError, match="rate-limiting"):
        DdgsSearcher(Failing(RatelimitException("202 Ratelimit"))).search("q", WebSettings())
    with pytest.raises(WebSearchError, match="timed out"):
        DdgsSearcher(Failing(TimeoutException("timed out"))).search("q", WebSettings())


def test_clean_text() -> None:
    assert clean_text("<p>a&amp;b</p>\n\n c") == "a&b c"
    assert clean_text(None) == ""
    assert clean_text("x" * 50, limit=10) == "x" * 9 + "…"
