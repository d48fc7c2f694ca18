"""Where models come from: Hugging Face, hf-mirror, ModelScope or a custom HF-compatible endpoint.

Hugging Face-compatible endpoints are spoken to over the same HTTP routes ``huggingface_hub`` uses
(``/api/models/{repo}/revision/{rev}?blobs=true`` for the file list with sizes and LFS sha256,
``/{repo}/resolve/{rev}/{file}`` for the bytes). ModelScope through its documented HTTP file API
(``/api/v1/models/{repo}/repo/files`` and ``/api/v1/models/{repo}/repo?Revision=&FilePath=``), so
neither hub client is needed at run time: one ``httpx`` client with our proxy, timeouts and Range
resume serves all of them.

"auto" tries the sources in the user's order (the one that worked last time first), each with a
reachability probe of at most ``PROBE_TIMEOUT_S``, and remembers the one that worked in
``model_sources.json`` in the config folder.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.core.paths import Paths

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

HubKind = Literal["hf", "modelscope"]
BUILTIN = ("hf", "hf-mirror", "modelscope")
DEFAULT_ENDPOINTS = {
    "hf": "https://huggingface.co",
    "hf-mirror": "https://hf-mirror.com",
    "modelscope": "https://www.modelscope.cn",
}
DEFAULT_ORDER = ("hf", "hf-mirror", "modelscope")
# huggingface.co is blocked in mainland China: a Chinese system starts with the mirrors (a probe of a
# blocked host costs its whole timeout)
CHINA_ORDER = ("hf-mirror", "modelscope", "hf")


def default_order() -> list[str]:
    import locale

    lang = (locale.getlocale()[0] or os.environ.get("LANG", "")).lower()
    return list(CHINA_ORDER if lang.startswith("zh") else DEFAULT_ORDER)


PROBE_TIMEOUT_S = 2.0
CONFIG_FILE = "model_sources.json"
USER_AGENT = "bubble-desktop (model downloads)"


class DownloadError(UserFacingError):
    """Anything about finding or downloading a model."""

    default_hint = (
        "Check the network or the proxy (Settings → Web), or pick another source (hf-mirror, ModelScope)."
    )


class SourceUnreachableError(DownloadError):
    default_hint = (
        "Check the network or the proxy (Settings → Web). In mainland China huggingface.co is usually "
        "blocked: choose hf-mirror or ModelScope."
    )


class RepoNotFoundError(DownloadError):
    default_hint = "Check the model id and the file name; ids differ between Hugging Face and ModelScope."


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repo, '/'-separated
    size: int | None
    sha256: str | None  # published by the hub (LFS files); None for small git files
    url: str


@dataclass(frozen=True)
class RepoListing:
    repo: str
    revision: str  # the commit the files were listed at (so every file comes from the same one)
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class HubModel:
    """One hit of a hub search."""

    repo: str
    downloads: int = 0
    likes: int = 0
    tags: tuple[str, ...] = ()
    gguf: bool = False  # has GGUF files (by its tags): runs through llama.cpp


@dataclass(frozen=True)
class Source:
    """One place to download from. ``hub`` says which API it speaks and which catalog repo id applies."""

    name: str  # "hf", "hf-mirror", "modelscope" or the custom URL
    endpoint: str
    hub: HubKind
    token: str = field(default="", repr=False)  # a Hugging Face access token, for gated repos

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def default_revision(self) -> str:
        return "master" if self.hub == "modelscope" else "main"

    # -- probing ----------
    def probe(self, client: httpx.Client, timeout: float = PROBE_TIMEOUT_S) -> float:
        """Seconds the endpoint took to answer anything; SourceUnreachableError if it did not in time."""
        import httpx

        t0 = time.monotonic()
        try:
            client.head(self.endpoint + "/", timeout=httpx.Timeout(timeout), follow_redirects=False)
        except httpx.HTTPError as exc:
            raise SourceUnreachableError(
                f"{self.label} ({self.endpoint}) cannot be reached: {_why(exc)}."
            ) from exc
        return time.monotonic() - t0

    @property
    def label(self) -> str:
        return {"hf": "Hugging Face", "hf-mirror": "hf-mirror", "modelscope": "ModelScope"}.get(
            self.name, self.name
        )

    # -- listing ----------
    def list_files(self, client: httpx.Client, repo: str, revision: str = "") -> RepoListing:
        rev = revision or self.default_revision
        if self.hub == "modelscope":
            return self._list_modelscope(client, repo, rev)
        return self._list_hf(client, repo, rev)

    def file_url(self, repo: str, revision: str, path: str) -> str:
        if self.hub == "modelscope":
            return (
                f"{self.endpoint}/api/v1/models/{repo}/repo?Revision={quote(revision, safe='')}"
                f"&FilePath={quote(path, safe='')}"
            )
        return f"{self.endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def _get_json(self, client: httpx.Client, url: str, repo: str) -> Any:
        import httpx

        try:
            r = client.get(url, headers=self.auth_headers())
        except httpx.HTTPError as exc:
            raise SourceUnreachableError(f"{self.label} did not answer for {repo}: {_why(exc)}.") from exc
        if r.status_code in (401, 403):
            raise DownloadError(
                f"{self.label} refuses {repo} (HTTP {r.status_code}): it is gated or private.",
                (
                    "Accept the model's licence on its Hugging Face page, create an access token there "
                    "(Settings → Access Tokens) and enter it under Models → Sources…, "
                    "or pick another source or model."
                    if self.name == "hf"
                    else "Accept the model's licence on the hub's web page, or pick another source or model."
                ),
            )
        if r.status_code == 404:
            raise RepoNotFoundError(f"{repo} is not on {self.label}.")
        if r.status_code >= 400:
            raise DownloadError(f"{self.label} answered HTTP {r.status_code} for {repo}.")
        try:
            return r.json()
        except ValueError as exc:
            raise DownloadError(
                f"{self.label} sent something that is not JSON for {repo}; is "
                f"{self.endpoint} really a model hub?"
            ) from exc

    def search(self, client: httpx.Client, query: str, limit: int = 20) -> list[HubModel]:
        """Models whose id matches ``query`` (Hugging Face-compatible hubs: ``GET /api/models?search=``),
        most downloaded first. Only when the user searches: nothing is sent before."""
        if self.hub != "hf":
            raise DownloadError(
                f"Searching {self.label} by name is not supported yet.",
                "Search on Hugging Face or hf-mirror, or type the ModelScope repo id.",
            )
        data = self._get_json(
            client,
            f"{self.endpoint}/api/models?search={quote(query)}&limit={int(limit)}&sort=downloads&direction=-1",
            query,
        )
        out = []
        for m in data if isinstance(data, list) else []:
            repo = str(m.get("id") or m.get("modelId") or "")
            if not repo:
                continue
            tags = tuple(str(t) for t in m.get("tags") or ())
            out.append(
                HubModel(
                    repo,
                    int(m.get("downloads") or 0),
                    int(m.get("likes") or 0),
                    tags,
                    "gguf" in tags or repo.lower().endswith("gguf"),
                )
            )
        return out

    def _list_hf(self, client: httpx.Client, repo: str, rev: str) -> RepoListing:
        data = self._get_json(
            client, f"{self.endpoint}/api/models/{repo}/revision/{quote(rev, safe='')}?blobs=true", repo
        )
        sha = str(data.get("sha") or rev)
        files = []
        for s in data.get("siblings") or []:
            path = str(s.get("rfilename", ""))
            if not path:
                continue
            lfs = s.get("lfs") or {}
            size = lfs.get("size", s.get("size"))
            files.append(
                RemoteFile(
                    path,
                    int(size) if size is not None else None,
                    str(lfs["sha256"]) if lfs.get("sha256") else None,
                    self.file_url(repo, sha, path),
                )
            )
        return RepoListing(repo, sha, tuple(files))

    def _list_modelscope(self, client: httpx.Client, repo: str, rev: str) -> RepoListing:
        data = self._get_json(
            client,
            f"{self.endpoint}/api/v1/models/{repo}/repo/files?Revision={quote(rev, safe='')}&Recursive=true",
            repo,
        )
        if (
            not isinstance(data, dict)
            or data.get("Code") not in (200, None)
            or not isinstance(data.get("Data"), dict)
        ):
            raise RepoNotFoundError(f"{repo} is not on {self.label} ({data.get('Message', 'no file list')}).")
        files = []
        for f in data["Data"].get("Files") or []:
            if f.get("Type") == "tree":
                continue
            path = str(f.get("Path") or f.get("Name") or "")
            if not path:
                continue
            sha = f.get("Sha256") or None
            files.append(
                RemoteFile(
                    path,
                    int(f["Size"]) if f.get("Size") is not None else None,
                    str(sha) if sha else None,
                    self.file_url(repo, rev, path),
                )
            )
        return RepoListing(repo, rev, tuple(files))


def _why(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectTimeout | httpx.ReadTimeout | httpx.PoolTimeout):
        return "no answer in time"
    if isinstance(exc, httpx.ProxyError):
        return f"the proxy refused ({exc})"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "Name or service not known" in text or "getaddrinfo" in text or "nodename" in text:
            return "the name does not resolve (no network or DNS)"
        return "connection refused or no network"
    return str(exc) or type(exc).__name__


# -- the user's choice of sources ----------
@dataclass
class SourceConfig:
    """``model_sources.json``: the "auto" order, endpoint overrides and the source that worked last."""

    order: list[str] = field(default_factory=default_order)
    endpoints: dict[str, str] = field(default_factory=dict)
    last_good: str = ""
    # a Hugging Face access token (gated models such as Llama); sent to huggingface.co only, never to
    # the mirror, ModelScope, a hub of your own or a CDN the hub redirects to
    hf_token: str = field(default="", repr=False)

    @classmethod
    def load(cls, paths: Paths | None = None) -> SourceConfig:
        p = (paths or Paths.default()).config_dir / CONFIG_FILE
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        order = [str(x) for x in raw.get("order", ()) if isinstance(x, str) and x.strip()]
        endpoints = {str(k): str(v).rstrip("/") for k, v in (raw.get("endpoints") or {}).items()}
        return cls(
            order or default_order(), endpoints, str(raw.get("last_good", "")), str(raw.get("hf_token", ""))
        )

    def save(self, paths: Paths | None = None) -> None:
        p = (paths or Paths.default()).config_dir / CONFIG_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "order": self.order,
                    "endpoints": self.endpoints,
                    "last_good": self.last_good,
                    **({"hf_token": self.hf_token} if self.hf_token else {}),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        os.replace(tmp, p)

    def endpoint(self, name: str) -> str:
        if name in self.endpoints:
            return self.endpoints[name]
        if name == "hf" and os.environ.get("HF_ENDPOINT"):
            return os.environ["HF_ENDPOINT"].rstrip("/")
        return DEFAULT_ENDPOINTS[name]

    def source(self, name: str) -> Source:
        """A built-in source by name, or a custom HF-compatible endpoint given as a URL."""
        if name in BUILTIN:
            token = (
                self.hf_token
                or os.environ.get("HF_TOKEN", "")
                or os.environ.get("HUGGING_FACE_HUB_TOKEN", "")
                if name == "hf"
                else ""
            )
            return Source(
                name, self.endpoint(name), "modelscope" if name == "modelscope" else "hf", token.strip()
            )
        if name.startswith(("http://", "https://")):
            url = name.rstrip("/")
            return Source(url, url, "modelscope" if "modelscope" in url else "hf")
        raise DownloadError(
            f"Unknown model source {name!r}.",
            "Use auto, hf, hf-mirror, modelscope or an http(s):// URL of a Hugging Face-compatible hub.",
        )

    def candidates(self, choice: str) -> list[Source]:
        """The sources to try for ``choice`` ("auto" = the order, last good first)."""
        if choice != "auto":
            return [self.source(choice)]
        names = list(dict.fromkeys(([self.last_good] if self.last_good in self.order else []) + self.order))
        return [self.source(n) for n in names]


def make_client(
    proxy: str = "", *, stall_timeout_s: float = 30.0, connect_timeout_s: float = 10.0
) -> httpx.Client:
    """One HTTP client for listing and downloading: the web proxy setting, timeouts that notice a stall."""
    import httpx

    proxy = proxy.strip()
    if proxy.startswith("socks"):
        import importlib.util

        if importlib.util.find_spec("socksio") is None:
            raise DownloadError(
                f"The proxy {proxy} is a SOCKS proxy, which needs the socksio package.",
                "Install it (pip install socksio) or use an http:// proxy.",
            )
    try:
        return httpx.Client(
            proxy=proxy or None,
            verify=ssl_context(),
            follow_redirects=True,
            timeout=httpx.Timeout(connect=connect_timeout_s, read=stall_timeout_s, write=30.0, pool=30.0),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
    except ValueError as exc:  # an unparseable proxy URL
        raise DownloadError(
            f"The proxy setting {proxy!r} is not a valid URL ({exc}).",
            "Fix it in Settings → Web → Proxy, e.g. http://127.0.0.1:7890.",
        ) from exc


_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client (building one reads the CA bundle: ~50 ms)."""
    global _ssl_context
    if _ssl_context is None:
        try:
            import certifi

            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            _ssl_context = ssl.create_default_context()
    return _ssl_context


def choose_source(
    candidates: Sequence[Source],
    client: httpx.Client,
    *,
    timeout: float = PROBE_TIMEOUT_S,
    on_skip: Callable[[Source, str], None] | None = None,
) -> Source:
    """The first candidate that answers within ``timeout``; a clear error naming each one that did not."""
    failures: list[str] = []
    for src in candidates:
        try:
            src.probe(client, timeout)
            return src
        except SourceUnreachableError as exc:
            log.info("source %s unreachable: %s", src.name, exc.message)
            failures.append(exc.message)
            if on_skip is not None:
                on_skip(src, exc.message)
    if len(failures) == 1:
        raise SourceUnreachableError(failures[0])
    raise SourceUnreachableError("No model source could be reached: " + " ".join(failures))


def remember_source(name: str, paths: Paths | None = None) -> None:
    cfg = SourceConfig.load(paths)
    if cfg.last_good != name and (name in cfg.order):
        cfg.last_good = name
        try:
            cfg.save(paths)
        except OSError as exc:
            log.info("could not remember the model source: %s", exc)


def config_path(paths: Paths | None = None) -> Path:
    return (paths or Paths.default()).config_dir / CONFIG_FILE
