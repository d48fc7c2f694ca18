"""The ASGI app (Starlette): OpenAI-compatible routes over one :class:`InferenceOwner`.

``create_app(owner, config, ...)`` builds it; :class:`~bubble_desktop.core.api.server.ApiServer`
runs it with uvicorn. Generation never runs on the event loop: a request becomes a job on the
owner's queue, and the job's events come back through ``loop.call_soon_threadsafe`` into an
``asyncio.Queue``. A streaming client that disconnects cancels the response task; its ``finally``
sets the job's cancel event, so the model stops within one decode step (or skips the job if it was
still queued). Starlette is imported here, inside ``create_app``, never at core import time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bubble_desktop.core.api import protocol as p
from bubble_desktop.core.api.jobs import chat_work, grounded_work
from bubble_desktop.core.api.owner import (
    InferenceOwner,
    Job,
    JobEvent,
    JobFinished,
    JobMeta,
    JobStarted,
    JobText,
    OwnerStoppedError,
    QueueFullError,
    Work,
)
from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.core.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.kb.service import KnowledgeService

log = logging.getLogger("bubble_desktop.api")

DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 4 * 2**20


@dataclass(frozen=True)
class ApiConfig:
    """How the server listens and what it allows. Defaults are the safe ones."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str = ""
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_tokens: int = 4096
    max_queue: int = 16
    log_prompts: bool = False  # prompts go to the log only with this and debug logging on
    model_id: str = ""  # the id clients use; empty = the loaded model's name
    embedding_model_id: str = ""  # empty = the embedder's name
    settings: Settings = field(default_factory=Settings)


