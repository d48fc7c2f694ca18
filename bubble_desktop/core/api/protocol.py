"""The OpenAI wire format: request validation, error objects, response and chunk shapes.

Pure Python (no web framework): the ASGI app in ``app.py`` parses JSON, calls these, and writes
what they return. Everything a client can get wrong becomes an :class:`ApiError` with the HTTP
status and the ``{"error": {"message", "type", "param", "code"}}`` body OpenAI clients expect.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bubble_desktop.core.llm.base import ChatMessage, GenerationStats
from bubble_desktop.core.settings import SamplingSettings

KB_MODEL_PREFIX = "bubble/kb:"
MAX_STOP_SEQUENCES = 4


class ApiError(Exception):
    """An error answered as an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bad_field(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``/v1/chat/completions`` request."""

    model: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingSettings
    stream: bool
    stop: tuple[str, ...] = ()
    include_usage: bool = False
    kb_names: tuple[str, ...] = ()
    web: bool = False
    save: bool = False  # keep it as a conversation (the app's history); never by default
    ignored: tuple[str, ...] = ()  # fields accepted but not honoured by this backend

    @property
    def grounded(self) -> bool:
        """Goes through ChatService: knowledge bases, the web, or saved as a conversation."""
        return bool(self.kb_names) or self.web or self.save

    @property
    def question(self) -> str:
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 4096  # the most a request may ask for (max_tokens / max_completion_tokens)
    max_messages: int = 1000


def _number(body: Mapping[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_field(name, f"'{name}' must be a number.")
    if not lo <= float(value) <= hi:
        raise bad_field(name, f"'{name}' must be between {lo:g} and {hi:g}, got {value}.")
    return float(value)


def _integer(body: Mapping[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_field(name, f"'{name}' must be an integer.")
    if not lo <= value <= hi:
        raise bad_field(name, f"'{name}' must be between {lo} and {hi}, got {value}.")
    return value


def _content_text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (images are refused)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad_field(where, "Only text content parts are supported by this model.")
            parts.append(part["text"])
        return "".join(parts)
    raise bad_field(where, "A message's content must be a string or a list of text parts.")


def parse_messages(raw: Any, limits: Limits) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise bad_field("messages", "'messages' must be a non-empty list.")
    if len(raw) > limits.max_messages:
        raise bad_field("messages", f"At most {limits.max_messages} messages are accepted.")
    out: list[ChatMessage] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_field(where, f"{where} must be an object with 'role' and 'content'.")
        role = m.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role == "tool" or role == "function":
            raise bad_field(f"{where}.role", "Tool messages are not supported by this server.")
        if role not in ("system", "user", "assistant"):
            raise bad_field(f"{where}.role", f"{where}.role must be system, user or assistant.")
        out.append(ChatMessage(role, _content_text(m.get("content"), f"{where}.content")))
    if out[-1].role != "user":
        raise bad_field("messages", "The last message must be from the user.")
    return tuple(out)


def parse_kb_model(model: str) -> tuple[str, ...]:
    """``bubble/kb:notes`` or ``bubble/kb:notes,work`` -> the knowledge base names."""
    if not model.startswith(KB_MODEL_PREFIX):
        return ()
    names = tuple(n.strip() for n in model[len(KB_MODEL_PREFIX) :].split(",") if n.strip())
    if not names:
        raise ApiError(
            404, f"The model '{model}' names no knowledge base.", param="model", code="model_not_found"
        )
    return names


def parse_chat_request(body: Any, base: SamplingSettings, limits: Limits) -> ChatRequest:
    """Validate a chat completion request; sampling fields left out keep ``base``'s values."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_field("model", "'model' is required (see GET /v1/models).")
    messages = parse_messages(body.get("messages"), limits)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_field("stream", "'stream' must be true or false.")
    n = _integer(body, "n", 1, 1)
    del n
    if body.get("tools") or body.get("functions"):
        raise bad_field("tools", "Tool calling is not supported by this server.")
    update: dict[str, Any] = {}
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        update["temperature"] = temperature
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        update["top_p"] = top_p
    max_tokens = _integer(body, "max_completion_tokens", 1, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, limits.max_tokens)
    update["max_new_tokens"] = (
        max_tokens if max_tokens is not None else min(base.max_new_tokens, limits.max_tokens)
    )
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    if seed is not None:
        update["seed"] = seed % (2**31)  # any 64-bit seed maps onto the backend's range, reproducibly
    ignored = []
    for name in ("presence_penalty", "frequency_penalty"):
        value = _number(body, name, -2.0, 2.0)
        if value:
            ignored.append(name)  # not in the ChatModel protocol yet; accepted so clients work
    stop_raw = body.get("stop")
    stop: tuple[str, ...] = ()
    if isinstance(stop_raw, str):
        stop = (stop_raw,)
    elif isinstance(stop_raw, list):
        if len(stop_raw) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in stop_raw):
            raise bad_field(
                "stop", f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings."
            )
        stop = tuple(stop_raw)
    elif stop_raw is not None:
        raise bad_field("stop", "'stop' must be a string or a list of strings.")
    stop = tuple(s for s in stop if s)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    if system:
        update["system_prompt"] = system
    sampling = base.model_validate({**base.model_dump(), **update})
    kb_names = parse_kb_model(model.strip())
    web = save = False
    ext = body.get("bubble")
    if ext is not None:
        if not isinstance(ext, dict):
            raise bad_field("bubble", '\'bubble\' must be an object, e.g. {"knowledge_bases": ["notes"]}.')
        kbs = ext.get("knowledge_bases", [])
        if isinstance(kbs, str):
            kbs = [kbs]
        if not isinstance(kbs, list) or not all(isinstance(k, str) and k.strip() for k in kbs):
            raise bad_field("bubble.knowledge_bases", "'knowledge_bases' must be a list of names.")
        kb_names = tuple(dict.fromkeys([*kb_names, *(k.strip() for k in kbs)]))
        web_raw = ext.get("web", False)
        if not isinstance(web_raw, bool):
            raise bad_field("bubble.web", "'web' must be true or false.")
        web = web_raw
        save_raw = ext.get("save", False)
        if not isinstance(save_raw, bool):
            raise bad_field("bubble.save", "'save' must be true or false.")
        save = save_raw
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        sampling=sampling,
        stream=stream,
        stop=stop,
        include_usage=include_usage,
        kb_names=kb_names,
        web=web,
        save=save,
        ignored=tuple(ignored),
    )


