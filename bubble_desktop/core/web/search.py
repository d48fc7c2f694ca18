"""Web search with a deadline of our own, cleaned and de-duplicated results, and a short cache.

Two layers: a :class:`SearchProvider` returns raw result dicts (``DdgsProvider`` calls the
``ddgs`` library; tests use a recorded one), and :class:`DdgsSearcher` (a :class:`WebSearcher`)
runs the provider in a daemon worker, stops waiting at ``WebSettings.deadline_s``, turns every
failure into a :class:`WebSearchError` and cleans what comes back. ``ddgs`` tries engines in
rounds, so its own timeout alone can take several times longer than asked (see DESIGN.md).
"""

from __future__ import annotations

import html
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from bubble_desktop.core.errors import WebSearchError
from bubble_desktop.core.settings import WebSettings

log = logging.getLogger(__name__)

Mode = Literal["news", "text"]
CACHE_TTL_S = 300.0
CACHE_SIZE = 64
MAX_SNIPPET_CHARS = 600


@dataclass(frozen=True)
class WebResult:
    """One cleaned search result (plain text, no HTML)."""

    title: str
    url: str
    snippet: str
    date: str = ""
    source: str = ""  # the publisher for news results

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class SearchRequest:
    """What one provider call asks for; also the cache key."""

    query: str
    mode: Mode = "news"
    timelimit: str | None = "w"
    region: str = "wt-wt"
    safesearch: str = "moderate"
    max_results: int = 5
    proxy: str | None = None
    timeout_s: int = 5

    @classmethod
    def from_settings(cls, query: str, settings: WebSettings) -> SearchRequest:
        return cls(
            query=" ".join(query.split()),
            mode=settings.mode,
            timelimit=None if settings.timelimit == "any" else settings.timelimit,
            region=settings.region or "wt-wt",
            safesearch=settings.safesearch,
            max_results=settings.max_results,
            proxy=settings.proxy.strip() or None,
            # the library's own timeout stays below our deadline, so its threads end soon after we give up
            timeout_s=max(1, int(settings.deadline_s) // 2),
        )


@runtime_checkable
class SearchProvider(Protocol):
    """Returns raw result dicts (``title``, ``url``/``href``, ``body``, ``date``, ``source``)."""

    def search(self, request: SearchRequest) -> list[dict[str, Any]]: ...


@runtime_checkable
class WebSearcher(Protocol):
    """What the chat service talks to: cleaned results, or a WebSearchError; never hangs."""

    def search(self, query: str, settings: WebSettings) -> list[WebResult]: ...


class DdgsProvider:
    """The real provider: ``ddgs`` news or text search (imported lazily)."""

    def search(self, request: SearchRequest) -> list[dict[str, Any]]:
        from ddgs import DDGS

        ddgs = DDGS(proxy=request.proxy, timeout=request.timeout_s)
        call = ddgs.news if request.mode == "news" else ddgs.text
        return list(
            call(
                request.query,
                region=request.region,
                safesearch=request.safesearch,
                timelimit=request.timelimit,
                max_results=request.max_results,
            )
        )


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def clean_text(value: object, limit: int | None = None) -> str:
    """Plain text from a result field: tags stripped, entities decoded, whitespace collapsed."""
    if value is None:
        return ""
    text = html.unescape(_TAG.sub(" ", str(value)))
    text = _SPACE.sub(" ", text).strip()
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _url_key(url: str) -> str:
    parts = urlsplit(url.strip().lower())
    host = parts.netloc.removeprefix("www.")
    return (
        f"{host}{parts.path.rstrip('/')}?{parts.query}" if parts.query else f"{host}{parts.path.rstrip('/')}"
    )


def clean_results(raw: list[dict[str, Any]], max_results: int) -> list[WebResult]:
    """Cleaned, de-duplicated (same URL or same title) results, at most ``max_results``."""
    out: list[WebResult] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            continue
        url = clean_text(item.get("url") or item.get("href") or "")
        title = clean_text(item.get("title"))
        snippet = clean_text(
            item.get("body") or item.get("snippet") or item.get("excerpt"), MAX_SNIPPET_CHARS
        )
        if not (title or snippet):
            continue
        keys = {k for k in (_url_key(url) if url else "", "t:" + title.lower() if title else "") if k}
        if keys & seen:
            continue
        seen |= keys
        out.append(
            WebResult(
                title=title or url,
                url=url,
                snippet=snippet,
                date=clean_text(item.get("date")),
                source=clean_text(item.get("source")),
            )
        )
        if len(out) >= max_results:
            break
    return out


def _describe(exc: BaseException) -> WebSearchError:
    """A user-facing error for whatever the library raised."""
    name = type(exc).__name__
    if name == "RatelimitException":
        return WebSearchError(
            "The search engines are rate-limiting requests right now; answered without the web."
        )
    if name == "TimeoutException" or isinstance(exc, TimeoutError):
        return WebSearchError("Web search timed out; answered without the web.")
    detail = str(exc).lower()
    if "timed out" in detail or "timeout" in detail:
        return WebSearchError("Web search timed out; answered without the web.")
    if any(word in detail for word in ("connect", "proxy", "dns", "resolve", "network")):
        return WebSearchError(
            "Web search could not reach the search engines (no network, or the proxy refused); "
            "answered without the web."
        )
    return WebSearchError(f"Web search failed ({name}); answered without the web.")


class DdgsSearcher:
    """A :class:`WebSearcher`: provider call in a daemon thread, our own deadline, a TTL cache."""

    def __init__(
        self,
        provider: SearchProvider | None = None,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider: SearchProvider = provider or DdgsProvider()
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: OrderedDict[SearchRequest, tuple[float, list[WebResult]]] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, query: str, settings: WebSettings) -> list[WebResult]:
        """Results for ``query``; raises WebSearchError on timeout, rate limit or no network."""
        request = SearchRequest.from_settings(query, settings)
        if not request.query:
            return []
        cached = self._cached(request)
        if cached is not None:
            return cached
        raw = self._call_with_deadline(request, settings.deadline_s)
        results = clean_results(raw, request.max_results)
        if results:
            with self._lock:
                self._cache[request] = (self._clock(), results)
                self._cache.move_to_end(request)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return results

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, request: SearchRequest) -> list[WebResult] | None:
        with self._lock:
            hit = self._cache.get(request)
            if hit is None:
                return None
            stamp, results = hit
            if self._clock() - stamp > self._ttl:
                del self._cache[request]
                return None
            return results

    def _call_with_deadline(self, request: SearchRequest, deadline_s: float) -> list[dict[str, Any]]:
        box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                box.put((True, self._provider.search(request)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box.put((False, exc))

        # A daemon thread: if the library stalls past the deadline we stop waiting and let it finish alone.
        worker = threading.Thread(target=work, name="bubble-web-search", daemon=True)
        started = time.monotonic()
        worker.start()
        try:
            ok, value = box.get(timeout=deadline_s)
        except queue.Empty:
            log.info("web search gave up after %.1f s (deadline)", time.monotonic() - started)
            raise WebSearchError(
                f"Web search did not answer within {deadline_s:g} s; answered without the web."
            ) from None
        if ok:
            return list(value or [])
        log.info("web search failed: %r", value)
        if type(value).__name__ == "DDGSException" and "no results" in str(value).lower():
            return []
        raise _describe(value) from value