class _Channel:
    """A job's sink that hands events to the event loop (called from the worker thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    def __call__(self, event: JobEvent) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def drain(self, first: JobEvent) -> list[JobEvent]:
        """``first`` and whatever else is already queued (tokens that arrived meanwhile)."""
        out = [first]
        while True:
            try:
                out.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                return out


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


def create_app(
    owner: InferenceOwner,
    config: ApiConfig | None = None,
    *,
    knowledge: KnowledgeService | None = None,
    chat_service: ChatService | None = None,
) -> Starlette:
    """The OpenAI-compatible app over ``owner`` (and, for grounded answers and embeddings, the
    knowledge service and a ChatService built on it)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    cfg = config or ApiConfig()
    limits = p.Limits(max_tokens=cfg.max_tokens)
    key = cfg.api_key.encode("utf-8")

    def error_response(exc: p.ApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    def model_id() -> str:
        model = owner.model
        return cfg.model_id or (model.info.name if model is not None else "")

    def embedding_id() -> str:
        if knowledge is None:
            return ""
        return cfg.embedding_model_id or knowledge.embedder.name

    def check_key(request: Request) -> None:
        if not key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise p.ApiError(
                401, "An API key is required: send 'Authorization: Bearer <key>'.", code="invalid_api_key"
            )
        if not hmac.compare_digest(given.strip().encode("utf-8"), key):
            raise p.ApiError(401, "The API key is wrong.", code="invalid_api_key")

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        too_big = p.ApiError(
            413, f"The request body is larger than {cfg.max_body_bytes:,} bytes.", code="request_too_large"
        )
        if length is not None:
            try:
                if int(length) > cfg.max_body_bytes:
                    raise too_big
            except ValueError:
                raise p.ApiError(400, "Bad Content-Length header.") from None
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():  # a chunked body is counted as it arrives
                size += len(chunk)
                if size > cfg.max_body_bytes:
                    raise too_big
                chunks.append(chunk)
        except ClientDisconnect:
            raise p.ApiError(400, "The client went away before sending the whole body.") from None
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise p.ApiError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None

    async def check_kbs(names: Sequence[str]) -> None:
        if not names:
            return
        if knowledge is None or chat_service is None:
            raise p.ApiError(
                404, "Knowledge bases are not served by this server.", param="model", code="model_not_found"
            )
        for name in names:
            try:
                await run_in_threadpool(knowledge.info, name)
            except UserFacingError as exc:
                raise p.ApiError(
                    404, exc.message, param="bubble.knowledge_bases", code="model_not_found"
                ) from None

    def submit(work: Work, channel: _Channel) -> Job:
        try:
            return owner.submit(work, channel)
        except QueueFullError as exc:
            raise p.ApiError(
                503, exc.message, type_="server_error", code="queue_full", headers={"Retry-After": "1"}
            ) from None
        except OwnerStoppedError as exc:
            raise p.ApiError(503, exc.message, type_="server_error", code="model_not_loaded") from None

    # -- routes -----------------------------------------------------------------------------

    async def list_models(request: Request) -> Response:
        try:
            check_key(request)
        except p.ApiError as exc:
            return error_response(exc)
        now = int(time.time())
        data = []
        if owner.model is not None:
            data.append({"id": model_id(), "object": "model", "created": now, "owned_by": "bubble"})
        if knowledge is not None:
            bases = await run_in_threadpool(knowledge.list_bases)
            if chat_service is not None and owner.model is not None:
                for b in bases:
                    data.append(
                        {
                            "id": f"{p.KB_MODEL_PREFIX}{b.name}",
                            "object": "model",
                            "created": now,
                            "owned_by": "bubble",
                        }
                    )
            data.append({"id": embedding_id(), "object": "model", "created": now, "owned_by": "bubble"})
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        try:
            check_key(request)
            body = await read_json(request)
            try:
                req = p.parse_chat_request(body, cfg.settings.sampling, limits)
            except ValueError as exc:  # pydantic's range checks on the merged sampling settings
                raise p.ApiError(400, str(exc).splitlines()[0]) from None
            if owner.model is None:
                raise p.ApiError(
                    503,
                    "No model is loaded.",
                    type_="server_error",
                    code="model_not_loaded",
                    headers={"Retry-After": "5"},
                )
            if not req.kb_names and not req.web and req.model != model_id():
                raise p.ApiError(
                    404,
                    f"The model '{req.model}' does not exist here; see GET /v1/models.",
                    param="model",
                    code="model_not_found",
                )
            await check_kbs(req.kb_names)
            if req.web and chat_service is None:
                raise p.ApiError(400, "Web search is not available on this server.", param="bubble.web")
            if req.save and chat_service is None:
                raise p.ApiError(400, "This server keeps no conversations.", param="bubble.save")
            if cfg.log_prompts and log.isEnabledFor(logging.DEBUG):
                log.debug("chat request %s: %r", req.model, [m.content for m in req.messages])
            else:
                log.info(
                    "chat request: model %s, %d messages, stream %s", req.model, len(req.messages), req.stream
                )
            work: Work
            if req.grounded:
                assert chat_service is not None
                settings = cfg.settings.snapshot()
                settings.sampling = req.sampling
                work = grounded_work(
                    chat_service,
                    req.question,
                    p.history_of(req),
                    settings,
                    req.kb_names,
                    req.web,
                    req.stop,
                    save=req.save,
                )
            else:
                work = chat_work(p.model_messages(req), req.sampling, req.stop)
            channel = _Channel(asyncio.get_running_loop())
            job = submit(work, channel)
        except p.ApiError as exc:
            return error_response(exc)
        name = req.model
        if req.stream:
            return StreamingResponse(
                _stream(job, channel, name, req.include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _collect(request, job, channel, name)

    async def _stream(job: Job, channel: _Channel, name: str, include_usage: bool) -> AsyncIterator[bytes]:
        writer = p.ChunkWriter(name)
        # every content chunk is the same object but for its text: serialise the rest once
        head, _, tail = _sse(writer.chunk({"content": "\x00"})).partition(b'"\\u0000"')

        def content_sse(text: str) -> bytes:
            return head + json.dumps(text, ensure_ascii=False).encode("utf-8") + tail

        first = True
        meta: dict[str, Any] | None = None
        try:
            while True:
                events = channel.drain(await channel.queue.get())
                text = "".join(e.text for e in events if isinstance(e, JobText))
                for e in events:
                    if isinstance(e, JobMeta):
                        meta = e.data
                end = next((e for e in events if isinstance(e, JobFinished)), None)
                out = b""
                if first and (meta is not None or text or end is not None):
                    extra = {"bubble": meta} if meta is not None else {}
                    out += _sse(writer.chunk({"role": "assistant", "content": text}, None, extra))
                    first = False
                elif text:
                    out += content_sse(text)
                if end is not None:
                    if end.error:
                        out += _sse(p.error_body(end.error, "server_error", code="generation_failed"))
                    else:
                        out += _sse(writer.chunk({}, p.FINISH[end.stats.finish_reason]))
                        if include_usage:
                            out += _sse(writer.usage_chunk(end.stats))
                    out += b"data: [DONE]\n\n"
                    yield out
                    return
                if out:
                    yield out
        finally:
            job.cancel.set()  # no-op when finished; stops the model when the client went away

    async def _collect(request: Request, job: Job, channel: _Channel, name: str) -> Response:
        async def watch() -> None:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    job.cancel.set()
                    return

        watcher = asyncio.ensure_future(watch())
        parts: list[str] = []
        meta: dict[str, Any] | None = None
        try:
            while True:
                event = await channel.queue.get()
                if isinstance(event, JobText):
                    parts.append(event.text)
                elif isinstance(event, JobMeta):
                    meta = event.data
                elif isinstance(event, JobStarted):
                    continue
                elif isinstance(event, JobFinished):
                    break
        finally:
            watcher.cancel()
            job.cancel.set()
        if event.error:
            return error_response(
                p.ApiError(500, event.error, type_="server_error", code="generation_failed")
            )
        extra = {"bubble": meta} if meta is not None else None
        return JSONResponse(
            p.completion(name, "".join(parts), event.stats, p.FINISH[event.stats.finish_reason], extra)
        )

    async def embeddings(request: Request) -> Response:
        try:
            check_key(request)
            body = await read_json(request)
            req = p.parse_embedding_request(body)
            if knowledge is None:
                raise p.ApiError(
                    404, "Embeddings are not served by this server.", param="model", code="model_not_found"
                )
            if req.model not in (embedding_id(), "bubble/embeddings"):
                raise p.ApiError(
                    404,
                    f"The embedding model '{req.model}' does not exist here; use '{embedding_id()}'.",
                    param="model",
                    code="model_not_found",
                )
            embedder = knowledge.embedder
            try:
                vectors = await run_in_threadpool(embedder.embed, list(req.inputs))
            except UserFacingError as exc:
                raise p.ApiError(500, exc.message, type_="server_error") from None
            tokens = sum(max(1, len(t) // 4) for t in req.inputs)  # the embedder does not count; rough
            return JSONResponse(p.embedding_list(embedding_id(), vectors, req.base64, tokens))
        except p.ApiError as exc:
            return error_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else None
        return JSONResponse(
            p.error_body(str(exc.detail), "invalid_request_error", None, code), status_code=exc.status_code
        )

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("API request failed", exc_info=exc)
        return JSONResponse(
            p.error_body(f"Internal error: {type(exc).__name__}", "server_error"), status_code=500
        )

    middleware: list[Middleware] = []
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cfg.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error, Exception: crash}
    )
    app.state.owner = owner
    app.state.config = cfg
    return app