def model_messages(request: ChatRequest) -> list[ChatMessage]:
    """What the model sees for a plain request: the client's messages, with the configured system
    prompt first when the client sent none (so an API answer equals ``bubble-cli ask``'s)."""
    msgs = [m for m in request.messages if m.role != "system"]
    system = request.sampling.system_prompt.strip()
    return ([ChatMessage("system", system)] if system else []) + msgs


def history_of(request: ChatRequest) -> list[ChatMessage]:
    """Earlier user/assistant turns (everything before the last user message, system left out)."""
    return [m for m in request.messages[:-1] if m.role != "system"]


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    base64: bool


def parse_embedding_request(body: Any, max_inputs: int = 2048) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_field("model", "'model' is required (see GET /v1/models).")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: Sequence[Any] = [raw]
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise bad_field("input", "'input' must be a string or a non-empty list of strings.")
    if not all(isinstance(t, str) for t in inputs):
        raise bad_field("input", "'input' must hold text; token arrays are not supported.")
    if len(inputs) > max_inputs:
        raise bad_field("input", f"At most {max_inputs} inputs per request.")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_field("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    return EmbeddingRequest(model.strip(), tuple(inputs), fmt == "base64")


# --- responses ---------------------------------------------------------------------------------

FINISH = {"stop": "stop", "length": "length", "cancelled": "stop", "error": "stop"}


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_of(stats: GenerationStats | None) -> dict[str, int]:
    p = stats.prompt_tokens if stats else 0
    c = stats.completion_tokens if stats else 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


@dataclass
class ChunkWriter:
    """Builds the ``chat.completion.chunk`` objects of one streamed answer."""

    model: str
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(
        self, delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if extra:
            out.update(extra)
        return out

    def usage_chunk(self, stats: GenerationStats | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage_of(stats),
        }


def completion(
    model: str, text: str, stats: GenerationStats | None, finish: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage_of(stats),
    }
    if extra:
        out.update(extra)
    return out


def embedding_list(model: str, vectors: Any, as_base64: bool, tokens: int) -> dict[str, Any]:
    import numpy as np

    data = []
    for i, row in enumerate(vectors):
        vec = np.asarray(row, dtype="<f4")
        value: Any = base64.b64encode(vec.tobytes()).decode("ascii") if as_base64 else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class StopScanner:
    """Finds stop sequences in streamed text: ``feed`` returns what is safe to send now (text that
    could still be the start of a stop sequence is held back), and ``hit`` turns True at a match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self.stops), default=1) - 1
        self._buf = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        if self.hit:
            return ""
        self._buf += text
        cut = min((i for i in (self._buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            out, self._buf = self._buf[:cut], ""
            return out
        keep = 0
        for s in self.stops:  # the longest tail of the buffer that is a prefix of a stop sequence
            for k in range(min(len(s) - 1, len(self._buf)), 0, -1):
                if self._buf.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        out = self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep :]
        return out

    def flush(self) -> str:
        out, self._buf = ("" if self.hit else self._buf), ""
        return out
