"""bubble-cli serve: the OpenAI-compatible API over a local model and the knowledge bases.

Prints the base URL (``http://127.0.0.1:8765/v1``) on stdout once requests are accepted, and
serves until Ctrl+C (or SIGTERM). Loopback only unless an API key is given. Nothing heavy is
imported at parse time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubble_desktop.commands.ask import add_load_args
from bubble_desktop.core.paths import Paths

KEY_ENV = "BUBBLE_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="serve the model and knowledge bases over an OpenAI-compatible API",
        description="Serve a local model over the OpenAI API (/v1/models, /v1/chat/completions, "
        "/v1/embeddings) for editors, scripts and web UIs. Model ids 'bubble/kb:NAME' (or the request "
        'field "bubble": {"knowledge_bases": [...]}) answer from your knowledge bases, with sources. '
        "Options left out come from the saved settings.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only; any other needs --api-key)",
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument(
        "--model", metavar="PATH", help="model folder, .gguf file, or the name of an imported model"
    )
    p.add_argument("--model-id", metavar="ID", help="the model id clients use (default: the model's name)")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' (or set {KEY_ENV}); needed off loopback",
    )
    p.add_argument(
        "--kb-dir", metavar="DIR", help="folder holding the knowledge bases (default: the one the app uses)"
    )
    p.add_argument("--no-kb", action="store_true", help="serve no knowledge bases and no embeddings")
    add_load_args(p)
    p.add_argument(
        "--max-queue",
        type=int,
        default=16,
        metavar="N",
        help="requests waiting for the model before new ones get 503 (default 16)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=4096,
        metavar="N",
        help="the most tokens one request may ask for (default 4096)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=4.0,
        metavar="MB",
        help="largest request body accepted (default 4 MB)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (repeatable; e.g. http://localhost:3000). Off by default",
    )
    p.add_argument(
        "--log-prompts",
        action="store_true",
        help="write prompts to the log (only with debug logging on); never by default",
    )
    p.set_defaults(func=run)


@dataclass(frozen=True)
class _KbPaths(Paths):
    """The usual folders, with the knowledge bases somewhere else (--kb-dir)."""

    kb_dir: Path = Path()

    @property
    def knowledge_dir(self) -> Path:
        return self.kb_dir


def _paths(args: argparse.Namespace) -> Paths:
    paths = Paths.default().ensure()
    if args.kb_dir:
        folder = Path(args.kb_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return _KbPaths(
            paths.config_dir, paths.data_dir, paths.models_dir, paths.cache_dir, paths.log_dir, kb_dir=folder
        )
    return paths


def run(args: argparse.Namespace) -> int:
    from bubble_desktop.commands.ask import load_for_args, load_user_settings
    from bubble_desktop.core.api.app import ApiConfig
    from bubble_desktop.core.api.owner import InferenceOwner
    from bubble_desktop.core.api.server import ApiServer, ApiServerError, check_bind, is_loopback
    from bubble_desktop.core.errors import SettingsError

    settings = load_user_settings()
    key = args.api_key if args.api_key is not None else os.environ.get(KEY_ENV, "")
    if args.max_tokens < 1 or args.max_queue < 1 or args.max_body_mb <= 0:
        raise SettingsError(
            "--max-tokens, --max-queue and --max-body-mb must be positive.", "See bubble-cli serve --help."
        )
    config = ApiConfig(
        host=args.host,
        port=args.port,
        api_key=key,
        cors_origins=tuple(args.cors_origin),
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_tokens=min(args.max_tokens, 32_768),
        max_queue=args.max_queue,
        log_prompts=bool(args.log_prompts),
        model_id=args.model_id or "",
        settings=settings.snapshot(),
    )
    try:
        check_bind(config)  # refuse an unprotected public bind before loading anything
    except ApiServerError as exc:
        if not key and not is_loopback(config.host):  # the hint in the words of the command line
            raise ApiServerError(
                exc.message, f"Pass --api-key KEY (or set {KEY_ENV}), or serve on --host 127.0.0.1."
            ) from exc
        raise
    paths = _paths(args)
    knowledge: Any = None
    chat_service: Any = None
    if not args.no_kb:
        from bubble_desktop.core.chat.service import ChatService
        from bubble_desktop.core.kb.service import KnowledgeService

        knowledge = KnowledgeService(paths, settings.knowledge)
        chat_service = ChatService(paths, knowledge, None)
    print("loading the model …", file=sys.stderr, flush=True)
    owner = InferenceOwner(loader=lambda: load_for_args(args, settings), max_queue=config.max_queue)
    server = ApiServer(owner, config, knowledge=knowledge, chat_service=chat_service, owns_owner=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
        model = owner.model
        name = config.model_id or (model.info.name if model is not None else "")
        print(server.url, flush=True)
        print(
            f"serving {name} on {server.url} (Ctrl+C to stop)"
            + ("" if key else "; no API key: this computer only"),
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        owner.stop()
        if chat_service is not None:
            chat_service.close()
        if knowledge is not None:
            knowledge.close()
    print("stopped", file=sys.stderr)
    return 0
