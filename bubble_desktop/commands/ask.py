"""bubble-cli ask: stream an answer from a local model to stdout.

The question goes through ``ChatService`` (knowledge bases, web, saved conversation);
``print_context_answer`` streams it or prints JSON. Nothing heavy is imported at parse time.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from bubble_desktop.core.errors import SettingsError
    from bubble_desktop.core.llm.base import ChatModel
    from bubble_desktop.core.settings import SamplingSettings, Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ask",
        help="ask a question and stream the answer",
        description="Ask a local model a question; the answer streams to stdout. "
        "Options left out come from the saved settings.",
    )
    p.add_argument("question", help="the question")
    p.add_argument(
        "--model", metavar="PATH", help="model folder, .gguf file, or the name of an imported model"
    )
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument("--temperature", type=float, metavar="F", help="0 = greedy (repeatable)")
    p.add_argument("--top-p", type=float, metavar="F")
    p.add_argument("--top-k", type=int, metavar="N", help="0 = off")
    p.add_argument("--min-p", type=float, metavar="F", help="0 = off")
    p.add_argument("--repetition-penalty", type=float, metavar="F")
    p.add_argument("--max-new-tokens", type=int, metavar="N")
    p.add_argument("--seed", type=int, metavar="N", help="-1 = random")
    add_load_args(p)
    p.add_argument(
        "--json", action="store_true", help="print one JSON object at the end instead of streaming"
    )
    p.add_argument(
        "--kb",
        action="append",
        default=[],
        metavar="NAME",
        help="answer from this knowledge base (repeatable); sources are cited as [1], [2]",
    )
    p.add_argument(
        "--web",
        action="store_true",
        help="also search the web (DuckDuckGo): your question leaves this computer",
    )
    p.add_argument(
        "--conversation",
        type=int,
        metavar="ID",
        help="continue a saved conversation (see bubble-cli chats list)",
    )
    p.set_defaults(func=run)


def add_load_args(p: argparse.ArgumentParser) -> None:
    """How to load the model: the options ``ask`` and ``serve`` share (read by ``load_for_args``)."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument(
        "--context-window",
        type=int,
        metavar="N",
        help="tokens the model sees at once (0 = from the model; a GGUF's memory grows with it)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="GGUF: CPU threads (0 = the performance cores)")
    p.add_argument(
        "--gpu-layers",
        type=int,
        metavar="N",
        help="GGUF: layers on the GPU (-1 = as many as fit, 0 = CPU only)",
    )
    p.add_argument(
        "--lora",
        metavar="NAME|DIR",
        help="LoRA (peft) adapter on top of the model: a folder, or the name given to train lora --out",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow models that ship their own Python code (e.g. ChatGLM)",
    )


def load_user_settings() -> Settings:
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import load_settings

    settings, notices = load_settings(Paths.default().settings_file)
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    return settings


def sampling_from_args(args: argparse.Namespace, settings: Settings) -> SamplingSettings:
    """The saved sampling settings with the command-line overrides applied (validated)."""
    from pydantic import ValidationError

    from bubble_desktop.core.settings import SamplingSettings

    update: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            update[name] = value
    if args.system is not None:
        update["system_prompt"] = args.system
    try:
        return SamplingSettings.model_validate({**settings.sampling.model_dump(), **update})
    except ValidationError as exc:
        raise _option_error(exc) from exc


def _option_error(exc: ValidationError) -> SettingsError:
    """A command-line value out of range, named as the option the user typed."""
    from bubble_desktop.core.errors import SettingsError

    err = exc.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ())).replace("_", "-")
    return SettingsError(f"--{where}: {err.get('msg')}", "See bubble-cli ask --help for the ranges.")


def load_for_args(args: argparse.Namespace, settings: Settings) -> ChatModel:
    from pydantic import ValidationError

    from bubble_desktop.core.llm.loader import from_settings, load_model

    update: dict[str, Any] = {}
    for name in ("context_window", "threads", "gpu_layers"):
        value = getattr(args, name, None)
        if value is not None:
            update[name] = value
    try:
        model_settings = type(settings.model).model_validate({**settings.model.model_dump(), **update})
    except ValidationError as exc:
        raise _option_error(exc) from exc
    request = from_settings(model_settings, trust_remote_code=bool(args.trust_remote_code))
    if args.model:
        request.path = args.model
        request.lora_path = ""
    if args.device:
        request.device = args.device
    if args.dtype:
        request.dtype = args.dtype
    if args.lora:
        from bubble_desktop.core.llm.adapters import resolve_adapter_path

        request.lora_path = resolve_adapter_path(args.lora)
    model = load_model(request)
    for notice in model.info.notices:  # e.g. the file's chat template could not be used
        print(f"note: {notice}", file=sys.stderr)
    return model


def print_context_answer(answer: Any, as_json: bool) -> int:
    """Stream a ChatService answer to stdout (flushed per chunk) with its sources, or print one JSON
    object at the end (answer, stats, sources, notices, conversation and message ids)."""
    out = sys.stdout
    if not as_json:
        for notice in answer.notices:
            print(f"note: {notice}", file=sys.stderr)
    for chunk in answer:
        if not as_json:
            out.write(chunk)
            out.flush()
    stats = answer.stats
    assert stats is not None
    if as_json:
        result: dict[str, Any] = {
            "answer": answer.text,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "ttft_s": stats.ttft_s,
            "tokens_per_s": stats.tokens_per_s,
            "finish_reason": stats.finish_reason,
            "conversation_id": answer.conversation_id,
            "message_id": answer.message_id,
            "sources": [s.to_dict() for s in answer.sources],
            "notices": list(answer.notices),
            "web_used": answer.web_used,
        }
        if stats.error:
            result["error"] = stats.error
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        out.write("\n")
        if answer.sources:
            out.write("\nSources:\n")
            for s in answer.sources:
                out.write(f"[{s.index}] {s.title} — {s.where}\n")
        out.flush()  # the answer's last line before the note on stderr (a terminal shows both)
        print(f"(conversation {answer.conversation_id})", file=sys.stderr)
    out.flush()
    if stats.finish_reason == "error":
        print(f"error: {stats.error}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.paths import Paths

    settings = load_user_settings()
    sampling = sampling_from_args(args, settings)
    snapshot = settings.snapshot()
    snapshot.sampling = sampling
    kb_names = list(getattr(args, "kb", None) or [])
    web = bool(getattr(args, "web", False))
    paths = Paths.default().ensure()
    knowledge = None
    if kb_names:
        from bubble_desktop.core.kb.service import KnowledgeService

        knowledge = KnowledgeService(paths, settings.knowledge)
        try:
            for name in kb_names:
                knowledge.info(name)  # an unknown name fails here, before the model loads
        except BaseException:
            knowledge.close()
            raise
    model = load_for_args(args, settings)
    service = ChatService(paths, knowledge, None)
    try:
        answer = service.ask(
            model,
            args.question,
            snapshot,
            conversation_id=getattr(args, "conversation", None),
            kb_names=kb_names,
            web=web,
        )
        return print_context_answer(answer, args.json)
    finally:
        service.close()
        if knowledge is not None:
            knowledge.close()
        model.unload()
